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
//! operator runs on the lifecycle; it blocks the worker when the engine's queue is full
//! (backpressure) and, on a snapshot and when its input ends, waits until every
//! prediction is delivered or dead-lettered.
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

use crate::dataflow::Epoch;
use crate::kafka::ClientSettings;
use crate::lifecycle::{EpochContext, JobContext, Operator, StateError, StateWriter, lifecycle};
use dead_letter::KafkaDeadLetters;
use delivery::{Delivery, Item};
use flowcast_operators::Prediction;
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;

/// Starts a delivery engine for `c`: loads the tokens, builds the HTTP client and the
/// dead-letter producer.
pub fn start_delivery<T: Send + 'static>(
    c: &ThingsBoardSinkConfig,
    kafka: &ClientSettings,
    dead_letter_topic: &str,
    job: &str,
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
    tracing::info!(job, worker, url = %transport.redacted_url(), "ThingsBoard sink started");
    Delivery::start(c.delivery(), transport, tokens, dead, job, worker)
}

/// The ThingsBoard sink's logic on the operator lifecycle: each epoch's predictions go to
/// the delivery engine (blocking while its queues are full); a snapshot and the end of
/// input wait until everything handed over is delivered or dead-lettered.
#[derive(Debug)]
pub struct ThingsBoardSinkOperator {
    id: String,
    delivery: Option<Delivery<()>>,
}

impl ThingsBoardSinkOperator {
    /// Starts the delivery engine for `c` as sink `id` on worker `worker`; a sink that
    /// cannot start fails the job.
    pub fn new(
        id: &str,
        c: &ThingsBoardSinkConfig,
        ctx: &super::SinkContext,
        worker: usize,
    ) -> Self {
        let delivery =
            match start_delivery::<()>(c, &ctx.kafka, &ctx.dead_letter_topic, &ctx.job, worker) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(job = %ctx.job, "cannot start the ThingsBoard sink: {e}");
                    ctx.failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e.to_string());
                    ctx.shutdown
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    None
                }
            };
        ThingsBoardSinkOperator {
            id: id.to_owned(),
            delivery,
        }
    }

    fn flush(&self) {
        if let Some(d) = &self.delivery {
            d.flush();
        }
    }
}

impl Operator for ThingsBoardSinkOperator {
    type In = Prediction;
    type Out = ();

    fn id(&self) -> &str {
        &self.id
    }

    fn on_records(&mut self, _: &EpochContext, records: Vec<Prediction>, _: &mut Vec<()>) {
        // Without a delivery engine the job is failing (see `new`): nothing is delivered.
        let Some(d) = &self.delivery else { return };
        for p in records {
            let raw = serde_json::to_vec(&p).unwrap_or_default();
            d.submit(Item {
                prediction: p,
                raw,
                tag: (),
            });
        }
        // Tags are unused here; keep the completion list from growing.
        d.take_completed();
    }

    fn snapshot(&mut self, _: &EpochContext, _: &mut StateWriter<'_>) -> Result<(), StateError> {
        self.flush();
        Ok(())
    }

    fn close(&mut self) {
        self.flush();
    }
}

/// Attaches a ThingsBoard sink of predictions as operator `id`.
pub fn attach<'s>(
    id: &str,
    c: &ThingsBoardSinkConfig,
    predictions: StreamVec<'s, Epoch, Prediction>,
    ctx: &super::SinkContext,
    job: &JobContext<'s>,
) {
    let op = ThingsBoardSinkOperator::new(id, c, ctx, job.state.index());
    lifecycle(predictions, Pipeline, job, op);
}
