//! Kafka helpers for tests: create a topic, produce keyed records, read a topic whole.

use flowcast_common::kafka::idempotent_producer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers as UTF-8 strings.
    pub headers: BTreeMap<String, String>,
    /// The record's timestamp, ms (the producer's create time on the job's topics).
    pub timestamp_ms: Option<i64>,
}

fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// Creates `topic` with `partitions` partitions (replication factor 1 unless the cluster has 3).
///
/// # Panics
/// If the cluster does not answer or refuses.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = config(brokers).create().expect("admin client");
    let consumer: BaseConsumer = config(brokers).create().expect("metadata client");
    let brokers_n = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata")
        .brokers()
        .len();
    let rf = if brokers_n >= 3 { 3 } else { 1 };
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(rf));
    let res = futures::executor::block_on(admin.create_topics([&t], &AdminOptions::new()));
    for r in res.expect("create topics") {
        r.expect("topic created");
    }
    // Wait until every partition has a leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let ready = md.topics().iter().any(|t| {
            t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "topic {topic} has no leaders");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Counts the records librdkafka gave up on, which `flush` alone does not report.
#[derive(Debug, Default)]
struct CountFailures {
    failed: std::sync::atomic::AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for CountFailures {}

impl rdkafka::producer::ProducerContext for CountFailures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// How long [`produce`] may take in all: a test on a broken cluster fails with a
/// message instead of hanging.
const PRODUCE_DEADLINE: Duration = Duration::from_secs(60);

/// Produces `(key, value)` records in order (Kafka's default murmur2 partitioner on the
/// key) and waits for every acknowledgement.
///
/// # Panics
/// If the records are not all acknowledged within a minute, or any is refused.
pub fn produce<K: AsRef<[u8]>>(brokers: &str, topic: &str, records: &[(Option<K>, Vec<u8>)]) {
    let deadline = Instant::now() + PRODUCE_DEADLINE;
    let mut cfg = config(brokers);
    let p: ThreadedProducer<CountFailures> = idempotent_producer(&mut cfg)
        // A record librdkafka cannot deliver fails inside the deadline, not after it.
        .set("message.timeout.ms", "50000")
        .create_with_context(CountFailures::default())
        .expect("producer");
    for (i, (k, v)) in records.iter().enumerate() {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(v.as_slice());
        if let Some(k) = k {
            rec = rec.key(k.as_ref());
        }
        let mut rec = rec;
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        Instant::now() < deadline,
                        "producing to {topic}: record {i} of {} not queued within {PRODUCE_DEADLINE:?}: {e}",
                        records.len()
                    );
                    rec = back;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    p.flush(left)
        .unwrap_or_else(|e| panic!("producing to {topic}: not acknowledged in time: {e}"));
    let ctx = p.context();
    let failed = ctx.failed.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "producing to {topic}: {failed} of {} records refused, the first with {:?}",
        records.len(),
        ctx.first.lock().unwrap_or_else(|p| p.into_inner())
    );
}

/// Reads every record of `topic` up to its current end.
pub fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    read(brokers, topic, false)
}

/// Every record of `topic` a `read_committed` consumer sees: committed transactions' and
/// non-transactional records, up to the end of every partition as it is now. Panics after
/// 120 s if an open transaction keeps the reader from the end (a reader stuck behind a
/// transaction nobody ends).
pub fn read_committed(brokers: &str, topic: &str) -> Vec<Record> {
    read(brokers, topic, true)
}

fn read(brokers: &str, topic: &str, committed: bool) -> Vec<Record> {
    let c: BaseConsumer = config(brokers)
        .set("group.id", "flowcast-tests-reader")
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            if committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let parts = md
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..parts {
        let (lo, hi) = c
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .expect("watermarks");
        if hi > lo {
            ends.insert(p, hi);
            tpl.add_partition_offset(topic, p, Offset::Offset(lo))
                .expect("assign");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        assert!(
            Instant::now() < deadline,
            "reading {topic} timed out at {:?} of {ends:?}",
            c.position().ok()
        );
        if committed {
            // Commit markers and aborted records have offsets but are never delivered:
            // the end is where the reader's position reaches the high watermark.
            if let Ok(pos) = c.position() {
                for e in pos.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && ends.get(&e.partition()).is_some_and(|end| o >= *end)
                    {
                        ends.remove(&e.partition());
                    }
                }
            }
        }
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("consume");
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for hd in h.iter() {
                headers.insert(
                    hd.key.to_owned(),
                    hd.value
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default(),
                );
            }
        }
        if ends
            .get(&m.partition())
            .is_some_and(|e| m.offset() + 1 >= *e)
        {
            ends.remove(&m.partition());
        }
        out.push(Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
        });
    }
    out
}
