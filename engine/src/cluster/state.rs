//! The coordinator's model of the cluster: jobs and their state machine, nodes and their
//! liveness. Pure logic (time is passed in), so the transitions are tested without HTTP;
//! the server feeds it requests, heartbeats and ticks and carries out its [`Effect`]s.

use super::api::{
    JobState, JobView, Launch, ModelArtifact, NodeView, Parallelism, Placement, ProcessStatus,
};
use super::placement::{self, Offer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The coordinator's timing and restart policy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A node whose heartbeats stop for this long is dead.
    pub heartbeat_timeout: Duration,
    /// Failed restarts in a row before a job ends as failed.
    pub restart_budget: u32,
    /// Wait before the first restart; doubles per consecutive failure.
    pub backoff_initial: Duration,
    /// Longest wait between restarts.
    pub backoff_max: Duration,
    /// A stop with a savepoint that takes longer is abandoned (the processes are killed).
    pub stop_timeout: Duration,
    /// Running this long resets the consecutive-failure count.
    pub stable_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat_timeout: Duration::from_secs(3),
            restart_budget: 10,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
        }
    }
}

/// What the coordinator keeps of a job across its own restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Id (the spec's name).
    pub id: String,
    /// The spec as submitted (TOML).
    pub spec: String,
    /// The model artifact.
    pub model: Option<ModelArtifact>,
    /// Requested parallelism.
    pub parallelism: Parallelism,
    /// Workers the next or current attempt runs.
    pub workers: u32,
    /// State.
    pub state: JobState,
    /// Why it failed or last restarted.
    pub reason: Option<String>,
    /// Current attempt (0 first); every (re)start takes a new one.
    pub attempt: u64,
    /// Threads per process of the current attempt.
    pub threads: u32,
    /// Processes of the current attempt; empty while none is placed.
    pub placement: Vec<Placement>,
    /// Restarts after failures.
    pub restarts: u64,
    /// Failures since it last ran stably.
    pub failures: u32,
    /// Submitted at (ms since the epoch).
    pub submitted_unix_ms: u64,
    /// The token of its processes' control endpoints.
    pub control_token: String,
    /// Source topic.
    pub topic: String,
    /// Partitions of the source topic when last looked at.
    pub partitions: Option<u32>,
    /// The job checkpoints (`[checkpoint] location`): restarts resume from checkpoints, and
    /// rescale and stop go through savepoints.
    pub checkpoints: bool,
    /// Epoch interval of the job, ms (clock offsets above it hold the job back).
    pub epoch_interval_ms: u64,
    /// The last rescale's pause, ms.
    pub last_rescale_pause_ms: Option<u64>,
}

/// Per-job facts that do not outlive the coordinator.
#[derive(Debug, Default, Clone)]
struct Transient {
    restart_at: Option<Instant>,
    stop_deadline: Option<Instant>,
    pause_from: Option<Instant>,
    running_since: Option<Instant>,
    ready: BTreeSet<u32>,
    /// When a process of the current attempt was first seen exited because it lost a peer.
    peer_lost_since: Option<Instant>,
}

/// A node as the coordinator knows it.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    /// Host.
    pub host: String,
    /// Slots.
    pub slots: u32,
    /// Port range.
    pub ports: (u16, u16),
    /// Last heartbeat.
    pub last_seen: Instant,
    /// Its clock offset, ms.
    pub clock_offset_ms: Option<f64>,
    /// Its processes as last reported.
    pub processes: Vec<ProcessStatus>,
    next_port: u16,
}

/// Something the server must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write the job's record.
    Persist(String),
    /// POST to a job's control endpoint (`/stop-with-savepoint`, `/savepoint`).
    Control {
        /// The job.
        job: String,
        /// `http://host:port/path`.
        url: String,
        /// Bearer token.
        token: String,
    },
}

/// A refused request: HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 404, 409 …
    pub status: u16,
    /// For a person.
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    settings: Settings,
    jobs: BTreeMap<String, (JobRecord, Transient)>,
    nodes: BTreeMap<String, NodeEntry>,
    started: Instant,
    effects: Vec<Effect>,
}

impl Cluster {
    /// A cluster holding `jobs` (as persisted), started at `now`.
    pub fn new(settings: Settings, jobs: Vec<JobRecord>, now: Instant) -> Self {
        Cluster {
            settings,
            jobs: jobs
                .into_iter()
                .map(|j| (j.id.clone(), (j, Transient::default())))
                .collect(),
            nodes: BTreeMap::new(),
            started: now,
            effects: Vec::new(),
        }
    }

