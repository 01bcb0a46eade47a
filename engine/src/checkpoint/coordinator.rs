//! The checkpoint coordinator of a job: one thread in process 0 (Flink's checkpoint
//! coordinator, minus the RPC). It
//!
//! - **starts** checkpoint `c` every `interval` (never sooner than `min-pause` after the
//!   last one ended; one at a time) by issuing a snapshot command on the control stream;
//!   the command lands at an epoch, and when timely's frontier passes that epoch every
//!   operator on every worker snapshots — the frontier is the barrier;
//! - **collects** its own process's file reports (workers hand their snapshots to the
//!   process's [`CheckpointWriter`], which encodes and writes them off the worker threads
//!   and reports here), then asks the writer to **complete** the checkpoint: the manifest
//!   is written once every worker of every process has its file (polled through the store,
//!   so other processes need no channel to process 0);
//! - on completion tells every operator (`Committed`), applies **retention**, and copies a
//!   requested **savepoint**; a checkpoint not complete within `timeout` has failed, and
//!   more than `tolerable-failures` failures in a row fail the job, loudly.
//!
//! Requests come through the job's [`JobControl`] ([`JobControl::request`]): a savepoint
//! (SIGUSR1, the HTTP endpoint), a stop with a final checkpoint (SIGTERM), a stop with a
//! savepoint; a request wakes the coordinator, which also looks at least every 100 ms.

use super::{
    CheckpointError, CheckpointInfo, CheckpointStore, CheckpointWriter, Completion, Manifest,
    WriteJob, WrittenFile, copy_to_savepoint, retain,
};
use crate::dataflow::Epoch;
use crate::job::checkpointing::CheckpointSpec;
use crate::lifecycle::JobControl;
use crate::lifecycle::control::Request;
use crate::lifecycle::snapshot::WorkerSnapshot;
use crate::metrics::{self, Counter};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A worker's file of a checkpoint was written (or could not be).
#[derive(Debug)]
pub struct FileEvent {
    /// Checkpoint id.
    pub id: u64,
    /// The epoch it was taken at.
    pub epoch: Epoch,
    /// The worker.
    pub worker: usize,
    /// The file, or why it failed.
    pub result: Result<WrittenFile, String>,
}

/// Where a worker hands its checkpoint snapshots: the process's writer and the run attempt.
#[derive(Debug, Clone)]
pub struct CheckpointOutput {
    /// The process's background writer.
    pub writer: Arc<CheckpointWriter>,
    /// The run attempt (generation).
    pub attempt: u64,
    /// Reports to the coordinator (process 0) or nowhere.
    pub events: Sender<Msg>,
}

impl CheckpointOutput {
    /// Queues a worker's snapshot; never blocks.
    ///
    /// # Errors
    /// If the writer has stopped.
    pub fn submit(&self, snap: WorkerSnapshot) -> Result<(), CheckpointError> {
        let (id, epoch, worker) = (snap.id, snap.epoch, snap.worker);
        let _ = self.events.send(Msg::Submitted(id));
        let events = self.events.clone();
        self.writer.submit(
            WriteJob::Snapshot {
                snap: Box::new(snap),
                attempt: self.attempt,
            },
            move |r| {
                let _ = events.send(Msg::File(FileEvent {
                    id,
                    epoch,
                    worker,
                    result: r.map_err(|e| e.to_string()),
                }));
            },
        )
    }
}

/// Messages to the coordinator thread.
#[derive(Debug)]
pub enum Msg {
    /// A worker handed its snapshot of checkpoint `id` to the writer.
    Submitted(u64),
    /// A file report.
    File(FileEvent),
    /// The outcome of a manifest attempt.
    Completed(u64, Result<Completion, CheckpointError>),
    /// The job's workers have ended: finish what is in flight, then return.
    Finish,
    /// A request (savepoint, stop) is waiting in the job's control.
    Wake,
}

