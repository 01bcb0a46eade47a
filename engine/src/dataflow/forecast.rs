//! The forecast operator: every sequence completed in an epoch — all devices whose window
//! closed at the same watermark on this worker — goes through one batched forward pass.
//! It runs on the operator lifecycle, which hands it each epoch's sequences at once.

use super::Epoch;
use crate::lifecycle::{EpochContext, JobContext, Operator, lifecycle};
use crate::metrics;
use flowcast_operators::event_time::to_secs;
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

/// The forecast operator's logic: each epoch's sequences in batches through the model.
/// It holds no state (the model is configuration).
pub struct ForecastOperator<P> {
    job: String,
    predictor: P,
    max_batch: usize,
    window_ms: i64,
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
    /// Forecasts with `predictor` on worker `worker`, in batches of at most `max_batch`;
    /// `window_ms` is the window length.
    pub fn new(job: &str, predictor: P, max_batch: usize, window_ms: i64, worker: usize) -> Self {
        let index = worker.to_string();
        let labels = [
            ("job", job),
            ("operator", "forecast"),
            ("worker", index.as_str()),
        ];
        ForecastOperator {
            job: job.to_owned(),
            predictor,
            max_batch: max_batch.max(1),
            window_ms,
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
                    out.extend(
                        chunk
                            .iter()
                            .zip(preds)
                            .map(|(s, p)| prediction(s, p, window_ms, id)),
                    );
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
}

/// Forecasts on a stream of sequences.
pub trait Forecast<'s> {
    /// Runs `predictor` on each epoch's sequences, in batches of at most `max_batch`;
    /// `window_ms` is the window length.
    fn forecast<P: Predictor + 'static>(
        self,
        job: &str,
        predictor: P,
        max_batch: usize,
        window_ms: i64,
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Prediction>;
}

impl<'s> Forecast<'s> for StreamVec<'s, Epoch, Sequence> {
    fn forecast<P: Predictor + 'static>(
        self,
        job: &str,
        predictor: P,
        max_batch: usize,
        window_ms: i64,
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Prediction> {
        let op = ForecastOperator::new(job, predictor, max_batch, window_ms, ctx.state.index());
        lifecycle(self, Pipeline, ctx, op)
    }
}

fn prediction(s: &Sequence, p: [f64; 2], window_ms: i64, model: &str) -> Prediction {
    Prediction {
        device: s.device.clone(),
        window_start: to_secs(s.window_start),
        window_end: to_secs(s.window_end),
        observed: ObservedValues {
            temperature: s.observed[0],
            humidity: s.observed[1],
        },
        predicted: PredictedValues {
            temperature: p[0],
            humidity: p[1],
            for_window_end: to_secs(s.window_end + window_ms),
        },
        model: model.to_owned(),
    }
}
