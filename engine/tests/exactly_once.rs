//! Exactly-once output, end to end, with the real `flowcast` binary on the real Kafka
//! cluster: the forecast job, with its predictions, dead letters and late records all
//! `delivery = "exactly-once"` and checkpoints every 300 ms, dies at every named fail
//! point (the process aborts itself there) and at seeded random `kill -9`s, each followed
//! by a restart — as one process (of 1 to 3 workers, changing from run to run: each restart
//! is also a rescale) and as two. A last, bounded run finishes the input.
//! Read with `read_committed`, the outputs must equal the reference: every prediction and
//! dead letter exactly once, nothing missing, nothing twice, and no reader stuck behind a
//! transaction left open. The same with the checkpoints on S3 (SeaweedFS).
//!
//! `FLOWCAST_EO_KILLS` (default 5) sets the number of random kills per configuration and
//! `FLOWCAST_EO_SEED` (default 0) varies the seeds; `tests/bench/eo_sweep.sh` runs the
//! sweep with more.

use flowcast_tests::checkpoint::{self, kill_9};
use flowcast_tests::forecast::{
    as_input, check_exactly_once, exactly_once_spec, params, recorded_input, spec_text,
};
use flowcast_tests::{kafka, reference, wait};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flowcast");

/// Every fail point, and the process it is armed on (the coordinator's are on process 0).
const FAIL_POINTS: [&str; 6] = [
    "checkpoint-before-manifest",
    "checkpoint-after-manifest",
    "commit-before",
    "commit-inside",
    "commit-after",
    "recovery",
];

