//! Keyed state stays bounded on the real broker: 100 000 distinct device ids arrive once
//! each and fall silent while three clock devices (one per partition) carry event time on;
//! once the job watermark is a state TTL past them every one is evicted. With a device cap
//! the job holds no more than the cap and dead-letters (and counts) the rest.

use flowcast_engine::job::JobSpec;
use flowcast_engine::kafka::partitioner::murmur2;
use flowcast_engine::metrics;
use flowcast_engine::runtime::{self, Execution};
use flowcast_tests::job::TestJob;
use flowcast_tests::{kafka, wait};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CHURN: usize = 100_000;

/// Keyed Kafka records.
type Records = Vec<(Option<String>, Vec<u8>)>;
const T0: f64 = 1_700_000_000.0;

fn reading(device: &str, time: f64) -> (Option<String>, Vec<u8>) {
    let v =
        serde_json::json!({"time": time, "temperature": 21.5, "humidity": 45.0, "device": device});
    (
        Some(device.to_owned()),
        serde_json::to_vec(&v).expect("json"),
    )
}

/// One clock device per partition of a 3-partition topic.
fn clocks() -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        let name = format!("clock-{i}");
        let p = (murmur2(name.as_bytes()) & 0x7fff_ffff) as usize % 3;
        found[p].get_or_insert(name);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found.into_iter().flatten().collect()
}

/// The clocks' first readings, then churn devices every 10 ms of event time (1 000 s in
/// all) and the clocks every minute for 3 h, in event-time order.
fn input() -> (Records, Records) {
    let first = clocks().iter().map(|c| reading(c, T0)).collect();
    let mut timed: Vec<(f64, String)> = (0..CHURN)
        .map(|i| (T0 + i as f64 * 0.01, format!("churn-{i}")))
        .collect();
    for c in clocks() {
        timed.extend((1..=180).map(|m| (T0 + f64::from(m) * 60.0, c.clone())));
    }
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    (first, timed.iter().map(|(t, d)| reading(d, *t)).collect())
}

struct Running {
    name: String,
    shutdown: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<anyhow::Result<runtime::RunSummary>>,
}

fn start(brokers: &str, topic: &str, state: &str) -> (Running, TestJob) {
    let mut job = TestJob::new("bounds", brokers, topic);
    job.state = state.to_owned();
    job.create_outputs();
    let spec = JobSpec::parse(&job.toml(), Path::new("test.toml")).expect("spec");
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&shutdown);
    let handle = std::thread::spawn(move || runtime::run(&spec, &Execution::threads(2), flag));
    (
        Running {
            name: job.name.clone(),
            shutdown,
            handle,
        },
        job,
    )
}

impl Running {
    fn stop(self) -> runtime::RunSummary {
        self.shutdown.store(true, Ordering::SeqCst);
        self.handle
            .join()
            .expect("job thread")
            .expect("job stops cleanly")
    }
}

/// Runs a job with the `[state]` table `state` on a fresh topic: the clocks' first
/// readings are read (and so admitted) before the rest is produced. Returns the job and
/// the number of records.
fn run_on_input(brokers: &str, state: &str) -> (Running, TestJob, usize) {
    let topic = flowcast_tests::unique_topic("DHT11-churn");
    kafka::create_topic(brokers, &topic, 3);
    let (first, rest) = input();
    kafka::produce(brokers, &topic, &first);
    let (run, job) = start(brokers, &topic, state);
    let name = run.name.clone();
    wait::until(
        "the clocks' first readings read",
        Duration::from_secs(60),
        || metrics::total("flowcast_source_records_total", &name) >= first.len() as u64,
    );
    kafka::produce(brokers, &topic, &rest);
    let n = first.len() + rest.len();
    wait::until(
        "the job to read the input",
        Duration::from_secs(180),
        || metrics::total("flowcast_source_records_total", &name) >= n as u64,
    );
    (run, job, n)
}

#[test]
fn silent_devices_are_evicted_after_the_state_ttl() {
    let brokers = flowcast_tests::brokers();
    let (run, _, n) = run_on_input(&brokers, "ttl = \"1h\"");
    let name = run.name.clone();
    // The clocks carry the watermark 3 h past the churn: every churn device is evicted
    // exactly once, and only the clocks remain.
    wait::until(
        "every churn device evicted",
        Duration::from_secs(60),
        || metrics::total("flowcast_state_expired_devices_total", &name) >= CHURN as u64,
    );
    wait::until(
        "keyed state back to the clocks",
        Duration::from_secs(60),
        || metrics::total("flowcast_sequence_keyed_devices", &name) == 3,
    );
    let summary = run.stop();
    assert_eq!(summary.records, n as u64);
    assert_eq!(
        metrics::total("flowcast_state_expired_devices_total", &name),
        CHURN as u64,
        "each churn device evicted once, the clocks never"
    );
}

#[test]
fn past_the_device_cap_readings_are_dead_lettered_and_counted() {
    let brokers = flowcast_tests::brokers();
    let (run, job, _) = run_on_input(&brokers, "ttl = \"1h\"\nmax-devices = 1000");
    let name = run.name.clone();
    // 1 000 over 128 key groups: 8 places per group, 1 024 in all, 3 of them the clocks'
    // (admitted first). The churn devices arrive within 1 000 s, far less than the TTL,
    // so no place frees up meanwhile: exactly 1 021 are admitted, the rest refused.
    let cap = 8 * 128;
    let refused_churn = CHURN - (cap - 3);
    let refused = || {
        kafka::read_all(&brokers, &format!("{}-dead", job.name))
            .into_iter()
            .filter(|r| {
                r.headers.get("flowcast.reason").map(String::as_str) == Some("device_limit")
            })
            .count()
    };
    wait::until(
        "the refused readings in the dead-letter topic",
        Duration::from_secs(60),
        || refused() >= refused_churn,
    );
    assert!(
        metrics::total("flowcast_sequence_keyed_devices", &name) <= cap as u64,
        "no more devices than the cap hold state"
    );
    wait::until(
        "the admitted churn devices to expire",
        Duration::from_secs(60),
        || metrics::total("flowcast_state_admitted_devices", &name) == 3,
    );
    run.stop();
    let dead = refused();
    let counted = metrics::total("flowcast_source_dead_letter_records_total", &name);
    assert_eq!(
        dead as u64, counted,
        "every refusal counted once and dead-lettered once"
    );
    assert_eq!(
        dead, refused_churn,
        "all but the admitted devices' readings refused"
    );
}
