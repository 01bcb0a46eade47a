//! The job state machine's advance: each tick watches every placed attempt (node liveness,
//! process exits, stops with a savepoint), restarts failed attempts with backoff within the
//! restart budget, and places jobs on free slots with their ports.

use super::{Cluster, JobRecord, Transient, describe_exit};
use crate::cli::run::PEER_LOST;
use crate::cluster::api::{JobState, Placement};
use crate::cluster::placement;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

impl Cluster {
    /// The status of process `index` of `job`'s current attempt as its node reports it.
    pub(super) fn status(&self, j: &JobRecord, p: &Placement) -> Option<Option<i32>> {
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
        let mut peer_lost = None;
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
                Some(Some(PEER_LOST)) => {
                    peer_lost.get_or_insert_with(|| {
                        format!(
                            "process {} on node {} lost a peer (exit code {PEER_LOST}) and no other process said why",
                            p.index, p.node
                        )
                    });
                }
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
        // A process that lost a peer is the echo of another failure: the peer's own exit
        // (reported at once by its node) or its node's silence (seen within the heartbeat
        // timeout) names the cause, so wait that long for it before restarting on the echo.
        if let Some(reason) = peer_lost {
            let since = match self.jobs.get_mut(id) {
                Some((_, tm)) => *tm.peer_lost_since.get_or_insert(now),
                None => return,
            };
            if now.duration_since(since) >= self.settings.heartbeat_timeout {
                return self.failed_attempt(id, reason, now);
            }
            return;
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
        crate::cluster::metrics::restarted(id);
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
        t.peer_lost_since = None;
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
}
