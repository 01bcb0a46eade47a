//! The DHT11 forecast job graph, built from a [`JobSpec`] with the operator API:
//!
//! ```text
//! kafka_source ─▶ split ─┬─ readings ─▶ tumbling_window ─┬─ windows ─▶ last_windows ─▶ forecast ─▶ sinks
//!                        ├─ marks ─┐                      └─ late ─▶ late-data topic
//!                        ├─ progress ─▶ source positions (the source's state)
//!                        └─ dead letters ─▶ dead-letter topic
//! control ─────────────────────────┴─▶ signals, broadcast to every lifecycle operator
//! ```
//!
//! Every box after the source runs on the operator lifecycle ([`crate::lifecycle`]).

use super::spec::{GuardSpec, JobSpec, ModelSpec, SinkSpec, StartPosition, StopPosition};
use crate::dataflow::Epoch;
use crate::dataflow::forecast::{Forecast, ForecastConfig, Persistence, Predictor};
use crate::dataflow::inference::{BoxedPredictor, Infer, InferenceConfig};
use crate::dataflow::sequence::LastWindows;
use crate::dataflow::source::{
    Bounds, GATE_AHEAD, GATE_AHEAD_INFERENCE, KafkaSourceConfig, kafka_source, split,
};
use crate::dataflow::source_state::{SourcePositions, source_id, source_positions};
use crate::dataflow::window::{TumblingWindow, WindowConfig};
use crate::kafka::ClientSettings;
use crate::lifecycle::{JobContext, JobControl, Signal, WorkerState, control_stream};
use crate::sinks::kafka::exactly_once::Hub;
use crate::sinks::kafka::kafka_sink;
use crate::sinks::{self, SinkContext};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::core::Concat;
use timely::dataflow::operators::probe::Probe;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::{ProbeHandle, Scope};

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
pub type PredictorFactory = Arc<dyn Fn() -> Result<BoxedPredictor, String> + Send + Sync>;