/// How the coordinator runs.
#[derive(Debug)]
pub struct CoordinatorConfig {
    /// Job name.
    pub job: String,
    /// The checkpoint location.
    pub store: CheckpointStore,
    /// Process 0's writer (manifests are written through it too).
    pub writer: Arc<CheckpointWriter>,
    /// This run's attempt.
    pub attempt: u64,
    /// Workers of the job, all processes.
    pub workers: usize,
    /// Workers of process 0.
    pub local_workers: usize,
    /// The job's key groups.
    pub key_groups: u32,
    /// The settings.
    pub spec: CheckpointSpec,
    /// The control stream's handle.
    pub control: JobControl,
    /// The job's first fatal error.
    pub failure: Arc<Mutex<Option<String>>>,
    /// Set to stop the job.
    pub shutdown: Arc<AtomicBool>,
}

/// A running coordinator.
#[derive(Debug)]
pub struct Coordinator {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<Vec<Manifest>>>,
}

impl Coordinator {
    /// Starts the coordinator thread; `events` must be the receiver of the senders given
    /// to process 0's workers (see [`Coordinator::channel`]).
    ///
    /// # Errors
    /// If the thread cannot start.
    pub fn start(
        cfg: CoordinatorConfig,
        tx: Sender<Msg>,
        rx: Receiver<Msg>,
    ) -> std::io::Result<Self> {
        cfg.control.wake_on_request(tx.clone());
        let run = Run::new(cfg, tx.clone());
        let thread = std::thread::Builder::new()
            .name("flowcast-checkpoint-coordinator".into())
            .spawn(move || run.run(rx))?;
        Ok(Coordinator {
            tx,
            thread: Some(thread),
        })
    }

    /// A channel for file reports and requests.
    pub fn channel() -> (Sender<Msg>, Receiver<Msg>) {
        channel()
    }

