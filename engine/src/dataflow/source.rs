//! The Kafka source: each worker reads the partitions `p` with `p mod workers == index`
//! (a direct stream, no consumer group), tracks offsets itself, decodes and validates
//! records, and announces each partition's watermark.
//!
//! A consumer thread per worker blocks in librdkafka's poll, copies each batch into one
//! buffer and wakes the operator through a [`SyncActivator`]; the worker parks in between
//! instead of spinning. The operator holds a capability for the current epoch; epochs are
//! numbered by the wall clock (Unix time / `epoch_interval`), so every worker and process
//! agrees on them and a busy worker cannot fall behind the others.
//!
//! The source keeps no state a snapshot needs: after each batch it emits each touched
//! partition's [`PartitionState`] (next offset, clock) in the same epoch as the batch's
//! records, and the lifecycle operator [`super::source_state`] keeps the latest per
//! partition. A snapshot at epoch c thus holds exactly the positions after the records
//! of epochs ≤ c. A restored source starts each partition from its state.

use super::{DeadLetter, Epoch, PartitionMark, SourcedReading};
use crate::kafka::ClientSettings;
use crate::lifecycle::adapter::wall_clock_epoch;
use crate::metrics;
use flowcast_operators::event_time::{self, ClockState, PartitionClock};
use flowcast_operators::{ParseOptions, Reading};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};
use timely::scheduling::SyncActivator;

/// What the source emits; [`split`](super::source::split) separates the three kinds.
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
    /// Set to stop an unbounded source (cancel).
    pub shutdown: Arc<AtomicBool>,
    /// Set when the job stopped at a snapshot: this worker's source stops reading.
    pub stop: Arc<AtomicBool>,
    /// Restored state of the partitions this worker reads.
    pub restored: BTreeMap<i32, PartitionState>,
    /// The first fatal error of the job, if any.
    pub failure: Arc<Mutex<Option<String>>>,
}

/// Messages of one poll round, copied into one buffer: no allocation per record.
#[derive(Debug, Default)]
struct RawBatch {
    bytes: Vec<u8>,
    msgs: Vec<RawMsg>,
}

#[derive(Debug)]
struct RawMsg {
    partition: i32,
    offset: i64,
    /// The Kafka record's timestamp (create or log-append time), ms.
    timestamp: Option<i64>,
    key: Option<Range<usize>>,
    payload: Range<usize>,
}

#[derive(Debug)]
enum Feed {
    /// Where the consumer starts reading a partition.
    Start(i32, i64),
    Batch(RawBatch),
    End(i32),
    Error(String),
}

const MAX_BATCH: usize = 8192;
const TICK: Duration = Duration::from_millis(50);

