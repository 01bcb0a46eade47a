//! Exactly-once output to Kafka, write-ahead: what a Kafka output makes between two
//! checkpoints is **staged** in the operator, becomes part of the next checkpoint, and is
//! committed to Kafka — in one transaction per worker with a progress record — only once
//! that checkpoint's manifest exists ([`super::committer`]).
//!
//! Why staged and not written into an open transaction: a transaction of another process
//! cannot be resumed (starting the same transactional id aborts it), and commits of
//! several producers are not atomic together. With the output in the checkpoint, a crash
//! at any point leaves a checkpoint to go back to that still holds every record not known
//! committed, and the progress topic says which were.
//!
//! - A worker's exactly-once outputs (predictions, dead letters, late records) share its
//!   [`Hub`]: each hands its batch of checkpoint c over when the job learns c completed
//!   (`Committed`); when every output has, the committer thread commits them together.
//! - Each output's snapshot holds its batches not yet with the committer, tagged with the
//!   slot (worker index) and the run that staged them, as per-slot state: restored on
//!   worker `slot mod W` at any new parallelism, which recovers them first. Batches with
//!   the committer are not in it: its file is written only once they are committed, so
//!   each interval's output is written into one checkpoint, however long its commit takes.
//! - The end of input commits what is staged at once; a stop with a final checkpoint
//!   leaves the final batch in that checkpoint, committed by the next start; a job that
//!   shuts down on a failure commits nothing more (its restart redoes what came after
//!   its last checkpoint).
//!
//! Consumers must read with `isolation.level=read_committed`. Output becomes visible at
//! checkpoint pace: within a checkpoint interval (plus the commit) of its window closing.

use super::committer::{self, Batches, Cmd, CommitterConfig, Part, Shared};
use super::staged::StagedBatch;
use super::{KafkaRecord, KafkaSinkConfig};
use crate::lifecycle::{EpochContext, Operator, RestoredState, StateError, StateWriter};
use crate::sinks::{Sink, SinkContext};
use crate::sinks::util::metrics::SinkMetrics;
use rdkafka::message::Headers;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

/// Header of exactly-once predictions: when their window closed, ms since the Unix epoch
/// (the job's wall clock). `flowcast tail --latency` reads it.
pub const WINDOW_CLOSED_HEADER: &str = "flowcast.window-closed-ms";

/// A Kafka output's delivery guarantee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Every record at least once; after a crash the records since the restored checkpoint
    /// are written again. Visible at once.
    #[default]
    AtLeastOnce,
    /// Every record exactly once for `read_committed` readers; visible when the checkpoint
    /// after it completes. Needs checkpoints.
    ExactlyOnce,
}

/// The batches of the earlier state version (1): a record per allocation.
mod v1 {
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize)]
    pub(super) struct Staged {
        pub key: Option<Vec<u8>>,
        pub value: Vec<u8>,
        pub headers: Vec<(String, Vec<u8>)>,
    }

    #[derive(Deserialize)]
    pub(super) struct SlotBatches {
        pub slot: u32,
        pub run: u64,
        pub batches: BTreeMap<u64, Vec<Staged>>,
    }
}

/// Version-1 state (a `Vec` of records per batch) as version 2 (one buffer per batch).
fn migrate_v1(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let old: Vec<v1::SlotBatches> = bincode::deserialize(bytes).map_err(|e| e.to_string())?;
    let new: Vec<SlotBatches> = old
        .into_iter()
        .map(|s| SlotBatches {
            slot: s.slot,
            run: s.run,
            batches: s
                .batches
                .into_iter()
                .map(|(id, records)| {
                    let mut b = StagedBatch::new();
                    for r in &records {
                        let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
                        b.push(r.key.as_deref(), &r.value, headers);
                    }
                    (id, Arc::new(b))
                })
                .collect(),
        })
        .collect();
    bincode::serialize(&new).map_err(|e| e.to_string())
}

/// Stages `r` (and, for predictions, when its window closed) into `batch`.
fn stage<D: KafkaRecord>(batch: &mut StagedBatch, r: &D, closed: Option<&[u8]>) {
    let owned = r.headers();
    let own = owned
        .iter()
        .flat_map(|h| h.iter())
        .map(|h| (h.key, h.value.unwrap_or_default()));
    let closed = closed.map(|c| (WINDOW_CLOSED_HEADER, c));
    batch.push(r.key(), &r.value(), own.chain(closed));
}

