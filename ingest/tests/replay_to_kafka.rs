//! Replays two days of the real recording (8 rooms = 8 devices) as fast as the three-broker
//! cluster takes it into a fresh 3-partition topic, then reads the topic back: every
//! reading arrives exactly once, each device on one partition, in order.

mod common;

use flowcast_ingest::{Metrics, Shutdown};
use std::sync::Arc;

#[test]
fn replayed_readings_arrive_once_per_device_partition_in_order() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("ingest-replay");
    flowcast_tests::kafka::create_topic(&brokers, &topic, 3);
    let spool = tempfile::tempdir().expect("tempdir");
    let days = 2.0;
    let cfg = common::replay_config(
        &brokers,
        &topic,
        spool.path(),
        2 * common::ROWS_PER_DAY,
        0.0,
    );
    let metrics = Arc::new(Metrics::new("replay"));
    let summary = flowcast_ingest::run(&cfg, Shutdown::new(), metrics.clone()).expect("runs");
    assert!(summary.delivered_all, "{summary:?}");
    assert_eq!(summary.pending, 0);

    let expected = common::expected(days);
    assert_eq!(
        expected.len(),
        2 * 144 * 8,
        "two days of 8 rooms are all in DHT22 range"
    );
    assert_eq!(Metrics::get(&metrics.produced), expected.len() as u64);
    assert_eq!(summary.next_seq, expected.len() as u64);
    let records = flowcast_tests::kafka::read_all(&brokers, &topic);
    common::assert_exactly_once_in_order(&records, &expected);
}

/// A run that cannot reach Kafka stops (as on SIGTERM) with its readings in the spool; the
/// next run, with the broker reachable, sends that backlog first and then its own readings:
/// the topic holds both runs' readings once each, in order.
#[test]
fn a_restart_sends_the_spooled_backlog_first_in_order() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("ingest-restart");
    flowcast_tests::kafka::create_topic(&brokers, &topic, 3);
    let spool = tempfile::tempdir().expect("tempdir");
    let rows = common::ROWS_PER_DAY / 2;

    // Run 1: nothing listens on port 1.
    let mut cfg = common::replay_config("127.0.0.1:1", &topic, spool.path(), rows, 0.0);
    cfg.kafka.flush_timeout = std::time::Duration::from_millis(200);
    let metrics = Arc::new(Metrics::new("replay"));
    let shutdown = Shutdown::new();
    let run = {
        let (c, m, s) = (cfg.clone(), metrics.clone(), shutdown.clone());
        std::thread::spawn(move || flowcast_ingest::run(&c, s, m))
    };
    common::wait_until(
        std::time::Duration::from_secs(60),
        "run 1 to spool its rows",
        || Metrics::get(&metrics.spooled) == rows * 8,
    );
    shutdown.trigger();
    let first = run.join().expect("no panic").expect("run 1");
    assert!(!first.delivered_all);
    assert_eq!(first.pending, rows * 8, "{first:?}");
    assert_eq!(Metrics::get(&metrics.produced), 0);

    // Run 2: the next rows, the real cluster.
    cfg.kafka.brokers = brokers.clone();
    cfg.replay.skip_rows = rows;
    let metrics = Arc::new(Metrics::new("replay"));
    let second = flowcast_ingest::run(&cfg, Shutdown::new(), metrics.clone()).expect("run 2");
    assert!(second.delivered_all, "{second:?}");
    assert_eq!(Metrics::get(&metrics.produced), 2 * rows * 8);

    let expected = common::expected(1.0);
    let records = flowcast_tests::kafka::read_all(&brokers, &topic);
    common::assert_exactly_once_in_order(&records, &expected);
}
