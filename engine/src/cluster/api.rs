//! What the coordinator, its nodes and the CLI say to each other over HTTP (JSON).

use serde::{Deserialize, Serialize};

/// Where a job is in its life (in the manner of Arroyo's controller):
/// `created → scheduling → running → recovering / rescaling → finished / failed / cancelled`;
/// `stopping` is a stop with a savepoint on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Accepted, not placed yet.
    Created,
    /// Placed on slots; its processes are starting.
    Scheduling,
    /// Every process runs.
    Running,
    /// A process died: restarting from the latest checkpoint.
    Recovering,
    /// Stopping with a savepoint to restart at another parallelism.
    Rescaling,
    /// Stopping with a savepoint (`job stop`).
    Stopping,
    /// Its input ended (or it stopped with a savepoint) and every process exited cleanly.
    Finished,
    /// Restarts exhausted, or it cannot be placed; `reason` says why.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// No process of the job runs again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Failed | JobState::Cancelled
        )
    }

    /// Every state, for metrics.
    pub const ALL: [JobState; 9] = [
        JobState::Created,
        JobState::Scheduling,
        JobState::Running,
        JobState::Recovering,
        JobState::Rescaling,
        JobState::Stopping,
        JobState::Finished,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The state's name as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::Scheduling => "scheduling",
            JobState::Running => "running",
            JobState::Recovering => "recovering",
            JobState::Rescaling => "rescaling",
            JobState::Stopping => "stopping",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A job's requested parallelism: a number of timely workers, or `auto` (one worker per
/// partition of the source topic, following partitions added later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Parallelism {
    /// Exactly this many workers.
    Fixed(u32),
    /// One worker per source partition.
    Auto(Auto),
}

/// The word `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auto {
    /// `auto`.
    Auto,
}

impl Parallelism {
    /// `auto`.
    pub const AUTO: Parallelism = Parallelism::Auto(Auto::Auto);

    /// Parses `3` or `auto`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Parallelism::AUTO),
            n => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Parallelism::Fixed(n)),
                _ => Err(format!(
                    "parallelism must be a number ≥ 1 or `auto`, not `{s}`"
                )),
            },
        }
    }
}

impl std::fmt::Display for Parallelism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parallelism::Fixed(n) => write!(f, "{n}"),
            Parallelism::Auto(_) => f.write_str("auto"),
        }
    }
}

/// The model artifact of a submitted job: the TorchScript file and its metadata, each
/// uploaded to `PUT /v1/artifacts` and named by its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// sha256 of the `.pt` file.
    pub pt: String,
    /// sha256 of the `.json` metadata.
    pub json: String,
}

/// `POST /v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The job spec, TOML, as `flowcast run` reads it (absolute paths only).
    pub spec: String,
    /// The model, when it travels with the job (its `[model] path` is then ignored).
    #[serde(default)]
    pub model: Option<ModelArtifact>,
    /// Workers; default 1.
    #[serde(default)]
    pub parallelism: Option<Parallelism>,
}

/// `POST /v1/jobs/{id}/rescale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RescaleRequest {
    /// The new parallelism.
    pub parallelism: Parallelism,
}

/// One process of a job's current attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Process index within the job (timely's).
    pub index: u32,
    /// The node running it.
    pub node: String,
    /// The node's host, as peers reach it.
    pub host: String,
    /// timely's data port.
    pub data_port: u16,
    /// `/metrics`.
    pub metrics_port: u16,
    /// The job's control endpoint (savepoint, stop).
    pub control_port: u16,
}

/// A process as the job detail shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessView {
    /// Where it runs.
    #[serde(flatten)]
    pub placement: Placement,
    /// Its workers' indices.
    pub workers: Vec<u32>,
    /// Source partitions its workers read.
    pub partitions: Vec<i32>,
    /// Key groups its workers own, as inclusive ranges.
    pub key_groups: Vec<(u32, u32)>,
    /// `running`, `starting`, or `exited N`.
    pub status: String,
}

