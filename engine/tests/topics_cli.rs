//! `flowcast topics …` against the real Kafka clusters `deploy/test.sh` starts: the
//! reference topic on three brokers, and the clear errors for a replication factor
//! above the broker count and for an unreachable cluster.

use std::process::{Command, Output};

fn flowcast(brokers: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .arg("topics")
        .args(args)
        .args(["--brokers", brokers])
        .output()
        .expect("run flowcast")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn dht11_topic_on_three_brokers_has_three_replicas_per_partition() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11");
    let out = flowcast(
        &brokers,
        &[
            "create",
            &topic,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    assert!(out.status.success(), "create failed: {}", text(&out.stderr));

    let out = flowcast(&brokers, &["describe", &topic]);
    assert!(
        out.status.success(),
        "describe failed: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("PartitionCount: 3\tReplicationFactor: 3"),
        "{stdout}"
    );
    let partitions: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("Partition: "))
        .collect();
    assert_eq!(partitions.len(), 3, "{stdout}");
    for line in partitions {
        let replicas = line
            .split("Replicas: ")
            .nth(1)
            .and_then(|r| r.split('\t').next());
        let replicas: Vec<&str> = replicas.expect("replicas column").split(',').collect();
        assert_eq!(replicas.len(), 3, "{line}");
    }

    let out = flowcast(&brokers, &["list"]);
    assert!(
        text(&out.stdout).lines().any(|l| l == topic),
        "list lacks {topic}"
    );

    let again = flowcast(&brokers, &["create", &topic, "--partitions", "3"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    let out = flowcast(&brokers, &["delete", &topic]);
    assert!(out.status.success(), "delete failed: {}", text(&out.stderr));
}

#[test]
fn replication_factor_above_broker_count_is_refused_clearly() {
    let topic = flowcast_tests::unique_topic("DHT11");
    let out = flowcast(
        &flowcast_tests::single_broker(),
        &[
            "create",
            &topic,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("replication factor 3") && err.contains("exceeds the 1 broker(s)"),
        "unclear error: {err}"
    );
    // Nothing was created.
    let list = flowcast(&flowcast_tests::single_broker(), &["list"]);
    assert!(list.status.success());
    assert!(!text(&list.stdout).lines().any(|l| l == topic));
}

#[test]
fn unreachable_broker_is_reported_as_such() {
    // Port 1 on loopback: nothing listens there.
    let out = Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .args([
            "topics",
            "list",
            "--brokers",
            "127.0.0.1:1",
            "--timeout-secs",
            "2",
        ])
        .output()
        .expect("run flowcast");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no Kafka broker reachable at 127.0.0.1:1"),
        "unclear error: {err}"
    );
}

#[test]
fn describing_a_missing_topic_says_so() {
    let topic = flowcast_tests::unique_topic("absent");
    let out = flowcast(&flowcast_tests::brokers(), &["describe", &topic]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
}
