//! The Kafka sink: predictions, dead letters, late records and (model off) sequences.
//!
//! It never drops: the producer is idempotent with `acks=all` and an unbounded
//! delivery timeout, so librdkafka retries with backoff while the cluster is away; a full
//! local queue blocks the worker (backpressure) instead of discarding. A delivery that
//! fails for good (e.g. the topic is not authorised) fails the job, loudly. When the input
//! ends, the sink flushes before the job returns.
//!
//! It runs on the operator lifecycle: a snapshot waits until Kafka has acknowledged
//! everything before it (at-least-once). Exactly-once comes with checkpoints.

use crate::dataflow::{DeadLetter, Epoch, LateRecord};
use crate::kafka::ClientSettings;
use crate::lifecycle::{EpochContext, JobContext, Operator, StateError, StateWriter, lifecycle};
use crate::metrics;
use flowcast_operators::Prediction;
use flowcast_operators::event_time::to_secs;
use flowcast_operators::sequence::Sequence;
use flowcast_operators::window::WindowResult;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;

/// How a record is written to Kafka.
pub trait KafkaRecord {
    /// Message key.
    fn key(&self) -> Option<&[u8]>;
    /// Message value.
    fn value(&self) -> Vec<u8>;
    /// Message headers.
    fn headers(&self) -> Option<OwnedHeaders> {
        None
    }
    /// Whether the sink measures window close → hand-off latency for this record type.
    fn tracks_latency() -> bool {
        false
    }
}

impl KafkaRecord for Prediction {
    fn tracks_latency() -> bool {
        true
    }
    fn key(&self) -> Option<&[u8]> {
        Some(self.device.as_bytes())
    }
    fn value(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl KafkaRecord for WindowResult {
    fn key(&self) -> Option<&[u8]> {
        Some(self.device.as_bytes())
    }
    fn value(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "device": self.device,
            "window_start": to_secs(self.start),
            "window_end": to_secs(self.end),
            "temperature": self.temperature,
            "humidity": self.humidity,
            "count": self.count,
            "revision": self.revision,
        }))
        .unwrap_or_default()
    }
}

/// A full sequence without a model (the streaming part alone, for benchmarks): the newest
/// window's means and the mean of the whole sequence.
impl KafkaRecord for Sequence {
    fn tracks_latency() -> bool {
        true
    }
    fn key(&self) -> Option<&[u8]> {
        Some(self.device.as_bytes())
    }
    fn value(&self) -> Vec<u8> {
        let n = self.values.len().max(1) as f64;
        let (t, h) = self.values.iter().fold((0.0, 0.0), |(t, h), v| {
            (t + f64::from(v[0]), h + f64::from(v[1]))
        });
        serde_json::to_vec(&serde_json::json!({
            "device": self.device,
            "window_start": to_secs(self.window_start),
            "window_end": to_secs(self.window_end),
            "temperature": self.observed[0],
            "humidity": self.observed[1],
            "sequence_mean_temperature": t / n,
            "sequence_mean_humidity": h / n,
        }))
        .unwrap_or_default()
    }
}

fn header(h: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    h.insert(Header {
        key,
        value: Some(value),
    })
}

/// Dead letters keep the original key and bytes as the message; the reason and origin
/// ride in headers (`flowcast.reason`, `flowcast.detail`, `flowcast.topic`,
/// `flowcast.partition`, `flowcast.offset`), as Kafka Connect's dead-letter queues do.
///
/// A record too big to forward whole (it may be why it was refused) is cut to what any
/// broker accepts — key to [`DEAD_LETTER_MAX_KEY`], value to [`DEAD_LETTER_MAX_VALUE`],
/// detail to [`DEAD_LETTER_MAX_DETAIL`] bytes — and says so: `flowcast.truncated` names
/// what was cut, `flowcast.original-size` / `flowcast.original-key-size` give the sizes.
impl KafkaRecord for DeadLetter {
    fn key(&self) -> Option<&[u8]> {
        self.key
            .as_deref()
            .map(|k| &k[..k.len().min(DEAD_LETTER_MAX_KEY)])
    }
    fn value(&self) -> Vec<u8> {
        self.payload[..self.payload.len().min(DEAD_LETTER_MAX_VALUE)].to_vec()
    }
    fn headers(&self) -> Option<OwnedHeaders> {
        let h = header(
            OwnedHeaders::new_with_capacity(8),
            "flowcast.reason",
            self.reason,
        );
        let h = header(
            h,
            "flowcast.detail",
            truncate_str(&self.detail, DEAD_LETTER_MAX_DETAIL),
        );
        let h = header(h, "flowcast.topic", &self.topic);
        let h = header(h, "flowcast.partition", &self.partition.to_string());
        let mut h = header(h, "flowcast.offset", &self.offset.to_string());
        let key_len = self.key.as_ref().map_or(0, Vec::len);
        let mut cut = Vec::new();
        if key_len > DEAD_LETTER_MAX_KEY {
            cut.push("key");
            h = header(h, "flowcast.original-key-size", &key_len.to_string());
        }
        if self.payload.len() > DEAD_LETTER_MAX_VALUE {
            cut.push("value");
            h = header(h, "flowcast.original-size", &self.payload.len().to_string());
        }
        if !cut.is_empty() {
            h = header(h, "flowcast.truncated", &cut.join(","));
        }
        Some(h)
    }
}

