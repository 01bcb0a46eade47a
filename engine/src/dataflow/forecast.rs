//! The forecast operator: every sequence completed in an epoch — all devices whose window
//! closed at the same watermark on this worker — goes through one batched forward pass.

use super::Epoch;
use crate::metrics;
use flowcast_operators::event_time::to_secs;
use flowcast_operators::sequence::Sequence;
use flowcast_operators::{ObservedValues, PredictedValues, Prediction};
use std::collections::BTreeMap;
use std::time::Instant;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

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

/// Forecasts on a stream of sequences.
pub trait Forecast<'s> {
    /// Runs `predictor` (made once per worker by `make`) on each epoch's sequences, in
    /// batches of at most `max_batch`; `window_ms` is the window length.
    fn forecast<P, F>(
        self,
        job: &str,
        make: F,
        max_batch: usize,
        window_ms: i64,
    ) -> StreamVec<'s, Epoch, Prediction>
    where
        P: Predictor + 'static,
        F: FnOnce() -> P;
}

impl<'s> Forecast<'s> for StreamVec<'s, Epoch, Sequence> {
    fn forecast<P, F>(
        self,
        job: &str,
        make: F,
        max_batch: usize,
        window_ms: i64,
    ) -> StreamVec<'s, Epoch, Prediction>
    where
        P: Predictor + 'static,
        F: FnOnce() -> P,
    {
        let index = self.scope().index().to_string();
        let job = job.to_owned();
        let mut predictor = make();
        self.unary_frontier(Pipeline, "Forecast", move |_cap, _info| {
            let mut stash: BTreeMap<Epoch, (Capability<Epoch>, Vec<Sequence>)> = BTreeMap::new();
            let labels = [("job", job.as_str()), ("operator", "forecast"), ("worker", index.as_str())];
            let made = metrics::counter("flowcast_predictions_total", "Forecasts made", &labels);
            let errors = metrics::counter("flowcast_forecast_errors_total", "Batches the model failed on", &labels);
            let micros = metrics::counter("flowcast_inference_micros_total", "Time spent in the model", &labels);
            let batches = metrics::counter("flowcast_inference_batches_total", "Forward passes", &labels);
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    if let Some(t) = cap.least().copied() {
                        stash.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new())).1.append(data);
                    }
                });
                while let Some((&t, _)) = stash.first_key_value() {
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let Some((_, (cap, seqs))) = stash.pop_first() else { break };
                    let mut session = output.session(&cap);
                    for chunk in seqs.chunks(max_batch.max(1)) {
                        let started = Instant::now();
                        let result = predictor.predict(chunk);
                        micros.add(started.elapsed().as_micros() as u64);
                        batches.inc();
                        match result {
                            Ok(preds) if preds.len() == chunk.len() => {
                                made.add(chunk.len() as u64);
                                let id = predictor.model_id();
                                session.give_iterator(chunk.iter().zip(preds).map(|(s, p)| prediction(s, p, window_ms, id)));
                            }
                            Ok(preds) => {
                                errors.inc();
                                tracing::error!(job = %job, "model returned {} forecasts for {} sequences", preds.len(), chunk.len());
                            }
                            Err(e) => {
                                errors.inc();
                                tracing::error!(job = %job, "model failed on a batch of {}: {e}", chunk.len());
                            }
                        }
                    }
                }
            }
        })
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