    /// The workers have ended: completes what is in flight (the final checkpoint or
    /// savepoint of a stop), then returns every manifest this run wrote.
    pub fn finish(mut self) -> Vec<Manifest> {
        let _ = self.tx.send(Msg::Finish);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct InFlight {
    started: Instant,
    epoch: Option<Epoch>,
    submitted: usize,
    local_files: usize,
    bytes: u64,
    savepoint: bool,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Gauges {
    completed: Counter,
    failed: Counter,
    duration: Counter,
    size: Counter,
    last_id: Counter,
}

struct Run {
    cfg: CoordinatorConfig,
    tx: Sender<Msg>,
    in_flight: BTreeMap<u64, InFlight>,
    last_trigger: Instant,
    last_end: Instant,
    failures: u32,
    finishing: bool,
    stopping: bool,
    written: Vec<Manifest>,
    m: Gauges,
}

impl Run {
    fn new(cfg: CoordinatorConfig, tx: Sender<Msg>) -> Self {
        let l = [("job", cfg.job.as_str())];
        let m = Gauges {
            completed: metrics::counter(
                "flowcast_checkpoint_completed_total",
                "Checkpoints and savepoints completed (manifest written)",
                &l,
            ),
            failed: metrics::counter(
                "flowcast_checkpoint_failed_total",
                "Checkpoints that failed or timed out",
                &l,
            ),
            duration: metrics::gauge(
                "flowcast_checkpoint_duration_seconds",
                "The last completed checkpoint: its start to its manifest",
                &l,
            ),
            size: metrics::gauge(
                "flowcast_checkpoint_size_bytes",
                "The last completed checkpoint's files, all workers",
                &l,
            ),
            last_id: metrics::gauge(
                "flowcast_checkpoint_last_id",
                "The id of the last completed checkpoint",
                &l,
            ),
        };
        let now = Instant::now();
        Run {
            cfg,
            tx,
            in_flight: BTreeMap::new(),
            last_trigger: now,
            last_end: now,
            failures: 0,
            finishing: false,
            stopping: false,
            written: Vec::new(),
            m,
        }
    }

    fn run(mut self, rx: Receiver<Msg>) -> Vec<Manifest> {
        loop {
            let now = Instant::now();
            for r in self.cfg.control.take_requests() {
                self.on_request(r);
            }
            self.maybe_start(now);
            self.expire(now);
            self.retry_completions(now);
            if self.finishing && self.in_flight.is_empty() {
                return self.written;
            }
            match rx.recv_timeout(self.next_wake(now)) {
                Ok(Msg::Submitted(id)) => {
                    if let Some(c) = self.in_flight.get_mut(&id) {
                        c.submitted += 1;
                    }
                }
                Ok(Msg::File(f)) => self.on_file(f),
                Ok(Msg::Completed(id, r)) => self.on_completed(id, r),
                Ok(Msg::Finish) => self.finish(),
                Ok(Msg::Wake) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.written,
            }
        }
    }

    /// The workers have ended: every snapshot they took was handed over before this
    /// message, so a checkpoint some local worker never snapshotted will not complete.
    fn finish(&mut self) {
        self.finishing = true;
        let local = self.cfg.local_workers;
        let never: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, c)| c.submitted < local)
            .map(|(id, _)| *id)
            .collect();
        for id in never {
            self.in_flight.remove(&id);
            tracing::debug!(job = %self.cfg.job, checkpoint = id, "abandoned: the job ended before its epoch");
        }
    }

    fn next_wake(&self, now: Instant) -> Duration {
        let mut wake = now + Duration::from_millis(100);
        if self.in_flight.is_empty() && !self.stopping && !self.finishing {
            let due = (self.last_trigger + self.cfg.spec.interval)
                .max(self.last_end + self.cfg.spec.min_pause);
            wake = wake.min(due);
        }
        for f in self.in_flight.values() {
            if let Some(t) = f.retry_at {
                wake = wake.min(t);
            }
            wake = wake.min(f.started + self.cfg.spec.timeout);
        }
        wake.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    fn maybe_start(&mut self, now: Instant) {
        if !self.in_flight.is_empty() || self.stopping || self.finishing {
            return;
        }
        if now < self.last_trigger + self.cfg.spec.interval
            || now < self.last_end + self.cfg.spec.min_pause
        {
            return;
        }
        let id = self.cfg.control.snapshot();
        self.track(id, false, now);
    }

    fn track(&mut self, id: u64, savepoint: bool, now: Instant) {
        self.last_trigger = now;
        self.in_flight.insert(
            id,
            InFlight {
                started: now,
                epoch: None,
                submitted: 0,
                local_files: 0,
                bytes: 0,
                savepoint,
                retry_at: None,
            },
        );
        tracing::debug!(job = %self.cfg.job, checkpoint = id, savepoint, "checkpoint started");
    }

    fn on_request(&mut self, r: Request) {
        if self.stopping {
            tracing::warn!(job = %self.cfg.job, ?r, "the job is already stopping; request ignored");
            return;
        }
        let now = Instant::now();
        let id = match r {
            Request::Savepoint => self.cfg.control.snapshot(),
            Request::StopWithSavepoint | Request::StopWithCheckpoint => {
                self.stopping = true;
                self.cfg.control.stop_with_snapshot()
            }
        };
        let savepoint = r != Request::StopWithCheckpoint;
        tracing::info!(job = %self.cfg.job, checkpoint = id, request = ?r, "checkpoint requested");
        self.track(id, savepoint, now);
    }

    fn on_file(&mut self, f: FileEvent) {
        let Some(c) = self.in_flight.get_mut(&f.id) else {
            return;
        };
        match f.result {
            Ok(file) => {
                c.epoch = Some(f.epoch);
                c.local_files += 1;
                c.bytes += file.size;
                if c.local_files == self.cfg.local_workers {
                    // Fault tests: die as `kill -9` would, files written, no manifest.
                    crate::failpoint::hit("checkpoint-before-manifest");
                    self.complete(f.id);
                }
            }
            Err(e) => self.failed(f.id, &format!("worker {} could not write: {e}", f.worker)),
        }
    }

    fn complete(&self, id: u64) {
        let Some(c) = self.in_flight.get(&id) else {
            return;
        };
        let info = CheckpointInfo {
            job: self.cfg.job.clone(),
            id,
            attempt: self.cfg.attempt,
            epoch: c.epoch.unwrap_or_default(),
            workers: self.cfg.workers,
            key_groups: self.cfg.key_groups,
        };
        let tx = self.tx.clone();
        if let Err(e) = self.cfg.writer.complete(info, move |r| {
            let _ = tx.send(Msg::Completed(id, r));
        }) {
            let _ = self.tx.send(Msg::Completed(id, Err(e)));
        }
    }

    fn retry_completions(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, c)| c.retry_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(c) = self.in_flight.get_mut(&id) {
                c.retry_at = None;
            }
            self.complete(id);
        }
    }