/// The largest dead-letter value forwarded whole, bytes (well under Kafka's 1 MiB default).
pub const DEAD_LETTER_MAX_VALUE: usize = 256 * 1024;
/// The largest dead-letter key forwarded whole, bytes.
pub const DEAD_LETTER_MAX_KEY: usize = 4 * 1024;
/// The longest `flowcast.detail` header, bytes.
pub const DEAD_LETTER_MAX_DETAIL: usize = 1024;

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Late records carry the reading as JSON and their origin, window and watermark in headers.
impl KafkaRecord for LateRecord {
    fn key(&self) -> Option<&[u8]> {
        Some(self.record.reading.device.as_bytes())
    }
    fn value(&self) -> Vec<u8> {
        self.record.reading.to_json()
    }
    fn headers(&self) -> Option<OwnedHeaders> {
        let h = header(
            OwnedHeaders::new_with_capacity(4),
            "flowcast.partition",
            &self.record.partition.to_string(),
        );
        let h = header(h, "flowcast.offset", &self.record.offset.to_string());
        let h = header(
            h,
            "flowcast.window-end",
            &to_secs(self.window_end).to_string(),
        );
        Some(header(
            h,
            "flowcast.watermark",
            &to_secs(self.watermark).to_string(),
        ))
    }
}

/// Counts deliveries and remembers a permanent failure.
struct SinkContext {
    delivered: metrics::Counter,
    failed: metrics::Counter,
    failure: Arc<Mutex<Option<String>>>,
    topic: String,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.inc(),
            Err((e, m)) => {
                self.failed.inc();
                let msg = format!(
                    "delivery to {} partition {} failed for good: {e}",
                    self.topic,
                    m.partition()
                );
                tracing::error!("{msg}");
                self.failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(msg);
            }
        }
    }
}

/// The Kafka sink's logic on the operator lifecycle: records are handed to the producer
/// as each epoch completes; a snapshot and the end of input wait until Kafka has
/// acknowledged everything handed over (at-least-once).
pub struct KafkaSinkOperator<D> {
    id: String,
    topic: String,
    producer: Option<ThreadedProducer<SinkContext>>,
    failure: Arc<Mutex<Option<String>>>,
    latency: metrics::Histogram,
    queue_full: metrics::Counter,
    _records: std::marker::PhantomData<fn(D)>,
}

