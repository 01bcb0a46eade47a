//! The Kafka source: each worker reads the partitions `p` with `p mod workers == index`
//! (a direct stream, no consumer group), tracks offsets itself, decodes and validates
//! records, and announces each partition's watermark.
//!
//! A consumer thread per worker blocks in librdkafka's poll, decodes and validates each
//! batch's records and wakes the operator through a
//! [`SyncActivator`](timely::scheduling::SyncActivator); the worker parks in
//! between instead of spinning, and keeps the watermark clocks and offsets. The operator
//! holds a capability for the current epoch; epochs are numbered by the wall clock (Unix
//! time / `epoch_interval`), so every worker and process agrees on them and a busy worker
//! cannot fall behind the others.
//!
//! The source keeps no state a snapshot needs: after each batch it emits each touched
//! partition's [`PartitionState`] (next offset, clock) in the same epoch as the batch's
//! records, and the lifecycle operator [`super::source_state`] keeps the latest per
//! partition. A snapshot at epoch c thus holds exactly the positions after the records
//! of epochs ≤ c. A restored source starts each partition from its state.

pub use super::source_consumer::{FETCH_TUNING, consumer_config};
use super::source_consumer::{Feed, spawn_consumer};
use super::{DeadLetter, Epoch, PartitionMark, SourcedReading};
use crate::kafka::ClientSettings;
use crate::lifecycle::adapter::{until_next_epoch, wall_clock_epoch};
use crate::metrics;
use flowcast_operators::ParseOptions;
use flowcast_operators::event_time::{ClockState, PartitionClock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

/// What the source emits; [`split`] separates the four kinds.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// A valid reading.
    Reading(SourcedReading),
    /// A refused record.
    Dead(DeadLetter),
    /// A partition's watermark state changed.
    Mark(PartitionMark),
    /// A partition's position after the records emitted before it.
    Progress(PartitionProgress),
}

/// What a snapshot keeps of one source partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The next offset to read.
    pub next_offset: i64,
    /// The partition's watermark clock.
    pub clock: ClockState,
}

/// A partition's state, as the source announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// Kafka partition.
    pub partition: i32,
    /// Its state after the records emitted so far.
    pub state: PartitionState,
}

/// Where the source starts and whether it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// From the earliest offsets, forever.
    EarliestUnbounded,
    /// From the end at start-up, forever.
    LatestUnbounded,
    /// From the earliest offsets to the end offsets seen at start-up.
    EarliestBounded,
}

/// Settings of one Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// Job name (metrics label, client id).
    pub job: String,
    /// Cluster connection.
    pub settings: ClientSettings,
    /// Topic.
    pub topic: String,
    /// Number of partitions of the topic.
    pub partitions: i32,
    /// Start and stop.
    pub bounds: Bounds,
    /// Valid ranges and the bounds on device ids, record size and future event times.
    pub parse: ParseOptions,
    /// Allowed out-of-orderness, ms.
    pub out_of_orderness_ms: i64,
    /// Idle timeout, ms.
    pub idle_timeout_ms: u64,
    /// How often the epoch advances.
    pub epoch_interval: Duration,
    /// How far (wall time) the gate may fall behind the sources before they wait:
    /// [`GATE_AHEAD`], or [`GATE_AHEAD_INFERENCE`] when the gate is the output of forward
    /// passes on their own thread.
    pub gate_ahead: Duration,
    /// Set to stop an unbounded source (cancel).
    pub shutdown: Arc<AtomicBool>,
    /// Set when the job stopped at a snapshot: this worker's source stops reading.
    pub stop: Arc<AtomicBool>,
    /// Restored state of the partitions this worker reads.
    pub restored: BTreeMap<i32, PartitionState>,
    /// The first fatal error of the job, if any.
    pub failure: Arc<Mutex<Option<String>>>,
}

/// How far (wall time) the window operator may fall behind the sources before they wait.
pub const GATE_AHEAD: Duration = Duration::from_millis(100);

/// How far (wall time) the LSTM's forward passes, on their own thread
/// ([`super::inference`]), may fall behind the sources. A window boundary closes every
/// device's window at once: at 10 000 devices on one worker that is 10 batches of
/// ~11–15 ms, longer than 100 ms, and with the gate at 100 ms the sources wait out the end
/// of each such burst instead of reading on beside it. `ab.sh` with the LSTM, 10 M
/// readings, 1 worker, 3 rounds: 455 k readings/s at 100 ms, 606 k at 500 ms (see
/// BENCHMARKS.md).
pub const GATE_AHEAD_INFERENCE: Duration = Duration::from_millis(500);