/// One slot's batches in an output's snapshot (shared with the operator: a snapshot
/// copies pointers, and the writer encodes them off the worker thread).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SlotBatches {
    slot: u32,
    run: u64,
    batches: BTreeMap<u64, Arc<StagedBatch>>,
}

/// The worker's exactly-once outputs' meeting point: gathers their batches per checkpoint
/// and hands complete ones to the committer thread.
#[derive(Debug)]
pub struct Hub {
    slot: u32,
    run: u64,
    tx: Sender<Cmd>,
    shared: Arc<Shared>,
    thread: RefCell<Option<std::thread::JoinHandle<()>>>,
    st: RefCell<HubState>,
}

#[derive(Debug, Default)]
struct HubState {
    outputs: usize,
    started: bool,
    recovered: BTreeMap<(u32, u64), Batches>,
    /// Batches handed over per checkpoint id: how many outputs have, and their parts.
    ready: BTreeMap<u64, (usize, Vec<Part>)>,
}

impl Hub {
    /// Starts worker `slot`'s committer; its transactions write through `ctx.kafka` and
    /// a failure of one fails the job through `ctx`.
    ///
    /// # Errors
    /// If the committer thread cannot be started.
    pub fn start(ctx: &SinkContext, slot: usize) -> std::io::Result<Self> {
        let (job, settings) = (&ctx.job, &ctx.kafka);
        let shared = Arc::new(Shared {
            committed: Default::default(),
            failure: Arc::clone(&ctx.failure),
            shutdown: Arc::clone(&ctx.shutdown),
            changed: Default::default(),
            closed: Default::default(),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let cfg = CommitterConfig {
            job: job.to_owned(),
            settings: settings.clone(),
            slot: slot as u32,
        };
        let thread = committer::spawn(cfg, Arc::clone(&shared), rx)?;
        Ok(Hub {
            slot: slot as u32,
            run: run_tag(slot),
            tx,
            shared,
            thread: RefCell::new(Some(thread)),
            st: RefCell::new(HubState::default()),
        })
    }

    fn register(&self) {
        self.st.borrow_mut().outputs += 1;
    }

    fn restored(&self, topic: &Arc<str>, slots: &[SlotBatches]) {
        let mut st = self.st.borrow_mut();
        for s in slots {
            let entry = st.recovered.entry((s.slot, s.run)).or_default();
            for (id, records) in &s.batches {
                entry
                    .entry(*id)
                    .or_default()
                    .push((Arc::clone(topic), Arc::clone(records)));
            }
        }
    }

    /// Sends the restored batches to the committer once, before anything else.
    fn start_once(&self) {
        let mut st = self.st.borrow_mut();
        if st.started {
            return;
        }
        st.started = true;
        let work = std::mem::take(&mut st.recovered);
        if !work.is_empty() {
            let _ = self.tx.send(Cmd::Recover(work));
        }
    }

    /// One output's batch of checkpoint `id`; when every output has handed `id` over, the
    /// batches up to it go to the committer.
    fn ready(&self, id: u64, topic: &Arc<str>, records: &Arc<StagedBatch>) {
        self.start_once();
        let mut st = self.st.borrow_mut();
        let outputs = st.outputs;
        let e = st.ready.entry(id).or_default();
        e.0 += 1;
        e.1.push((Arc::clone(topic), Arc::clone(records)));
        if e.0 < outputs {
            return;
        }
        let later = match id.checked_add(1) {
            Some(next) => st.ready.split_off(&next),
            None => BTreeMap::new(),
        };
        let done = std::mem::replace(&mut st.ready, later);
        let batches: Batches = done.into_iter().map(|(i, (_, r))| (i, r)).collect();
        let _ = self.tx.send(Cmd::Commit {
            run: self.run,
            batches,
        });
    }

    fn committed(&self, slot: u32, run: u64) -> Option<u64> {
        self.shared.committed(slot, run)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // The channel closes with `tx`; the thread finishes what it was given.
        let (tx, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.borrow_mut().take() {
            let _ = t.join();
        }
        self.shared.close();
    }
}

/// A tag no other run of any slot uses (time, process and slot mixed).
fn run_tag(slot: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ (slot as u64).rotate_left(48);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

/// An exactly-once Kafka output on the operator lifecycle.
pub struct ExactlyOnceOperator<D> {
    id: String,
    topic: Arc<str>,
    hub: std::rc::Rc<Hub>,
    metrics: SinkMetrics,
    staged: StagedBatch,
    /// This run's batches by checkpoint id, not known committed; `handed` of them are with
    /// the hub.
    awaiting: BTreeMap<u64, Arc<StagedBatch>>,
    handed: u64,
    recovered: Vec<SlotBatches>,
    /// Set when the job stopped at a snapshot, and when it is shutting down on a failure:
    /// then `close` commits nothing (what is staged is not covered by a checkpoint).
    stopped: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
    _records: std::marker::PhantomData<fn(D)>,
}

impl<D> std::fmt::Debug for ExactlyOnceOperator<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactlyOnceOperator")
            .field("id", &self.id)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<D: KafkaRecord> ExactlyOnceOperator<D> {
    /// Output `id` to `topic` through the worker's `hub`; `stopped` is the worker's flag
    /// of a stop at a snapshot, `shutdown` the job's of a stop on a failure.
    pub fn new(
        id: &str,
        topic: &str,
        hub: std::rc::Rc<Hub>,
        (job, worker): (&str, usize),
        (stopped, shutdown): (Arc<AtomicBool>, Arc<AtomicBool>),
    ) -> Self {
        hub.register();
        ExactlyOnceOperator {
            id: id.to_owned(),
            topic: topic.into(),
            metrics: SinkMetrics::new(job, KafkaSinkConfig::KIND, id, worker),
            hub,
            staged: StagedBatch::new(),
            awaiting: BTreeMap::new(),
            handed: 0,
            recovered: Vec::new(),
            stopped,
            shutdown,
            _records: std::marker::PhantomData,
        }
    }

    /// Forgets what the committer confirmed.
    fn prune(&mut self) {
        if let Some(c) = self.hub.committed(self.hub.slot, self.hub.run) {
            let before = self.awaiting.values().map(|b| b.len()).sum::<usize>();
            self.awaiting = match c.checked_add(1) {
                Some(next) => self.awaiting.split_off(&next),
                None => BTreeMap::new(),
            };
            let after = self.awaiting.values().map(|b| b.len()).sum::<usize>();
            self.metrics.delivered.add((before - after) as u64);
        }
        let hub = &self.hub;
        self.recovered.retain_mut(|s| {
            if let Some(c) = hub.committed(s.slot, s.run) {
                s.batches = match c.checked_add(1) {
                    Some(next) => s.batches.split_off(&next),
                    None => BTreeMap::new(),
                };
            }
            !s.batches.is_empty()
        });
    }
}

impl<D: KafkaRecord + Clone + 'static> Operator for ExactlyOnceOperator<D> {
    type In = D;
    type Out = ();

    fn id(&self) -> &str {
        &self.id
    }

    /// 2: a batch is one buffer ([`StagedBatch`]); 1: a `Vec` of records.
    fn state_version(&self) -> u32 {
        2
    }

    fn migrate(&self, state: RestoredState) -> Result<RestoredState, StateError> {
        if state.version() != 1 {
            return Err(StateError::Version {
                operator: self.id.clone(),
                found: state.version(),
                supported: self.state_version(),
            });
        }
        Ok(state.map_partitions(migrate_v1)?.with_version(2))
    }

    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        for entry in state.partitions::<Vec<SlotBatches>>() {
            self.recovered.extend(entry?.1);
        }
        self.hub.restored(&self.topic, &self.recovered);
        Ok(())
    }

    fn on_records(&mut self, ctx: &EpochContext, records: Vec<D>, _: &mut Vec<()>) {
        self.hub.start_once();
        // Predictions carry when their window closed (wall clock, ms), so a reader can
        // tell how long after it the committed record became visible.
        let closed = D::TRACKS_LATENCY
            .then(|| crate::dataflow::latency::since_fired(ctx.epoch))
            .flatten()
            .map(|elapsed| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                now.saturating_sub(elapsed).as_millis().to_string().into_bytes()
            });
        for r in &records {
            stage(&mut self.staged, r, closed.as_deref());
        }
    }

    fn on_epoch_complete(&mut self, _: &EpochContext, _: &mut Vec<()>) {
        self.hub.start_once();
        self.prune();
    }

    fn snapshot(&mut self, _: &EpochContext, w: &mut StateWriter<'_>) -> Result<(), StateError> {
        let id = w.snapshot_id();
        self.prune();
        // Snapshot ids are unique: each names one batch.
        self.awaiting
            .insert(id, Arc::new(std::mem::take(&mut self.staged)));
        // Batches already with the committer (their checkpoint is complete) stay out of
        // this snapshot: its file is written only once they are committed (the writer
        // waits, off the worker thread), so a recovery from it finds them in Kafka and in
        // the progress topic. Each interval's output is thus in one checkpoint's file, not
        // again in every checkpoint taken while its transaction runs.
        let with_committer = self
            .awaiting
            .range(..=self.handed)
            .next_back()
            .map(|(i, _)| *i);
        let mine = self.awaiting.range(self.handed.saturating_add(1)..);
        // Per-slot state in the partition map, keyed by the slot whose transactional id
        // commits it: a restore at W workers gives slot s to worker `s mod W` — worker s
        // itself while s < W, so no two workers ever start the same transactional id.
        let mut by_slot: BTreeMap<u32, Vec<SlotBatches>> = BTreeMap::new();
        for s in self.recovered.iter().cloned().chain(std::iter::once(SlotBatches {
            slot: self.hub.slot,
            run: self.hub.run,
            batches: mine.map(|(i, b)| (*i, Arc::clone(b))).collect(),
        })) {
            by_slot.entry(s.slot).or_default().push(s);
        }
        let (shared, slot, run) = (Arc::clone(&self.hub.shared), self.hub.slot, self.hub.run);
        w.partitions_later(move || {
            if let Some(upto) = with_committer {
                let started = std::time::Instant::now();
                shared.wait_committed(slot, run, upto)?;
                tracing::debug!(snapshot = id, slot, upto, waited_ms = started.elapsed().as_millis() as u64,
                    "snapshot written after the batches with the committer committed");
            }
            by_slot
                .into_iter()
                .map(|(slot, entries)| {
                    bincode::serialize(&entries)
                        .map(|b| (slot as i32, b))
                        .map_err(|e| e.to_string())
                })
                .collect()
        });
        Ok(())
    }

    fn on_checkpoint_committed(&mut self, id: u64) {
        let ids: Vec<u64> = self
            .awaiting
            .range(self.handed.saturating_add(1)..=id)
            .map(|(i, _)| *i)
            .collect();
        for i in ids {
            self.hub.ready(i, &self.topic, &self.awaiting[&i]);
            self.handed = i;
        }
    }

    fn close(&mut self) {
        // After a stop at a snapshot, that snapshot holds the last batches: the next start
        // commits them. At the end of input everything goes out now, as one last batch
        // (id u64::MAX) that every output hands over, empty or not; the hub's thread
        // finishes it before the worker's dataflow is dropped.
        if self.stopped.load(Ordering::SeqCst) || self.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let mut rest = StagedBatch::new();
        for (_, r) in self.awaiting.range(self.handed.saturating_add(1)..) {
            rest.extend_from(r);
        }
        rest.extend_from(&std::mem::take(&mut self.staged));
        self.hub.ready(u64::MAX, &self.topic, &Arc::new(rest));
        self.handed = u64::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type V1Record = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

    #[test]
    fn version_1_batches_migrate_to_one_buffer_each() {
        // Version 1's layout: a struct encodes as its fields in order.
        let header = vec![(WINDOW_CLOSED_HEADER.to_owned(), b"17".to_vec())];
        let v1: Vec<(u32, u64, BTreeMap<u64, Vec<V1Record>>)> = vec![(
            2,
            0xabc,
            BTreeMap::from([
                (7, vec![(Some(b"room-1".to_vec()), b"{}".to_vec(), header)]),
                (9, vec![(None, b"x".to_vec(), vec![]), (None, b"y".to_vec(), vec![])]),
            ]),
        )];
        let bytes = migrate_v1(&bincode::serialize(&v1).expect("encode")).expect("migrate");
        let v2: Vec<SlotBatches> = bincode::deserialize(&bytes).expect("decode version 2");
        assert_eq!((v2.len(), v2[0].slot, v2[0].run), (1, 2, 0xabc));
        let first: Vec<_> = v2[0].batches[&7].iter().collect();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].key, first[0].value), (Some(&b"room-1"[..]), &b"{}"[..]));
        assert_eq!(
            first[0].headers().collect::<Vec<_>>(),
            vec![(WINDOW_CLOSED_HEADER, &b"17"[..])]
        );
        let values: Vec<&[u8]> = v2[0].batches[&9].iter().map(|r| r.value).collect();
        assert_eq!(values, vec![&b"x"[..], &b"y"[..]]);
        assert!(migrate_v1(b"\x01").is_err());
    }
}
