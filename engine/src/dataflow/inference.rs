//! The model's half of the forecast: each complete epoch's sequences go through the
//! predictor in batches, and each sequence leaves with its forecast.
//!
//! A forward pass of the LSTM takes ~11 ms per 1 024 sequences on one core. Run on the
//! worker, it stalls everything else the worker runs — its sources, windows and
//! sequences — for that long. With [`InferenceConfig::on_thread`] the batches run on a
//! thread of the worker's own instead (Flink's ordered async I/O, one request in flight
//! per batch): the worker hands an epoch's batches over and goes on with later epochs;
//! the thread wakes the operator when a batch is done.
//!
//! Checkpoints need nothing new. The stage holds epoch `e`'s capability until the last of
//! `e`'s batches is back and emitted, so the frontier — the snapshot barrier — cannot pass
//! `e` before `e`'s forecasts have reached the (keyed, snapshotted) forecast operator: what
//! is in flight is never part of a snapshot, and a stop-with-snapshot at `e` finds `e`'s
//! forecasts done. Results leave in input order (one thread, a FIFO per worker), so the
//! output does not depend on how long a forward pass took.
//!
//! What runs ahead while the thread works is bounded by the sources' gate, which the job
//! graph places after this stage when it runs on a thread (see
//! [`super::source::kafka_source`]).

use super::Epoch;
use super::forecast::Predictor;
use crate::lifecycle::JobContext;
use crate::lifecycle::adapter::busy_seconds;
use crate::metrics;
use flowcast_operators::sequence::Sequence;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::Instant;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator as _;
use timely::scheduling::SyncActivator;

/// A predictor that can move to the inference thread.
pub type BoxedPredictor = Box<dyn Predictor + Send>;

impl Predictor for BoxedPredictor {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn predict(&mut self, batch: &[Sequence]) -> Result<Vec<[f64; 2]>, String> {
        (**self).predict(batch)
    }
}

/// A sequence with the model's forecast of its next window (`[temperature, humidity]`,
/// before the accuracy guard and the clamp).
#[derive(Debug, Clone, PartialEq)]
pub struct Forecasted {
    /// The sequence.
    pub sequence: Sequence,
    /// The model's forecast.
    pub predicted: [f64; 2],
}

/// How the inference stage runs.
#[derive(Debug, Clone, Copy)]
pub struct InferenceConfig {
    /// Largest batch per forward pass.
    pub max_batch: usize,
    /// Run the forward passes on a thread of their own (a model with real cost), or
    /// on the worker (the persistence baseline).
    pub on_thread: bool,
}

/// One batch of an epoch, sent to the predictor.
struct Batch {
    epoch: Epoch,
    sequences: Vec<Sequence>,
}

/// A batch with the predictor's answer and the time it took.
struct Done {
    epoch: Epoch,
    sequences: Vec<Sequence>,
    result: Result<Vec<[f64; 2]>, String>,
    micros: u64,
}

fn run(predictor: &mut BoxedPredictor, batch: Batch) -> Done {
    let started = Instant::now();
    let result = predictor.predict(&batch.sequences);
    Done {
        epoch: batch.epoch,
        sequences: batch.sequences,
        result,
        micros: started.elapsed().as_micros() as u64,
    }
}

/// Where forward passes run.
enum Runner {
    /// On the worker, at once.
    Inline {
        predictor: BoxedPredictor,
        done: VecDeque<Done>,
    },
    /// On a thread of the worker's own.
    Thread {
        to: Option<Sender<Batch>>,
        from: Receiver<Done>,
        thread: Option<JoinHandle<()>>,
    },
}