/// xorshift64*: a seeded sequence for the kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The test job, every Kafka output exactly-once, checkpointing to `location`.
fn job(dir: &Path, (brokers, topic, out): (&str, &str, &str), location: &str) -> PathBuf {
    let text = exactly_once_spec(&spec_text(brokers, topic, out), out, location, "300ms");
    let path = dir.join("job.toml");
    std::fs::write(&path, text).expect("job spec");
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts the job as `processes` processes of one worker each, or as one process of
/// `workers`, the fail point armed on process `armed`.
fn start(
    job: &Path,
    (processes, workers): (usize, usize),
    log: &Path,
    failpoint: Option<(&str, usize)>,
) -> Vec<Child> {
    if processes == 1 {
        return vec![checkpoint::spawn(
            BIN,
            job,
            workers,
            log,
            failpoint.map(|f| f.0),
            &[],
        )];
    }
    let hosts: Vec<String> = (0..processes)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    (0..processes)
        .map(|i| {
            let extra = [
                "--processes".to_owned(),
                processes.to_string(),
                "--process-index".to_owned(),
                i.to_string(),
                "--hosts".to_owned(),
                hosts.join(","),
            ];
            let fp = failpoint.filter(|f| f.1 == i).map(|f| f.0);
            checkpoint::spawn(
                BIN,
                job,
                1,
                &log.with_extension(format!("p{i}.log")),
                fp,
                &extra,
            )
        })
        .collect()
}

/// Waits until a process of the run exits or `within` passes (a random kill's point),
/// then kills the rest. Returns whether one exited by itself.
fn end_run(mut procs: Vec<Child>, within: Duration) -> bool {
    let exited = wait::poll_for(within, || {
        procs
            .iter_mut()
            .any(|c| c.try_wait().ok().flatten().is_some())
            .then_some(())
    })
    .is_some();
    for c in procs {
        kill_9(c);
    }
    exited
}

/// The sweeps start many processes; one at a time keeps them inside their deadlines.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sweep(processes: usize, location: &dyn Fn(&Path) -> String, seed: u64) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let kills: usize = std::env::var("FLOWCAST_EO_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-eo");
    kafka::create_topic(&brokers, &topic, 3);
    let out = flowcast_tests::unique_topic("eo");
    for suffix in ["pred", "dead", "late"] {
        kafka::create_topic(&brokers, &format!("{out}-{suffix}"), 3);
    }
    let guard = tempfile::tempdir().expect("temp dir");
    // FLOWCAST_EO_KEEP=1 keeps the specs, logs and local checkpoints for a post-mortem.
    let (_guard, dir) = if std::env::var_os("FLOWCAST_EO_KEEP").is_some() {
        let kept = guard.keep();
        eprintln!("keeping {}", kept.display());
        (None, kept)
    } else {
        let dir = guard.path().to_owned();
        (Some(guard), dir)
    };
    let job = job(
        dir.as_path(),
        (&brokers, &topic, &out),
        &location(dir.as_path()),
    );
    // A share of the input arrives before each run, so every run has output to commit.
    let input = recorded_input(false);
    let runs = FAIL_POINTS.len() + kills + 1;
    let share = input.len().div_ceil(runs);
    let mut parts = input.chunks(share);
    let mut feed = || {
        if let Some(p) = parts.next() {
            kafka::produce(&brokers, &topic, p);
        }
        parts.len() > 0
    };
    let seed = seed
        ^ std::env::var("FLOWCAST_EO_SEED")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    let mut rng = Rng(seed);
    let mut tally = Vec::new();
    for (k, fp) in FAIL_POINTS.iter().enumerate() {
        let armed = if fp.starts_with("checkpoint-") {
            0
        } else {
            rng.below(processes as u64) as usize
        };
        // A worker recovers once per run; the other points are reached at every commit.
        let nth = if *fp == "recovery" {
            1
        } else {
            1 + rng.below(2)
        };
        let spec = format!("{fp}:{nth}");
        let log = dir.as_path().join(format!("fp-{k}.log"));
        feed();
        let workers = if processes == 1 {
            1 + rng.below(3) as usize
        } else {
            1
        };
        let procs = start(&job, (processes, workers), &log, Some((&spec, armed)));
        let aborted = end_run(procs, Duration::from_secs(20));
        tally.push(format!(
            "{spec}@p{armed}/{workers}w: {}",
            if aborted { "aborted" } else { "killed at 20 s" }
        ));
    }
    for k in 0..kills {
        let after = Duration::from_millis(300 + rng.below(2500));
        let log = dir.as_path().join(format!("kill-{k}.log"));
        feed();
        let workers = if processes == 1 {
            1 + rng.below(3) as usize
        } else {
            1
        };
        let procs = start(&job, (processes, workers), &log, None);
        let exited = end_run(procs, after);
        tally.push(format!(
            "kill -9 after {after:?}/{workers}w{}",
            if exited { " (had exited)" } else { "" }
        ));
    }
    // The last run is bounded: it finishes the input and commits what is staged.
    let text = std::fs::read_to_string(&job).expect("spec");
    std::fs::write(&job, text.replace("stop = \"never\"", "stop = \"latest\"")).expect("spec");
    while feed() {}
    let last = dir.as_path().join("last.log");
    let mut procs = start(&job, (processes, 2), &last, None);
    for (i, c) in procs.iter_mut().enumerate() {
        let status = wait::poll_for(Duration::from_secs(120), || c.try_wait().ok().flatten())
            .expect("the last run ends");
        let log = if processes == 1 {
            last.clone()
        } else {
            last.with_extension(format!("p{i}.log"))
        };
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        assert!(
            status.success(),
            "the last run's process {i} ends cleanly: {status}; {tally:?}\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    eprintln!("{processes} process(es), seed {seed:#x}: {tally:?}");
    let all = as_input(&kafka::read_all(&brokers, &topic));
    let expected = reference::run(&all, &params(), &reference::persistence);
    check_exactly_once(
        &brokers,
        &out,
        &expected,
        &format!("exactly-once, {processes} process(es), seed {seed:#x}"),
    );
}

fn local(dir: &Path) -> String {
    dir.join("checkpoints").display().to_string()
}

#[test]
fn exactly_once_through_every_fail_point_and_random_kills_one_process() {
    sweep(1, &local, 0x5eed_0001);
}

#[test]
fn exactly_once_through_every_fail_point_and_random_kills_two_processes() {
    sweep(2, &local, 0x5eed_0002);
}

#[test]
fn exactly_once_through_every_fail_point_and_random_kills_on_s3() {
    sweep(
        1,
        &|_| flowcast_tests::s3::unique_location("eo"),
        0x5eed_0003,
    );
}
