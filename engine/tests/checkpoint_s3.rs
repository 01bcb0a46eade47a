//! Checkpoints on a real S3-compatible server (SeaweedFS from deploy/seaweedfs/start.sh):
//! the checkpoint module's backend-independent tests (`engine/src/checkpoint/tests/suite.rs`,
//! included here) against `s3://` locations, among them the check that the server refuses
//! a second create-if-absent put of one key (the manifest's commit point); opening errors;
//! and, end to end, the real `flowcast` binary checkpointing to S3, killed with `kill -9`
//! and resumed from its newest S3 checkpoint.
//!
//! Needs `FLOWCAST_TEST_S3` (the server, `http://127.0.0.1:8333` in deploy/test.sh) and what
//! the checkpoint store itself reads: the endpoint (`AWS_ENDPOINT_URL` or
//! `FLOWCAST_S3_ENDPOINT`, the same URL) and credentials (`AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`, or a shared credentials file); the bucket is
//! `FLOWCAST_TEST_S3_BUCKET` (default `flowcast-test`). Without them every test fails and
//! says what is missing. Each test works under a prefix of its own, so runs never collide.

use flowcast_engine::checkpoint::{CheckpointStore, MANIFEST};
use flowcast_tests::checkpoint::{kill_9, restored_from};
use flowcast_tests::forecast::{recorded_input, spec_text};
use flowcast_tests::s3::{s3_bucket, unique_location};
use flowcast_tests::{kafka, wait};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flowcast");
const WITHIN: Duration = Duration::from_secs(120);

// The inline module's files are looked up from this folder (`.`), not from `on_s3/`.
#[path = "."]
mod on_s3 {
    pub use flowcast_engine::checkpoint::*;
    pub use flowcast_engine::lifecycle::{encode_groups, snapshot};
    pub use flowcast_operators::event_time::JobWatermark;

    #[macro_use]
    #[path = "../src/checkpoint/tests/suite.rs"]
    mod suite;

    /// Fresh prefixes under one unique prefix per test.
    struct S3 {
        base: String,
        next: std::sync::atomic::AtomicUsize,
    }

    impl S3 {
        fn new() -> Self {
            S3 {
                base: super::unique_location("suite"),
                next: Default::default(),
            }
        }
    }

    impl suite::Fixture for S3 {
        fn fresh(&self) -> String {
            let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{}/loc-{n}", self.base)
        }
        fn exists(&self, location: &str) -> bool {
            !CheckpointStore::open(location)
                .and_then(|s| s.list(""))
                .expect("list")
                .is_empty()
        }
        fn nothing_there(&self) -> &'static str {
            "no objects under this prefix"
        }
    }

    suite_tests!(S3::new());

    #[test]
    fn retention_keeps_the_newest_and_spares_in_progress_ones_and_savepoints() {
        suite::retention(&S3::new());
    }
}

#[test]
fn a_missing_bucket_is_a_clear_error_when_the_location_is_opened() {
    let bucket = s3_bucket();
    let missing = format!("{bucket}-no-such-bucket");
    let err =
        CheckpointStore::open(&format!("s3://{missing}/checkpoints")).expect_err("no such bucket");
    let text = err.to_string();
    assert!(
        text.contains(&format!("cannot list bucket `{missing}`")),
        "{text}"
    );
}

