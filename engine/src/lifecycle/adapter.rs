//! The one timely adapter that runs an [`Operator`]: it owns the epoch stash, the
//! frontier logic, the job watermark and the state hand-off, so operators hold none of it.

use super::state::{WorkerState, write_snapshot};
use super::{Command, EpochContext, KeyGroups, Operator, Signal};
use crate::dataflow::{Epoch, PartitionMark};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::operator::Operator as _;
use timely::dataflow::operators::{Capability, InputCapability};

/// The epoch the wall clock is in: Unix time divided by the epoch interval. Every worker
/// and process numbers epochs the same way.
pub fn wall_clock_epoch(interval: Duration) -> Epoch {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_millis() / interval.as_millis().max(1)) as Epoch
}

/// The wall time left until the next epoch begins.
pub fn until_next_epoch(interval: Duration) -> Duration {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = interval.as_millis().max(1);
    Duration::from_millis((ms - since.as_millis() % ms) as u64)
}

/// What the operators of one worker's dataflow share: the broadcast signals (partition
/// marks and control commands) and the worker's state bookkeeping.
#[derive(Clone)]
pub struct JobContext<'s> {
    /// Marks and commands, broadcast: every instance sees all of them.
    pub signals: StreamVec<'s, Epoch, Signal>,
    /// The worker's state bookkeeping.
    pub state: Rc<WorkerState>,
}

impl std::fmt::Debug for JobContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<'s> JobContext<'s> {
    /// The job's name.
    pub fn job(&self) -> &str {
        self.state.job()
    }

    /// The keyed exchange: each record goes to the worker of its device's key group.
    pub fn keyed<D: 'static>(
        &self,
        key: fn(&D) -> &str,
    ) -> Exchange<D, impl FnMut(&D) -> u64 + 'static> {
        let groups: KeyGroups = self.state.key_groups();
        let workers = self.state.workers();
        Exchange::new(move |d: &D| groups.route(key(d), workers))
    }
}

/// `flowcast_operator_busy_seconds_total` of operator `id` on `worker`: the time the worker
/// spends running it (its share of wall time is what the web UI shows as busy).
pub fn busy_seconds(job: &str, id: &str, worker: usize) -> BusyTimer {
    BusyTimer(crate::metrics::counter(
        "flowcast_operator_busy_seconds_total",
        "Seconds the worker spent running the operator (busy; see flowcast_sink_blocked_seconds_total \
         for the time it waited on a full sink)",
        &[
            ("job", job),
            ("operator", id),
            ("worker", &worker.to_string()),
        ],
    ))
}

/// Adds the time from [`BusyTimer::start`] to the drop of its guard to the operator's busy
/// seconds.
#[derive(Debug, Clone)]
pub struct BusyTimer(crate::metrics::Counter);

impl BusyTimer {
    /// Starts timing one run of the operator.
    pub fn start(&self) -> BusyGuard<'_> {
        BusyGuard(&self.0, std::time::Instant::now())
    }
}

/// Times one run of an operator (see [`BusyTimer`]).
#[derive(Debug)]
pub struct BusyGuard<'a>(&'a crate::metrics::Counter, std::time::Instant);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.add_duration(self.1.elapsed());
    }
}

/// What arrived for one epoch, held until the epoch is complete.
struct Pending<D> {
    cap: Capability<Epoch>,
    records: Vec<D>,
    marks: Vec<PartitionMark>,
    commands: Vec<Command>,
}

impl<D> Pending<D> {
    fn at<'a>(
        stash: &'a mut BTreeMap<Epoch, Pending<D>>,
        cap: &InputCapability<Epoch>,
    ) -> Option<&'a mut Pending<D>> {
        let t = *cap.least()?;
        Some(stash.entry(t).or_insert_with(|| Pending {
            cap: cap.delayed(&t, 0),
            records: Vec::new(),
            marks: Vec::new(),
            commands: Vec::new(),
        }))
    }
}