impl<D> std::fmt::Debug for KafkaSinkOperator<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSinkOperator")
            .field("id", &self.id)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<D: KafkaRecord> KafkaSinkOperator<D> {
    /// A sink `id` writing to `topic` on worker `worker`; a permanent delivery failure is
    /// stored in `failure`.
    pub fn new(
        id: &str,
        job: &str,
        settings: &ClientSettings,
        topic: &str,
        failure: Arc<Mutex<Option<String>>>,
        worker: usize,
    ) -> Self {
        let index = worker.to_string();
        let labels = [("job", job), ("topic", topic), ("worker", index.as_str())];
        let ctx = SinkContext {
            delivered: metrics::counter(
                "flowcast_kafka_sink_delivered_records_total",
                "Records acknowledged by Kafka",
                &labels,
            ),
            failed: metrics::counter(
                "flowcast_kafka_sink_failed_records_total",
                "Records Kafka refused for good",
                &labels,
            ),
            failure: Arc::clone(&failure),
            topic: topic.to_owned(),
        };
        let latency = metrics::histogram(
            "flowcast_window_to_sink_seconds",
            "Window close to hand-off to the Kafka producer",
            &labels,
        );
        let queue_full = metrics::counter(
            "flowcast_kafka_sink_backpressure_waits_total",
            "Sends that waited for room",
            &labels,
        );
        let mut cfg = settings.client_config();
        let producer: Result<ThreadedProducer<SinkContext>, KafkaError> =
            crate::kafka::config::idempotent_producer(&mut cfg)
                .set("compression.type", "lz4")
                .set("client.id", format!("flowcast-{job}-sink"))
                .create_with_context(ctx);
        let producer = match producer {
            Ok(p) => Some(p),
            Err(e) => {
                failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(format!("cannot create a producer for {topic}: {e}"));
                None
            }
        };
        KafkaSinkOperator {
            id: id.to_owned(),
            topic: topic.to_owned(),
            producer,
            failure,
            latency,
            queue_full,
            _records: std::marker::PhantomData,
        }
    }

    fn fail(&self, msg: String) {
        tracing::error!("{msg}");
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(msg);
    }

    /// Waits until Kafka acknowledged every record handed over.
    fn flush(&self) {
        if let Some(p) = &self.producer
            && let Err(e) = p.flush(rdkafka::util::Timeout::Never)
        {
            self.fail(format!("flush of {} failed: {e}", self.topic));
        }
    }
}

impl<D: KafkaRecord + Clone + 'static> Operator for KafkaSinkOperator<D> {
    type In = D;
    type Out = ();

    fn id(&self) -> &str {
        &self.id
    }

    fn on_records(&mut self, ctx: &EpochContext, records: Vec<D>, _: &mut Vec<()>) {
        if D::tracks_latency()
            && let Some(elapsed) = crate::dataflow::latency::since_fired(ctx.epoch)
        {
            self.latency.observe_us(elapsed.as_micros() as u64);
        }
        let Some(producer) = &self.producer else {
            return;
        };
        for rec in records {
            let value = rec.value();
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.topic).payload(&value);
            if let Some(k) = rec.key() {
                record = record.key(k);
            }
            if let Some(h) = rec.headers() {
                record = record.headers(h);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        self.queue_full.inc();
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        self.fail(format!("cannot produce to {}: {e}", self.topic));
                        break;
                    }
                }
            }
        }
    }

    fn snapshot(&mut self, _: &EpochContext, _: &mut StateWriter<'_>) -> Result<(), StateError> {
        self.flush();
        Ok(())
    }

    fn close(&mut self) {
        self.flush();
    }
}

/// Writes a stream to a Kafka topic.
pub trait KafkaSink<'s> {
    /// Produces every record to `topic` as sink `id`; flushes on snapshots and when the
    /// stream ends. A permanent delivery failure is stored in `failure`.
    fn kafka_sink(
        self,
        id: &str,
        settings: &ClientSettings,
        topic: &str,
        failure: Arc<Mutex<Option<String>>>,
        ctx: &JobContext<'s>,
    );
}

impl<'s, D: KafkaRecord + Clone + 'static> KafkaSink<'s> for StreamVec<'s, Epoch, D> {
    fn kafka_sink(
        self,
        id: &str,
        settings: &ClientSettings,
        topic: &str,
        failure: Arc<Mutex<Option<String>>>,
        ctx: &JobContext<'s>,
    ) {
        let op =
            KafkaSinkOperator::<D>::new(id, ctx.job(), settings, topic, failure, ctx.state.index());
        lifecycle(self, Pipeline, ctx, op);
    }
}

/// `type = "kafka"`: a Kafka topic, key = device id, value = prediction JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaSinkConfig {
    /// Topic name.
    pub topic: String,
    /// Bootstrap servers; default: the source's.
    #[serde(default)]
    pub brokers: Option<String>,
}

/// Attaches a Kafka sink of predictions as operator `id`.
pub fn attach<'s>(
    id: &str,
    c: &KafkaSinkConfig,
    predictions: StreamVec<'s, Epoch, Prediction>,
    ctx: &super::SinkContext,
    job: &JobContext<'s>,
) {
    let settings = c
        .brokers
        .as_ref()
        .map_or_else(|| ctx.kafka.clone(), ClientSettings::new);
    predictions.kafka_sink(id, &settings, &c.topic, Arc::clone(&ctx.failure), job);
}
