//! The control stream: commands fed on one worker (worker 0 of process 0, from a
//! [`JobControl`] handle) and broadcast with the partition marks to every lifecycle
//! operator, so every worker of every process applies them at the same epoch.
//!
//! The feeding operator holds its capability a couple of epochs ahead of the wall
//! clock's, so it never holds back the epoch the sources are in; a command issued now
//! applies at that later epoch. It lets go when every source of the job has ended.
//! Without a handle (a plain `flowcast run`) it holds nothing at all.

use super::Command;
use crate::dataflow::Epoch;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::{Scope, StreamVec};

/// How many epochs ahead of the wall clock's the control capability stays.
const LEAD: Epoch = 2;

/// What a user asks of a job that checkpoints (signals, the HTTP endpoint); its
/// checkpoint coordinator takes the requests from the [`JobControl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A savepoint; the job goes on.
    Savepoint,
    /// A savepoint, then the job stops.
    StopWithSavepoint,
    /// A final checkpoint, then the job stops (SIGTERM).
    StopWithCheckpoint,
}

/// A handle that sends commands into a running job.
#[derive(Debug, Clone, Default)]
pub struct JobControl {
    queue: Arc<Mutex<VecDeque<Command>>>,
    requests: Arc<Mutex<VecDeque<Request>>>,
    last_id: Arc<AtomicU64>,
    /// Woken when a request arrives (the checkpoint coordinator's channel), so a request
    /// does not wait for the coordinator's next look.
    waker: Arc<Mutex<Option<std::sync::mpsc::Sender<crate::checkpoint::coordinator::Msg>>>>,
}

impl JobControl {
    /// A handle with nothing queued.
    pub fn new() -> Self {
        Self::default()
    }

    /// Numbers the next snapshots after `id` (a job continuing from earlier snapshots).
    pub fn number_after(&self, id: u64) {
        self.last_id.fetch_max(id, Ordering::SeqCst);
    }

    fn push(&self, make: impl FnOnce(u64) -> Command) -> u64 {
        let id = self.last_id.fetch_add(1, Ordering::SeqCst) + 1;
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(make(id));
        id
    }

    /// Asks for a snapshot of the whole job; returns its id.
    pub fn snapshot(&self) -> u64 {
        self.push(|id| Command::Snapshot { id })
    }

    /// Asks the job to snapshot and stop; returns the snapshot's id.
    pub fn stop_with_snapshot(&self) -> u64 {
        self.push(|id| Command::StopWithSnapshot { id })
    }

    /// Tells every operator that snapshot `id` is complete.
    pub fn committed(&self, id: u64) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(Command::Committed { id });
    }

    /// Asks the job's checkpoint coordinator for `r`.
    pub fn request(&self, r: Request) {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(r);
        if let Some(w) = &*self.waker.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = w.send(crate::checkpoint::coordinator::Msg::Wake);
        }
    }

    /// Sends [`Msg::Wake`](crate::checkpoint::coordinator::Msg::Wake) on `tx` whenever a request
    /// arrives.
    pub fn wake_on_request(
        &self,
        tx: std::sync::mpsc::Sender<crate::checkpoint::coordinator::Msg>,
    ) {
        *self.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// The requests since the last call (the coordinator's).
    pub fn take_requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    fn drain(&self) -> Vec<Command> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }
}

/// The control stream of a job. `control` feeds it on the worker that passes one (only
/// worker 0 of process 0 should); `sources` tells when every source has ended.
pub fn control_stream<'s>(
    scope: Scope<'s, Epoch>,
    control: Option<JobControl>,
    sources: ProbeHandle<Epoch>,
    epoch_interval: Duration,
) -> StreamVec<'s, Epoch, Command> {
    let tick = (epoch_interval / 2).max(Duration::from_millis(1));
    source(scope, "Control", move |cap, info| {
        let activator = scope.activator_for(info.address.clone());
        let mut cap = control.is_some().then_some(cap);
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            let Some(control) = &control else { return };
            let target = super::adapter::wall_clock_epoch(epoch_interval) + LEAD;
            if target > *c.time() {
                c.downgrade(&target);
            }
            let commands = control.drain();
            if !commands.is_empty() {
                tracing::info!(epoch = *c.time(), ?commands, "control commands issued");
                output.session(&*c).give_iterator(commands.into_iter());
            }
            if sources.done() {
                // Every source has ended: nothing is left to command.
                cap = None;
                return;
            }
            activator.activate_after(tick);
        }
    })
}