/// Runs `op` on `input`, routed by `pact` ([`Pipeline`] or [`JobContext::keyed`]).
pub fn lifecycle<'s, O, P>(
    input: StreamVec<'s, Epoch, O::In>,
    pact: P,
    ctx: &JobContext<'s>,
    mut op: O,
) -> StreamVec<'s, Epoch, O::Out>
where
    O: Operator,
    P: ParallelizationContract<Epoch, Vec<O::In>>,
{
    let id = op.id().to_owned();
    let state = Rc::clone(&ctx.state);
    let restored = state.register(&id).and_then(|r| match r {
        Some(r) if r.version() < op.state_version() => op.migrate(r).map(Some),
        Some(r) if r.version() > op.state_version() => Err(super::StateError::Version {
            operator: id.clone(),
            found: r.version(),
            supported: op.state_version(),
        }),
        other => Ok(other),
    });
    match restored {
        Ok(Some(r)) => {
            if let Err(e) = op.restore(r) {
                state.fail(format!("cannot restore `{id}`: {e}"));
                state.stop_sources();
            }
        }
        Ok(None) => {}
        Err(e) => {
            state.fail(format!("cannot restore `{id}`: {e}"));
            state.stop_sources();
        }
    }
    let mut watermark = state.initial_watermark();
    let version = op.state_version();
    let (worker, workers) = (state.index(), state.workers());
    let busy = busy_seconds(state.job(), &id, worker);
    input.binary_frontier(
        ctx.signals.clone(),
        pact,
        Pipeline,
        &id.clone(),
        move |_cap, _info| {
            let mut stash: BTreeMap<Epoch, Pending<O::In>> = BTreeMap::new();
            let mut out: Vec<O::Out> = Vec::new();
            let mut stopped = false;
            let mut closed = false;
            move |(data, f1), (signals, f2), output| {
                let _busy = busy.start();
                data.for_each(|cap, batch| {
                    if stopped {
                        batch.clear();
                    } else if let Some(p) = Pending::at(&mut stash, &cap) {
                        p.records.append(batch);
                    }
                });
                signals.for_each(|cap, batch| {
                    if stopped {
                        batch.clear();
                        return;
                    }
                    let Some(p) = Pending::at(&mut stash, &cap) else {
                        return;
                    };
                    for s in batch.drain(..) {
                        match s {
                            Signal::Mark(m) => p.marks.push(m),
                            Signal::Command(c) => p.commands.push(c),
                        }
                    }
                });
                while !stopped {
                    let Some((&t, _)) = stash.first_key_value() else {
                        break;
                    };
                    if f1.less_equal(&t) || f2.less_equal(&t) {
                        break;
                    }
                    let Some((_, p)) = stash.pop_first() else {
                        break;
                    };
                    let mut ectx = EpochContext {
                        epoch: t,
                        watermark: watermark.current(),
                        worker,
                        workers,
                    };
                    if !p.records.is_empty() {
                        op.on_records(&ectx, p.records, &mut out);
                    }
                    if !p.marks.is_empty() {
                        ectx.watermark = watermark.apply_all(p.marks);
                    }
                    op.on_epoch_complete(&ectx, &mut out);
                    if !out.is_empty() {
                        output.session(&p.cap).give_iterator(out.drain(..));
                    }
                    for c in p.commands {
                        match c {
                            Command::Snapshot { id: snap }
                            | Command::StopWithSnapshot { id: snap } => {
                                match write_snapshot(&id, snap, version, &watermark, |w| {
                                    op.snapshot(&ectx, w)
                                }) {
                                    Ok(s) => state.report(snap, t, s),
                                    Err(e) => {
                                        state.fail(format!("snapshot {snap} of `{id}` failed: {e}"))
                                    }
                                }
                                if matches!(c, Command::StopWithSnapshot { .. }) {
                                    stopped = true;
                                    state.stop_sources();
                                }
                            }
                            Command::Committed { id: snap } => op.on_checkpoint_committed(snap),
                        }
                    }
                }
                if stopped {
                    // Later epochs belong to the job that restores this snapshot.
                    stash.clear();
                }
                if !closed && (stopped || (f1.is_empty() && f2.is_empty())) {
                    closed = true;
                    op.close();
                }
            }
        },
    )
}
