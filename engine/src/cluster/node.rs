//! `flowcast worker`: a node. It heartbeats to the coordinator (registration included),
//! runs what the answer lists as child `flowcast run` processes, and kills what it no
//! longer lists. It reports each child's exit until the coordinator lets go of it, and
//! keeps its children running while the coordinator is away (a restarted coordinator
//! re-attaches).

use super::api::{Heartbeat, HeartbeatReply, Launch, ProcessStatus};
use super::server::artifact_ref;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a node is started with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `http://host:port` of the coordinator.
    pub coordinator: String,
    /// The API token, if the coordinator wants one.
    pub token: Option<String>,
    /// This node's id.
    pub id: String,
    /// The host its peers and Prometheus reach it by (job processes bind to it).
    pub host: String,
    /// Slots (worker threads) it offers.
    pub slots: u32,
    /// Ports it may give job processes (inclusive).
    pub ports: (u16, u16),
    /// Where specs, artifacts and the children's logs go.
    pub work_dir: PathBuf,
    /// The `flowcast` binary the children run.
    pub binary: PathBuf,
    /// Heartbeat period.
    pub interval: Duration,
}

type Key = (String, u64, u32);

struct Running {
    child: Child,
    exit: Option<i32>,
}

/// Runs the node until the process is killed.
///
/// # Errors
/// If the work directory cannot be created.
pub fn run(cfg: &NodeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(cfg.work_dir.join("logs"))?;
    std::fs::create_dir_all(cfg.work_dir.join("artifacts"))?;
    let agent = super::loops::agent(Duration::from_secs(5));
    let mut children: BTreeMap<Key, Running> = BTreeMap::new();
    let mut offset: Option<f64> = None;
    let mut last_beat: Option<Instant> = None;
    let mut reachable = true;
    tracing::info!(node = %cfg.id, coordinator = %cfg.coordinator, slots = cfg.slots, "node started");
    loop {
        // A child that exited is reported at once; otherwise the coordinator holds the
        // heartbeat up to `interval` unless it has something for this node (a long poll).
        let changed = reap(&mut children);
        if !reachable && last_beat.is_some_and(|t| t.elapsed() < cfg.interval) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        last_beat = Some(Instant::now());
        let hb = Heartbeat {
            wait_ms: if changed {
                0
            } else {
                cfg.interval.as_millis() as u64
            },
            node: cfg.id.clone(),
            host: cfg.host.clone(),
            slots: cfg.slots,
            ports: cfg.ports,
            sent_unix_ms: crate::checkpoint::manifest::now_unix_ms(),
            clock_offset_ms: offset,
            processes: children
                .iter()
                .map(|((job, attempt, index), r)| ProcessStatus {
                    job: job.clone(),
                    attempt: *attempt,
                    index: *index,
                    pid: r.child.id(),
                    exit: r.exit,
                })
                .collect(),
        };
        let sent = hb.sent_unix_ms;
        let reply = match beat(&agent, cfg, &hb) {
            Ok(r) => {
                if !reachable {
                    tracing::info!("coordinator reachable again");
                    reachable = true;
                }
                r
            }
            Err(e) => {
                if reachable {
                    tracing::warn!(error = %e, "cannot reach the coordinator; the job processes keep running");
                    reachable = false;
                }
                continue;
            }
        };
        let received = crate::checkpoint::manifest::now_unix_ms();
        // NTP's estimate from four timestamps (the time the coordinator held the answer
        // drops out): ((t0 - arrival) + (t3 - answer)) / 2.
        offset = Some(
            ((sent as f64 - reply.received_unix_ms as f64)
                + (received as f64 - reply.now_unix_ms as f64))
                / 2.0,
        );
        if !reconcile(cfg, &agent, &mut children, reply.desired) {
            // A launch that cannot start (an artifact that cannot be fetched, a full
            // disk) is tried again a heartbeat later, not in a tight loop.
            std::thread::sleep(cfg.interval);
        }
    }
}

fn beat(agent: &ureq::Agent, cfg: &NodeConfig, hb: &Heartbeat) -> anyhow::Result<HeartbeatReply> {
    let mut req = agent.post(&format!("{}/v1/nodes/heartbeat", cfg.coordinator));
    if let Some(t) = &cfg.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(hb)?)?;
    let body = r.body_mut().read_to_string()?;
    anyhow::ensure!(
        r.status().is_success(),
        "heartbeat refused ({}): {body}",
        r.status()
    );
    Ok(serde_json::from_str(&body)?)
}

/// Notes exits; true when one happened.
fn reap(children: &mut BTreeMap<Key, Running>) -> bool {
    let mut changed = false;
    for ((job, attempt, index), r) in children.iter_mut() {
        if r.exit.is_some() {
            continue;
        }
        if let Ok(Some(status)) = r.child.try_wait() {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| -status.signal().unwrap_or(0));
            tracing::info!(job, attempt, index, code, "job process exited");
            r.exit = Some(code);
            changed = true;
        }
    }
    changed
}

