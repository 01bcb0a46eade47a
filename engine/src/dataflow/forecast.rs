//! The forecast operator. Every sequence completed in an epoch — all devices whose window
//! closed at the same watermark on this worker — goes through the model in batches
//! ([`super::inference`], on a thread of its own for the LSTM); this operator, on the
//! operator lifecycle, gets the forecasts back in order.
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
use super::inference::Forecasted;
use crate::lifecycle::{
    EpochContext, JobContext, KeyGroups, Operator, RestoredState, StateError, StateWriter,
    encode_groups, lifecycle,
};
use flowcast_operators::accuracy::{Accuracies, AccuracySettings, Outcome};
use flowcast_operators::event_time::{EventTime, MIN_WATERMARK, to_secs};
use flowcast_operators::sequence::Sequence;
use flowcast_operators::{ObservedValues, PredictedValues, Prediction};
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
    /// Window length, ms.
    pub window_ms: i64,
    /// Scoring, guard and clamp.
    pub accuracy: AccuracySettings,
    /// A device silent this long (event time, ms) leaves the accuracy state.
    pub ttl_ms: EventTime,
}

/// The forecast operator's logic: each model forecast through its device's accuracy
/// state (keyed), in the order the inference stage emits them.
pub struct ForecastOperator {
    model: String,
    window_ms: i64,
    accuracy: Accuracies,
    groups: KeyGroups,
    ttl_ms: EventTime,
    next_expiry: EventTime,
    scored_in_epoch: bool,
    quality: QualityMetrics,
}

impl std::fmt::Debug for ForecastOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForecastOperator")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl ForecastOperator {
    /// Scores and guards the forecasts of `model` (its artifact id) in job `job` on
    /// worker `worker` as `config` says; `groups` are the job's key groups.
    pub fn new(
        job: &str,
        model: &str,
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
        ForecastOperator {
            model: model.to_owned(),
            window_ms: config.window_ms,
            accuracy: Accuracies::new(config.accuracy, config.window_ms),
            groups,
            ttl_ms: config.ttl_ms,
            next_expiry: MIN_WATERMARK,
            scored_in_epoch: false,
            quality: QualityMetrics::new(&labels),
        }
    }
}

impl Operator for ForecastOperator {
    type In = Forecasted;
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

    fn on_records(&mut self, _: &EpochContext, fs: Vec<Forecasted>, out: &mut Vec<Prediction>) {
        for Forecasted {
            sequence: s,
            predicted,
        } in fs
        {
            let outcome = self
                .accuracy
                .step(&s.device, s.window_end, s.observed, predicted);
            self.quality.count(&outcome);
            self.scored_in_epoch |= outcome.scored;
            out.push(prediction(&s, outcome, self.window_ms, &self.model));
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

/// Scores and guards forecasts.
pub trait Forecast<'s> {
    /// Runs each model forecast of `model` (its artifact id) through its device's accuracy
    /// state as `config` says. The stream must be keyed by device (the output of
    /// [`super::inference::Infer::infer`] on the output of
    /// [`super::sequence::LastWindows::last_windows`]).
    fn forecast(
        self,
        job: &str,
        model: &str,
        config: ForecastConfig,
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Prediction>;
}

impl<'s> Forecast<'s> for StreamVec<'s, Epoch, Forecasted> {
    fn forecast(
        self,
        job: &str,
        model: &str,
        config: ForecastConfig,
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Prediction> {
        let groups = ctx.state.key_groups();
        let op = ForecastOperator::new(job, model, config, groups, ctx.state.index());
        // The forecasts are already on their key group's worker.
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