    /// What the server must do now; drains the list.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A job's record.
    pub fn job(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.get(id).map(|(j, _)| j)
    }

    /// Every job's record.
    pub fn jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values().map(|(j, _)| j)
    }

    /// Every node.
    pub fn nodes(&self) -> &BTreeMap<String, NodeEntry> {
        &self.nodes
    }

    fn persist(&mut self, id: &str) {
        let e = Effect::Persist(id.to_owned());
        if !self.effects.contains(&e) {
            self.effects.push(e);
        }
    }

    /// A node is alive when it heartbeats; one not seen since the coordinator started is
    /// given one timeout to show up (a restarted coordinator re-attaches).
    pub fn node_alive(&self, node: &str, now: Instant) -> bool {
        match self.nodes.get(node) {
            Some(n) => now.duration_since(n.last_seen) <= self.settings.heartbeat_timeout,
            None => now.duration_since(self.started) <= self.settings.heartbeat_timeout,
        }
    }

    /// Slots used per node by placed jobs.
    fn used_slots(&self, except: Option<&str>) -> BTreeMap<String, u32> {
        let mut used = BTreeMap::new();
        for (j, _) in self.jobs.values() {
            if Some(j.id.as_str()) == except {
                continue;
            }
            for p in &j.placement {
                *used.entry(p.node.clone()).or_insert(0) += j.threads;
            }
        }
        used
    }

    /// Free slots of live nodes (counting `except`'s own slots as free).
    pub fn offers(&self, now: Instant, except: Option<&str>) -> Vec<Offer> {
        let slots: BTreeMap<String, u32> = self
            .nodes
            .iter()
            .filter(|(id, _)| self.node_alive(id, now))
            .map(|(id, n)| (id.clone(), n.slots))
            .collect();
        placement::free_slots(&slots, &self.used_slots(except))
    }

    /// Accepts a validated job. `workers` is the resolved parallelism.
    ///
    /// # Errors
    /// 409 if a job of that name is not finished, or the slots do not suffice.
    pub fn submit(&mut self, mut job: JobRecord, now: Instant) -> Result<(), Refusal> {
        if let Some((old, _)) = self.jobs.get(&job.id)
            && !old.state.is_terminal()
        {
            return Err(Refusal::new(
                409,
                format!(
                    "job `{}` exists and is {}: cancel it first, or submit under another name",
                    job.id,
                    old.state.name()
                ),
            ));
        }
        self.check_slots(job.workers, now, None)?;
        if let Some((old, _)) = self.jobs.get(&job.id) {
            job.attempt = old.attempt + 1;
        }
        job.state = JobState::Created;
        let id = job.id.clone();
        self.jobs.insert(id.clone(), (job, Transient::default()));
        self.persist(&id);
        self.tick(now);
        Ok(())
    }

    fn check_slots(&self, workers: u32, now: Instant, job: Option<&str>) -> Result<(), Refusal> {
        let offers = self.offers(now, job);
        placement::place(workers, &offers).map(|_| ()).map_err(|free| {
            Refusal::new(
                409,
                format!(
                    "parallelism {workers} needs {workers} free slots; {free} are free on {} live node(s)",
                    offers.len()
                ),
            )
        })
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut (JobRecord, Transient), Refusal> {
        self.jobs
            .get_mut(id)
            .ok_or_else(|| Refusal::new(404, format!("no job `{id}`")))
    }

    /// Cancels a job: its processes are killed, no savepoint.
    ///
    /// # Errors
    /// 404 for an unknown job, 409 for one already over.
    pub fn cancel(&mut self, id: &str) -> Result<(), Refusal> {
        let (j, t) = self.get_mut(id)?;
        if j.state.is_terminal() {
            return Err(Refusal::new(
                409,
                format!("job `{id}` is already {}", j.state.name()),
            ));
        }
        j.state = JobState::Cancelled;
        j.placement.clear();
        *t = Transient::default();
        self.persist(id);
        Ok(())
    }

    fn control(&mut self, id: &str, path: &str) -> Result<(), Refusal> {
        let (j, _) = self.get_mut(id)?;
        if !j.checkpoints {
            return Err(Refusal::new(
                409,
                format!(
                    "job `{id}` has no `[checkpoint] location`, so it has no savepoints: submit it with one"
                ),
            ));
        }
        if j.state != JobState::Running {
            return Err(Refusal::new(
                409,
                format!("job `{id}` is {}; this needs it running", j.state.name()),
            ));
        }
        let Some(p0) = j.placement.first() else {
            return Err(Refusal::new(409, format!("job `{id}` has no processes")));
        };
        let effect = Effect::Control {
            job: id.to_owned(),
            url: format!("http://{}:{}{path}", p0.host, p0.control_port),
            token: j.control_token.clone(),
        };
        self.effects.push(effect);
        Ok(())
    }

    /// Triggers a savepoint; the job goes on.
    ///
    /// # Errors
    /// 404, or 409 when the job does not run or has no checkpoints.
    pub fn savepoint(&mut self, id: &str) -> Result<(), Refusal> {
        self.control(id, "/savepoint")
    }

    /// Stops a job with a savepoint; it ends as finished.
    ///
    /// # Errors
    /// As [`Cluster::savepoint`].
    pub fn stop(&mut self, id: &str, now: Instant) -> Result<(), Refusal> {
        self.control(id, "/stop-with-savepoint")?;
        let timeout = self.settings.stop_timeout;
        let (j, t) = self.get_mut(id)?;
        j.state = JobState::Stopping;
        t.stop_deadline = Some(now + timeout);
        self.persist(id);
        Ok(())
    }

    /// Rescales a job to `workers`: a stop with a savepoint, then a restart from it at the
    /// new parallelism. `parallelism` is what the user asked for (kept for `auto`).
    ///
    /// # Errors
    /// 404, 409 (not running, no checkpoints, not enough slots).
    pub fn rescale(
        &mut self,
        id: &str,
        parallelism: Parallelism,
        workers: u32,
        now: Instant,
    ) -> Result<(), Refusal> {
        let current = self.get_mut(id)?.0.workers;
        self.check_slots(workers, now, Some(id))?;
        if current == workers && self.get_mut(id)?.0.state == JobState::Running {
            self.get_mut(id)?.0.parallelism = parallelism;
            self.persist(id);
            return Ok(());
        }
        self.control(id, "/stop-with-savepoint")?;
        let timeout = self.settings.stop_timeout;
        let (j, t) = self.get_mut(id)?;
        j.parallelism = parallelism;
        j.workers = workers;
        j.state = JobState::Rescaling;
        t.stop_deadline = Some(now + timeout);
        t.pause_from = Some(now);
        self.persist(id);
        Ok(())
    }

    /// The source has `partitions` partitions now; an `auto` job follows them.
    pub fn partitions_seen(&mut self, id: &str, partitions: u32, now: Instant) {
        let Some((j, _)) = self.jobs.get_mut(id) else {
            return;
        };
        if j.partitions != Some(partitions) {
            j.partitions = Some(partitions);
            self.persist(id);
        }
        let Some((j, _)) = self.jobs.get(id) else {
            return;
        };
        if j.parallelism == Parallelism::AUTO
            && j.state == JobState::Running
            && j.workers != partitions
            && partitions > 0
        {
            match self.rescale(id, Parallelism::AUTO, partitions, now) {
                Ok(()) => tracing::info!(
                    job = id,
                    partitions,
                    "auto: rescaling to the source's partitions"
                ),
                Err(r) => {
                    tracing::warn!(job = id, partitions, reason = %r.message, "auto: cannot rescale")
                }
            }
        }
    }

    /// A process of the job's current attempt serves `flowcast_job_running 1`.
    pub fn process_ready(&mut self, id: &str, attempt: u64, index: u32, now: Instant) {
        let Some((j, t)) = self.jobs.get_mut(id) else {
            return;
        };
        if j.attempt != attempt || j.state != JobState::Scheduling {
            return;
        }
        t.ready.insert(index);
        if t.ready.len() == j.placement.len() {
            j.state = JobState::Running;
            t.running_since = Some(now);
            if let Some(from) = t.pause_from.take() {
                let ms = now.duration_since(from).as_millis() as u64;
                j.last_rescale_pause_ms = Some(ms);
                super::metrics::rescale_pause(id, ms);
                tracing::info!(
                    job = id,
                    pause_ms = ms,
                    workers = j.workers,
                    "rescaled: running again"
                );
            } else {
                tracing::info!(job = id, attempt, workers = j.workers, "job running");
            }
            self.persist(id);
        }
    }

    /// A node's heartbeat: registers it or refreshes it; returns what it must run.
    pub fn heartbeat(&mut self, hb: super::api::Heartbeat, now: Instant) -> Vec<Launch> {
        let entry = self.nodes.entry(hb.node.clone()).or_insert_with(|| {
            tracing::info!(node = %hb.node, host = %hb.host, slots = hb.slots, "node registered");
            NodeEntry {
                host: hb.host.clone(),
                slots: hb.slots,
                ports: hb.ports,
                last_seen: now,
                clock_offset_ms: None,
                processes: Vec::new(),
                next_port: hb.ports.0,
            }
        });
        if now.duration_since(entry.last_seen) > self.settings.heartbeat_timeout {
            tracing::info!(node = %hb.node, "node is back");
        }
        entry.host = hb.host;
        entry.slots = hb.slots;
        entry.ports = hb.ports;
        entry.last_seen = now;
        entry.clock_offset_ms = hb.clock_offset_ms;
        entry.processes = hb.processes;
        self.tick(now);
        self.desired(&hb.node)
    }

    /// The launches of `node`: processes of placed attempts that have not exited.
    pub fn desired(&self, node: &str) -> Vec<Launch> {
        let mut out = Vec::new();
        for (j, _) in self.jobs.values() {
            if !matches!(
                j.state,
                JobState::Scheduling | JobState::Running | JobState::Rescaling | JobState::Stopping
            ) {
                continue;
            }
            let hosts: Vec<String> = j
                .placement
                .iter()
                .map(|p| format!("{}:{}", p.host, p.data_port))
                .collect();
            for p in j.placement.iter().filter(|p| p.node == node) {
                out.push(Launch {
                    job: j.id.clone(),
                    attempt: j.attempt,
                    index: p.index,
                    processes: j.placement.len() as u32,
                    threads: j.threads,
                    hosts: hosts.clone(),
                    metrics_port: p.metrics_port,
                    control_port: p.control_port,
                    spec: j.spec.clone(),
                    model: j.model.clone(),
                    fresh: false,
                    control_token: j.control_token.clone(),
                });
            }
        }
        out
    }

    /// A node's row.
    pub fn node_view(&self, id: &str, now: Instant) -> Option<NodeView> {
        let n = self.nodes.get(id)?;
        let used = self.used_slots(None).get(id).copied().unwrap_or(0);
        Some(NodeView {
            id: id.to_owned(),
            host: n.host.clone(),
            slots: n.slots,
            free_slots: n.slots.saturating_sub(used),
            alive: self.node_alive(id, now),
            last_heartbeat_ms: now.duration_since(n.last_seen).as_millis() as u64,
            clock_offset_ms: n.clock_offset_ms,
            processes: n.processes.iter().filter(|p| p.exit.is_none()).count() as u32,
        })
    }

    /// A job's row (no detail).
    pub fn job_view(&self, id: &str) -> Option<JobView> {
        let (j, _) = self.jobs.get(id)?;
        Some(JobView {
            id: j.id.clone(),
            state: j.state,
            reason: j.reason.clone(),
            parallelism: j.parallelism,
            workers: j.workers,
            processes: j.placement.len() as u32,
            threads: j.threads,
            attempt: j.attempt,
            restarts: j.restarts,
            submitted_unix_ms: j.submitted_unix_ms,
            model: j.model.clone(),
            topic: j.topic.clone(),
            partitions: j.partitions,
            last_rescale_pause_ms: j.last_rescale_pause_ms,
            operators: Vec::new(),
            placement: Vec::new(),
            checkpoints: Vec::new(),
            watermark_ms: None,
        })
    }

    /// How process `p` of `j` looks: `running`, `starting` or `exited …`.
    pub fn process_status(&self, j: &JobRecord, p: &Placement) -> String {
        match self.status(j, p) {
            None => "starting".into(),
            Some(None) => "running".into(),
            Some(Some(c)) => format!("exited with {}", describe_exit(c)),
        }
    }
}

/// `code 3` or `signal 9` (nodes report a death by signal as its negated number).
pub fn describe_exit(code: i32) -> String {
    if code < 0 {
        format!("signal {}", -code)
    } else {
        format!("code {code}")
    }
}

mod machine;

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