/// Builds the forecast job on `scope`: `state` is the worker's state bookkeeping,
/// `control` feeds the control stream (pass it on one worker only).
pub fn build(
    scope: Scope<'_, Epoch>,
    plan: &JobPlan,
    predictor: &PredictorFactory,
    state: Rc<WorkerState>,
    control: Option<JobControl>,
) {
    let spec = &plan.spec;
    let settings = ClientSettings::new(&spec.source.brokers);
    let bounds = match (spec.source.start, spec.source.stop) {
        (StartPosition::Earliest, StopPosition::Latest) => Bounds::EarliestBounded,
        (StartPosition::Earliest, StopPosition::Never) => Bounds::EarliestUnbounded,
        (StartPosition::Latest, _) => Bounds::LatestUnbounded,
    };
    let restored = SourcePositions::restored(state.peek(&source_id(&spec.source.topic)))
        .unwrap_or_else(|e| {
            state.fail(format!("cannot restore the source's positions: {e}"));
            state.stop_sources();
            Default::default()
        });
    // The job's progress against the sources' gates them (see `kafka_source`): the window
    // operator's output, or, when the LSTM's forward passes run on a thread of their own
    // (`crate::dataflow::inference`), theirs.
    let on_thread = matches!(spec.model, ModelSpec::Torchscript { .. });
    let (sources_done, gate) = (ProbeHandle::new(), ProbeHandle::new());
    let events = kafka_source(
        scope,
        KafkaSourceConfig {
            job: spec.name.clone(),
            settings: settings.clone(),
            topic: spec.source.topic.clone(),
            partitions: plan.partitions,
            bounds,
            parse: spec.source.parse_options(),
            out_of_orderness_ms: spec.event_time.out_of_orderness.as_millis() as i64,
            idle_timeout_ms: spec.event_time.idle_timeout.as_millis() as u64,
            epoch_interval: spec.epoch_interval,
            gate_ahead: if on_thread {
                GATE_AHEAD_INFERENCE
            } else {
                GATE_AHEAD
            },
            shutdown: Arc::clone(&plan.shutdown),
            stop: state.stop_flag(),
            restored,
            failure: Arc::clone(&plan.failure),
        },
        (sources_done.clone(), gate.clone()),
    );
    let events = events.probe_with(&sources_done);
    let src = split(events);
    let control = control_stream(scope, control, sources_done, spec.epoch_interval);
    let signals = src
        .marks
        .map(Signal::Mark)
        .concat(control.map(Signal::Command))
        .broadcast();
    let ctx = JobContext { signals, state };
    let commits = spec.checkpoint.location.is_some().then_some(&settings);
    source_positions(src.progress, &spec.source.topic, commits, &ctx);
    let mut sink_ctx = SinkContext {
        job: spec.name.clone(),
        kafka: settings.clone(),
        dead_letter_topic: spec.dead_letter_topic.clone(),
        failure: Arc::clone(&plan.failure),
        shutdown: Arc::clone(&plan.shutdown),
        key_groups: ctx.state.key_groups(),
        exactly_once: None,
        stopped: ctx.state.stop_flag(),
    };
    if spec.exactly_once() {
        let hub = Hub::start(&sink_ctx, ctx.state.index());
        sink_ctx.exactly_once = sink_ctx.started("exactly-once committer", hub).map(Rc::new);
    }
    let window_ms = spec.window.length.as_millis() as i64;
    let ttl_ms = spec.state.ttl.as_millis() as i64;
    let (windows, late, refused) = src.readings.tumbling_window(
        WindowConfig {
            job: spec.name.clone(),
            length_ms: window_ms,
            lateness_ms: spec.window.allowed_lateness.as_millis() as i64,
            topic: spec.source.topic.clone(),
            ttl_ms,
            max_devices: spec.state.max_devices,
        },
        &ctx,
    );
    let windows = if on_thread {
        windows
    } else {
        windows.probe_with(&gate)
    };
    let dead_letters = (&settings, spec.dead_letter_topic.as_str());
    kafka_sink(
        src.dead.concat(refused),
        "dead-letters",
        dead_letters,
        spec.dead_letter_delivery,
        &sink_ctx,
        &ctx,
    );
    let late_data = (&settings, spec.late_data_topic.as_str());
    kafka_sink(
        late,
        "late-data",
        late_data,
        spec.late_data_delivery,
        &sink_ctx,
        &ctx,
    );
    let sequences =
        windows.last_windows(&spec.name, spec.sequence.length, (ttl_ms, window_ms), &ctx);

    let (max_batch, guard) = match &spec.model {
        ModelSpec::Off => {
            // The streaming part alone: each full sequence (its newest window and the mean
            // of its last N windows) goes to the Kafka sinks (the spec refuses others).
            for (i, sink) in spec.sinks.iter().enumerate() {
                if let SinkSpec::Kafka(k) = sink {
                    let to = (&k.settings(&settings), k.topic.as_str());
                    let id = sink.operator_id(i);
                    kafka_sink(sequences.clone(), &id, to, k.delivery, &sink_ctx, &ctx);
                }
            }
            return;
        }
        ModelSpec::Torchscript {
            max_batch, guard, ..
        } => (*max_batch, *guard),
        ModelSpec::Persistence => (1024, GuardSpec::default()),
    };
    let model = match predictor() {
        Ok(p) => p,
        Err(e) => {
            ctx.state.fail(format!("cannot load the model: {e}"));
            tracing::error!("falling back to persistence while the job stops");
            ctx.state.stop_sources();
            Box::new(Persistence) as BoxedPredictor
        }
    };
    let model_id = model.model_id().to_owned();
    let forecasts = sequences.infer(
        model,
        InferenceConfig {
            max_batch,
            on_thread,
        },
        &ctx,
    );
    // With forward passes on their own thread the worker runs ahead of them: the sources'
    // gate is their output then (see `kafka_source`).
    let forecasts = if on_thread {
        forecasts.probe_with(&gate)
    } else {
        forecasts
    };
    let config = ForecastConfig {
        window_ms,
        accuracy: guard.settings(spec.source.sensor),
        ttl_ms,
    };
    let predictions = forecasts.forecast(&spec.name, &model_id, config, &ctx);
    for (i, sink) in spec.sinks.iter().enumerate() {
        sinks::attach(i, sink, predictions.clone(), &sink_ctx, &ctx);
    }
}
