//! The ThingsBoard HTTP sink: each prediction becomes telemetry of its device through
//! the device API, `POST {url}/api/v1/{token}/telemetry`.
//!
//! - [`config`]: the `type = "thingsboard"` table
//! - [`http`]: the HTTP client, with redacted errors
//! - [`delivery`]: bounded queues, in-flight limit, retries, backoff, dead letters
//!
//! Tokens, telemetry payloads, the breaker and dead letters are shared with the MQTT sink
//! and live in [`super::util`].
//!
//! Each timely worker runs its own delivery engine: predictions are keyed by device
//! upstream, so a device's predictions all pass one worker and keep their order. The
//! operator is the shared [`super::util::operator::DeliveryOperator`]: it blocks the worker
//! when the engine's queue is full (backpressure), puts what is not delivered yet into
//! snapshots, and when its input ends waits until every prediction is delivered or
//! dead-lettered.
//!
//! # Examples
//!
//! ```toml
//! [[sinks]]
//! type = "kafka"
//! topic = "predicData"
//!
//! [[sinks]]
//! type = "thingsboard"
//! url = "http://127.0.0.1:8080"
//! tokens-file = "/etc/flowcast/tb-tokens"
//! ```

pub mod config;
pub mod delivery;
pub mod error;
pub mod http;
#[cfg(test)]
mod tests;

pub use super::util::{breaker, dead_letter, payload, tokens};

pub use config::ThingsBoardSinkConfig;
pub use error::{Fault, TbError};

use crate::kafka::ClientSettings;
use crate::sinks::util::metrics::SinkMetrics;
use crate::sinks::util::operator::{Deliver, DeliveryOperator};
use crate::sinks::{Sink, SinkContext};
use dead_letter::KafkaDeadLetters;
use delivery::{Delivery, Item};
use flowcast_operators::Prediction;
use std::sync::Arc;

/// Starts a delivery engine for `c` as sink `operator` on `worker`: loads the tokens,
/// builds the HTTP client and the dead-letter producer.
pub fn start_delivery<T: Send + 'static>(
    c: &ThingsBoardSinkConfig,
    kafka: &ClientSettings,
    dead_letter_topic: &str,
    job: &str,
    operator: &str,
    worker: usize,
) -> Result<Delivery<T>, TbError> {
    c.validate().map_err(TbError::Config)?;
    let tokens = Arc::new(tokens::TokenStore::load(c.tokens_file.as_deref())?);
    let transport = Arc::new(http::HttpTransport::new(
        &c.url,
        c.timeout,
        c.max_in_flight,
    )?);
    let topic = c.dead_letter_topic.as_deref().unwrap_or(dead_letter_topic);
    let dead = Arc::new(
        KafkaDeadLetters::new(kafka, topic, &format!("flowcast-{job}-tb-dead-letters"))
            .map_err(TbError::Config)?,
    );
    tracing::info!(job, worker, operator, url = %transport.redacted_url(), "ThingsBoard sink started");
    let metrics = SinkMetrics::new(job, ThingsBoardSinkConfig::KIND, operator, worker);
    Delivery::start(c.delivery(), transport, tokens, dead, metrics, worker)
}

/// A delivery engine as a sink's: the tag is the prediction's submission number.
impl Deliver for Delivery<u64> {
    fn submit(&mut self, seq: u64, p: Prediction) {
        let raw = payload::prediction_json(&p);
        Delivery::submit(
            self,
            Item {
                prediction: p,
                raw,
                tag: seq,
            },
        );
    }

    fn take_completed(&mut self) -> Vec<u64> {
        Delivery::take_completed(self)
    }

    fn flush(&mut self) {
        Delivery::flush(self);
    }
}

impl Sink for ThingsBoardSinkConfig {
    const KIND: &'static str = "thingsboard";
    type Operator = DeliveryOperator<Delivery<u64>>;

    fn validate(&self) -> Result<(), String> {
        ThingsBoardSinkConfig::validate(self)
    }

    fn operator(&self, id: &str, ctx: &SinkContext, worker: usize) -> Self::Operator {
        let started =
            start_delivery::<u64>(self, &ctx.kafka, &ctx.dead_letter_topic, &ctx.job, id, worker);
        DeliveryOperator::new(id, ctx.started(id, started), ctx.key_groups)
    }
}
