//! Dead letters of the ThingsBoard and MQTT sinks: predictions a server refused for good
//! (HTTP 400/401/404, an MQTT connection refused for its credentials, a device without a
//! token) go to the job's dead-letter topic, as the source's dead letters do: key =
//! device, value = the prediction JSON as it was, and headers that say why:
//!
//! | header | value |
//! | --- | --- |
//! | `flowcast.reason` | `thingsboard_rejected`, `no_token`, `mqtt_refused` |
//! | `flowcast.sink` | `thingsboard` or `mqtt` |
//! | `flowcast.http-status` | the status (HTTP only) |
//! | `flowcast.detail` | the server's response body or the error (redacted) |
//!
//! A write returns only once Kafka has acknowledged every record, so a caller that
//! counts a prediction as done after it (the bridge commits offsets then) loses nothing.

use crate::kafka::ClientSettings;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// One refused record.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    /// Device id (the message key).
    pub device: &'a str,
    /// The prediction as it was (the message value).
    pub payload: &'a [u8],
}

/// Why records were refused.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// `flowcast.reason`.
    pub reason: &'a str,
    /// `flowcast.sink`.
    pub sink: &'a str,
    /// `flowcast.http-status`, when there was one.
    pub status: Option<u16>,
    /// `flowcast.detail` (already redacted).
    pub detail: &'a str,
}

/// Where refused records go.
pub trait DeadLetters: Send + Sync + 'static {
    /// Writes `records` and waits until they are durable.
    fn write(&self, records: &[Refused<'_>], why: Refusal<'_>) -> Result<(), String>;
}

/// A dead-letter topic in Kafka.
pub struct KafkaDeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for KafkaDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaDeadLetters {
    /// An idempotent producer to `topic` that retries for as long as it takes.
    pub fn new(settings: &ClientSettings, topic: &str, client_id: &str) -> Result<Self, String> {
        let mut cfg = settings.client_config();
        let producer: FutureProducer = crate::kafka::config::idempotent_producer(&mut cfg)
            .set("client.id", client_id)
            .create()
            .map_err(|e| format!("cannot create a producer for {topic}: {e}"))?;
        Ok(KafkaDeadLetters {
            producer,
            topic: topic.to_owned(),
        })
    }
}

fn header(h: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    h.insert(Header {
        key,
        value: Some(value),
    })
}

impl DeadLetters for KafkaDeadLetters {
    fn write(&self, records: &[Refused<'_>], why: Refusal<'_>) -> Result<(), String> {
        let status = why.status.map(|s| s.to_string());
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let mut h = header(
                OwnedHeaders::new_with_capacity(4),
                "flowcast.reason",
                why.reason,
            );
            h = header(h, "flowcast.sink", why.sink);
            if let Some(s) = &status {
                h = header(h, "flowcast.http-status", s);
            }
            h = header(h, "flowcast.detail", why.detail);
            let mut record = FutureRecord::to(&self.topic)
                .key(r.device)
                .payload(r.payload)
                .headers(h);
            loop {
                match self.producer.send_result(record) {
                    Ok(f) => {
                        pending.push(f);
                        break;
                    }
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        record = back;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(format!("cannot produce to {}: {e}", self.topic)),
                }
            }
        }
        for f in pending {
            match futures::executor::block_on(f) {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(format!("dead letter to {} failed: {e}", self.topic));
                }
                Err(_) => return Err(format!("the producer of {} went away", self.topic)),
            }
        }
        Ok(())
    }
}