/// How many of the consumer thread's batches (each up to 8 192 records) a source emits per
/// activation. Unbounded, one activation read for as long as the consumer thread kept the
/// channel full (it runs in parallel), and the heap's peak was those records in flight in
/// timely's buffers between the source and the window operator.
const BATCHES_PER_ACTIVATION: usize = 2;

/// How many epochs the gate may fall behind the sources: `ahead` ([`GATE_AHEAD`] or
/// [`GATE_AHEAD_INFERENCE`]), at least 2.
pub fn gate_epochs(epoch_interval: Duration, ahead: Duration) -> Epoch {
    let n = ahead.as_millis() / epoch_interval.as_millis().max(1);
    (n as Epoch).max(2)
}

/// Builds the source operator on `scope`.
///
/// The gate: `sources` probes every source's output and `gate` the job downstream (the
/// window operator's output, or the inference stage's when the model's forward passes run
/// on a thread of their own, [`super::inference`]). With the sources at epoch `s` (the
/// least over all workers and processes), a source reads records only once the gate shows
/// epoch `s - k` complete ([`gate_epochs`]). Timely has no backpressure; without the gate
/// a source that reads faster than the job works stashes the difference in the operators'
/// epoch stashes and the exchange's queues. Gated, it leaves records in its bounded channel and librdkafka's
/// bounded prefetch instead, and the consumer thread waits. Measured against the sources'
/// own progress rather than this worker's clock, a host whose clock lags (its epochs
/// behind) slows the gate by nothing but the backlog it causes.
pub fn kafka_source<'s>(
    scope: Scope<'s, Epoch>,
    cfg: KafkaSourceConfig,
    (sources, gate): (ProbeHandle<Epoch>, ProbeHandle<Epoch>),
) -> StreamVec<'s, Epoch, SourceEvent> {
    let index = scope.index();
    let peers = scope.peers();
    let worker = scope.worker();
    source(
        scope,
        &format!("KafkaSource({})", cfg.topic),
        move |cap, info| {
            let mine: Vec<i32> = (0..cfg.partitions)
                .filter(|p| crate::lifecycle::partition_owner(*p, peers) == index)
                .collect();
            let activator = worker.sync_activator_for(info.address.to_vec());
            let wake = scope.activator_for(info.address.clone());
            let ahead = gate_epochs(cfg.epoch_interval, cfg.gate_ahead);
            let mut next_wake: Epoch = 0;
            let started = Instant::now();
            let (ooo, idle) = (cfg.out_of_orderness_ms, cfg.idle_timeout_ms);
            let mut clocks: BTreeMap<i32, PartitionClock> = mine
                .iter()
                .map(|p| {
                    let clock = match cfg.restored.get(p) {
                        Some(s) => PartitionClock::restored(s.clock, ooo, idle, 0),
                        None => PartitionClock::new(ooo, idle, 0),
                    };
                    (*p, clock)
                })
                .collect();
            // Next offset per partition: what a snapshot of the source holds.
            let mut next: BTreeMap<i32, i64> = cfg
                .restored
                .iter()
                .filter(|(p, _)| mine.contains(p))
                .map(|(p, s)| (*p, s.next_offset))
                .collect();
            let mut touched: BTreeSet<i32> = BTreeSet::new();
            let (mut rx, consumer_thread) = if mine.is_empty() {
                (None, None)
            } else {
                // Room for a start and an end per partition beside the batches in flight,
                // which the consumer sends before it first wakes the operator.
                let (tx, rx) = sync_channel(4 + 2 * mine.len());
                let handle = spawn_consumer(&cfg, mine.clone(), tx, activator, index);
                (Some(rx), Some(handle))
            };
            let bounded = cfg.bounds == Bounds::EarliestBounded;
            let worker_label = index.to_string();
            let records_in: BTreeMap<i32, metrics::Counter> = mine
                .iter()
                .map(|p| {
                    let partition = p.to_string();
                    let labels = [
                        ("job", cfg.job.as_str()),
                        ("worker", worker_label.as_str()),
                        ("partition", partition.as_str()),
                    ];
                    let c = metrics::counter(
                        "flowcast_source_records_total",
                        "Records read from Kafka",
                        &labels,
                    );
                    (*p, c)
                })
                .collect();
            let dead_counters: Vec<(&'static str, metrics::Counter)> =
                flowcast_operators::RejectReason::ALL
                    .iter()
                    .map(|r| {
                        let c = metrics::counter(
                            "flowcast_source_dead_letter_records_total",
                            "Records refused by validation, by reason",
                            &[("job", &cfg.job), ("reason", r.as_str())],
                        );
                        (r.as_str(), c)
                    })
                    .collect();
            let mut cap = Some(cap);
            let mut consumer_thread = consumer_thread;
            let cfg = cfg.clone();
            let busy = crate::lifecycle::adapter::busy_seconds(
                &cfg.job,
                &super::source_state::source_id(&cfg.topic),
                index,
            );
            move |output| {
                let _busy = busy.start();
                // A worker that reads no partition emits nothing, ever: it lets go of its
                // capability at once. Held, it would pin every epoch of the job (nothing
                // wakes this operator to advance it) and outlive a cancel.
                if rx.is_none() {
                    cap = None;
                }
                let Some(c) = cap.as_mut() else { return };
                let now_ms = started.elapsed().as_millis() as u64;
                let mut session = output.session(c);
                let mut disconnected = false;
                let gated = sources
                    .with_frontier(|f| f.first().copied())
                    .is_some_and(|s| gate.less_equal(&s.saturating_sub(ahead)));
                if gated {
                    // Woken again soon to look at the gate; the consumer thread may be
                    // waiting on the full channel and wakes no one.
                    wake.activate_after(cfg.epoch_interval / 2);
                }
                if let (Some(rx), false) = (&rx, gated) {
                    let mut batches = 0;
                    loop {
                        if batches == BATCHES_PER_ACTIVATION {
                            // More may wait: yield to the operators downstream first, so
                            // one activation's records do not pile up in their buffers.
                            wake.activate();
                            break;
                        }
                        match rx.try_recv() {
                            Ok(Feed::Batch(batch)) => {
                                batches += 1;
                                let mut per_partition: BTreeMap<i32, u64> = BTreeMap::new();
                                for event in &batch {
                                    let (p, offset) = match event {
                                        SourceEvent::Reading(r) => {
                                            if let Some(clock) = clocks.get_mut(&r.partition) {
                                                clock.observe(r.event_time, now_ms);
                                            }
                                            (r.partition, r.offset)
                                        }
                                        SourceEvent::Dead(d) => {
                                            if let Some((_, c)) =
                                                dead_counters.iter().find(|(r, _)| *r == d.reason)
                                            {
                                                c.inc();
                                            }
                                            if let Some(clock) = clocks.get_mut(&d.partition) {
                                                clock.touch(now_ms);
                                            }
                                            (d.partition, d.offset)
                                        }
                                        SourceEvent::Mark(_) | SourceEvent::Progress(_) => continue,
                                    };
                                    *per_partition.entry(p).or_default() += 1;
                                    next.insert(p, offset + 1);
                                }
                                session.give_iterator(batch.into_iter());
                                for (p, n) in per_partition {
                                    if let Some(c) = records_in.get(&p) {
                                        c.add(n);
                                    }
                                    touched.insert(p);
                                }
                            }
                            Ok(Feed::Start(p, offset)) => {
                                next.entry(p).or_insert(offset);
                                touched.insert(p);
                            }
                            Ok(Feed::End(p)) => {
                                if let Some(clock) = clocks.get_mut(&p) {
                                    clock.finish();
                                }
                            }
                            Ok(Feed::Error(e)) => {
                                tracing::error!(job = %cfg.job, worker = index, "Kafka source failed: {e}");
                                let mut f = cfg.failure.lock().unwrap_or_else(|p| p.into_inner());
                                f.get_or_insert(e);
                                cfg.shutdown.store(true, Ordering::SeqCst);
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                disconnected = true;
                                break;
                            }
                        }
                    }
                }
                for (p, clock) in clocks.iter_mut() {
                    if let Some(state) = clock.poll_change(now_ms) {
                        session.give(SourceEvent::Mark(PartitionMark {
                            partition: *p,
                            state,
                        }));
                        touched.insert(*p);
                    }
                }
                for p in std::mem::take(&mut touched) {
                    if let (Some(&next_offset), Some(clock)) = (next.get(&p), clocks.get(&p)) {
                        session.give(SourceEvent::Progress(PartitionProgress {
                            partition: p,
                            state: PartitionState {
                                next_offset,
                                clock: clock.state(),
                            },
                        }));
                    }
                }
                drop(session);
                let all_finished = clocks.values().all(PartitionClock::is_finished);
                let cancelled =
                    cfg.shutdown.load(Ordering::SeqCst) || cfg.stop.load(Ordering::SeqCst);
                if (bounded && all_finished) || cancelled || disconnected {
                    if disconnected && !all_finished && !cancelled {
                        let mut f = cfg.failure.lock().unwrap_or_else(|p| p.into_inner());
                        f.get_or_insert_with(|| {
                            "Kafka consumer thread stopped unexpectedly".to_owned()
                        });
                    }
                    cap = None;
                    // Dropped before the join: a consumer thread blocked on the full
                    // channel sees it closed and ends.
                    rx = None;
                    if let Some(h) = consumer_thread.take() {
                        let _ = h.join();
                    }
                    return;
                }
                // Epochs are numbered by the wall clock, the same on every worker and
                // process: a worker that was busy jumps to the current epoch rather than
                // counting up, so no worker's epochs lag and hold back the others'.
                let now_epoch = wall_clock_epoch(cfg.epoch_interval);
                if now_epoch > *c.time() {
                    c.downgrade(&now_epoch);
                }
                // Awake when the next epoch begins, data or not, so that this one ends on
                // time (the consumer thread's wake-ups come with data, or one tick apart).
                if now_epoch >= next_wake {
                    wake.activate_after(until_next_epoch(cfg.epoch_interval));
                    next_wake = now_epoch + 1;
                }
            }
        },
    )
}

