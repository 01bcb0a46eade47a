//! `flowcast coordinator`: the cluster's state, persisted in a checkpoint store (a
//! directory or `s3://…`) so that a restarted coordinator re-attaches to the running jobs,
//! its background loops (state machine ticks, readiness probes, partition discovery,
//! checkpoint ages) and its HTTP server.

use super::api::{ArtifactRef, Heartbeat, JobState, JobView, Parallelism, SubmitRequest};
use super::state::{Cluster, Effect, JobRecord, Refusal, Settings};
use crate::checkpoint::CheckpointStore;
use crate::job::{JobSpec, ModelSpec};
use crate::kafka::{ClientSettings, TopicAdmin};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a coordinator is started with.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// `host:port` Prometheus and nodes reach it by (for service discovery).
    pub advertise: String,
    /// Where jobs and artifacts are kept: a directory or `s3://bucket/prefix`.
    pub state: String,
    /// The API's bearer token, if one is required.
    pub token: Option<String>,
    /// Timing and restart policy.
    pub settings: Settings,
    /// Devices per job the web UI keeps.
    pub ui_devices: usize,
}

/// The state the HTTP handlers and the loops share.
#[derive(Debug)]
pub struct Shared {
    cluster: Mutex<Cluster>,
    /// The API token.
    pub token: Option<String>,
    /// The coordinator's own `host:port`.
    pub advertise: String,
    store: Mutex<CheckpointStore>,
    persist: Mutex<Sender<(String, Bytes)>>,
    /// Woken on every change of a job: held heartbeats answer at once.
    pub changed: tokio::sync::Notify,
    /// The web UI's sessions, samples and followers.
    pub ui: super::ui::UiState,
}

const JOBS: &str = "jobs";
const ARTIFACTS: &str = "artifacts";

