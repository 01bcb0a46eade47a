//! The broker goes away mid-run and comes back: every reading still arrives, none twice,
//! each device's in order.
//!
//! A dedicated one-broker KRaft cluster (`deploy/kafka/start.sh --name ingest-outage
//! --port 9096`) is started for this test. The outage is real: the broker process is
//! stopped with SIGTERM (a clean Kafka shutdown) while the replay keeps producing, and the
//! same broker (same command line, same data directory) is started again once the backlog
//! has piled up in the spool. A guard stops everything this test started, also on failure.

mod common;

use flowcast_ingest::{Metrics, Shutdown};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const NAME: &str = "ingest-outage";
const PORT: u16 = 9096;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_dir() -> PathBuf {
    std::env::var_os("FLOWCAST_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".flowcast-run"))
        .join(format!("kafka-{NAME}"))
}

/// The broker this test started; stops it (and its data) when dropped.
struct Broker {
    /// The restarted broker, a child of this process (reaped here, not by stop.sh).
    restarted: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        let status = Command::new(repo().join("deploy/kafka/start.sh"))
            .args(["--name", NAME, "--port", &PORT.to_string()])
            .status()
            .expect("run deploy/kafka/start.sh");
        assert!(
            status.success(),
            "deploy/kafka/start.sh --name {NAME} failed"
        );
        Broker { restarted: None }
    }

    fn pid(&self) -> u32 {
        let pids = fs::read_to_string(run_dir().join("pids")).expect("pids file");
        pids.trim().parse().expect("one broker pid")
    }

    /// Stops the broker process (SIGTERM, waits for it to exit); returns how to start it.
    fn stop(&mut self) -> (Vec<String>, PathBuf) {
        let pid = self.pid();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).expect("broker command line");
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).expect("broker cwd");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        match self.restarted.take() {
            Some(mut child) => {
                child.wait().expect("reap the broker");
            }
            None => common::wait_until(Duration::from_secs(60), "the broker to exit", || {
                // Gone, or a zombie waiting for its (adoptive) parent to reap it.
                fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                })
            }),
        }
        (argv, cwd)
    }

    fn restart(&mut self, argv: &[String], cwd: &Path) {
        let out = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(run_dir().join("broker-0.out"))
            .expect("broker log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("restart the broker");
        // stop.sh stops exactly the pids recorded here.
        fs::write(run_dir().join("pids"), format!("{}\n", child.id())).expect("record pid");
        self.restarted = Some(child);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.restarted.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        let _ = Command::new(repo().join("deploy/kafka/stop.sh"))
            .args(["--name", NAME])
            .status();
    }
}

fn reachable(brokers: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: Result<BaseConsumer, _> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create();
    c.is_ok_and(|c| {
        c.fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty())
    })
}

#[test]
fn every_reading_arrives_once_across_a_broker_outage() {
    let mut broker = Broker::start();
    let brokers = format!("127.0.0.1:{PORT}");
    let topic = flowcast_tests::unique_topic("ingest-outage");
    flowcast_tests::kafka::create_topic(&brokers, &topic, 3);

    // Three days of 8 rooms (3456 readings) at 30 rows per second: about 15 s of replay.
    let days = 3.0;
    let spool = tempfile::tempdir().expect("tempdir");
    let mut cfg = common::replay_config(
        &brokers,
        &topic,
        spool.path(),
        3 * common::ROWS_PER_DAY,
        600.0 * 30.0,
    );
    // A small window, so most of the backlog waits in the on-disk spool.
    cfg.kafka.max_in_flight = 50;
    let metrics = Arc::new(Metrics::new("replay"));
    let shutdown = Shutdown::new();
    let run = {
        let (m, s) = (metrics.clone(), shutdown.clone());
        std::thread::spawn(move || flowcast_ingest::run(&cfg, s, m))
    };
    // Stops the pipeline if an assertion below fails, so the test ends instead of hanging.
    struct Stop(Shutdown);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.trigger();
        }
    }
    let _stop = Stop(shutdown);

    common::wait_until(Duration::from_secs(60), "first readings produced", || {
        Metrics::get(&metrics.produced) >= 400
    });
    let (argv, cwd) = broker.stop();
    let produced_at_stop = Metrics::get(&metrics.produced);
    // Readings keep coming while the broker is down; they pile up in the spool.
    common::wait_until(Duration::from_secs(60), "a backlog in the spool", || {
        Metrics::get(&metrics.spool_readings) >= 1000
    });
    let backlog = Metrics::get(&metrics.spool_readings);
    assert!(
        Metrics::get(&metrics.produced) < produced_at_stop + 100,
        "nothing can be acknowledged while the broker is down"
    );
    assert!(Metrics::get(&metrics.in_flight) <= 50);
    broker.restart(&argv, &cwd);
    common::wait_until(Duration::from_secs(120), "the broker to be back", || {
        reachable(&brokers)
    });

    common::wait_until(
        Duration::from_secs(180),
        "the replay to be delivered",
        || run.is_finished(),
    );
    let summary = run.join().expect("no panic").expect("pipeline ran");
    assert!(summary.delivered_all, "{summary:?}");
    let expected = common::expected(days);
    assert_eq!(Metrics::get(&metrics.produced), expected.len() as u64);
    assert_eq!(Metrics::get(&metrics.evicted), 0);
    assert_eq!(Metrics::get(&metrics.undeliverable), 0);
    let records = flowcast_tests::kafka::read_all(&brokers, &topic);
    common::assert_exactly_once_in_order(&records, &expected);
    eprintln!(
        "outage: {produced_at_stop} produced before the stop, backlog of {backlog} readings in \
         the spool, {} delivered in total",
        records.len()
    );
}
