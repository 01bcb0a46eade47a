//! The operator lifecycle end to end: a job on the real Kafka cluster is stopped
//! mid-stream with a snapshot through the control stream; fresh jobs restored from it —
//! at the same worker count, at 1, at 3 and as 2 processes — read the rest of the input.
//! Each restored run's output together with the first run's must be exactly the
//! reference output (the uninterrupted run's, as `forecast_job.rs` checks): nothing lost,
//! nothing doubled, the same dead letters.

use flowcast_engine::job::JobSpec;
use flowcast_engine::lifecycle::JobControl;
use flowcast_engine::lifecycle::snapshot::{self, snapshot_dir};
use flowcast_engine::metrics;
use flowcast_engine::runtime::{self, Execution, RunOptions};
use flowcast_tests::forecast::{as_input, check_outputs, params, recorded_input, spec_text};
use flowcast_tests::{kafka, reference, wait};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The job spec: persistence model, reading `topic`, writing `{out}-*`; `stop` is
/// `never` (a stream) or `latest` (bounded).
fn spec(brokers: &str, topic: &str, out: &str, stop: &str) -> JobSpec {
    let text =
        spec_text(brokers, topic, out).replace("stop = \"latest\"", &format!("stop = \"{stop}\""));
    JobSpec::parse(&text, Path::new("test.toml")).expect("spec")
}

fn restore_in_process(spec: &JobSpec, workers: usize, from: &Path) {
    runtime::run_with(
        spec,
        &Execution::threads(workers),
        RunOptions {
            restore_from: Some(from.to_owned()),
            ..RunOptions::default()
        },
    )
    .expect("restored job runs");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn restore_as_two_processes(brokers: &str, topic: &str, out: &str, from: &Path) {
    let dir = std::env::temp_dir().join(out);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let job = dir.join("job.toml");
    let text = spec_text(brokers, topic, out);
    std::fs::write(&job, text).expect("write job");
    let hosts = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let children: Vec<_> = (0..2)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_flowcast"))
                .args(["run", job.to_str().expect("utf-8 path"), "--workers", "1"])
                .args(["--processes", "2", "--process-index", &i.to_string()])
                .args(["--hosts", &hosts])
                .args(["--restore-from", from.to_str().expect("utf-8 path")])
                .spawn()
                .expect("spawn flowcast")
        })
        .collect();
    for mut c in children {
        let status = c.wait().expect("wait");
        assert!(status.success(), "a restored process failed: {status}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Produces the first part of the input, runs the job on 2 workers until it has read
/// all of it, stops it with a snapshot, then produces the rest. Returns the snapshot's
/// directory and the first run's output prefix.
fn first_run(
    brokers: &str,
    topic: &str,
    part1: &[(Option<String>, Vec<u8>)],
    state: &Path,
) -> (PathBuf, String) {
    kafka::produce(brokers, topic, part1);
    let out = flowcast_tests::unique_topic("first");
    let job = spec(brokers, topic, &out, "never");
    let control = JobControl::new();
    let opts = RunOptions {
        control: Some(control.clone()),
        state_dir: Some(state.to_owned()),
        ..RunOptions::default()
    };
    let name = job.name.clone();
    let run = std::thread::spawn(move || runtime::run_with(&job, &Execution::threads(2), opts));
    wait::until(
        "the first run to read the first part of the input",
        Duration::from_secs(120),
        || metrics::total("flowcast_source_records_total", &name) >= part1.len() as u64,
    );
    let id = control.stop_with_snapshot();
    let summary = run
        .join()
        .expect("job thread")
        .expect("the first run stops cleanly");
    assert_eq!(
        summary.records,
        part1.len() as u64,
        "read the first part once"
    );
    (snapshot_dir(state, id), out)
}

#[test]
fn a_job_stopped_with_a_snapshot_continues_exactly_at_any_parallelism() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-snap");
    kafka::create_topic(&brokers, &topic, 3);
    let input = recorded_input(false);
    let cut = input.len() * 3 / 5;
    let state = tempfile::tempdir().expect("state dir");
    let (snap, first) = first_run(&brokers, &topic, &input[..cut], state.path());

    // The snapshot is mid-stream: every worker's file, open windows and sequences in
    // keyed state, source positions below the end of the input.
    let plan = snapshot::load(&snap).expect("a complete snapshot");
    assert_eq!(plan.workers, 2);
    assert_eq!(plan.key_groups.count(), 128);
    for op in ["window", "sequence", "forecast"] {
        let keyed = &plan.operators[op].keyed;
        assert!(!keyed.is_empty(), "{op} has keyed state");
    }
    let source = &plan.operators[&format!("source:{topic}")];
    assert_eq!(source.partitions.len(), 3, "every partition's position");
    let first_preds = kafka::read_all(&brokers, &format!("{first}-pred")).len();
    assert!(first_preds > 0, "the first run made predictions");

    kafka::produce(&brokers, &topic, &input[cut..]);
    let all = as_input(&kafka::read_all(&brokers, &topic));
    assert_eq!(all.len(), input.len());
    let expected = reference::run(&all, &params(), &reference::persistence);
    assert!(
        first_preds < expected.predictions.len(),
        "the snapshot was taken before the end: {first_preds} of {} predictions",
        expected.predictions.len()
    );

    for workers in [2, 1, 3] {
        let out = flowcast_tests::unique_topic(&format!("restored-w{workers}"));
        restore_in_process(&spec(&brokers, &topic, &out, "latest"), workers, &snap);
        check_outputs(
            &brokers,
            &[&first, &out],
            &expected,
            &format!("restored at {workers} workers"),
        );
    }
    let out = flowcast_tests::unique_topic("restored-procs");
    restore_as_two_processes(&brokers, &topic, &out, &snap);
    check_outputs(
        &brokers,
        &[&first, &out],
        &expected,
        "restored as 2 processes",
    );

    // State of an operator the job does not have is refused, unless dropping it is
    // allowed: a job reading another topic has no home for the source's positions.
    let other = flowcast_tests::unique_topic("DHT11-other");
    kafka::create_topic(&brokers, &other, 3);
    let moved = spec(
        &brokers,
        &other,
        &flowcast_tests::unique_topic("moved"),
        "latest",
    );
    let err = runtime::run_with(
        &moved,
        &Execution::threads(1),
        RunOptions {
            restore_from: Some(snap.clone()),
            ..RunOptions::default()
        },
    )
    .expect_err("orphaned state is refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("`source:{topic}`")) && msg.contains("--allow-non-restored-state"),
        "{msg}"
    );
    runtime::run_with(
        &moved,
        &Execution::threads(1),
        RunOptions {
            restore_from: Some(snap.clone()),
            allow_non_restored_state: true,
            shutdown: Arc::new(AtomicBool::new(false)),
            ..RunOptions::default()
        },
    )
    .expect("with --allow-non-restored-state the job starts");
}
