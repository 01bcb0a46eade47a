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
mod tests {
    use super::*;
    use crate::lifecycle::state::WorkerStateConfig;
    use crate::lifecycle::{KeyGroups, Signal, WorkerState};
    use std::sync::mpsc::{Sender, sync_channel};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use timely::dataflow::ProbeHandle;
    use timely::dataflow::operators::probe::Probe;
    use timely::dataflow::operators::{Input, Inspect};

    /// How long a test waits for a condition before it fails.
    const PATIENCE: Duration = Duration::from_secs(30);

    fn seq(device: &str, temperature: f64) -> Sequence {
        Sequence {
            device: device.into(),
            window_start: 0,
            window_end: 1_800_000,
            observed: [temperature, 40.0],
            values: vec![[temperature as f32, 40.0]; 3],
        }
    }

    /// Forecasts temperature + 1; a batch with device `fail` fails, one with `panic`
    /// panics. With `hold`, each batch first reports its size and then waits to be let go.
    struct Model {
        hold: Option<(Sender<usize>, Receiver<()>)>,
    }

    impl Predictor for Model {
        fn model_id(&self) -> &str {
            "plus-one"
        }
        fn predict(&mut self, batch: &[Sequence]) -> Result<Vec<[f64; 2]>, String> {
            if let Some((started, go)) = &self.hold {
                started.send(batch.len()).map_err(|e| e.to_string())?;
                go.recv_timeout(PATIENCE).map_err(|e| e.to_string())?;
            }
            if batch.iter().any(|s| s.device == "panic") {
                panic!("the model panicked");
            }
            if batch.iter().any(|s| s.device == "fail") {
                return Err("refused".into());
            }
            Ok(batch.iter().map(|s| [s.observed[0] + 1.0, 40.0]).collect())
        }
    }

    fn state(failure: &Arc<Mutex<Option<String>>>) -> Rc<WorkerState> {
        Rc::new(WorkerState::new(WorkerStateConfig {
            job: "inference-test".into(),
            index: 0,
            workers: 1,
            partitions: 0,
            key_groups: KeyGroups::new(16).expect("groups"),
            restore: None,
            state_dir: None,
            checkpoints: None,
            failure: Arc::clone(failure),
        }))
    }

