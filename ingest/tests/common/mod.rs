//! Shared by the ingest integration tests: a replay config, waiting for a condition with a
//! deadline, and the check that a topic holds exactly the expected readings, each once,
//! each device on one partition, in order.

#![allow(dead_code)] // each test file uses its own subset

use flowcast_ingest::config::{Backend, Config, Timestamps};
use flowcast_ingest::{Reading, SensorKind};
use flowcast_tests::data::RoomReading;
use flowcast_tests::kafka::Record;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

/// Rows per day in the 10-minute recording.
pub const ROWS_PER_DAY: u64 = 144;

/// A replay of the first `rows` rows of the real data for the 8 indoor rooms, original
/// timestamps, into `topic` on `brokers`, spooling in `spool`.
pub fn replay_config(brokers: &str, topic: &str, spool: &Path, rows: u64, speed: f64) -> Config {
    let mut c = Config::default();
    c.sensor.backend = Backend::Replay;
    c.replay.file = Some(flowcast_tests::data::data_path());
    c.replay.max_rows = Some(rows);
    c.replay.speed = speed;
    c.replay.timestamps = Timestamps::Original;
    c.kafka.brokers = brokers.to_owned();
    c.kafka.topic = topic.to_owned();
    c.spool.dir = spool.to_owned();
    c.metrics.enabled = false;
    c
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the topic must hold: the recording's readings that a DHT22 can report, computed
/// by the tests crate's own reader of the data file and the datasheet's ranges written out
/// below (not by the code under test: were `Reading::validate` to refuse good readings,
/// asking it would shrink the expectation along with the output).
pub fn expected(days: f64) -> Vec<RoomReading> {
    let all = flowcast_tests::data::room_readings(&flowcast_tests::data::ROOMS, days);
    let n = all.len();
    let kept: Vec<RoomReading> = all.into_iter().filter(dht22_can_report).collect();
    // The recording's indoor rooms are all within range; a filter that drops more than a
    // few readings is a broken filter, not data.
    assert!(
        kept.len() * 100 >= n * 95,
        "only {} of {n} recorded readings are in the DHT22 range",
        kept.len()
    );
    kept
}

/// DHT22 (AM2302) datasheet: −40–80 °C, 0–100 %RH (`shared/DESIGN.md`), never NaN.
fn dht22_can_report(r: &RoomReading) -> bool {
    r.temperature.is_finite()
        && r.humidity.is_finite()
        && (-40.0..=80.0).contains(&r.temperature)
        && (0.0..=100.0).contains(&r.humidity)
}

/// Asserts that `records` (a whole topic) are exactly `expected`: each reading once, key =
/// device, every device on a single partition, and each device's readings in time order
/// by offset.
pub fn assert_exactly_once_in_order(records: &[Record], expected: &[RoomReading]) {
    let mut by_device: BTreeMap<String, Vec<(i32, i64, Reading)>> = BTreeMap::new();
    for rec in records {
        let r =
            Reading::parse(rec.key.as_deref(), &rec.value, SensorKind::Dht22).unwrap_or_else(|e| {
                panic!("unreadable record at {}/{}: {e}", rec.partition, rec.offset)
            });
        assert_eq!(
            rec.key.as_deref(),
            Some(r.device.as_bytes()),
            "key = device id"
        );
        by_device
            .entry(r.device.clone())
            .or_default()
            .push((rec.partition, rec.offset, r));
    }
    let mut want: BTreeMap<String, Vec<&RoomReading>> = BTreeMap::new();
    for e in expected {
        want.entry(e.device.clone()).or_default().push(e);
    }
    assert_eq!(
        by_device.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "devices"
    );
    let mut partitions_used = HashMap::new();
    for (device, mut got) in by_device {
        let parts: std::collections::BTreeSet<i32> = got.iter().map(|g| g.0).collect();
        assert_eq!(parts.len(), 1, "{device} spread over partitions {parts:?}");
        *partitions_used.entry(got[0].0).or_insert(0) += 1;
        got.sort_by_key(|g| g.1);
        let w = &want[&device];
        assert_eq!(
            got.len(),
            w.len(),
            "{device}: {} readings arrived, {} expected (duplicates or losses)",
            got.len(),
            w.len()
        );
        for (i, ((_, offset, g), e)) in got.iter().zip(w.iter()).enumerate() {
            assert!(
                g.time == e.time && g.temperature == e.temperature && g.humidity == e.humidity,
                "{device} reading #{i} (offset {offset}) is {g:?}, expected {e:?}"
            );
        }
    }
    assert!(
        partitions_used.len() > 1,
        "8 devices should use more than one of the 3 partitions: {partitions_used:?}"
    );
}