/// Builds the source operator on `scope`.
pub fn kafka_source<'s>(
    scope: Scope<'s, Epoch>,
    cfg: KafkaSourceConfig,
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
            let (rx, consumer_thread) = if mine.is_empty() {
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
                if let Some(rx) = &rx {
                    loop {
                        match rx.try_recv() {
                            Ok(Feed::Batch(batch)) => {
                                let mut per_partition: BTreeMap<i32, u64> = BTreeMap::new();
                                for m in &batch.msgs {
                                    *per_partition.entry(m.partition).or_default() += 1;
                                    next.insert(m.partition, m.offset + 1);
                                    let key = m.key.clone().map(|r| &batch.bytes[r]);
                                    let payload = &batch.bytes[m.payload.clone()];
                                    // Future skew is judged against the record's own
                                    // Kafka timestamp, never the wall clock: a replay
                                    // decides the same way.
                                    match Reading::parse_record(
                                        key,
                                        payload,
                                        m.timestamp,
                                        &cfg.parse,
                                    ) {
                                        Ok(reading) => {
                                            let t = event_time::from_secs(reading.time);
                                            if let Some(clock) = clocks.get_mut(&m.partition) {
                                                clock.observe(t, now_ms);
                                            }
                                            session.give(SourceEvent::Reading(SourcedReading {
                                                reading,
                                                event_time: t,
                                                partition: m.partition,
                                                offset: m.offset,
                                            }));
                                        }
                                        Err(rej) => {
                                            if let Some((_, c)) = dead_counters
                                                .iter()
                                                .find(|(r, _)| *r == rej.reason.as_str())
                                            {
                                                c.inc();
                                            }
                                            if let Some(clock) = clocks.get_mut(&m.partition) {
                                                clock.touch(now_ms);
                                            }
                                            session.give(SourceEvent::Dead(DeadLetter {
                                                topic: cfg.topic.clone(),
                                                partition: m.partition,
                                                offset: m.offset,
                                                key: key.map(<[u8]>::to_vec),
                                                payload: payload.to_vec(),
                                                reason: rej.reason.as_str(),
                                                detail: rej.detail,
                                            }));
                                        }
                                    }
                                }
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
            }
        },
    )
}

fn spawn_consumer(
    cfg: &KafkaSourceConfig,
    partitions: Vec<i32>,
    tx: SyncSender<Feed>,
    activator: SyncActivator,
    worker: usize,
) -> std::thread::JoinHandle<()> {
    let cfg = cfg.clone();
    std::thread::Builder::new()
        .name(format!("kafka-source-{worker}"))
        .spawn(move || {
            if let Err(e) = consume(&cfg, &partitions, &tx, &activator) {
                let _ = tx.send(Feed::Error(e));
            }
            let _ = activator.activate();
        })
        .unwrap_or_else(|e| panic!("cannot spawn the Kafka consumer thread: {e}"))
}

/// The source's consumer settings for `job` (the benchmarks' limit row reads with the
/// same ones: `engine/examples/limit.rs`).
pub fn consumer_config(settings: &ClientSettings, job: &str) -> rdkafka::ClientConfig {
    let mut c = settings.client_config();
    c.set("group.id", format!("flowcast-{job}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("client.id", format!("flowcast-{job}-source"))
        .set("fetch.wait.max.ms", "50")
        // Prefetch small, fetch again soon. librdkafka keeps an op of ~500 bytes per queued
        // message, so 200 000 queued messages per partition and 16 MiB fetches (the
        // earlier settings) held ~1 M messages — 490 MB of ops and 160 MB of decompressed
        // message sets at the peak of a 10 M-reading drain (heaptrack), for no speed: with
        // 20 000 messages or 8 MiB per partition and a 5-ms backoff (librdkafka's default
        // is 1 s once the queue is full) the drain is as fast or faster (BENCHMARKS.md).
        .set("queued.min.messages", "20000")
        .set("queued.max.messages.kbytes", "8192")
        .set("fetch.queue.backoff.ms", "5")
        .set("max.partition.fetch.bytes", "2097152")
        .set("fetch.max.bytes", "8388608");
    // The fetch tuning above is a default: `FLOWCAST_RDKAFKA_*` settings of these win.
    for (k, v) in &settings.extra {
        if FETCH_TUNING.contains(&k.as_str()) {
            c.set(k, v);
        }
    }
    c
}

/// The source's librdkafka fetch settings a `FLOWCAST_RDKAFKA_*` variable may override.
pub const FETCH_TUNING: [&str; 6] = [
    "fetch.wait.max.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.queue.backoff.ms",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
];

fn consume(
    cfg: &KafkaSourceConfig,
    partitions: &[i32],
    tx: &SyncSender<Feed>,
    activator: &SyncActivator,
) -> Result<(), String> {
    let consumer: BaseConsumer = consumer_config(&cfg.settings, &cfg.job)
        .create()
        .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
    let timeout = Duration::from_secs(30);
    let mut tpl = TopicPartitionList::new();
    // Offsets tracked by the engine: (next offset to read, end offset) per partition.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&cfg.topic, p, timeout)
            .map_err(|e| format!("cannot read the offsets of {}/{p}: {e}", cfg.topic))?;
        let start = match (cfg.restored.get(&p), cfg.bounds) {
            // A restored partition continues where the snapshot left it.
            (Some(s), _) => s.next_offset,
            (None, Bounds::EarliestBounded | Bounds::EarliestUnbounded) => low,
            (None, Bounds::LatestUnbounded) => high,
        };
        tpl.add_partition_offset(&cfg.topic, p, Offset::Offset(start))
            .map_err(|e| e.to_string())?;
        tx.send(Feed::Start(p, start))
            .map_err(|_| "source operator gone")?;
        if cfg.bounds == Bounds::EarliestBounded {
            if high <= start {
                tx.send(Feed::End(p)).map_err(|_| "source operator gone")?;
            } else {
                ends.insert(p, high);
            }
        }
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("cannot assign partitions: {e}"))?;
    let bounded = cfg.bounds == Bounds::EarliestBounded;
    if bounded && ends.is_empty() {
        let _ = activator.activate();
        return Ok(());
    }
    let starts: Vec<(i32, i64)> = tpl
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect();
    let lag = super::source_lag::SourceLag::start(&cfg.job, &cfg.settings, &cfg.topic, &starts);
    let mut batch = RawBatch::default();
    while !cfg.shutdown.load(Ordering::Relaxed) && !cfg.stop.load(Ordering::Relaxed) {
        let mut finished = Vec::new();
        // Wake the operator at least once per epoch, so an idle source's epochs (and the
        // windows they close) end on time.
        let mut wait = TICK.min(cfg.epoch_interval);
        while batch.msgs.len() < MAX_BATCH {
            let Some(msg) = consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(job = %cfg.job, "Kafka consumer error (retrying): {e}");
                    break;
                }
            };
            let p = msg.partition();
            let key = msg.key().map(|k| {
                let s = batch.bytes.len();
                batch.bytes.extend_from_slice(k);
                s..batch.bytes.len()
            });
            let s = batch.bytes.len();
            batch
                .bytes
                .extend_from_slice(msg.payload().unwrap_or_default());
            lag.read(p, msg.offset());
            batch.msgs.push(RawMsg {
                partition: p,
                offset: msg.offset(),
                timestamp: msg.timestamp().to_millis(),
                key,
                payload: s..batch.bytes.len(),
            });
            if let Some(end) = ends.get(&p)
                && msg.offset() + 1 >= *end
            {
                ends.remove(&p);
                finished.push(p);
            }
        }
        if !batch.msgs.is_empty() {
            let full = std::mem::take(&mut batch);
            tx.send(Feed::Batch(full))
                .map_err(|_| "source operator gone")?;
        }
        for p in finished {
            tx.send(Feed::End(p)).map_err(|_| "source operator gone")?;
        }
        if bounded && ends.is_empty() {
            let _ = activator.activate();
            return Ok(());
        }
        // Wake the operator for data, and at least every tick for epochs and idleness.
        let _ = activator.activate();
    }
    Ok(())
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