/// Ids of the checkpoints at `location` that have a manifest, ascending.
fn manifests(store: &CheckpointStore) -> Vec<u64> {
    let mut ids: Vec<u64> = store
        .list("")
        .expect("list the checkpoints")
        .iter()
        .filter_map(|m| {
            let path = m.location.as_ref();
            let dir = path.strip_suffix(&format!("/{MANIFEST}"))?;
            dir.strip_prefix("chk-")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn kill_9_resumes_from_the_newest_checkpoint_on_s3() {
    let location = unique_location("e2e");
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-s3");
    kafka::create_topic(&brokers, &topic, 3);
    let out = flowcast_tests::unique_topic("s3");
    let tmp = tempfile::tempdir().expect("temp dir");
    let spec = spec_text(&brokers, &topic, &out).replace("stop = \"latest\"", "stop = \"never\"")
        + &format!("\n[checkpoint]\nlocation = \"{location}\"\ninterval = \"500ms\"\n");
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, spec).expect("job spec");
    let log = |k: usize| tmp.path().join(format!("run-{k}.log"));
    let store = CheckpointStore::open(&location).expect("open the location");
    let input = recorded_input(false);
    let half = input.len() / 2;

    kafka::produce(&brokers, &topic, &input[..half]);
    let run = flowcast_tests::checkpoint::spawn(BIN, &job, 2, &log(1), None, &[]);
    wait::until("two checkpoints on S3", WITHIN, || {
        manifests(&store).len() >= 2
    });
    kill_9(run);
    let newest = *manifests(&store).last().expect("a checkpoint");
    assert!(
        restored_from(&log(1)).is_none(),
        "run 1 started fresh:\n{}",
        std::fs::read_to_string(log(1)).unwrap_or_default()
    );

    kafka::produce(&brokers, &topic, &input[half..]);
    let run = flowcast_tests::checkpoint::spawn(BIN, &job, 3, &log(2), None, &[]);
    wait::until("a checkpoint of run 2 on S3", WITHIN, || {
        manifests(&store).last().is_some_and(|&id| id > newest)
    });
    kill_9(run);
    assert_eq!(
        restored_from(&log(2)),
        Some(newest),
        "run 2 resumed from the newest S3 checkpoint:\n{}",
        std::fs::read_to_string(log(2)).unwrap_or_default()
    );
}

/// `flowcast run` on a bounded job whose checkpoints go to `location`, with the S3
/// credentials of this process removed from its environment and `env` added; its exit
/// status and log.
fn run_without_credentials(
    location: &str,
    env: &[(&str, String)],
    tmp: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-s3creds");
    kafka::create_topic(&brokers, &topic, 3);
    kafka::produce(&brokers, &topic, &recorded_input(false)[..200]);
    let out = flowcast_tests::unique_topic("s3creds");
    let spec = spec_text(&brokers, &topic, &out)
        + &format!("\n[checkpoint]\nlocation = \"{location}\"\ninterval = \"500ms\"\n");
    let job = tmp.join("job.toml");
    std::fs::write(&job, spec).expect("job spec");
    let log = tmp.join("run.log");
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["run", job.to_str().expect("utf-8"), "--workers", "1"])
        .env("FLOWCAST_LOG", "info")
        .env("HOME", tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut run = cmd.spawn().expect("spawn flowcast run");
    let status = wait::poll_for(WITHIN, || run.try_wait().ok().flatten());
    let Some(status) = status else {
        kill_9(run);
        panic!("flowcast run did not end within {WITHIN:?}");
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn credentials_come_from_the_environment_or_a_credentials_file_and_none_is_a_clear_error() {
    let location = unique_location("creds");
    let tmp = tempfile::tempdir().expect("temp dir");
    let (status, log) = run_without_credentials(&location, &[], tmp.path());
    assert!(!status.success(), "no credentials, no run:\n{log}");
    assert!(log.contains("no S3 credentials"), "{log}");

    // The same keys, from a shared credentials file's profile only.
    let key = |v: &str| std::env::var(v).expect("the test keys are in the environment");
    let file = tmp.path().join("aws-credentials");
    let text = format!(
        "[other]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[flowcast]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key("AWS_ACCESS_KEY_ID"),
        key("AWS_SECRET_ACCESS_KEY")
    );
    std::fs::write(&file, text).expect("credentials file");
    let env = [
        ("AWS_SHARED_CREDENTIALS_FILE", file.display().to_string()),
        ("AWS_PROFILE", "flowcast".to_owned()),
    ];
    // The run opens (lists) the location before it starts: the server accepted the
    // profile's keys, and refuses the other profile's.
    let (status, log) = run_without_credentials(&location, &env, tmp.path());
    assert!(status.success(), "the bounded run ends cleanly:\n{log}");
    let env = [env[0].clone(), ("AWS_PROFILE", "other".to_owned())];
    let (status, log) = run_without_credentials(&location, &env, tmp.path());
    assert!(!status.success(), "wrong keys, no run:\n{log}");
    assert!(log.contains("cannot list bucket"), "{log}");
}