/// A source's output, separated.
#[derive(Debug)]
pub struct SourceStreams<'s> {
    /// Valid readings.
    pub readings: StreamVec<'s, Epoch, SourcedReading>,
    /// Refused records.
    pub dead: StreamVec<'s, Epoch, DeadLetter>,
    /// Partition watermark marks.
    pub marks: StreamVec<'s, Epoch, PartitionMark>,
    /// Partition positions, for the source's state.
    pub progress: StreamVec<'s, Epoch, PartitionProgress>,
}

/// Separates a source's output into readings, dead letters, marks and positions.
pub fn split<'s>(events: StreamVec<'s, Epoch, SourceEvent>) -> SourceStreams<'s> {
    use timely::dataflow::operators::vec::{Map, Partition};
    let mut parts = events
        .partition(4, |e| {
            let route = match &e {
                SourceEvent::Reading(_) => 0,
                SourceEvent::Dead(_) => 1,
                SourceEvent::Mark(_) => 2,
                SourceEvent::Progress(_) => 3,
            };
            (route, e)
        })
        .into_iter();
    let (Some(readings), Some(dead), Some(marks), Some(progress)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        unreachable!("partition(4) returns four streams")
    };
    SourceStreams {
        readings: readings.flat_map(|e| {
            if let SourceEvent::Reading(r) = e {
                Some(r)
            } else {
                None
            }
        }),
        dead: dead.flat_map(|e| {
            if let SourceEvent::Dead(d) = e {
                Some(d)
            } else {
                None
            }
        }),
        marks: marks.flat_map(|e| {
            if let SourceEvent::Mark(m) = e {
                Some(m)
            } else {
                None
            }
        }),
        progress: progress.flat_map(|e| {
            if let SourceEvent::Progress(p) = e {
                Some(p)
            } else {
                None
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{GATE_AHEAD, GATE_AHEAD_INFERENCE, gate_epochs};
    use std::time::Duration;

    #[test]
    fn a_source_runs_at_most_its_gate_time_and_at_least_two_epochs_ahead_of_its_gate() {
        let gate = |ms| gate_epochs(Duration::from_millis(ms), GATE_AHEAD);
        assert_eq!(gate(10), 10);
        assert_eq!(gate(20), 5);
        assert_eq!(gate(50), 2);
        assert_eq!(gate(200), 2);
        assert_eq!(gate(5_000), 2);
        assert_eq!(gate_epochs(Duration::from_micros(500), GATE_AHEAD), 100);
        let inference = |ms| gate_epochs(Duration::from_millis(ms), GATE_AHEAD_INFERENCE);
        assert_eq!(inference(10), 50);
        assert_eq!(inference(200), 2);
        assert_eq!(inference(5_000), 2);
    }
}
