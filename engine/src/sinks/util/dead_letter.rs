//! Dead letters: the one header scheme of every dead letter of the engine, and the writer
//! the ThingsBoard and MQTT sinks (and the bridge) use.
//!
//! A dead letter keeps the refused record's key and bytes as the message (for a sink's
//! refusal: key = device, value = the prediction JSON as it was); why and where from ride
//! in headers, as Kafka Connect's dead-letter queues do:
//!
//! | header | value |
//! | --- | --- |
//! | `flowcast.reason` | why: `malformed`, `out_of_range`, …, `thingsboard_rejected`, `no_token`, `mqtt_refused` |
//! | `flowcast.detail` | the parser's message, the server's response body or the error (redacted), ≤ 1 KiB |
//! | `flowcast.topic`, `flowcast.partition`, `flowcast.offset` | the source record's origin (source dead letters) |
//! | `flowcast.sink` | the refusing sink's type (sink dead letters) |
//! | `flowcast.http-status` | the HTTP status (ThingsBoard) |
//! | `flowcast.truncated` | `key`, `value` or `key,value`: what was cut to fit |
//! | `flowcast.original-size`, `flowcast.original-key-size` | the sizes before the cut |
//!
//! A record too big to forward whole (it may be why it was refused) is cut to what any
//! broker accepts — key to [`DEAD_LETTER_MAX_KEY`], value to [`DEAD_LETTER_MAX_VALUE`]
//! bytes — so a huge record cannot fail the dead-letter producer.
//!
//! [`KafkaDeadLetters::write`] returns only once Kafka has acknowledged every record, so a
//! caller that counts a prediction as done after it (the bridge commits offsets then)
//! loses nothing. Source dead letters go through the job's Kafka sink, flushed at every
//! snapshot.

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

/// The largest dead-letter value forwarded whole, bytes (well under Kafka's 1 MiB default).
pub const DEAD_LETTER_MAX_VALUE: usize = 256 * 1024;
/// The largest dead-letter key forwarded whole, bytes.
pub const DEAD_LETTER_MAX_KEY: usize = 4 * 1024;
/// The longest `flowcast.detail` header, bytes.
pub const DEAD_LETTER_MAX_DETAIL: usize = 1024;

/// Where a source record came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// Why and where from: the headers of a dead letter.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterMeta<'a> {
    /// `flowcast.reason`.
    pub reason: &'a str,
    /// `flowcast.detail` (already redacted; cut to [`DEAD_LETTER_MAX_DETAIL`]).
    pub detail: &'a str,
    /// The source record's origin.
    pub origin: Option<Origin<'a>>,
    /// The refusing sink.
    pub sink: Option<&'a str>,
    /// The HTTP status.
    pub status: Option<u16>,
}

/// Adds one string header.
pub fn header(h: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    h.insert(Header {
        key,
        value: Some(value),
    })
}

/// A dead letter's key, cut to [`DEAD_LETTER_MAX_KEY`].
pub fn cut_key(key: &[u8]) -> &[u8] {
    &key[..key.len().min(DEAD_LETTER_MAX_KEY)]
}

/// A dead letter's value, cut to [`DEAD_LETTER_MAX_VALUE`].
pub fn cut_value(value: &[u8]) -> &[u8] {
    &value[..value.len().min(DEAD_LETTER_MAX_VALUE)]
}

/// The headers of a dead letter whose original key and value were `key_len` and
/// `value_len` bytes long.
pub fn headers(meta: &DeadLetterMeta<'_>, key_len: usize, value_len: usize) -> OwnedHeaders {
    let mut h = header(
        OwnedHeaders::new_with_capacity(8),
        "flowcast.reason",
        meta.reason,
    );
    h = header(
        h,
        "flowcast.detail",
        truncate_str(meta.detail, DEAD_LETTER_MAX_DETAIL),
    );
    if let Some(o) = meta.origin {
        h = header(h, "flowcast.topic", o.topic);
        h = header(h, "flowcast.partition", &o.partition.to_string());
        h = header(h, "flowcast.offset", &o.offset.to_string());
    }
    if let Some(sink) = meta.sink {
        h = header(h, "flowcast.sink", sink);
    }
    if let Some(status) = meta.status {
        h = header(h, "flowcast.http-status", &status.to_string());
    }
    let mut cut = Vec::new();
    if key_len > DEAD_LETTER_MAX_KEY {
        cut.push("key");
        h = header(h, "flowcast.original-key-size", &key_len.to_string());
    }
    if value_len > DEAD_LETTER_MAX_VALUE {
        cut.push("value");
        h = header(h, "flowcast.original-size", &value_len.to_string());
    }
    if !cut.is_empty() {
        h = header(h, "flowcast.truncated", &cut.join(","));
    }
    h
}

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

impl DeadLetters for KafkaDeadLetters {
    fn write(&self, records: &[Refused<'_>], why: Refusal<'_>) -> Result<(), String> {
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let meta = DeadLetterMeta {
                reason: why.reason,
                detail: why.detail,
                origin: None,
                sink: Some(why.sink),
                status: why.status,
            };
            let h = headers(&meta, r.device.len(), r.payload.len());
            let mut record = FutureRecord::to(&self.topic)
                .key(cut_key(r.device.as_bytes()))
                .payload(cut_value(r.payload))
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
