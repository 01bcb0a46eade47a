//! `/metrics` of a running `flowcast-ingest` (simulated sensors into the one-broker cluster)
//! is valid Prometheus exposition — `promtool check metrics` passes — follows the naming
//! convention, and its series move while it runs.

use flowcast_common::telemetry::{Kind, check_name};
use flowcast_tests::exposition::{free_port, promtool_check, scrape, value};
use flowcast_tests::wait::poll_for;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn ingest_metrics_pass_promtool_and_move() {
    let brokers = flowcast_tests::single_broker();
    let topic = flowcast_tests::unique_topic("ingest-metrics");
    flowcast_tests::kafka::create_topic(&brokers, &topic, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowcast-ingest"))
        .arg("run")
        .env_remove("FLOWCAST_INGEST_CONFIG")
        .env("FLOWCAST_INGEST_SENSOR_BACKEND", "simulate")
        .env("FLOWCAST_INGEST_SENSOR_KIND", "dht11")
        .env("FLOWCAST_INGEST_SENSOR_INTERVAL", "1s")
        .env("FLOWCAST_INGEST_SIMULATE_DEVICES", "5")
        .env("FLOWCAST_INGEST_SIMULATE_FAULT_RATE", "0.2")
        .env("FLOWCAST_INGEST_KAFKA_BROKERS", &brokers)
        .env("FLOWCAST_INGEST_KAFKA_TOPIC", &topic)
        .env("FLOWCAST_INGEST_SPOOL_DIR", dir.path().join("spool"))
        .env(
            "FLOWCAST_INGEST_METRICS_LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .stdin(Stdio::null())
        .spawn()
        .expect("start flowcast-ingest");

    let produced = "flowcast_ingest_produced_readings_total";
    let first = poll_for(Duration::from_secs(30), || {
        let t = scrape(port)?;
        (value(&t, produced)? > 0.0).then_some(t)
    })
    .expect("readings produced and scraped");
    // Later: every counter that must move has (a produce can come from reads counted
    // before the first scrape, so the produced counter alone does not say the others moved).
    let moving = [
        "flowcast_ingest_sensor_ok_reads_total",
        "flowcast_ingest_spooled_readings_total",
        produced,
    ];
    // A fault rate of 0.2 makes a fault likely within a few reads, not certain: wait for one.
    let failed = "flowcast_ingest_sensor_failed_reads_total";
    let later = poll_for(Duration::from_secs(30), || {
        let t = scrape(port)?;
        (moving.iter().all(|m| value(&t, m) > value(&first, m)) && value(&t, failed) > Some(0.0))
            .then_some(t)
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let later =
        later.expect("the ok-read, spooled and produced counters move and a fault is counted");
    assert!(status.success(), "flowcast-ingest exited with {status}");

    let said = promtool_check(&later).unwrap_or_else(|e| panic!("promtool: {e}\n{later}"));
    eprintln!("promtool check metrics (ingest): ok {said}");
    for (name, kind) in [
        ("flowcast_ingest_sensor_ok_reads_total", Kind::Counter),
        ("flowcast_ingest_sensor_failed_reads_total", Kind::Counter),
        ("flowcast_ingest_spooled_readings_total", Kind::Counter),
        (produced, Kind::Counter),
        ("flowcast_ingest_spool_bytes", Kind::Gauge),
        ("flowcast_ingest_spool_readings", Kind::Gauge),
        ("flowcast_ingest_in_flight_readings", Kind::Gauge),
    ] {
        check_name(name, kind).expect("conventional name");
        assert!(value(&later, name).is_some(), "{name} missing:\n{later}");
    }
    for moving in moving {
        assert!(
            value(&later, moving) > value(&first, moving),
            "{moving} did not move:\n{first}\n{later}"
        );
    }
    assert!(
        value(&later, failed) > Some(0.0),
        "simulated faults are counted"
    );
}