/// A completed checkpoint, from the job's checkpoint store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointView {
    /// Its id.
    pub id: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: String,
    /// When its manifest was written.
    pub created_unix_ms: u64,
    /// Bytes of its files.
    pub bytes: u64,
    /// A checkpoint's duration: from the start of the epoch it was taken at (epochs are
    /// wall-clock intervals) to its manifest, so within one epoch interval; `None` for a
    /// savepoint (it copies an older checkpoint).
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// `GET /v1/jobs` (one row) and `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// The job's id (its spec's `name`).
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// Why it failed, or the last restart's cause.
    pub reason: Option<String>,
    /// Requested parallelism.
    pub parallelism: Parallelism,
    /// Workers of the running attempt.
    pub workers: u32,
    /// Processes × threads of the running attempt.
    pub processes: u32,
    /// Threads per process.
    pub threads: u32,
    /// Attempt number (0 first).
    pub attempt: u64,
    /// Restarts after failures.
    pub restarts: u64,
    /// When it was submitted.
    pub submitted_unix_ms: u64,
    /// The model artifact, if one was submitted.
    pub model: Option<ModelArtifact>,
    /// Source topic and its partition count when last looked at.
    pub topic: String,
    /// Partitions of the source topic.
    pub partitions: Option<u32>,
    /// The last rescale's output pause (stop requested → every new process serving), ms.
    pub last_rescale_pause_ms: Option<u64>,
    /// Detail only: the operators of its graph.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<String>,
    /// Detail only: its processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<ProcessView>,
    /// Detail only: the latest checkpoints and savepoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<CheckpointView>,
    /// Detail only: the lowest watermark over its processes (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_ms: Option<f64>,
}

/// `GET /v1/nodes` (one row).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    /// The node's id.
    pub id: String,
    /// Its host.
    pub host: String,
    /// Slots it offers.
    pub slots: u32,
    /// Slots no job process uses.
    pub free_slots: u32,
    /// Heartbeats arrive.
    pub alive: bool,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms: u64,
    /// Its clock minus the coordinator's, ms (from its heartbeats' round trips).
    pub clock_offset_ms: Option<f64>,
    /// Job processes it runs.
    pub processes: u32,
}

/// A job process as its node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// Its job.
    pub job: String,
    /// The attempt it belongs to.
    pub attempt: u64,
    /// Its process index.
    pub index: u32,
    /// Its pid.
    pub pid: u32,
    /// `None` while it runs; its exit code when it has exited (-signal when killed).
    pub exit: Option<i32>,
}

/// `POST /v1/nodes/heartbeat`: a node's registration and heartbeat in one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's id (stable across its restarts).
    pub node: String,
    /// The host its peers and Prometheus reach it by.
    pub host: String,
    /// Slots it offers.
    pub slots: u32,
    /// First and last port it may give job processes.
    pub ports: (u16, u16),
    /// Its wall clock when it sent this (ms since the epoch).
    pub sent_unix_ms: u64,
    /// Its clock offset measured on the previous round trip, ms.
    pub clock_offset_ms: Option<f64>,
    /// Its job processes (running, or exited and not yet let go).
    pub processes: Vec<ProcessStatus>,
    /// How long the coordinator may hold the answer while nothing changes for this node
    /// (a long poll: a new placement reaches the node at once), ms.
    #[serde(default)]
    pub wait_ms: u64,
}

/// What a node must run: one process of a job's attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// The job.
    pub job: String,
    /// The attempt.
    pub attempt: u64,
    /// Process index.
    pub index: u32,
    /// Processes of the attempt.
    pub processes: u32,
    /// Worker threads per process.
    pub threads: u32,
    /// Every process's `host:data_port`, in index order.
    pub hosts: Vec<String>,
    /// `/metrics` port.
    pub metrics_port: u16,
    /// Control endpoint port.
    pub control_port: u16,
    /// The spec, TOML.
    pub spec: String,
    /// The model artifact to fetch and serve.
    pub model: Option<ModelArtifact>,
    /// Start fresh (the spec's positions) instead of from the latest checkpoint: only for
    /// jobs without checkpoints; `false` otherwise.
    pub fresh: bool,
    /// The token of the job's control endpoint (generated by the coordinator per job; it
    /// goes to the process through its environment).
    pub control_token: String,
}

/// The coordinator's answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The coordinator's wall clock when the heartbeat arrived (ms since the epoch).
    pub received_unix_ms: u64,
    /// The coordinator's wall clock when it answered (ms since the epoch).
    pub now_unix_ms: u64,
    /// Every job process this node must run; anything else it runs, it stops.
    pub desired: Vec<Launch>,
}

/// `PUT /v1/artifacts`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// Their length.
    pub bytes: u64,
}

/// Every error the API answers: `{"error": "…"}` with a 4xx/5xx status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    pub error: String,
}