impl Shared {
    /// The cluster, locked.
    pub fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the cluster, then carries out its effects (writes go to the persister
    /// thread, control requests to threads of their own), so it never blocks on I/O.
    pub fn mutate<T>(&self, f: impl FnOnce(&mut Cluster, Instant) -> T) -> T {
        let mut c = self.lock();
        let out = f(&mut c, Instant::now());
        let effects = c.take_effects();
        let mut writes = Vec::new();
        for e in effects {
            match e {
                Effect::Persist(id) => {
                    if let Some(j) = c.job(&id)
                        && let Ok(bytes) = serde_json::to_vec_pretty(j)
                    {
                        writes.push((format!("{JOBS}/{id}.json"), Bytes::from(bytes)));
                    }
                }
                Effect::Control { job, url, token } => {
                    std::thread::spawn(move || control(&job, &url, &token));
                }
            }
        }
        drop(c);
        if !writes.is_empty() {
            self.changed.notify_waiters();
        }
        let tx = self.persist.lock().unwrap_or_else(|p| p.into_inner());
        for w in writes {
            let _ = tx.send(w);
        }
        out
    }

    /// Validates and accepts a submission (blocking: reads the topic and the artifacts).
    ///
    /// # Errors
    /// 400 for a bad spec, relative paths, a missing artifact or topic; 409 for a name
    /// in use or too few slots.
    pub fn submit(&self, req: SubmitRequest) -> Result<JobView, Refusal> {
        let bad = |m: String| Refusal {
            status: 400,
            message: m,
        };
        let spec = JobSpec::parse(&req.spec, Path::new("the submitted spec"))
            .map_err(|e| bad(format!("{e:#}")))?;
        check_paths(&spec, req.model.is_some()).map_err(bad)?;
        if let Some(m) = &req.model {
            for (what, sha) in [("model", &m.pt), ("model metadata", &m.json)] {
                if !super::server::is_sha256(sha) {
                    return Err(bad(format!(
                        "the {what} artifact must be a sha256, not `{sha}`"
                    )));
                }
                if self.get_artifact(sha).map_err(bad)?.is_none() {
                    return Err(bad(format!(
                        "no {what} artifact {sha}: upload it first (PUT /v1/artifacts)"
                    )));
                }
            }
        }
        let partitions = topic_partitions(&spec).map_err(bad)?;
        let parallelism = req.parallelism.unwrap_or(Parallelism::Fixed(1));
        let workers = match parallelism {
            Parallelism::Fixed(0) => return Err(bad("parallelism must be at least 1".into())),
            Parallelism::Fixed(n) => n,
            Parallelism::Auto(_) => partitions,
        };
        if spec.checkpoint.location.is_none() {
            tracing::warn!(job = %spec.name, "submitted without `[checkpoint] location`: a restart starts over from the spec's positions, and rescale and stop are refused");
        }
        let record = JobRecord {
            id: spec.name.clone(),
            spec: req.spec,
            model: req.model,
            parallelism,
            workers,
            state: JobState::Created,
            reason: None,
            attempt: 0,
            threads: 1,
            placement: Vec::new(),
            restarts: 0,
            failures: 0,
            submitted_unix_ms: crate::checkpoint::manifest::now_unix_ms(),
            control_token: random_token(),
            topic: spec.source.topic.clone(),
            partitions: Some(partitions),
            checkpoints: spec.checkpoint.location.is_some(),
            epoch_interval_ms: spec.epoch_interval.as_millis() as u64,
            last_rescale_pause_ms: None,
        };
        let id = record.id.clone();
        self.mutate(|c, now| c.submit(record, now))?;
        tracing::info!(job = %id, workers, "job submitted");
        self.lock().job_view(&id).ok_or(Refusal {
            status: 500,
            message: "the job vanished".into(),
        })
    }

    /// The partition count of a job's source topic (blocking).
    ///
    /// # Errors
    /// 404 for an unknown job, 400 when the topic cannot be read.
    pub fn partitions_of(&self, id: &str) -> Result<u32, Refusal> {
        let spec = self.lock().job(id).map(|j| j.spec.clone()).ok_or(Refusal {
            status: 404,
            message: format!("no job `{id}`"),
        })?;
        let spec = JobSpec::parse(&spec, Path::new("the job's spec")).map_err(|e| Refusal {
            status: 500,
            message: e.to_string(),
        })?;
        topic_partitions(&spec).map_err(|m| Refusal {
            status: 400,
            message: m,
        })
    }

    /// Stores an artifact under its sha256 (blocking).
    ///
    /// # Errors
    /// Storage errors, as text.
    pub fn put_artifact(&self, bytes: Bytes) -> Result<ArtifactRef, String> {
        let r = super::server::artifact_ref(&bytes);
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        match store.put(&format!("{ARTIFACTS}/{}", r.sha256), bytes, true) {
            Ok(()) | Err(crate::checkpoint::CheckpointError::AlreadyExists(_)) => Ok(r),
            Err(e) => Err(e.to_string()),
        }
    }

    /// An artifact's bytes (blocking).
    ///
    /// # Errors
    /// Storage errors, as text.
    pub fn get_artifact(&self, sha: &str) -> Result<Option<Bytes>, String> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        store
            .get(&format!("{ARTIFACTS}/{sha}"))
            .map_err(|e| e.to_string())
    }

    /// Warns when a node's clock is off by more than the epoch interval of a job it runs.
    pub fn check_clock(&self, hb: &Heartbeat) {
        let Some(offset) = hb.clock_offset_ms else {
            return;
        };
        let c = self.lock();
        let limit = c
            .jobs()
            .filter(|j| j.placement.iter().any(|p| p.node == hb.node))
            .map(|j| j.epoch_interval_ms)
            .min()
            .unwrap_or(200);
        if offset.abs() > limit as f64 {
            tracing::warn!(
                node = %hb.node, offset_ms = offset, epoch_interval_ms = limit,
                "the node's clock is off by more than the epoch interval: it holds back every job it runs (run NTP on every host)"
            );
        }
    }
}