impl Runner {
    fn thread(
        mut predictor: BoxedPredictor,
        wake: SyncActivator,
        name: String,
    ) -> std::io::Result<Self> {
        let (to, batches) = channel::<Batch>();
        let (done, from) = channel::<Done>();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            // Locals drop in reverse order, also when the predictor panics: `done` closes
            // first, then the worker is woken to find it closed.
            let wake = WakeOnExit(wake);
            let done = done;
            for batch in batches {
                if done.send(run(&mut predictor, batch)).is_err() {
                    return;
                }
                // The worker may be parked: wake it to emit the batch.
                let _ = wake.0.activate();
            }
        })?;
        Ok(Runner::Thread {
            to: Some(to),
            from,
            thread: Some(thread),
        })
    }

    /// Hands `batch` to the predictor; false when the thread is gone.
    fn submit(&mut self, batch: Batch) -> bool {
        match self {
            Runner::Inline { predictor, done } => {
                done.push_back(run(predictor, batch));
                true
            }
            Runner::Thread { to, .. } => to.as_ref().is_some_and(|t| t.send(batch).is_ok()),
        }
    }

    /// The next finished batch, if any; `Err` when the thread is gone.
    fn next_done(&mut self) -> Result<Option<Done>, ()> {
        match self {
            Runner::Inline { done, .. } => Ok(done.pop_front()),
            Runner::Thread { from, .. } => match from.try_recv() {
                Ok(d) => Ok(Some(d)),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Disconnected) => Err(()),
            },
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Runner::Thread { to, thread, .. } = self {
            // Closing the channel ends the thread after its current batch; joined, the
            // model is freed before the worker goes on (and before the process exits).
            to.take();
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Wakes the operator when the inference thread ends, however it ends.
struct WakeOnExit(SyncActivator);

impl Drop for WakeOnExit {
    fn drop(&mut self) {
        let _ = self.0.activate();
    }
}

/// An epoch whose batches are with the predictor.
struct InFlight {
    cap: Capability<Epoch>,
    batches: usize,
}

/// Forecasts on a stream of sequences.
pub trait Infer<'s> {
    /// Runs `predictor` on each complete epoch's sequences, in batches of at most
    /// `config.max_batch`, on the worker or on a thread of its own. The stream stays on
    /// its worker (keyed by device as it came).
    fn infer(
        self,
        predictor: BoxedPredictor,
        config: InferenceConfig,
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Forecasted>;
}

impl<'s> Infer<'s> for StreamVec<'s, Epoch, Sequence> {
    fn infer(
        self,
        predictor: BoxedPredictor,
        config: InferenceConfig,
        ctx: &JobContext<'s>,
    ) -> StreamVec<'s, Epoch, Forecasted> {
        let state = Rc::clone(&ctx.state);
        let job = state.job().to_owned();
        let worker = state.index();
        let index = worker.to_string();
        let labels = [
            ("job", job.as_str()),
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
        let made = metrics::counter(
            "flowcast_forecast_predictions_total",
            "Forecasts made",
            &labels,
        );
        let errors = metrics::counter(
            "flowcast_forecast_failed_batches_total",
            "Batches the model failed on",
            &labels,
        );
        let micros = metrics::counter(
            "flowcast_inference_micros_total",
            "Time spent in the model",
            &labels,
        );
        let batches = metrics::counter(
            "flowcast_forecast_inference_batches_total",
            "Forward passes",
            &labels,
        );
        let busy = busy_seconds(&job, "inference", worker);
        let max_batch = config.max_batch.max(1);
        let scope = self.scope();
        self.unary_frontier(Pipeline, "Inference", move |_cap, info| {
            let runner = if config.on_thread {
                let wake = scope.worker().sync_activator_for(info.address.to_vec());
                Runner::thread(predictor, wake, format!("inference-{worker}"))
            } else {
                Ok(Runner::Inline {
                    predictor,
                    done: VecDeque::new(),
                })
            };
            let mut runner = match runner {
                Ok(r) => Some(r),
                Err(e) => {
                    state.fail(format!("cannot start the inference thread: {e}"));
                    state.stop_sources();
                    None
                }
            };
            let mut stash: BTreeMap<Epoch, (Capability<Epoch>, Vec<Sequence>)> = BTreeMap::new();
            let mut in_flight: BTreeMap<Epoch, InFlight> = BTreeMap::new();
            move |(input, frontier), output| {
                let _busy = busy.start();
                input.for_each(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    stash
                        .entry(t)
                        .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()))
                        .1
                        .append(data);
                });
                let Some(r) = runner.as_mut() else {
                    // The input has ended and everything is out, or the job is failing
                    // (no thread): hold no epoch.
                    stash.clear();
                    in_flight.clear();
                    return;
                };
                let mut lost = false;
                // Hand over every complete epoch, in order, in batches.
                while let Some((&t, _)) = stash.first_key_value() {
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let Some((_, (cap, mut seqs))) = stash.pop_first() else {
                        break;
                    };
                    let mut n = 0;
                    while !seqs.is_empty() {
                        let rest = seqs.split_off(seqs.len().min(max_batch));
                        let batch = std::mem::replace(&mut seqs, rest);
                        lost |= !r.submit(Batch {
                            epoch: t,
                            sequences: batch,
                        });
                        n += 1;
                    }
                    if n > 0 {
                        in_flight.insert(t, InFlight { cap, batches: n });
                    }
                }
                // Emit what is back, at its epoch; an epoch's capability goes with its
                // last batch.
                loop {
                    let d = match r.next_done() {
                        Ok(Some(d)) => d,
                        Ok(None) => break,
                        Err(()) => {
                            lost = true;
                            break;
                        }
                    };
                    micros.add(d.micros);
                    batches.inc();
                    let Some(f) = in_flight.get_mut(&d.epoch) else {
                        continue;
                    };
                    match d.result {
                        Ok(preds) if preds.len() == d.sequences.len() => {
                            made.add(preds.len() as u64);
                            output.session(&f.cap).give_iterator(
                                d.sequences.into_iter().zip(preds).map(|(sequence, predicted)| {
                                    Forecasted {
                                        sequence,
                                        predicted,
                                    }
                                }),
                            );
                        }
                        Ok(preds) => {
                            errors.inc();
                            tracing::error!(job = %job, "model returned {} forecasts for {} sequences", preds.len(), d.sequences.len());
                        }
                        Err(e) => {
                            errors.inc();
                            tracing::error!(job = %job, "model failed on a batch of {}: {e}", d.sequences.len());
                        }
                    }
                    f.batches -= 1;
                    if f.batches == 0 {
                        in_flight.remove(&d.epoch);
                    }
                }
                if lost {
                    // The thread ended (it never does while the channel is open, unless
                    // the predictor panicked): nothing can forecast these epochs.
                    state.fail(format!(
                        "the inference thread of worker {worker} stopped with {} epochs in flight",
                        in_flight.len()
                    ));
                    state.stop_sources();
                    runner = None;
                    stash.clear();
                    in_flight.clear();
                } else if frontier.is_empty() && stash.is_empty() && in_flight.is_empty() {
                    // The input has ended and everything is out: free the model.
                    runner = None;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
