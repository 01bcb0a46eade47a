//! Checkpoints and recovery, end to end, with the real `flowcast` binary on the real
//! Kafka cluster: a streaming job checkpointing every 500 ms is killed (`kill -9`) at
//! several points — while processing, right after a manifest, after its files but before
//! its manifest (a fail point that aborts the process) — and each time its newest
//! checkpoint is damaged (a truncated file, a flipped byte, a deleted manifest). Every
//! restart (at 2 → 3 → 1 → 2 workers) must fall back to the newest good checkpoint, and
//! the output topics together must hold exactly the reference output: nothing missing,
//! and a record repeated only when it came after the checkpoint a restart restored.
//! Run 4 stops on SIGTERM with a final checkpoint once a checkpoint covers the whole
//! input (the job's consumer group shows it), and a bounded run 5 resumes from that final
//! checkpoint and closes the last windows.

use flowcast_tests::checkpoint::{
    self, fell_back, files_of, kill_9, manifests, newest, now_ms, restored_from,
};
use flowcast_tests::forecast::{
    as_input, check_restarted_outputs, params, recorded_input, spec_text,
};
use flowcast_tests::kafka::{self, Record};
use flowcast_tests::{reference, wait};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(120);

const BIN: &str = env!("CARGO_BIN_EXE_flowcast");

fn spawn(job: &Path, workers: usize, log: &Path, failpoint: Option<&str>) -> Child {
    checkpoint::spawn(BIN, job, workers, log, failpoint, &[])
}

