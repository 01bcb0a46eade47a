//! Event time on the real broker, with the job running as a stream: late and malformed
//! records all show up, counted, in the late-data and dead-letter topics (every input
//! record is accounted for), late records within the allowed lateness revise their
//! window, and an idle partition holds the watermark back only until the idle timeout.

use flowcast_engine::job::JobSpec;
use flowcast_engine::kafka::partitioner::partition_for_key;
use flowcast_engine::metrics;
use flowcast_engine::runtime::{self, Execution};
use flowcast_tests::job::TestJob;
use flowcast_tests::kafka::{self, Record};
use flowcast_tests::wait::poll_for;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BASE: f64 = 1_700_000_040.0 - 1_700_000_040.0 % 60.0;

/// One device name per partition `0..3` of a 3-partition topic.
fn device_on(partition: i32) -> String {
    (0..)
        .map(|i| format!("dev-{i}"))
        .find(|d| partition_for_key(d.as_bytes(), 3) == partition)
        .expect("some key hashes to each partition")
}

fn reading(device: &str, t: f64, temperature: f64) -> (Option<String>, Vec<u8>) {
    let v = serde_json::json!({"time": t, "temperature": temperature, "humidity": 40.0, "device": device});
    (
        Some(device.to_owned()),
        serde_json::to_vec(&v).expect("json"),
    )
}

struct RunningJob {
    name: String,
    shutdown: Arc<AtomicBool>,
    handle: Option<JoinHandle<anyhow::Result<runtime::RunSummary>>>,
}

impl RunningJob {
    fn start(brokers: &str, topic: &str, idle_timeout: &'static str) -> Self {
        Self::start_on(brokers, topic, idle_timeout, 2)
    }

    fn start_on(brokers: &str, topic: &str, idle_timeout: &'static str, workers: usize) -> Self {
        let mut job = TestJob::new("job", brokers, topic);
        job.idle_timeout = idle_timeout;
        job.lateness = "1m";
        job.create_outputs();
        let (name, text) = (job.name.clone(), job.toml());
        let spec = JobSpec::parse(&text, Path::new("test.toml")).expect("spec");
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&shutdown);
        let handle =
            std::thread::spawn(move || runtime::run(&spec, &Execution::threads(workers), flag));
        RunningJob {
            name,
            shutdown,
            handle: Some(handle),
        }
    }

    fn stop(mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("job thread").expect("job ends cleanly");
        }
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

/// Polls `topic` until it holds `n` records (or the deadline passes); returns what it holds.
fn wait_for(brokers: &str, topic: &str, n: usize, within: Duration) -> Vec<Record> {
    poll_for(within, || {
        Some(kafka::read_all(brokers, topic)).filter(|got| got.len() >= n)
    })
    .unwrap_or_else(|| kafka::read_all(brokers, topic))
}

#[test]
fn late_and_malformed_records_are_all_accounted_for() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11");
    kafka::create_topic(&brokers, &topic, 3);
    let devices: Vec<String> = (0..3).map(device_on).collect();
    let job = RunningJob::start(&brokers, &topic, "10m");

    // Phase 1: ten minutes of readings per device, one every 10 s. The watermark reaches
    // BASE + 590 s: windows ending at BASE + 60 … BASE + 540 fire; with sequences of 2,
    // windows 2..9 give 8 predictions per device.
    let mut phase1 = Vec::new();
    for d in &devices {
        for i in 0..60 {
            phase1.push(reading(d, BASE + f64::from(i) * 10.0, 20.0));
        }
    }
    kafka::produce(&brokers, &topic, &phase1);
    let preds = wait_for(
        &brokers,
        &format!("{}-pred", job.name),
        24,
        Duration::from_secs(60),
    );
    assert_eq!(preds.len(), 24, "phase 1 predictions");

    // Phase 2: per device one record past the allowed lateness (window ending BASE + 60,
    // purged at BASE + 120), one within it (window ending BASE + 540 is kept until
    // BASE + 600: revised and re-emitted), and two the validation refuses.
    let mut phase2 = Vec::new();
    for d in &devices {
        phase2.push(reading(d, BASE + 5.0, 30.0));
        phase2.push(reading(d, BASE + 535.0, 26.0));
        phase2.push((
            Some(d.clone()),
            b"{\"time\": 1, \"temperature\": 20".to_vec(),
        ));
        phase2.push(reading(d, BASE + 536.0, 60.0)); // 60 °C: outside the DHT11 range
    }
    kafka::produce(&brokers, &topic, &phase2);
    let late = wait_for(
        &brokers,
        &format!("{}-late", job.name),
        3,
        Duration::from_secs(60),
    );
    let dead = wait_for(
        &brokers,
        &format!("{}-dead", job.name),
        6,
        Duration::from_secs(60),
    );
    let preds = wait_for(
        &brokers,
        &format!("{}-pred", job.name),
        27,
        Duration::from_secs(60),
    );
    let name = job.name.clone();
    job.stop();

    assert_eq!(late.len(), 3, "one late record per device");
    for r in &late {
        let v: serde_json::Value = serde_json::from_slice(&r.value).expect("late json");
        assert_eq!(v["time"].as_f64(), Some(BASE + 5.0));
        assert_eq!(
            r.headers["flowcast.window-end"].parse::<f64>().ok(),
            Some(BASE + 60.0)
        );
        assert!(r.headers.contains_key("flowcast.offset"));
    }
    let mut reasons: Vec<&str> = dead
        .iter()
        .map(|r| r.headers["flowcast.reason"].as_str())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["malformed"; 3]
            .into_iter()
            .chain(["out_of_range"; 3])
            .collect::<Vec<_>>()
    );
    assert!(dead.iter().all(|r| r.headers["flowcast.topic"] == topic));

    // The revised window: 6 readings at 20 °C plus one at 26 °C.
    assert_eq!(preds.len(), 27, "24 predictions and 3 revisions");
    let revised: Vec<f64> = preds
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.value).ok())
        .filter(|v| v["window_end"].as_f64() == Some(BASE + 540.0))
        .filter_map(|v| v["observed"]["temperature"].as_f64())
        .collect();
    assert_eq!(revised.len(), 6, "each device's window emitted and revised");
    assert_eq!(
        revised.iter().filter(|t| (**t - 20.0).abs() < 1e-9).count(),
        3
    );
    assert_eq!(
        revised
            .iter()
            .filter(|t| (**t - 146.0 / 7.0).abs() < 1e-9)
            .count(),
        3
    );

    // Every record read is in a window, late, or dead.
    let read = metrics::total("flowcast_source_records_total", &name);
    let windowed = metrics::total("flowcast_window_records_total", &name);
    let late_n = metrics::total("flowcast_window_late_records_total", &name);
    let dead_n = metrics::total("flowcast_source_dead_letter_records_total", &name);
    assert_eq!(read, (phase1.len() + phase2.len()) as u64);
    assert_eq!((late_n, dead_n), (3, 6));
    assert_eq!(
        windowed + late_n + dead_n,
        read,
        "every input record accounted for"
    );
}

