//! Moving readings from the spool to Kafka without losing, duplicating or reordering them.
//!
//! The rules, and why they give exactly-once in order within one run:
//! 1. Readings leave the spool in sequence order and go to one idempotent producer with
//!    `acks=all` and no delivery timeout (`crate::kafka`). librdkafka retries each
//!    message until the broker acknowledges it; the broker discards retried duplicates by
//!    producer id and sequence number, and a partition keeps the produce order. A broker
//!    outage therefore never turns into a failed delivery that we would have to resend
//!    (and perhaps duplicate): the messages simply stay in flight until it is back.
//! 2. At most `kafka.max-in-flight` readings are handed to the producer; the rest wait in
//!    the spool on disk. While the spool has a backlog every new reading queues behind it
//!    (all readings go through the spool), so order per device holds across the outage.
//! 3. A reading is removed from the spool only when acknowledged (the spool's cursor is
//!    the lowest unacknowledged sequence number), so a crash or SIGTERM loses nothing:
//!    the next start sends it again (at-least-once across restarts).
//! 4. What the broker refuses for good (message too large, …) is counted and logged as
//!    undeliverable. Any other delivery error (a missing topic, denied access, a fatal
//!    idempotence error after which the producer is rebuilt) is retried with back-off;
//!    only those rare paths can reorder or, for a rebuilt producer, duplicate.

use crate::spool::Spool;
use crate::telemetry::Metrics;
use crate::telemetry::events::{DeliveryRetry, Produced, Undeliverable};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One delivery report: producer generation, spool sequence number, outcome.
type Report = (u64, u64, Result<(), KafkaError>);

/// Receives librdkafka's callbacks on the thread that polls the producer.
struct Ctx {
    generation: u64,
    reports: Arc<Mutex<Vec<Report>>>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "{fac}: {log_message}")
            }
            _ => tracing::debug!(target: "librdkafka", "{fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Connection losses land here; the messages stay queued and are retried.
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((self.generation, *seq, outcome));
    }
}

#[derive(Debug)]
struct Pending {
    key: Vec<u8>,
    value: Vec<u8>,
    /// In the producer's hands; otherwise waiting for `retry_at`.
    sent: bool,
    retry_at: Instant,
    backoff: Duration,
}

/// The producer side of the pipeline.
pub struct Delivery {
    config: ClientConfig,
    producer: BaseProducer<Ctx>,
    generation: u64,
    reports: Arc<Mutex<Vec<Report>>>,
    topic: String,
    max_in_flight: usize,
    in_flight: BTreeMap<u64, Pending>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

fn make(config: &ClientConfig, ctx: Ctx) -> Result<BaseProducer<Ctx>, KafkaError> {
    config.create_with_context(ctx)
}

/// Whether another attempt can succeed.
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::BadMessage
        )
    )
}

impl Delivery {
    /// A producer for `topic` from `config` (see `crate::kafka::producer_config`).
    pub fn new(config: ClientConfig, topic: &str, max_in_flight: usize) -> anyhow::Result<Self> {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let producer = make(
            &config,
            Ctx {
                generation: 0,
                reports: reports.clone(),
            },
        )?;
        Ok(Delivery {
            config,
            producer,
            generation: 0,
            reports,
            topic: topic.to_owned(),
            max_in_flight: max_in_flight.max(1),
            in_flight: BTreeMap::new(),
        })
    }

    /// Readings handed to the producer or waiting for a retry.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits up to `timeout` for delivery reports.
    pub fn wait(&self, timeout: Duration) {
        self.producer.poll(timeout);
    }