/// Kills what is not wanted and starts what is missing; false if a start failed.
fn reconcile(
    cfg: &NodeConfig,
    agent: &ureq::Agent,
    children: &mut BTreeMap<Key, Running>,
    desired: Vec<Launch>,
) -> bool {
    let mut started_all = true;
    let wanted: BTreeMap<Key, Launch> = desired
        .into_iter()
        .map(|l| ((l.job.clone(), l.attempt, l.index), l))
        .collect();
    children.retain(|key, r| {
        if wanted.contains_key(key) {
            return true;
        }
        if r.exit.is_none() {
            tracing::info!(job = %key.0, attempt = key.1, index = key.2, "killing a job process the coordinator no longer wants");
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        false
    });
    for (key, launch) in wanted {
        if children.contains_key(&key) {
            continue;
        }
        match start(cfg, agent, &launch) {
            Ok(child) => {
                tracing::info!(job = %launch.job, attempt = launch.attempt, index = launch.index, pid = child.id(), "job process started");
                children.insert(key, Running { child, exit: None });
            }
            Err(e) => {
                tracing::error!(job = %launch.job, error = %e, "cannot start the job process");
                started_all = false;
            }
        }
    }
    started_all
}

/// Fetches an artifact into the node's cache (verified by its sha256).
fn fetch(cfg: &NodeConfig, agent: &ureq::Agent, sha: &str, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        return Ok(());
    }
    let mut req = agent.get(&format!("{}/v1/artifacts/{sha}", cfg.coordinator));
    if let Some(t) = &cfg.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call()?;
    anyhow::ensure!(r.status().is_success(), "artifact {sha}: {}", r.status());
    let bytes = r.body_mut().with_config().limit(512 << 20).read_to_vec()?;
    anyhow::ensure!(
        artifact_ref(&bytes).sha256 == sha,
        "artifact {sha} arrived with another sha256"
    );
    let tmp = to.with_extension("part");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}

/// The spec as this node runs it: the model path pointed at the fetched artifact.
fn local_spec(cfg: &NodeConfig, agent: &ureq::Agent, launch: &Launch) -> anyhow::Result<String> {
    let Some(model) = &launch.model else {
        return Ok(launch.spec.clone());
    };
    let dir = cfg.work_dir.join("artifacts");
    let pt = dir.join(format!("{}.pt", model.pt));
    fetch(cfg, agent, &model.pt, &pt)?;
    // The loader reads the metadata beside the model: `x.pt` + `x.json`.
    let json = dir.join(format!("{}.json", model.pt));
    if !json.exists() {
        let fetched = dir.join(format!("{}.meta", model.json));
        fetch(cfg, agent, &model.json, &fetched)?;
        std::fs::copy(&fetched, &json)?;
    }
    let mut table: toml::Table = toml::from_str(&launch.spec)?;
    let entry = table
        .entry("model")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let m = entry
        .as_table_mut()
        .ok_or_else(|| anyhow::anyhow!("`model` is not a table"))?;
    m.insert("kind".into(), toml::Value::String("torchscript".into()));
    m.insert(
        "path".into(),
        toml::Value::String(pt.to_string_lossy().into_owned()),
    );
    Ok(toml::to_string(&table)?)
}

fn start(cfg: &NodeConfig, agent: &ureq::Agent, l: &Launch) -> anyhow::Result<Child> {
    let dir = cfg
        .work_dir
        .join("jobs")
        .join(&l.job)
        .join(format!("attempt-{}-process-{}", l.attempt, l.index));
    std::fs::create_dir_all(&dir)?;
    let spec_path = dir.join("job.toml");
    std::fs::write(&spec_path, local_spec(cfg, agent, l)?)?;
    let log_path = cfg.work_dir.join("logs").join(format!(
        "{}-attempt-{}-process-{}.log",
        l.job, l.attempt, l.index
    ));
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(&cfg.binary);
    cmd.arg("run")
        .arg(&spec_path)
        .args(["--workers", &l.threads.to_string()])
        .args(["--processes", &l.processes.to_string()])
        .args(["--process-index", &l.index.to_string()])
        .args([
            "--metrics-addr",
            &format!("{}:{}", cfg.host, l.metrics_port),
        ])
        .args([
            "--control-addr",
            &format!("{}:{}", cfg.host, l.control_port),
        ])
        // The control token goes through the environment, never argv.
        .env("FLOWCAST_CONTROL_TOKEN", &l.control_token)
        .env_remove("FLOWCAST_CONTROL_TOKEN_FILE")
        // The node's pid: a child whose node died before it looked still knows whom to
        // watch.
        .env("FLOWCAST_EXIT_WITH_PARENT", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if l.processes > 1 {
        cmd.args(["--hosts", &l.hosts.join(",")]);
    }
    if l.fresh {
        cmd.arg("--fresh");
    }
    Ok(cmd.spawn()?)
}