#[test]
fn idle_partition_holds_windows_only_until_the_idle_timeout() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11");
    kafka::create_topic(&brokers, &topic, 3);
    // Data on partitions 0 and 1 only; partition 2 stays empty.
    let mut input = Vec::new();
    for p in 0..2 {
        let d = device_on(p);
        for i in 0..60 {
            input.push(reading(&d, BASE + f64::from(i) * 10.0, 21.0));
        }
    }
    kafka::produce(&brokers, &topic, &input);
    let idle = Duration::from_secs(8);
    // Before the job starts: its partitions' idle clocks start later, so no partition can
    // be idle before `started + idle`.
    let started = Instant::now();
    let job = RunningJob::start(&brokers, &topic, "8s");
    let pred_topic = format!("{}-pred", job.name);
    // Late in the timeout, after the job has read all of partitions 0 and 1: nothing has
    // fired, the empty partition holds the watermark back. (Checking only that the last
    // prediction came after the timeout passed whenever start-up was slow.)
    let read = poll_for(idle - Duration::from_secs(3), || {
        (metrics::total("flowcast_source_records_total", &job.name) >= 120).then_some(())
    });
    assert!(read.is_some(), "the job read its input within 5 s");
    // Watch the prediction topic until 2 s before the timeout: any prediction in that
    // time fails the test at once.
    let watch = (started + idle - Duration::from_secs(2)).saturating_duration_since(Instant::now());
    let early = poll_for(watch, || {
        Some(kafka::read_all(&brokers, &pred_topic)).filter(|p| !p.is_empty())
    });
    assert!(
        started.elapsed() < idle,
        "the check ran before the idle timeout could pass ({:?})",
        started.elapsed()
    );
    assert!(
        early.is_none(),
        "{} predictions before the empty partition was idle",
        early.map_or(0, |p| p.len())
    );
    let preds = wait_for(&brokers, &pred_topic, 16, idle + Duration::from_secs(30));
    assert_eq!(
        preds.len(),
        16,
        "windows on partitions 0 and 1 fire once it is idle"
    );

    // The idle partition rejoins with newer data: its device's windows fire too.
    let d2 = device_on(2);
    let rejoin: Vec<_> = (0..60)
        .map(|i| reading(&d2, BASE + 600.0 + f64::from(i) * 10.0, 22.0))
        .collect();
    kafka::produce(&brokers, &topic, &rejoin);
    let seen = poll_for(Duration::from_secs(60), || {
        kafka::read_all(&brokers, &pred_topic)
            .iter()
            .any(|r| r.key.as_deref() == Some(d2.as_bytes()))
            .then_some(())
    })
    .is_some();
    job.stop();
    assert!(seen, "the rejoined partition's windows fire");
}

/// Regression: a worker that reads no partition (4 workers, 3 partitions) held its source
/// capability forever in a stream, so no epoch completed (nothing fired) and a cancel never
/// finished.
#[test]
fn a_worker_without_partitions_does_not_hold_the_stream_back() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-spare-worker");
    kafka::create_topic(&brokers, &topic, 3);
    let t0 = 1_700_000_000.0;
    let records: Vec<_> = (0..60)
        .flat_map(|i| (0..3).map(move |p| (p, t0 + f64::from(i) * 10.0)))
        .map(|(p, t)| reading(&device_on(p), t, 21.0))
        .collect();
    kafka::produce(&brokers, &topic, &records);
    let job = RunningJob::start_on(&brokers, &topic, "10m", 4);
    let preds = wait_for(
        &brokers,
        &format!("{}-pred", job.name),
        1,
        Duration::from_secs(60),
    );
    assert!(
        !preds.is_empty(),
        "windows fire with a worker that reads no partition"
    );
    let handle = {
        let mut job = job;
        job.shutdown.store(true, Ordering::SeqCst);
        job.handle.take().expect("handle")
    };
    flowcast_tests::wait::until("the cancelled job to end", Duration::from_secs(30), || {
        handle.is_finished()
    });
    handle
        .join()
        .expect("job thread")
        .expect("job ends cleanly");
}