    /// Steps `worker` until `done` holds; fails the test after [`PATIENCE`].
    fn step_until(worker: &mut timely::worker::Worker, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            worker.step_or_park(Some(Duration::from_millis(10)));
        }
    }

    /// Runs `epochs` (each a list of sequences) through the stage in batches of 2 and
    /// returns what it emitted, with its epoch, and the job's failure.
    fn run(
        on_thread: bool,
        epochs: Vec<Vec<Sequence>>,
    ) -> (Vec<(Epoch, String, f64)>, Option<String>) {
        let failure = Arc::new(Mutex::new(None));
        let out = Arc::new(Mutex::new(Vec::new()));
        let (fail, got) = (Arc::clone(&failure), Arc::clone(&out));
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut input, signals) = worker.dataflow::<Epoch, _, _>(|scope| {
                let (input, seqs) = scope.new_input::<Vec<Sequence>>();
                let (signals_in, signals) = scope.new_input::<Vec<Signal>>();
                let ctx = JobContext {
                    signals,
                    state: state(&fail),
                };
                let model = Box::new(Model { hold: None }) as BoxedPredictor;
                let config = InferenceConfig {
                    max_batch: 2,
                    on_thread,
                };
                let got = Arc::clone(&got);
                seqs.infer(model, config, &ctx)
                    .inspect_core(move |event| {
                        if let Ok((stamp, data)) = event {
                            let t = stamp.iter().copied().min().unwrap_or_default();
                            got.lock().expect("lock").extend(
                                data.iter()
                                    .map(|f| (t, f.sequence.device.clone(), f.predicted[0])),
                            );
                        }
                    })
                    .probe_with(&probe);
                (input, signals_in)
            });
            signals.close();
            let n = epochs.len() as Epoch;
            for (t, seqs) in epochs.into_iter().enumerate() {
                input.advance_to(t as Epoch);
                for s in seqs {
                    input.send(s);
                }
            }
            input.advance_to(n);
            step_until(worker, "every epoch", || !probe.less_than(&n));
            input.close();
            while worker.step() {}
        });
        let emitted = out.lock().expect("lock").clone();
        let failed = failure.lock().expect("lock").clone();
        (emitted, failed)
    }

    #[test]
    fn forecasts_leave_in_input_order_at_their_epoch_on_the_worker_and_on_a_thread() {
        let epochs = vec![
            vec![seq("a", 20.0), seq("b", 21.0), seq("c", 22.0)],
            vec![],
            vec![seq("d", 23.0), seq("a", 24.0)],
        ];
        let want = vec![
            (0, "a".to_string(), 21.0),
            (0, "b".to_string(), 22.0),
            (0, "c".to_string(), 23.0),
            (2, "d".to_string(), 24.0),
            (2, "a".to_string(), 25.0),
        ];
        for on_thread in [false, true] {
            let (got, failed) = run(on_thread, epochs.clone());
            assert_eq!(got, want, "on_thread: {on_thread}");
            assert_eq!(failed, None);
        }
    }

    #[test]
    fn a_failed_batch_is_left_out_and_its_epoch_completes() {
        // Batches of 2: [a, fail] fails, [b] is forecast.
        let (got, failed) = run(
            true,
            vec![vec![seq("a", 20.0), seq("fail", 1.0), seq("b", 21.0)]],
        );
        assert_eq!(got, vec![(0, "b".to_string(), 22.0)]);
        assert_eq!(
            failed, None,
            "a failed batch is logged and counted, not fatal"
        );
    }

    #[test]
    fn a_panicked_model_fails_the_job_and_holds_no_epoch() {
        let (got, failed) = run(true, vec![vec![seq("panic", 20.0)], vec![seq("a", 20.0)]]);
        assert!(got.is_empty(), "{got:?}");
        let failed = failed.expect("the job fails");
        assert!(failed.contains("inference thread"), "{failed}");
    }

    /// The point of the thread: while a forward pass runs, the worker runs the rest of the
    /// dataflow (here a second input and its probe), and the stage holds the epoch of the
    /// batch in flight — the frontier, the snapshot barrier, waits for it.
    #[test]
    fn the_worker_goes_on_while_a_forward_pass_runs_and_the_epoch_waits_for_it() {
        let failure = Arc::new(Mutex::new(None));
        let out = Arc::new(Mutex::new(Vec::new()));
        let (fail, got) = (Arc::clone(&failure), Arc::clone(&out));
        timely::execute_directly(move |worker| {
            let (started_tx, started) = channel();
            let (go, go_rx) = sync_channel(4);
            let (probe, other_probe) = (ProbeHandle::new(), ProbeHandle::new());
            let (mut input, mut other, signals) = worker.dataflow::<Epoch, _, _>(|scope| {
                let (input, seqs) = scope.new_input::<Vec<Sequence>>();
                let (other_in, others) = scope.new_input::<Vec<u64>>();
                let (signals_in, signals) = scope.new_input::<Vec<Signal>>();
                let ctx = JobContext {
                    signals,
                    state: state(&fail),
                };
                let model = Box::new(Model {
                    hold: Some((started_tx, go_rx)),
                }) as BoxedPredictor;
                let config = InferenceConfig {
                    max_batch: 2,
                    on_thread: true,
                };
                let got = Arc::clone(&got);
                seqs.infer(model, config, &ctx)
                    .inspect(move |f| got.lock().expect("lock").push(f.sequence.device.clone()))
                    .probe_with(&probe);
                others.probe_with(&other_probe);
                (input, other_in, signals_in)
            });
            signals.close();
            for d in ["a", "b", "c"] {
                input.send(seq(d, 20.0));
            }
            input.advance_to(1);
            let mut first = None;
            step_until(worker, "the first forward pass", || {
                first = first.or_else(|| started.try_recv().ok());
                first.is_some()
            });
            assert_eq!(first, Some(2), "batches of at most 2");
            // The forward pass is held. The worker still moves the other input along.
            for t in 0..5 {
                other.advance_to(t);
                other.send(t);
            }
            other.advance_to(5);
            step_until(worker, "the other input", || !other_probe.less_than(&5));
            assert!(probe.less_equal(&0), "epoch 0 is still in flight");
            assert!(got.lock().expect("lock").is_empty());
            // Let both batches go: epoch 0 completes with all three, in order.
            go.send(()).expect("go");
            go.send(()).expect("go");
            step_until(worker, "epoch 0", || !probe.less_equal(&0));
            assert_eq!(*got.lock().expect("lock"), ["a", "b", "c"]);
            input.close();
            other.close();
            while worker.step() {}
        });
        assert_eq!(*failure.lock().expect("lock"), None);
    }
}
