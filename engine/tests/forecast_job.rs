//! The forecast job end to end on the real Kafka cluster, against the reference
//! implementation (`flowcast_tests::reference`, which shares no operator code with the
//! engine): real sensor data plus injected bad records, produced to a 3-partition topic,
//! run bounded at 1, 2 and 4 worker threads, as 2 processes, and with the input shuffled
//! within the allowed out-of-orderness. Every run must give exactly the reference output.

#[path = "common/lstm.rs"]
mod lstm;
use flowcast_engine::job::JobSpec;
use flowcast_engine::runtime::{self, Execution};
use flowcast_tests::forecast::{as_input, params, recorded_input, spec_text, spec_with_model};
use flowcast_tests::kafka;
use flowcast_tests::reference::{self, InputRecord};
use lstm::reference_lstm;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn check_outputs(brokers: &str, out: &str, expected: &reference::Output, what: &str) {
    flowcast_tests::forecast::check_outputs(brokers, &[out], expected, what);
}

fn run_in_process(brokers: &str, topic: &str, out: &str, workers: usize) {
    run_spec(&spec_text(brokers, topic, out), workers);
}

fn run_spec(text: &str, workers: usize) {
    let spec = JobSpec::parse(text, Path::new("test.toml")).expect("spec");
    runtime::run(
        &spec,
        &Execution::threads(workers),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("job runs");
}

fn prepare(shuffle: bool) -> (String, String, reference::Output) {
    let (brokers, topic, input) = produce_input(shuffle);
    let expected = reference::run(&input, &params(), &reference::persistence);
    assert!(
        expected.predictions.len() > 5000,
        "the input yields predictions"
    );
    assert!(expected.dead.len() >= 5, "the input has bad records");
    (brokers, topic, expected)
}

fn produce_input(shuffle: bool) -> (String, String, Vec<InputRecord>) {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11");
    kafka::create_topic(&brokers, &topic, 3);
    kafka::produce(&brokers, &topic, &recorded_input(shuffle));
    let input = as_input(&kafka::read_all(&brokers, &topic));
    (brokers, topic, input)
}

#[test]
fn job_matches_reference_at_1_2_and_4_workers() {
    let (brokers, topic, expected) = prepare(false);
    for workers in [1, 2, 4] {
        let out = flowcast_tests::unique_topic(&format!("w{workers}"));
        run_in_process(&brokers, &topic, &out, workers);
        check_outputs(&brokers, &out, &expected, &format!("{workers} workers"));
    }
}

#[test]
fn job_matches_reference_with_input_shuffled_within_out_of_orderness() {
    let (brokers, topic, expected) = prepare(true);
    let out = flowcast_tests::unique_topic("shuffled");
    run_in_process(&brokers, &topic, &out, 2);
    check_outputs(&brokers, &out, &expected, "shuffled, 2 workers");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn job_matches_reference_as_two_processes() {
    let (brokers, topic, expected) = prepare(false);
    let out = flowcast_tests::unique_topic("procs");
    let dir = std::env::temp_dir().join(&out);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let job = dir.join("job.toml");
    std::fs::write(&job, spec_text(&brokers, &topic, &out)).expect("write job");
    let hosts = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let children: Vec<_> = (0..2)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_flowcast"))
                .args([
                    "run",
                    job.to_str().expect("utf-8 path"),
                    "--workers",
                    "1",
                    "--processes",
                    "2",
                ])
                .args(["--process-index", &i.to_string(), "--hosts", &hosts])
                .spawn()
                .expect("spawn flowcast")
        })
        .collect();
    for mut c in children {
        let status = c.wait().expect("wait");
        assert!(status.success(), "a process failed: {status}");
    }
    check_outputs(&brokers, &out, &expected, "2 processes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn job_with_the_lstm_matches_reference() {
    let (brokers, topic, input) = produce_input(false);
    let expected = reference::run(&input, &params(), &reference_lstm);
    let out = flowcast_tests::unique_topic("lstm");
    // The guard off: every forecast is the model's (guard and accuracy: forecast_accuracy.rs).
    let model = format!(
        "kind = \"torchscript\"\nguard = \"off\"\npath = \"{}\"",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/dht11_lstm.pt")
            .display()
    );
    run_spec(&spec_with_model(&brokers, &topic, &out, &model), 2);
    check_outputs(&brokers, &out, &expected, "LSTM, 2 workers");
    // A forecast is not the persistence forecast: the model is really in the loop.
    let persistence = reference::run(&input, &params(), &reference::persistence);
    let differ = expected
        .predictions
        .iter()
        .filter(|(k, e)| (e.predicted[0] - persistence.predictions[*k].predicted[0]).abs() > 1e-3)
        .count();
    assert!(
        differ > expected.predictions.len() / 2,
        "the LSTM's forecasts differ from persistence"
    );
}
