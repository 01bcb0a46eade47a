//! Sinks of predictions. Each sink is a folder here with its config struct, which
//! implements [`Sink`] (its `type` name, its checks, and the operator on the lifecycle,
//! [`crate::lifecycle::Operator`], it runs on each worker). Adding a sink is that folder
//! plus **one line** in the registry below: [`stdout`] is the smallest example, a config,
//! an operator, the `Sink` impl, and the line `Stdout(stdout::StdoutSinkConfig)`. A sink
//! that delivers to a server builds on [`util`]: its delivery engine implements
//! [`util::operator::Deliver`] and [`util::operator::DeliveryOperator`] is its operator.
//!
//! - [`kafka`]: a Kafka topic (also used for dead letters and late records)
//! - [`stdout`]: JSON lines on standard output
//! - [`thingsboard`]: ThingsBoard's device HTTP API
//! - [`mqtt`]: ThingsBoard's MQTT device or gateway API
//! - [`util`]: what sinks share: the bounded queue, backoff and breaker, tokens, dead
//!   letters, payloads and the one prediction encoder, one metric set, internal events

pub mod util;

use crate::dataflow::Epoch;
use crate::kafka::ClientSettings;
use crate::lifecycle::{JobContext, KeyGroups, Operator, lifecycle};
use flowcast_operators::Prediction;
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;

/// A sink type: what its `[[sinks]]` table is called, how it is checked, and the operator
/// (on the lifecycle) it runs on each worker.
pub trait Sink {
    /// The `type = "..."` of its table (also the metrics' `sink` label).
    const KIND: &'static str;
    /// The operator that takes the predictions.
    type Operator: Operator<In = Prediction, Out = ()>;

    /// Checks the settings (ranges, combinations); the message names the key.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// The sink's operator `id` on `worker`; a sink that cannot start reports it through
    /// [`SinkContext::started`].
    fn operator(&self, id: &str, ctx: &SinkContext, worker: usize) -> Self::Operator;
}

/// The registry: one line per sink type. It declares the module and makes the variant of
/// [`SinkSpec`] (selected by `type` in the job spec's `[[sinks]]` tables).
macro_rules! sinks {
    ($($(#[$doc:meta])* $variant:ident($module:ident::$config:ident),)*) => {
        $(pub mod $module;)*

        /// One sink of a job, selected by `type` in the job spec's `[[sinks]]` tables.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case", tag = "type")]
        pub enum SinkSpec {
            $($(#[$doc])* $variant($module::$config),)*
        }

        impl SinkSpec {
            /// The sink's type name (`kafka`, `thingsboard`, …).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(SinkSpec::$variant(_) => <$module::$config as Sink>::KIND,)*
                }
            }

            /// Checks the sink's settings (ranges, combinations); the message names the key.
            pub fn validate(&self) -> Result<(), String> {
                match self {
                    $(SinkSpec::$variant(c) => c.validate(),)*
                }
            }

            fn attach_as<'s>(
                &self,
                id: &str,
                predictions: StreamVec<'s, Epoch, Prediction>,
                ctx: &SinkContext,
                job: &JobContext<'s>,
            ) {
                let worker = job.state.index();
                match self {
                    $(SinkSpec::$variant(c) => {
                        lifecycle(predictions, Pipeline, job, c.operator(id, ctx, worker));
                    })*
                }
            }
        }
    };
}

sinks! {
    /// A Kafka topic.
    Kafka(kafka::KafkaSinkConfig),
    /// Standard output.
    Stdout(stdout::StdoutSinkConfig),
    /// ThingsBoard's device HTTP API.
    Thingsboard(thingsboard::ThingsBoardSinkConfig),
    /// ThingsBoard's MQTT API (device or gateway).
    Mqtt(mqtt::MqttSinkConfig),
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
    /// The job's key groups (sinks snapshot undelivered output by them).
    pub key_groups: KeyGroups,
    /// The worker's exactly-once hub, when an output of the job is exactly-once.
    pub exactly_once: Option<std::rc::Rc<kafka::exactly_once::Hub>>,
    /// The worker's flag of a stop at a snapshot.
    pub stopped: Arc<AtomicBool>,
}

impl SinkContext {
    /// The one start-failure path of every sink: a sink that cannot start (bad settings,
    /// no tokens, no producer) logs why, records it as the job's failure and stops the job;
    /// its operator then passes records through to nothing while the job winds down.
    pub fn started<T, E: std::fmt::Display>(&self, id: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(t) => Some(t),
            Err(e) => {
                let msg = format!("cannot start sink {id}: {e}");
                tracing::error!(job = %self.job, "{msg}");
                self.failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(msg);
                self.shutdown
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                None
            }
        }
    }
}

impl SinkSpec {
    /// The sink's stable operator id: its place in the job's `[[sinks]]` list and its type.
    pub fn operator_id(&self, index: usize) -> String {
        format!("sink-{index}:{}", self.kind())
    }

    /// The files the sink reads (tokens, passwords, TLS material), by their setting's key.
    pub fn files(&self) -> Vec<(&'static str, &std::path::Path)> {
        let mut out: Vec<(&'static str, &std::path::Path)> = Vec::new();
        match self {
            SinkSpec::Thingsboard(c) => {
                out.extend(c.tokens_file.as_deref().map(|p| ("tokens-file", p)))
            }
            SinkSpec::Mqtt(c) => {
                out.extend(c.tokens_file.as_deref().map(|p| ("tokens-file", p)));
                out.extend(c.password_file.as_deref().map(|p| ("password-file", p)));
                if let Some(tls) = &c.tls {
                    out.push(("ca-file", tls.ca_file.as_path()));
                    out.extend(
                        tls.client_cert_file
                            .as_deref()
                            .map(|p| ("client-cert-file", p)),
                    );
                    out.extend(
                        tls.client_key_file
                            .as_deref()
                            .map(|p| ("client-key-file", p)),
                    );
                }
            }
            _ => {}
        }
        out
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
    spec.attach_as(&spec.operator_id(index), predictions, ctx, job);
}

/// Test helper: parses one `[[sinks]]` table, checks that it validates and survives a TOML
/// round trip, and returns it.
#[cfg(test)]
pub(crate) fn parse_valid(text: &str) -> SinkSpec {
    let spec: SinkSpec = toml::from_str(text).expect("parses");
    spec.validate().expect("valid");
    let back: SinkSpec = toml::from_str(&toml::to_string(&spec).expect("ser")).expect("de");
    assert_eq!(back, spec);
    spec
}