    fn on_completed(&mut self, id: u64, r: Result<Completion, CheckpointError>) {
        match r {
            Ok(Completion::NotYet { .. }) => {
                // Other processes' files are not there yet: look again shortly.
                if let Some(c) = self.in_flight.get_mut(&id) {
                    c.retry_at = Some(Instant::now() + Duration::from_millis(5));
                }
            }
            Ok(Completion::Written(manifest)) => self.committed(id, manifest),
            Err(e) => self.failed(id, &format!("manifest: {e}")),
        }
    }

    fn committed(&mut self, id: u64, manifest: Manifest) {
        let Some(c) = self.in_flight.remove(&id) else {
            return;
        };
        let took = c.started.elapsed();
        let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
        self.last_end = Instant::now();
        self.failures = 0;
        self.m.completed.inc();
        self.m.duration.set_base(took.as_secs_f64());
        self.m.size.set(bytes);
        self.m.last_id.set(id);
        tracing::info!(
            job = %self.cfg.job, checkpoint = id, epoch = manifest.epoch, took = ?took, bytes,
            local_bytes = c.bytes, "checkpoint committed"
        );
        crate::failpoint::hit("checkpoint-after-manifest");
        self.cfg.control.committed(id);
        if c.savepoint {
            self.savepoint(&manifest);
        }
        match retain(&self.cfg.store, self.cfg.spec.retained) {
            Ok(r) if !r.deleted.is_empty() => {
                tracing::debug!(job = %self.cfg.job, kept = ?r.kept, deleted = r.deleted.len(), "retention")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job = %self.cfg.job, "retention failed (will try again): {e}"),
        }
        self.written.push(manifest);
    }

    fn savepoint(&mut self, manifest: &Manifest) {
        let Some(root) = self.cfg.spec.savepoint_root() else {
            return;
        };
        let target = format!("{root}/savepoint-{}", manifest.checkpoint_id);
        let result = CheckpointStore::open(&target)
            .and_then(|t| copy_to_savepoint(&self.cfg.store, manifest, &t));
        match result {
            Ok(_) => {
                tracing::info!(job = %self.cfg.job, checkpoint = manifest.checkpoint_id, path = %target, "savepoint written")
            }
            Err(e) => {
                let msg = format!("savepoint {target} failed: {e}");
                tracing::error!(job = %self.cfg.job, "{msg}");
                self.m.failed.inc();
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, c)| now >= c.started + self.cfg.spec.timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let t = self.cfg.spec.timeout;
            self.failed(id, &format!("not complete within the timeout ({t:?})"));
        }
    }

    fn failed(&mut self, id: u64, why: &str) {
        if self.in_flight.remove(&id).is_none() {
            return;
        }
        self.last_end = Instant::now();
        self.failures += 1;
        self.m.failed.inc();
        tracing::warn!(job = %self.cfg.job, checkpoint = id, failures = self.failures, "checkpoint failed: {why}");
        if self.failures > self.cfg.spec.tolerable_failures {
            let msg = format!(
                "{} checkpoints failed in a row (tolerable: {}); the last: checkpoint {id} {why}",
                self.failures, self.cfg.spec.tolerable_failures
            );
            tracing::error!(job = %self.cfg.job, "{msg}");
            self.cfg
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(msg);
            self.cfg.shutdown.store(true, Ordering::SeqCst);
        }
    }
}
