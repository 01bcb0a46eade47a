//! The inference stage in-process, without Kafka or LibTorch: order and epochs on the worker
//! and on the thread, failed and panicking models, and the worker going on while a forward
//! pass runs.

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
fn run(on_thread: bool, epochs: Vec<Vec<Sequence>>) -> (Vec<(Epoch, String, f64)>, Option<String>) {
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
