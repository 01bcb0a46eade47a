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