fn end_offsets(records: &[Record]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for r in records {
        let e = ends.entry(r.partition).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    ends
}

/// The offsets committed to consumer group `group` for every partition of `topic`.
fn group_offsets(brokers: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .map(|t| {
            t.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kill_9_at_any_point_resumes_from_the_newest_good_checkpoint_and_loses_nothing() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-ckpt");
    kafka::create_topic(&brokers, &topic, 3);
    let out = flowcast_tests::unique_topic("ckpt");
    let tmp = tempfile::tempdir().expect("temp dir");

    let ckpt = tmp.path().join("checkpoints");
    let job = streaming_job(
        tmp.path(),
        (&brokers, &topic, &out),
        &ckpt,
        "500ms",
        "retained = 3\n",
    );
    let log = |k: usize| tmp.path().join(format!("run-{k}.log"));
    let input = recorded_input(false);
    let (a, b) = (input.len() / 3, input.len() * 2 / 3);
    let preds = |brokers: &str| kafka::read_all(brokers, &format!("{out}-pred")).len();
    let mut run_ends = Vec::new();

    // Run 1, 2 workers: part 1, two checkpoints, then part 2 arrives and the job is
    // killed while it processes it.
    kafka::produce(&brokers, &topic, &input[..a]);
    let run = spawn(&job, 2, &log(1), None);
    wait::until("two checkpoints of run 1", WITHIN, || {
        manifests(&ckpt).len() >= 2
    });
    let before = preds(&brokers);
    kafka::produce(&brokers, &topic, &input[a..b]);
    wait::until("run 1 to work on part 2", WITHIN, || {
        preds(&brokers) > before
    });
    kill_9(run);
    run_ends.push(now_ms());

    // Truncate a file of the newest checkpoint. Run 2, 3 workers, falls back to the one
    // before and is killed right after its first new manifest.
    let damaged = newest(&ckpt);
    let f = &files_of(&ckpt, damaged)[0];
    let len = std::fs::metadata(f).expect("file").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(f)
        .and_then(|h| h.set_len(len / 2))
        .expect("truncate");
    let run = spawn(&job, 3, &log(2), None);
    wait::until("a manifest of run 2", WITHIN, || newest(&ckpt) > damaged);
    kill_9(run);
    run_ends.push(now_ms());
    assert!(
        fell_back(&log(2)),
        "run 2 says it skipped checkpoint {damaged}"
    );
    let restored = restored_from(&log(2));
    assert!(
        restored.is_some_and(|id| id < damaged),
        "run 2 restored {restored:?}, not a checkpoint before {damaged}:\n{}",
        std::fs::read_to_string(log(2)).unwrap_or_default()
    );

    // Flip a byte in the newest checkpoint. Run 3, 1 worker, with the rest of the input;
    // its fail point aborts it once its files of a checkpoint are written, before the
    // manifest.
    let damaged = newest(&ckpt);
    let f = &files_of(&ckpt, damaged)[0];
    let mut bytes = std::fs::read(f).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(f, bytes).expect("flip a byte");
    kafka::produce(&brokers, &topic, &input[b..]);
    let mut run = spawn(&job, 1, &log(3), Some("checkpoint-before-manifest"));
    let status = wait::poll_for(WITHIN, || run.try_wait().ok().flatten())
        .expect("run 3 aborts at its fail point");
    assert!(!status.success(), "run 3 died at the fail point: {status}");
    run_ends.push(now_ms());
    assert!(
        fell_back(&log(3)),
        "run 3 says it skipped checkpoint {damaged}"
    );
    assert_eq!(newest(&ckpt), damaged, "run 3 completed no checkpoint");

    // Delete the newest manifest. Run 4, 2 workers, falls back once more and reads the
    // rest of the input; once a checkpoint covers all of it (its offsets, committed to the
    // job's consumer group, reach the end of every partition) SIGTERM stops it with a
    // final checkpoint.
    std::fs::remove_file(ckpt.join(format!("chk-{damaged}/_MANIFEST"))).expect("rm manifest");
    let all = as_input(&kafka::read_all(&brokers, &topic));
    assert_eq!(all.len(), input.len());
    let input_ends = end_offsets(&kafka::read_all(&brokers, &topic));
    let mut run = spawn(&job, 2, &log(4), None);
    wait::until("a checkpoint of the whole input", WITHIN, || {
        group_offsets(&brokers, &format!("flowcast-{out}"), &topic) == input_ends
    });
    let last = newest(&ckpt);
    checkpoint::terminate(&run);
    let status = wait::poll_for(WITHIN, || run.try_wait().ok().flatten()).expect("run 4 stops");
    assert!(status.success(), "SIGTERM stops cleanly: {status}");
    assert!(
        fell_back(&log(4)),
        "run 4 says it skipped checkpoint {damaged}"
    );
    let last_run4 = newest(&ckpt);
    assert!(last_run4 > last, "SIGTERM took a final checkpoint");
    run_ends.push(now_ms());

    // Run 5, bounded (`stop = "latest"`): resumes from run 4's final checkpoint, finds
    // nothing new to read and closes the last windows, as an uninterrupted bounded run
    // does at the end of its input.
    make_bounded(&job);
    let mut run = spawn(&job, 2, &log(5), None);
    let status = wait::poll_for(WITHIN, || run.try_wait().ok().flatten()).expect("run 5 ends");
    assert!(status.success(), "the bounded run ends cleanly: {status}");
    assert_eq!(
        restored_from(&log(5)),
        Some(last_run4),
        "run 5 resumed from the final checkpoint"
    );
    run_ends.push(now_ms());

    let expected = reference::run(&all, &params(), &reference::persistence);
    let runs = check_restarted_outputs(
        &brokers,
        &out,
        &run_ends,
        &expected,
        "kill -9, damaged checkpoints, restarts",
    );
    eprintln!(
        "{} predictions; per run (written, written again later): {runs:?}; checkpoints {:?}",
        expected.predictions.len(),
        manifests(&ckpt)
    );
    assert!(
        runs[0].1 < runs[0].0,
        "run 1's output before its checkpoints was not redone: {runs:?}"
    );
    assert_eq!(
        runs[3].1, 0,
        "run 5 resumed exactly where SIGTERM's final checkpoint left run 4: {runs:?}"
    );
}

/// Writes the test job's spec as a stream (`stop = "never"`) checkpointing to `ckpt`
/// every `interval`, with `more` appended to the `[checkpoint]` table; returns its path.
fn streaming_job(
    dir: &Path,
    (brokers, topic, out): (&str, &str, &str),
    ckpt: &Path,
    interval: &str,
    more: &str,
) -> PathBuf {
    let text = spec_text(brokers, topic, out).replace("stop = \"latest\"", "stop = \"never\"")
        + &format!(
            "\n[checkpoint]\nlocation = \"{}\"\ninterval = \"{interval}\"\n{more}",
            ckpt.display()
        );
    let job = dir.join("job.toml");
    std::fs::write(&job, text).expect("job spec");
    job
}

/// Turns the job's spec into a bounded one (`stop = "latest"`).
fn make_bounded(job: &Path) {
    let text = std::fs::read_to_string(job).expect("spec");
    std::fs::write(job, text.replace("stop = \"never\"", "stop = \"latest\""))
        .expect("bounded spec");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn a_lost_process_stops_its_peer_with_a_clear_error_and_the_job_resumes_as_one() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-ckpt2");
    kafka::create_topic(&brokers, &topic, 3);
    let out = flowcast_tests::unique_topic("ckpt2");
    let tmp = tempfile::tempdir().expect("temp dir");
    let ckpt = tmp.path().join("checkpoints");
    let job = streaming_job(tmp.path(), (&brokers, &topic, &out), &ckpt, "500ms", "");
    let log = |k: &str| tmp.path().join(format!("{k}.log"));
    let input = recorded_input(false);
    let half = input.len() / 2;
    kafka::produce(&brokers, &topic, &input[..half]);

    // Two processes of one worker each; once they have checkpointed, process 1 is
    // killed while the second half of the input streams in.
    let hosts = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let mut procs: Vec<Child> = (0..2)
        .map(|i| {
            let extra = [
                "--processes".to_owned(),
                "2".to_owned(),
                "--process-index".to_owned(),
                i.to_string(),
                "--hosts".to_owned(),
                hosts.clone(),
            ];
            checkpoint::spawn(BIN, &job, 1, &log(&format!("p{i}")), None, &extra)
        })
        .collect();
    wait::until("two checkpoints of the 2-process job", WITHIN, || {
        manifests(&ckpt).len() >= 2
    });
    kafka::produce(&brokers, &topic, &input[half..]);
    let p1 = procs.pop().expect("process 1");
    kill_9(p1);
    let mut p0 = procs.pop().expect("process 0");
    let status =
        wait::poll_for(WITHIN, || p0.try_wait().ok().flatten()).expect("process 0 stops too");
    let text = std::fs::read_to_string(log("p0")).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(75),
        "process 0 exits with the peer-lost code: {status}\n{text}"
    );
    assert!(
        text.contains("lost the connection to a peer process") && !text.contains("panicked at"),
        "one clear line, no panic backtrace:\n{text}"
    );
    let run1 = now_ms();

    // The job resumes as one process of two workers, bounded: it reads the rest and closes
    // the last windows; together the runs hold the reference output.
    make_bounded(&job);
    let mut run = spawn(&job, 2, &log("resume"), None);
    let status =
        wait::poll_for(WITHIN, || run.try_wait().ok().flatten()).expect("resumed run ends");
    assert!(status.success(), "the resumed run ends cleanly: {status}");
    assert!(
        restored_from(&log("resume")).is_some(),
        "it resumed from a checkpoint"
    );
    let all = as_input(&kafka::read_all(&brokers, &topic));
    let expected = reference::run(&all, &params(), &reference::persistence);
    let runs = check_restarted_outputs(
        &brokers,
        &out,
        &[run1, now_ms()],
        &expected,
        "2 processes, one killed, resumed as 1",
    );
    assert!(
        runs[0].1 < runs[0].0,
        "the checkpoint covered part of run 1: {runs:?}"
    );
}

/// A raw HTTP POST (no client library between the test and the wire); returns the status.
fn post(addr: &str, path: &str, token: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the control endpoint");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn savepoints_on_request_over_the_token_guarded_endpoint_and_stop_with_one() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-sp");
    kafka::create_topic(&brokers, &topic, 3);
    let out = flowcast_tests::unique_topic("sp");
    let tmp = tempfile::tempdir().expect("temp dir");
    let ckpt = tmp.path().join("checkpoints");
    let job = streaming_job(tmp.path(), (&brokers, &topic, &out), &ckpt, "1h", "");
    let input = recorded_input(false);
    kafka::produce(&brokers, &topic, &input[..input.len() / 4]);
    let token = format!("tok-{}", std::process::id());
    let addr = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("run.log");
    let mut c = Command::new(BIN);
    c.args([
        "run",
        job.to_str().expect("utf-8 path"),
        "--control-addr",
        &addr,
    ])
    .env("FLOWCAST_LOG", "debug")
    .env("FLOWCAST_CONTROL_TOKEN", &token)
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).expect("log"));
    let mut run = c.spawn().expect("spawn flowcast run");
    let savepoints = ckpt.join("savepoints");
    let sp_count = || manifests_in(&savepoints);
    wait::until("the control endpoint", WITHIN, || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    assert_eq!(
        post(&addr, "/savepoint", None),
        401,
        "no token, no savepoint"
    );
    assert_eq!(
        post(&addr, "/savepoint", Some("wrong")),
        401,
        "a wrong token neither"
    );
    assert_eq!(post(&addr, "/savepoint", Some(&token)), 202);
    wait::until("a savepoint", WITHIN, || sp_count() == 1);
    assert_eq!(
        post(&addr, "/stop-with-savepoint", Some(&token)),
        202,
        "stop with a savepoint"
    );
    let status = wait::poll_for(WITHIN, || run.try_wait().ok().flatten()).expect("the job stops");
    assert!(status.success(), "stopped cleanly: {status}");
    assert_eq!(sp_count(), 2, "the stop took a second savepoint");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains(&token), "the token never reaches the log");

    // A savepoint is self-contained: moved elsewhere, with the checkpoints gone, a bounded
    // run starts from it and ends cleanly.
    let moved = tmp.path().join("moved");
    let newest = std::fs::read_dir(&savepoints)
        .expect("savepoints")
        .flatten()
        .map(|e| e.path())
        .max()
        .expect("a savepoint");
    std::fs::rename(&newest, &moved).expect("move the savepoint");
    std::fs::remove_dir_all(&ckpt).expect("remove the checkpoints");
    make_bounded(&job);
    let status = Command::new(BIN)
        .args(["run", job.to_str().expect("utf-8 path")])
        .args(["--from-savepoint", moved.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run from the savepoint");
    assert!(status.success(), "a run from the moved savepoint: {status}");
}

/// Savepoint directories (with a manifest) under `dir`.
fn manifests_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_MANIFEST").exists())
        .count()
}
