//! The forecast operator: every sequence completed in an epoch — all devices whose window
//! closed at the same watermark on this worker — goes through one batched forward pass.
//! It runs on the operator lifecycle, which hands it each epoch's sequences at once.
//!
//! Each forecast then passes the device's online accuracy state
//! ([`flowcast_operators::accuracy`]): the forecast made at the previous window is scored
//! against the window that just closed, the guard decides per feature whether the model
//! or persistence speaks, and the model's forecast is clamped to the sensor's range. That
//! state is keyed (the sequences arrive already partitioned by device, so the operator
//! keeps its input's partitioning) and is snapshotted per key group; it leaves with the
//! device after the state TTL.

use super::Epoch;
use super::forecast_quality::QualityMetrics;
use crate::lifecycle::{
    EpochContext, JobContext, KeyGroups, Operator, RestoredState, StateError, StateWriter,
    encode_groups, lifecycle,
};
use crate::metrics;
use flowcast_operators::accuracy::{Accuracies, AccuracySettings, Outcome};
use flowcast_operators::event_time::{EventTime, MIN_WATERMARK, to_secs};
use flowcast_operators::sequence::Sequence;
use flowcast_operators::{ObservedValues, PredictedValues, Prediction};
use std::time::Instant;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;

/// A model that forecasts the next window from a batch of sequences.
pub trait Predictor {
    /// The artifact id written into each prediction.
    fn model_id(&self) -> &str;
    /// One `[temperature, humidity]` forecast per sequence, in order.
    fn predict(&mut self, batch: &[Sequence]) -> Result<Vec<[f64; 2]>, String>;
}

/// Next window = last window: the persistence baseline.
#[derive(Debug, Default)]
pub struct Persistence;

impl Predictor for Persistence {
    fn model_id(&self) -> &str {
        "persistence"
    }
    fn predict(&mut self, batch: &[Sequence]) -> Result<Vec<[f64; 2]>, String> {
        Ok(batch.iter().map(|s| s.observed).collect())
    }
}

/// How the forecast operator runs.
#[derive(Debug, Clone, Copy)]
pub struct ForecastConfig {
    /// Largest batch per forward pass.
    pub max_batch: usize,
    /// Window length, ms.
    pub window_ms: i64,
    /// Scoring, guard and clamp.
    pub accuracy: AccuracySettings,
    /// A device silent this long (event time, ms) leaves the accuracy state.
    pub ttl_ms: EventTime,
}

/// The forecast operator's logic: each epoch's sequences in batches through the model,
/// then through each device's accuracy state (keyed).
pub struct ForecastOperator<P> {
    job: String,
    predictor: P,
    max_batch: usize,
    window_ms: i64,
    accuracy: Accuracies,
    groups: KeyGroups,
    ttl_ms: EventTime,
    next_expiry: EventTime,
    scored_in_epoch: bool,
    quality: QualityMetrics,
    made: metrics::Counter,
    errors: metrics::Counter,
    micros: metrics::Counter,
    batches: metrics::Counter,
}

impl<P> std::fmt::Debug for ForecastOperator<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForecastOperator")
            .field("job", &self.job)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl<P: Predictor> ForecastOperator<P> {
    /// Forecasts with `predictor` on worker `worker` as `config` says; `groups` are the
    /// job's key groups.
    pub fn new(
        job: &str,
        predictor: P,
        config: ForecastConfig,
        groups: KeyGroups,
        worker: usize,
    ) -> Self {
        let index = worker.to_string();
        let labels = [
            ("job", job),
            ("operator", "forecast"),
            ("worker", index.as_str()),
        ];
        // Which artifact this worker serves: logged, and exported as an info series (a
        // rollout — savepoint, restart with a new `[model] path` — changes it).
        let model = predictor.model_id().to_owned();
        if worker == 0 {
            tracing::info!(job, model = %model, "serving model {model}");
        }
        let mut info_labels = labels.to_vec();
        info_labels.push(("model", model.as_str()));
        metrics::gauge(
            "flowcast_forecast_model_info",
            "The model artifact the forecast operator serves (value 1; its id in `model`)",
            &info_labels,
        )
        .set(1);
        ForecastOperator {
            job: job.to_owned(),
            predictor,
            max_batch: config.max_batch.max(1),
            window_ms: config.window_ms,
            accuracy: Accuracies::new(config.accuracy, config.window_ms),
            groups,
            ttl_ms: config.ttl_ms,
            next_expiry: MIN_WATERMARK,
            scored_in_epoch: false,
            quality: QualityMetrics::new(&labels),
            made: metrics::counter(
                "flowcast_forecast_predictions_total",
                "Forecasts made",
                &labels,
            ),
            errors: metrics::counter(
                "flowcast_forecast_failed_batches_total",
                "Batches the model failed on",
                &labels,
            ),
            micros: metrics::counter(
                "flowcast_inference_micros_total",
                "Time spent in the model",
                &labels,
            ),
            batches: metrics::counter(
                "flowcast_forecast_inference_batches_total",
                "Forward passes",
                &labels,
            ),
        }
    }
}

