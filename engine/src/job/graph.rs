//! The DHT11 forecast job graph, built from a [`JobSpec`] with the operator API:
//!
//! ```text
//! kafka_source ─▶ split ─┬─ readings ─▶ tumbling_window ─┬─ windows ─▶ last_windows ─▶ forecast ─▶ sinks
//!                        ├─ marks ────────┘               └─ late ─▶ late-data topic
//!                        └─ dead letters ─▶ dead-letter topic
//! ```

use super::spec::{JobSpec, ModelSpec, SinkSpec, StartPosition, StopPosition};
use crate::dataflow::Epoch;
use crate::dataflow::forecast::{Forecast, Persistence, Predictor};
use crate::dataflow::sequence::LastWindows;
use crate::dataflow::source::{Bounds, KafkaSourceConfig, kafka_source, split};
use crate::dataflow::window::{TumblingWindow, WindowConfig};
use crate::kafka::ClientSettings;
use crate::sinks::kafka::KafkaSink;
use crate::sinks::{self, SinkContext};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use timely::dataflow::Scope;

/// Everything a worker needs to build its part of the job.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// The spec.
    pub spec: JobSpec,
    /// Partitions of the source topic (read once at start).
    pub partitions: i32,
    /// Set to cancel the job.
    pub shutdown: Arc<AtomicBool>,
    /// The first fatal error, if any.
    pub failure: Arc<Mutex<Option<String>>>,
}

/// A model loader: called once per worker.
pub type PredictorFactory = Arc<dyn Fn() -> Result<Box<dyn Predictor>, String> + Send + Sync>;

impl Predictor for Box<dyn Predictor> {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn predict(
        &mut self,
        batch: &[flowcast_operators::sequence::Sequence],
    ) -> Result<Vec<[f64; 2]>, String> {
        (**self).predict(batch)
    }
}

/// Builds the forecast job on `scope`.
pub fn build(scope: Scope<'_, Epoch>, plan: &JobPlan, predictor: &PredictorFactory) {
    let spec = &plan.spec;
    let settings = ClientSettings::new(&spec.source.brokers);
    let bounds = match (spec.source.start, spec.source.stop) {
        (StartPosition::Earliest, StopPosition::Latest) => Bounds::EarliestBounded,
        (StartPosition::Earliest, StopPosition::Never) => Bounds::EarliestUnbounded,
        (StartPosition::Latest, _) => Bounds::LatestUnbounded,
    };
    let events = kafka_source(
        scope,
        KafkaSourceConfig {
            job: spec.name.clone(),
            settings: settings.clone(),
            topic: spec.source.topic.clone(),
            partitions: plan.partitions,
            bounds,
            sensor: spec.source.sensor,
            out_of_orderness_ms: spec.event_time.out_of_orderness.as_millis() as i64,
            idle_timeout_ms: spec.event_time.idle_timeout.as_millis() as u64,
            epoch_interval: spec.epoch_interval,
            shutdown: Arc::clone(&plan.shutdown),
            failure: Arc::clone(&plan.failure),
        },
    );
    let (readings, dead, marks) = split(events);
    dead.kafka_sink(
        &spec.name,
        &settings,
        &spec.dead_letter_topic,
        Arc::clone(&plan.failure),
    );
    let window_ms = spec.window.length.as_millis() as i64;
    let (windows, late) = readings.tumbling_window(
        marks,
        WindowConfig {
            job: spec.name.clone(),
            partitions: plan.partitions,
            length_ms: window_ms,
            lateness_ms: spec.window.allowed_lateness.as_millis() as i64,
        },
    );
    late.kafka_sink(
        &spec.name,
        &settings,
        &spec.late_data_topic,
        Arc::clone(&plan.failure),
    );

    let max_batch = match &spec.model {
        ModelSpec::Off => {
            // The streaming part alone: each full sequence (its newest window and the mean
            // of its last N windows) goes to the Kafka sinks.
            let sequences = windows.last_windows(&spec.name, spec.sequence.length);
            for sink in &spec.sinks {
                if let SinkSpec::Kafka(k) = sink {
                    let s = k
                        .brokers
                        .as_ref()
                        .map_or_else(|| settings.clone(), ClientSettings::new);
                    sequences.clone().kafka_sink(
                        &spec.name,
                        &s,
                        &k.topic,
                        Arc::clone(&plan.failure),
                    );
                }
            }
            return;
        }
        ModelSpec::Torchscript { max_batch, .. } => *max_batch,
        ModelSpec::Persistence => 1024,
    };
    let sequences = windows.last_windows(&spec.name, spec.sequence.length);
    let failure = Arc::clone(&plan.failure);
    let factory = Arc::clone(predictor);
    let predictions = sequences.forecast(
        &spec.name,
        move || match factory() {
            Ok(p) => p,
            Err(e) => {
                failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e.clone());
                tracing::error!("cannot load the model: {e}; falling back to persistence");
                Box::new(Persistence) as Box<dyn Predictor>
            }
        },
        max_batch,
        window_ms,
    );
    let ctx = SinkContext {
        job: spec.name.clone(),
        kafka: settings.clone(),
        dead_letter_topic: spec.dead_letter_topic.clone(),
        failure: Arc::clone(&plan.failure),
        shutdown: Arc::clone(&plan.shutdown),
    };
    for sink in &spec.sinks {
        sinks::attach(sink, predictions.clone(), &ctx);
    }
}