/// Relative paths mean nothing on another host: every path of a submitted spec must be
/// absolute (or a URL), and the model must be absolute unless it travels as an artifact.
fn check_paths(spec: &JobSpec, model_artifact: bool) -> Result<(), String> {
    let relative = |what: &str, p: &Path| -> Result<(), String> {
        if p.is_relative() {
            Err(format!(
                "{what} `{}` is a relative path: a submitted spec runs on other hosts, so give an absolute path that exists on every node{}",
                p.display(),
                if what.starts_with("[model]") {
                    ", or submit the model with it (`flowcast job submit --model FILE.pt`)"
                } else {
                    ""
                }
            ))
        } else {
            Ok(())
        }
    };
    if let ModelSpec::Torchscript { path, .. } = &spec.model
        && !model_artifact
    {
        relative("[model] path", path)?;
    }
    for (what, loc) in [
        ("[checkpoint] location", spec.checkpoint.location.as_deref()),
        (
            "[checkpoint] savepoints",
            spec.checkpoint.savepoints.as_deref(),
        ),
    ] {
        if let Some(loc) = loc
            && !loc.contains("://")
        {
            relative(what, Path::new(loc))?;
        }
    }
    for (i, sink) in spec.sinks.iter().enumerate() {
        for (key, p) in sink.files() {
            relative(&format!("[[sinks]] #{} `{key}`", i + 1), p)?;
        }
    }
    Ok(())
}

/// Partitions of the spec's source topic.
fn topic_partitions(spec: &JobSpec) -> Result<u32, String> {
    let settings = ClientSettings::new(&spec.source.brokers);
    let admin = TopicAdmin::new(&settings, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let d = admin.describe(&spec.source.topic).map_err(|e| {
        format!(
            "cannot read the source topic `{}` at {}: {e}",
            spec.source.topic, spec.source.brokers
        )
    })?;
    Ok(d.partitions.len() as u32)
}

/// 24 random bytes, hex.
pub(crate) fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    super::server::hex(&b)
}

/// POSTs to a job process's control endpoint.
fn control(job: &str, url: &str, token: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    match agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_empty()
    {
        Ok(r) if r.status().is_success() => tracing::info!(job, url, "control request accepted"),
        Ok(r) => tracing::warn!(
            job,
            url,
            status = r.status().as_u16(),
            "control request refused"
        ),
        Err(e) => tracing::warn!(job, url, error = %e, "control request failed"),
    }
}

/// Starts the coordinator: loads the persisted jobs, serves the API, runs the loops.
/// Returns the bound address; the threads run until the process exits.
///
/// # Errors
/// If the state location cannot be opened or read, or the address not bound.
pub fn start(cfg: CoordinatorConfig) -> anyhow::Result<(SocketAddr, Arc<Shared>)> {
    let store = CheckpointStore::open(&cfg.state)
        .map_err(|e| anyhow::anyhow!("cannot open the coordinator's state {}: {e}", cfg.state))?;
    let mut jobs = Vec::new();
    for meta in store.list(JOBS)? {
        let path = meta.location.as_ref().to_owned();
        if let Some(bytes) = store.get(&path)? {
            let j: JobRecord = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("cannot read {path} in {}: {e}", cfg.state))?;
            tracing::info!(job = %j.id, state = j.state.name(), attempt = j.attempt, "job loaded; waiting for its nodes");
            jobs.push(j);
        }
    }
    let (tx, rx) = channel::<(String, Bytes)>();
    let writer = CheckpointStore::open(&cfg.state)?;
    std::thread::Builder::new()
        .name("coordinator-persist".into())
        .spawn(move || {
            for (path, bytes) in rx {
                if let Err(e) = writer.put(&path, bytes, false) {
                    tracing::error!(path, error = %e, "cannot persist the job's state");
                }
            }
        })?;
    let shared = Arc::new(Shared {
        cluster: Mutex::new(Cluster::new(cfg.settings.clone(), jobs, Instant::now())),
        token: cfg.token.clone(),
        advertise: cfg.advertise.clone(),
        store: Mutex::new(store),
        persist: Mutex::new(tx),
        changed: tokio::sync::Notify::new(),
        ui: super::ui::UiState::new(cfg.ui_devices),
    });
    super::loops::spawn(Arc::clone(&shared))?;
    let app = super::server::router(Arc::clone(&shared));
    let bound = crate::metrics::serve_router(cfg.listen, app, "coordinator")?;
    Ok((bound, shared))
}
