//! The coordinator's series. Labels are job ids, node ids and job states — never device
//! ids, never tokens.

use super::api::JobState;
use super::state::Cluster;
use crate::metrics;
use std::time::Instant;

/// A job's rescale paused its output for `ms`.
pub fn rescale_pause(job: &str, ms: u64) {
    metrics::gauge(
        "flowcast_coordinator_rescale_pause_seconds",
        "The last rescale's pause: stop with a savepoint requested until every new process runs",
        &[("job", job)],
    )
    .set_base(ms as f64 / 1e3);
}

/// A job restarted after a failure.
pub fn restarted(job: &str) {
    metrics::counter(
        "flowcast_coordinator_job_restarts_total",
        "Restarts of a job after a process or node failure",
        &[("job", job)],
    )
    .inc();
}

/// Seconds since the job's last completed checkpoint.
pub fn checkpoint_age(job: &str, seconds: f64) {
    metrics::gauge(
        "flowcast_coordinator_checkpoint_age_seconds",
        "Seconds since the job's newest complete checkpoint's manifest was written",
        &[("job", job)],
    )
    .set_base(seconds);
}

/// Refreshes the per-state job counts and the node series.
pub fn refresh(cluster: &Cluster, now: Instant) {
    for state in JobState::ALL {
        let n = cluster.jobs().filter(|j| j.state == state).count();
        metrics::gauge(
            "flowcast_coordinator_jobs",
            "Jobs by state",
            &[("state", state.name())],
        )
        .set(n as u64);
    }
    for (id, node) in cluster.nodes() {
        metrics::gauge(
            "flowcast_coordinator_node_up",
            "1 while the node heartbeats, 0 after its heartbeat timeout",
            &[("node", id)],
        )
        .set(u64::from(cluster.node_alive(id, now)));
        if let Some(ms) = node.clock_offset_ms {
            metrics::gauge(
                "flowcast_coordinator_node_clock_offset_seconds",
                "The node's wall clock minus the coordinator's, from heartbeat round trips",
                &[("node", id)],
            )
            .set_base(ms / 1e3);
        }
    }
}
