//! The coordinator's background loops, each a thread: the state machine's tick (liveness,
//! restarts, placements), the readiness probe (a process is running when its `/metrics`
//! says its workers run), and the slow loop (partitions of `auto` jobs, checkpoint ages).

use super::api::{JobState, Parallelism};
use super::coordinator::Shared;
use crate::checkpoint::CheckpointStore;
use crate::job::JobSpec;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Starts the loops.
///
/// # Errors
/// If a thread cannot be started.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    let s = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("coordinator-tick".into())
        .spawn(move || {
            loop {
                s.mutate(|c, now| {
                    c.tick(now);
                    super::metrics::refresh(c, now);
                });
                std::thread::sleep(Duration::from_millis(100));
            }
        })?;
    let s = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("coordinator-probe".into())
        .spawn(move || {
            let agent = agent(Duration::from_millis(800));
            loop {
                // Every 20 ms while a job waits for its processes (readiness is part of
                // a restart's and a rescale's pause), else every 100 ms.
                let waiting = probe(&s, &agent);
                std::thread::sleep(Duration::from_millis(if waiting { 20 } else { 100 }));
            }
        })?;
    std::thread::Builder::new()
        .name("coordinator-slow".into())
        .spawn(move || {
            let mut stores: BTreeMap<String, CheckpointStore> = BTreeMap::new();
            loop {
                slow(&shared, &mut stores);
                std::thread::sleep(Duration::from_secs(3));
            }
        })?;
    Ok(())
}

/// An HTTP client with a deadline per request.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// The sum of a series' values in a Prometheus text exposition.
pub fn series_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Reads one process's `/metrics`.
pub fn scrape(agent: &ureq::Agent, host: &str, port: u16) -> Option<String> {
    let mut r = agent
        .get(&format!("http://{host}:{port}/metrics"))
        .call()
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.body_mut().read_to_string().ok()
}

/// Probes the processes of every scheduling job; whether there were any.
fn probe(s: &Shared, agent: &ureq::Agent) -> bool {
    // (job, attempt, index, host, port, threads) of every process of a scheduling job.
    let todo: Vec<(String, u64, u32, String, u16, u32)> = {
        let c = s.lock();
        c.jobs()
            .filter(|j| j.state == JobState::Scheduling)
            .flat_map(|j| {
                j.placement.iter().map(move |p| {
                    (
                        j.id.clone(),
                        j.attempt,
                        p.index,
                        p.host.clone(),
                        p.metrics_port,
                        j.threads,
                    )
                })
            })
            .collect()
    };
    let waiting = !todo.is_empty();
    for (job, attempt, index, host, port, threads) in todo {
        let Some(text) = scrape(agent, &host, port) else {
            continue;
        };
        let running = series_sum(&text, "flowcast_job_running_workers").unwrap_or(0.0);
        if running >= f64::from(threads) {
            s.mutate(|c, now| c.process_ready(&job, attempt, index, now));
        }
    }
    waiting
}

fn slow(s: &Shared, stores: &mut BTreeMap<String, CheckpointStore>) {
    let jobs: Vec<(String, String, Parallelism, JobState)> = s
        .lock()
        .jobs()
        .filter(|j| !j.state.is_terminal())
        .map(|j| (j.id.clone(), j.spec.clone(), j.parallelism, j.state))
        .collect();
    for (id, spec, parallelism, state) in jobs {
        if parallelism == Parallelism::AUTO
            && state == JobState::Running
            && let Ok(n) = s.partitions_of(&id)
        {
            s.mutate(|c, now| c.partitions_seen(&id, n, now));
        }
        let Ok(spec) = JobSpec::parse(&spec, Path::new("the job's spec")) else {
            continue;
        };
        let Some(location) = spec.checkpoint.location.clone() else {
            continue;
        };
        if !stores.contains_key(&id) {
            match CheckpointStore::open(&location) {
                Ok(st) => {
                    stores.insert(id.clone(), st);
                }
                Err(e) => {
                    tracing::debug!(job = %id, error = %e, "cannot open the job's checkpoint store");
                    continue;
                }
            }
        }
        if let Some(store) = stores.get(&id)
            && let Some(latest) = super::detail::checkpoints(store, &id, 1, 0).first()
        {
            let age =
                crate::checkpoint::manifest::now_unix_ms().saturating_sub(latest.created_unix_ms);
            super::metrics::checkpoint_age(&id, age as f64 / 1e3);
        }
    }
}
