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

    /// The status of process `index` of `job`'s current attempt as its node reports it.
    fn status(&self, j: &JobRecord, p: &Placement) -> Option<Option<i32>> {
        self.nodes.get(&p.node).and_then(|n| {
            n.processes
                .iter()
                .find(|s| s.job == j.id && s.attempt == j.attempt && s.index == p.index)
                .map(|s| s.exit)
        })
    }

    /// Some live node still runs a process of `job` (any attempt).
    fn still_running(&self, job: &str, now: Instant) -> bool {
        self.nodes.iter().any(|(id, n)| {
            self.node_alive(id, now) && n.processes.iter().any(|s| s.job == job && s.exit.is_none())
        })
    }

    /// Advances every job's state machine.
    pub fn tick(&mut self, now: Instant) {
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            self.tick_job(&id, now);
        }
    }

    fn tick_job(&mut self, id: &str, now: Instant) {
        let Some((j, t)) = self.jobs.get(id).cloned() else {
            return;
        };
        match j.state {
            JobState::Created => self.try_place(id, now),
            JobState::Recovering => {
                if t.restart_at.is_none_or(|at| now >= at) {
                    self.try_place(id, now);
                }
            }
            JobState::Scheduling | JobState::Running | JobState::Rescaling | JobState::Stopping => {
                self.watch(id, &j, &t, now);
            }
            JobState::Finished | JobState::Failed | JobState::Cancelled => {}
        }
    }

    fn watch(&mut self, id: &str, j: &JobRecord, t: &Transient, now: Instant) {
        if j.placement.is_empty() {
            // Rescaling after the old attempt stopped: place the new one.
            self.try_place(id, now);
            return;
        }
        let mut exited_clean = 0;
        for p in &j.placement {
            if !self.node_alive(&p.node, now) {
                let reason = format!(
                    "node {} ({}) stopped heartbeating; it ran process {}",
                    p.node, p.host, p.index
                );
                return self.failed_attempt(id, reason, now);
            }
            match self.status(j, p) {
                Some(Some(0)) => exited_clean += 1,
                Some(Some(code)) => {
                    let reason = format!(
                        "process {} on node {} exited with {}",
                        p.index,
                        p.node,
                        describe_exit(code)
                    );
                    return self.failed_attempt(id, reason, now);
                }
                Some(None) | None => {}
            }
        }
        let all_exited = exited_clean == j.placement.len();
        let (jm, tm) = match self.jobs.get_mut(id) {
            Some(x) => x,
            None => return,
        };
        if all_exited {
            match j.state {
                JobState::Rescaling => {
                    tracing::info!(
                        job = id,
                        workers = j.workers,
                        "stopped with a savepoint; restarting at the new parallelism"
                    );
                    jm.placement.clear();
                }
                _ => {
                    jm.state = JobState::Finished;
                    jm.placement.clear();
                    tracing::info!(job = id, "job finished");
                }
            }
            self.persist(id);
            if j.state == JobState::Rescaling {
                self.try_place(id, now);
            }
            return;
        }
        if exited_clean > 0 && j.state == JobState::Running {
            // The others follow (end of input, or a stop every process sees).
            return;
        }
        if let Some(deadline) = t.stop_deadline
            && now >= deadline
            && matches!(j.state, JobState::Rescaling | JobState::Stopping)
        {
            tracing::warn!(
                job = id,
                "the stop with a savepoint did not finish in time: killing the processes"
            );
            jm.placement.clear();
            tm.stop_deadline = None;
            if j.state == JobState::Stopping {
                jm.state = JobState::Failed;
                jm.reason = Some("stop with a savepoint timed out".into());
            }
            self.persist(id);
            return;
        }
        if j.state == JobState::Running
            && let Some(since) = t.running_since
            && now.duration_since(since) >= self.settings.stable_after
            && j.failures > 0
        {
            jm.failures = 0;
            self.persist(id);
        }
    }

    fn failed_attempt(&mut self, id: &str, reason: String, now: Instant) {
        let settings = self.settings.clone();
        let Some((j, t)) = self.jobs.get_mut(id) else {
            return;
        };
        j.placement.clear();
        j.restarts += 1;
        j.failures += 1;
        super::metrics::restarted(id);
        if j.failures > settings.restart_budget {
            tracing::error!(job = id, %reason, failures = j.failures, "job failed: restart budget exhausted");
            j.state = JobState::Failed;
            j.reason = Some(format!(
                "{reason}; gave up after {} restarts in a row",
                settings.restart_budget
            ));
        } else {
            let backoff = settings
                .backoff_initial
                .saturating_mul(1 << (j.failures - 1).min(16))
                .min(settings.backoff_max);
            tracing::warn!(job = id, %reason, backoff_ms = backoff.as_millis() as u64, "restarting the job from its latest checkpoint");
            j.state = JobState::Recovering;
            j.reason = Some(reason);
            t.restart_at = Some(now + backoff);
            t.stop_deadline = None;
            t.ready.clear();
        }
        self.persist(id);
    }

    fn try_place(&mut self, id: &str, now: Instant) {
        if self.still_running(id, now) {
            return; // the old attempt's processes are being stopped
        }
        let offers = self.offers(now, Some(id));
        let Some((j, _)) = self.jobs.get(id) else {
            return;
        };
        let plan = match placement::place(j.workers, &offers) {
            Ok(p) => p,
            Err(free) => {
                let reason = format!("waiting for {} free slots ({free} free)", j.workers);
                if let Some((j, _)) = self.jobs.get_mut(id)
                    && j.reason.as_deref() != Some(reason.as_str())
                {
                    tracing::warn!(job = id, %reason, "cannot place the job");
                    j.reason = Some(reason);
                }
                return;
            }
        };
        let mut placement = Vec::with_capacity(plan.nodes.len());
        let mut used_ports: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
        for (other, _) in self.jobs.values() {
            for p in &other.placement {
                used_ports.entry(p.node.clone()).or_default().extend([
                    p.data_port,
                    p.metrics_port,
                    p.control_port,
                ]);
            }
        }
        for (index, node) in plan.nodes.iter().enumerate() {
            let Some(n) = self.nodes.get_mut(node) else {
                return;
            };
            let used = used_ports.entry(node.clone()).or_default();
            let Some([data, metrics, control]) = placement::ports(n.ports, used, &mut n.next_port)
            else {
                tracing::warn!(job = id, node = %node, "no free ports in the node's range");
                return;
            };
            used.extend([data, metrics, control]);
            placement.push(Placement {
                index: index as u32,
                node: node.clone(),
                host: n.host.clone(),
                data_port: data,
                metrics_port: metrics,
                control_port: control,
            });
        }
        let Some((j, t)) = self.jobs.get_mut(id) else {
            return;
        };
        if j.state == JobState::Created {
            j.reason = None;
        } else {
            j.attempt += 1;
        }
        j.threads = plan.threads;
        j.placement = placement;
        j.state = JobState::Scheduling;
        t.ready.clear();
        t.restart_at = None;
        t.stop_deadline = None;
        tracing::info!(
            job = id,
            attempt = j.attempt,
            workers = j.workers,
            processes = j.placement.len(),
            threads = j.threads,
            "job placed"
        );
        self.persist(id);
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

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
