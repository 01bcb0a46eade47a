//! The Kafka sink: predictions, dead letters, late records and (model off) sequences.
//!
//! It never drops: the producer is idempotent with `acks=all` and an unbounded
//! delivery timeout, so librdkafka retries with backoff while the cluster is away; a full
//! local queue blocks the worker (backpressure) instead of discarding. A delivery that
//! fails for good (e.g. the topic is not authorised) fails the job, loudly. When the input
//! ends, the sink flushes before the job returns.
//!
//! It runs on the operator lifecycle. `delivery = "at-least-once"` (the default): a
//! snapshot waits until Kafka has acknowledged everything before it. `delivery =
//! "exactly-once"`: output is staged in checkpoints and committed in transactions
//! ([`exactly_once`], [`committer`]).

pub mod committer;
pub mod exactly_once;
pub mod staged;

use exactly_once::{Delivery, ExactlyOnceOperator};

use crate::dataflow::{DeadLetter, Epoch, LateRecord};
use crate::kafka::ClientSettings;
use crate::lifecycle::{EpochContext, JobContext, Operator, StateError, StateWriter, lifecycle};
use crate::sinks::util::dead_letter::{self, DeadLetterMeta, Origin, header};
use crate::sinks::util::events::{BackpressureWait, Blocked, DeliveryFailed, SinkEvent};
use crate::sinks::util::metrics::SinkMetrics;
use crate::sinks::{Sink, SinkContext};
use flowcast_operators::Prediction;
use flowcast_operators::event_time::to_secs;
use flowcast_operators::sequence::Sequence;
use flowcast_operators::window::WindowResult;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
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
    const TRACKS_LATENCY: bool = false;
}

impl KafkaRecord for Prediction {
    const TRACKS_LATENCY: bool = true;
    fn key(&self) -> Option<&[u8]> {
        Some(self.device.as_bytes())
    }
    fn value(&self) -> Vec<u8> {
        crate::sinks::util::payload::prediction_json(self)
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
    const TRACKS_LATENCY: bool = true;
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

/// Dead letters keep the original key and bytes as the message; why and where from ride
/// in the one header scheme of every dead letter of the engine ([`dead_letter`]), cut to
/// what any broker accepts and saying so.
impl KafkaRecord for DeadLetter {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref().map(dead_letter::cut_key)
    }
    fn value(&self) -> Vec<u8> {
        dead_letter::cut_value(&self.payload).to_vec()
    }
    fn headers(&self) -> Option<OwnedHeaders> {
        let meta = DeadLetterMeta {
            reason: self.reason,
            detail: &self.detail,
            origin: Some(Origin {
                topic: &self.topic,
                partition: self.partition,
                offset: self.offset,
            }),
            sink: None,
            status: None,
        };
        Some(dead_letter::headers(
            &meta,
            self.key.as_ref().map_or(0, Vec::len),
            self.payload.len(),
        ))
    }
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
#[derive(Clone)]
struct ProducerStats {
    metrics: SinkMetrics,
    failure: Arc<Mutex<Option<String>>>,
    topic: String,
}

impl ProducerStats {
    /// `records` failed for good: counted, logged, and the job's failure.
    fn fail(&self, records: usize, msg: String) {
        DeliveryFailed {
            records,
            message: &msg,
        }
        .emit(&self.metrics);
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(msg);
    }
}

impl ClientContext for ProducerStats {}

impl ProducerContext for ProducerStats {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.metrics.delivered.inc(),
            Err((e, m)) => self.fail(
                1,
                format!(
                    "delivery to {} partition {} failed for good: {e}",
                    self.topic,
                    m.partition()
                ),
            ),
        }
    }
}

/// The Kafka sink's logic on the operator lifecycle: records are handed to the producer
/// as each epoch completes; a snapshot and the end of input wait until Kafka has
/// acknowledged everything handed over (at-least-once).
pub struct KafkaSinkOperator<D> {
    id: String,
    topic: String,
    producer: Option<ThreadedProducer<ProducerStats>>,
    stats: ProducerStats,
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
    /// A sink `id` writing to `topic` with `settings` on worker `worker`; a producer that
    /// cannot be created fails the job through [`SinkContext::started`], a permanent
    /// delivery failure is stored as the job's failure.
    pub fn new(
        id: &str,
        settings: &ClientSettings,
        topic: &str,
        ctx: &SinkContext,
        worker: usize,
    ) -> Self {
        let stats = ProducerStats {
            metrics: SinkMetrics::new(&ctx.job, KafkaSinkConfig::KIND, id, worker),
            failure: Arc::clone(&ctx.failure),
            topic: topic.to_owned(),
        };
        let mut cfg = settings.client_config();
        let producer: Result<ThreadedProducer<ProducerStats>, KafkaError> =
            crate::kafka::config::idempotent_producer(&mut cfg)
                .set("compression.type", "lz4")
                .set("client.id", format!("flowcast-{}-sink", ctx.job))
                .create_with_context(stats.clone());
        KafkaSinkOperator {
            id: id.to_owned(),
            topic: topic.to_owned(),
            producer: ctx.started(id, producer),
            stats,
            _records: std::marker::PhantomData,
        }
    }