impl<P: Predictor + 'static> Operator for ForecastOperator<P> {
    type In = Sequence;
    type Out = Prediction;

    fn id(&self) -> &str {
        "forecast"
    }

    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        for group in state.keyed::<Accuracies>() {
            self.accuracy
                .merge(group?.1)
                .map_err(|detail| StateError::Mismatch(format!("forecast: {detail}")))?;
        }
        self.quality.publish(&self.accuracy.standing());
        Ok(())
    }

    fn on_records(&mut self, _: &EpochContext, seqs: Vec<Sequence>, out: &mut Vec<Prediction>) {
        for chunk in seqs.chunks(self.max_batch) {
            let started = Instant::now();
            let result = self.predictor.predict(chunk);
            self.micros.add(started.elapsed().as_micros() as u64);
            self.batches.inc();
            match result {
                Ok(preds) if preds.len() == chunk.len() => {
                    self.made.add(chunk.len() as u64);
                    let id = self.predictor.model_id();
                    let window_ms = self.window_ms;
                    for (s, p) in chunk.iter().zip(preds) {
                        let outcome = self.accuracy.step(&s.device, s.window_end, s.observed, p);
                        self.quality.count(&outcome);
                        self.scored_in_epoch |= outcome.scored;
                        out.push(prediction(s, outcome, window_ms, id));
                    }
                }
                Ok(preds) => {
                    self.errors.inc();
                    tracing::error!(job = %self.job, "model returned {} forecasts for {} sequences", preds.len(), chunk.len());
                }
                Err(e) => {
                    self.errors.inc();
                    tracing::error!(job = %self.job, "model failed on a batch of {}: {e}", chunk.len());
                }
            }
        }
    }

    fn on_epoch_complete(&mut self, ctx: &EpochContext, _: &mut Vec<Prediction>) {
        let mut changed = std::mem::take(&mut self.scored_in_epoch);
        if ctx.watermark >= self.next_expiry && ctx.watermark > MIN_WATERMARK {
            let n = self
                .accuracy
                .expire(ctx.watermark.saturating_sub(self.ttl_ms));
            changed |= n > 0;
            self.next_expiry = ctx.watermark.saturating_add(self.window_ms.max(1));
        }
        if changed {
            self.quality.publish(&self.accuracy.standing());
        }
    }

    fn snapshot(
        &mut self,
        _: &EpochContext,
        state: &mut StateWriter<'_>,
    ) -> Result<(), StateError> {
        let frozen = self.accuracy.clone();
        let groups = self.groups;
        state.keyed_later(move || encode_groups(frozen.split_by(|d| groups.of(d))));
        Ok(())
    }
}

/// Forecasts on a stream of sequences.
pub trait Forecast<'s> {
    /// Runs `predictor` on each epoch's sequences as `config` says. The stream must be
    /// keyed by device (the output of [`super::sequence::LastWindows::last_windows`]).
    fn forecast<P: Predictor + 'static>(
        self,
        job: &str,
        predictor: P,
        config: ForecastConfig,
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Prediction>;
}

impl<'s> Forecast<'s> for StreamVec<'s, Epoch, Sequence> {
    fn forecast<P: Predictor + 'static>(
        self,
        job: &str,
        predictor: P,
        config: ForecastConfig,
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Prediction> {
        let groups = ctx.state.key_groups();
        let op = ForecastOperator::new(job, predictor, config, groups, ctx.state.index());
        // The sequences are already on their key group's worker.
        lifecycle(self, Pipeline, ctx, op)
    }
}

fn prediction(s: &Sequence, o: Outcome, window_ms: i64, model: &str) -> Prediction {
    Prediction {
        device: s.device.clone(),
        window_start: to_secs(s.window_start),
        window_end: to_secs(s.window_end),
        observed: ObservedValues {
            temperature: s.observed[0],
            humidity: s.observed[1],
        },
        predicted: PredictedValues {
            temperature: o.predicted[0],
            humidity: o.predicted[1],
            for_window_end: to_secs(s.window_end + window_ms),
        },
        model: model.to_owned(),
        served: o.served,
        accuracy: o.accuracy,
    }
}
