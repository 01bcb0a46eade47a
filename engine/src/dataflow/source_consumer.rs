//! The Kafka source's consumer thread: reads the worker's partitions with librdkafka,
//! decodes and validates each record, and hands batches of readings and dead letters to
//! the source operator ([`super::source`]) over a bounded channel, waking it for each.
//!
//! Decoding here rather than on the worker pipelines it with the rest of the job: the
//! worker's share of a reading is its watermark clock, the exchange and the operators
//! downstream (BENCHMARKS.md, "the consumer thread decodes").

use super::source::{Bounds, KafkaSourceConfig, SourceEvent};
use super::{DeadLetter, SourcedReading};
use crate::kafka::ClientSettings;
use crate::kafka::batch_consume::BatchConsumer;
use flowcast_operators::{Reading, event_time};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::Duration;
use timely::scheduling::SyncActivator;

const MAX_BATCH: usize = 8192;
const TICK: Duration = Duration::from_millis(50);

/// The records of one poll round, decoded, in offset order per partition: each a
/// [`SourceEvent::Reading`] or a [`SourceEvent::Dead`].
pub(super) type DecodedBatch = Vec<SourceEvent>;

#[derive(Debug)]
pub(super) enum Feed {
    /// Where the consumer starts reading a partition.
    Start(i32, i64),
    Batch(DecodedBatch),
    End(i32),
    Error(String),
}

pub(super) fn spawn_consumer(
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
    let mut batch = DecodedBatch::with_capacity(MAX_BATCH);
    let mut reader = BatchConsumer::new(&consumer, MAX_BATCH);
    while !cfg.shutdown.load(Ordering::Relaxed) && !cfg.stop.load(Ordering::Relaxed) {
        let mut finished = Vec::new();
        // Wake the operator at least once per epoch, so an idle source's epochs (and the
        // windows they close) end on time.
        let wait = TICK.min(cfg.epoch_interval);
        reader.poll_batch(
            wait,
            MAX_BATCH,
            |msg| {
                let p = msg.partition;
                lag.read(p, msg.offset);
                batch.push(decode(
                    cfg,
                    p,
                    msg.offset,
                    msg.key,
                    msg.payload,
                    msg.timestamp,
                ));
                if let Some(end) = ends.get(&p)
                    && msg.offset + 1 >= *end
                {
                    ends.remove(&p);
                    finished.push(p);
                }
            },
            |e| tracing::warn!(job = %cfg.job, "Kafka consumer error (retrying): {e}"),
        );
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, DecodedBatch::with_capacity(MAX_BATCH));
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

/// One record, decoded and validated: a reading, or a dead letter with the reason. Future
/// skew is judged against the record's own Kafka timestamp, never the wall clock: a
/// replay decides the same way.
fn decode(
    cfg: &KafkaSourceConfig,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    payload: &[u8],
    timestamp: Option<i64>,
) -> SourceEvent {
    match Reading::parse_record(key, payload, timestamp, &cfg.parse) {
        Ok(reading) => SourceEvent::Reading(SourcedReading {
            event_time: event_time::from_secs(reading.time),
            reading,
            partition,
            offset,
        }),
        Err(rej) => SourceEvent::Dead(DeadLetter {
            topic: cfg.topic.clone(),
            partition,
            offset,
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            reason: rej.reason.as_str(),
            detail: rej.detail,
        }),
    }
}
