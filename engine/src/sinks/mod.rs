//! Sinks of predictions. Each sink is a folder here with its config struct and its
//! operator on the lifecycle ([`crate::lifecycle::Operator`]); adding one is a folder
//! plus one line in [`SinkSpec`] and one in [`attach`].
//!
//! - [`kafka`]: a Kafka topic (also used for dead letters and late records)
//! - [`stdout`]: JSON lines on standard output
//! - [`thingsboard`]: ThingsBoard's device HTTP API
//! - [`mqtt`]: ThingsBoard's MQTT device or gateway API
//! - [`util`]: what sinks share (breaker and backoff, tokens, dead letters, telemetry payloads)

pub mod kafka;
pub mod mqtt;
pub mod stdout;
pub mod thingsboard;
pub mod util;

use crate::dataflow::Epoch;
use crate::kafka::ClientSettings;
use crate::lifecycle::JobContext;
use flowcast_operators::Prediction;
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use timely::dataflow::StreamVec;

/// One sink of a job, selected by `type` in the job spec's `[[sinks]]` tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum SinkSpec {
    /// A Kafka topic.
    Kafka(kafka::KafkaSinkConfig),
    /// Standard output.
    Stdout(stdout::StdoutSinkConfig),
    /// ThingsBoard's device HTTP API.
    Thingsboard(thingsboard::ThingsBoardSinkConfig),
    /// ThingsBoard's MQTT API (device or gateway).
    Mqtt(mqtt::MqttSinkConfig),
}

impl SinkSpec {
    /// Checks the sink's settings (ranges, combinations); the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SinkSpec::Thingsboard(c) => c.validate(),
            SinkSpec::Mqtt(c) => c.validate(),
            SinkSpec::Kafka(_) | SinkSpec::Stdout(_) => Ok(()),
        }
    }
}

/// What every sink may need from the job.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// Job name (metrics label, client ids).
    pub job: String,
    /// The source cluster's settings (default for Kafka sinks).
    pub kafka: ClientSettings,
    /// The job's dead-letter topic, for records a sink refuses for good.
    pub dead_letter_topic: String,
    /// The first fatal error of the job.
    pub failure: Arc<Mutex<Option<String>>>,
    /// Set to stop the job (a sink that cannot work at all).
    pub shutdown: Arc<AtomicBool>,
}

impl SinkSpec {
    /// The sink's stable operator id: its place in the job's `[[sinks]]` list and its type.
    pub fn operator_id(&self, index: usize) -> String {
        let kind = match self {
            SinkSpec::Kafka(_) => "kafka",
            SinkSpec::Stdout(_) => "stdout",
            SinkSpec::Thingsboard(_) => "thingsboard",
            SinkSpec::Mqtt(_) => "mqtt",
        };
        format!("sink-{index}:{kind}")
    }
}

/// Attaches the sink `spec`, the `index`-th of the job, to a stream of predictions.
pub fn attach<'s>(
    index: usize,
    spec: &SinkSpec,
    predictions: StreamVec<'s, Epoch, Prediction>,
    ctx: &SinkContext,
    job: &JobContext<'s>,
) {
    let id = spec.operator_id(index);
    match spec {
        SinkSpec::Kafka(c) => kafka::attach(&id, c, predictions, ctx, job),
        SinkSpec::Stdout(_) => stdout::attach(&id, predictions, job),
        SinkSpec::Thingsboard(c) => thingsboard::attach(&id, c, predictions, ctx, job),
        SinkSpec::Mqtt(c) => mqtt::attach(&id, c, predictions, ctx, job),
    }
}