    fn fail(&self, msg: String) {
        self.stats.fail(0, msg);
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
        if D::TRACKS_LATENCY
            && let Some(elapsed) = crate::dataflow::latency::since_fired(ctx.epoch)
        {
            self.stats.metrics.window_to_send.observe(elapsed);
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
            let mut waiting: Option<std::time::Instant> = None;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if waiting.is_none() {
                            BackpressureWait.emit(&self.stats.metrics);
                            waiting = Some(std::time::Instant::now());
                        }
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        self.fail(format!("cannot produce to {}: {e}", self.topic));
                        break;
                    }
                }
            }
            if let Some(since) = waiting {
                Blocked(since.elapsed()).emit(&self.stats.metrics);
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

/// A Kafka output as the job runs it: at-least-once or exactly-once.
#[derive(Debug)]
pub enum KafkaOutput<D> {
    /// Written at once; snapshots wait for the acknowledgements.
    AtLeastOnce(KafkaSinkOperator<D>),
    /// Staged in checkpoints, committed in transactions.
    ExactlyOnce(ExactlyOnceOperator<D>),
}

impl<D: KafkaRecord> KafkaOutput<D> {
    /// Output `id` to `topic` on `settings` with `delivery` on worker `worker`. Exactly-once
    /// needs the worker's hub in `ctx` (the job builds one when any output asks for it).
    pub fn new(
        id: &str,
        (settings, topic): (&ClientSettings, &str),
        delivery: Delivery,
        ctx: &SinkContext,
        worker: usize,
    ) -> Self {
        match (delivery, &ctx.exactly_once) {
            (Delivery::ExactlyOnce, Some(hub)) => KafkaOutput::ExactlyOnce(
                ExactlyOnceOperator::new(
                    id,
                    topic,
                    std::rc::Rc::clone(hub),
                    (&ctx.job, worker),
                    (Arc::clone(&ctx.stopped), Arc::clone(&ctx.shutdown)),
                ),
            ),
            _ => KafkaOutput::AtLeastOnce(KafkaSinkOperator::new(id, settings, topic, ctx, worker)),
        }
    }
}

macro_rules! each {
    ($self:ident, $op:ident => $e:expr) => {
        match $self {
            KafkaOutput::AtLeastOnce($op) => $e,
            KafkaOutput::ExactlyOnce($op) => $e,
        }
    };
}

impl<D: KafkaRecord + Clone + 'static> Operator for KafkaOutput<D> {
    type In = D;
    type Out = ();

    fn id(&self) -> &str {
        each!(self, o => o.id())
    }

    fn restore(&mut self, state: crate::lifecycle::RestoredState) -> Result<(), StateError> {
        each!(self, o => o.restore(state))
    }

    fn on_records(&mut self, ctx: &EpochContext, records: Vec<D>, out: &mut Vec<()>) {
        each!(self, o => o.on_records(ctx, records, out));
    }

    fn on_epoch_complete(&mut self, ctx: &EpochContext, out: &mut Vec<()>) {
        each!(self, o => o.on_epoch_complete(ctx, out));
    }

    fn snapshot(&mut self, ctx: &EpochContext, w: &mut StateWriter<'_>) -> Result<(), StateError> {
        each!(self, o => o.snapshot(ctx, w))
    }

    fn on_checkpoint_committed(&mut self, id: u64) {
        each!(self, o => o.on_checkpoint_committed(id));
    }

    fn close(&mut self) {
        each!(self, o => o.close());
    }
}

/// Writes `stream` to the Kafka topic `topic` as output `id` with `delivery`. Failures go
/// to the job through `ctx`.
pub fn kafka_sink<'s, D: KafkaRecord + Clone + 'static>(
    stream: StreamVec<'s, Epoch, D>,
    id: &str,
    to: (&ClientSettings, &str),
    delivery: Delivery,
    ctx: &SinkContext,
    job: &JobContext<'s>,
) {
    let op = KafkaOutput::<D>::new(id, to, delivery, ctx, job.state.index());
    lifecycle(stream, Pipeline, job, op);
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
    /// `at-least-once` (default) or `exactly-once` (needs `[checkpoint]`, and the
    /// source's cluster: a worker's transactions span all its exactly-once outputs).
    #[serde(default)]
    pub delivery: Delivery,
}

impl KafkaSinkConfig {
    /// The cluster this sink writes to: its own `brokers`, or the source's.
    pub fn settings(&self, source: &ClientSettings) -> ClientSettings {
        self.brokers
            .as_ref()
            .map_or_else(|| source.clone(), ClientSettings::new)
    }
}

impl Sink for KafkaSinkConfig {
    const KIND: &'static str = "kafka";
    type Operator = KafkaOutput<Prediction>;

    fn validate(&self) -> Result<(), String> {
        if self.delivery == Delivery::ExactlyOnce && self.brokers.is_some() {
            return Err("`delivery = \"exactly-once\"` writes through the source's cluster: remove `brokers`".into());
        }
        Ok(())
    }

    fn operator(&self, id: &str, ctx: &SinkContext, worker: usize) -> Self::Operator {
        let settings = self.settings(&ctx.kafka);
        KafkaOutput::new(id, (&settings, &self.topic), self.delivery, ctx, worker)
    }
}