    /// Processes delivery reports, retries what is due, hands the spool's next readings
    /// to the producer while the window has room, and advances the spool's cursor.
    pub fn pump(&mut self, spool: &mut Spool, metrics: &Metrics) -> std::io::Result<()> {
        self.producer.poll(Duration::ZERO);
        self.handle_reports(metrics);
        if let Some((code, msg)) = self.producer.client().fatal_error() {
            self.rebuild(code, &msg);
        }
        let now = Instant::now();
        let due: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, p)| !p.sent && p.retry_at <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            if !self.send(seq, metrics) {
                break;
            }
        }
        while self.in_flight.len() < self.max_in_flight {
            let Some(rec) = spool.next_unsent()? else {
                break;
            };
            self.in_flight.insert(
                rec.seq,
                Pending {
                    key: rec.key,
                    value: rec.value,
                    sent: false,
                    retry_at: now,
                    backoff: Duration::from_millis(500),
                },
            );
            if !self.send(rec.seq, metrics) {
                break;
            }
        }
        let below = self
            .in_flight
            .keys()
            .next()
            .copied()
            .unwrap_or(spool.read_seq());
        spool.ack_below(below)?;
        Metrics::set(&metrics.in_flight, self.in_flight.len() as u64);
        Ok(())
    }

    /// Hands reading `seq` to the producer; false if the producer's queue is full.
    fn send(&mut self, seq: u64, metrics: &Metrics) -> bool {
        let Some(p) = self.in_flight.get_mut(&seq) else {
            return true;
        };
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(seq))
            .key(&p.key[..])
            .payload(&p.value[..]);
        match self.producer.send(record) {
            Ok(()) => {
                p.sent = true;
                true
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                p.retry_at = Instant::now();
                false
            }
            Err((e, _)) => {
                self.failed(seq, e, metrics);
                true
            }
        }
    }

    fn failed(&mut self, seq: u64, e: KafkaError, metrics: &Metrics) {
        if permanent(&e) {
            self.in_flight.remove(&seq);
            Undeliverable {
                seq,
                error: &e.to_string(),
            }
            .emit(metrics);
        } else if let Some(p) = self.in_flight.get_mut(&seq) {
            p.sent = false;
            p.retry_at = Instant::now() + p.backoff;
            p.backoff = (p.backoff * 2).min(Duration::from_secs(30));
            DeliveryRetry {
                seq,
                error: &e.to_string(),
            }
            .emit(metrics);
        }
    }

    fn handle_reports(&mut self, metrics: &Metrics) {
        let reports =
            std::mem::take(&mut *self.reports.lock().unwrap_or_else(PoisonError::into_inner));
        let mut produced = 0;
        for (generation, seq, outcome) in reports {
            if generation != self.generation {
                continue; // from a producer that was replaced; its messages were re-sent
            }
            match outcome {
                Ok(()) => {
                    if self.in_flight.remove(&seq).is_some() {
                        produced += 1;
                    }
                }
                Err(e) => self.failed(seq, e, metrics),
            }
        }
        if produced > 0 {
            Produced { count: produced }.emit(metrics);
        }
    }

    /// After a fatal error the producer cannot be used again: make a new one and send
    /// everything unacknowledged again (the one path that may duplicate).
    fn rebuild(&mut self, code: RDKafkaErrorCode, msg: &str) {
        tracing::error!(
            "fatal producer error ({code:?}: {msg}); creating a new producer and \
             re-sending {} unacknowledged readings",
            self.in_flight.len()
        );
        self.generation += 1;
        match make(
            &self.config,
            Ctx {
                generation: self.generation,
                reports: self.reports.clone(),
            },
        ) {
            Ok(p) => self.producer = p,
            Err(e) => tracing::error!("cannot create a new producer: {e}"),
        }
        let now = Instant::now();
        for p in self.in_flight.values_mut() {
            p.sent = false;
            p.retry_at = now;
        }
    }

    /// On shutdown: keeps delivering (the spool's backlog too) until everything is
    /// acknowledged or `timeout` passes. Returns whether everything was delivered; what
    /// was not stays in the spool.
    pub fn flush(
        &mut self,
        spool: &mut Spool,
        timeout: Duration,
        metrics: &Metrics,
    ) -> std::io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump(spool, metrics)?;
            if self.in_flight.is_empty() && spool.unsent() == 0 {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.wait(left.min(Duration::from_millis(50)));
        }
    }
}
