//! What a broken or malicious device sends, through the job on the real broker: every
//! hostile kind lands in the dead-letter topic with its own reason (a record too big to
//! forward whole is cut and says so), the valid records around them give exactly the
//! reference output, and the job runs to the end.

use flowcast_engine::job::JobSpec;
use flowcast_engine::runtime::{self, Execution};
use flowcast_tests::forecast::{as_input, check_outputs, params, recorded_input, spec_text};
use flowcast_tests::{kafka, reference};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// A hostile record: its name, key, value and the reason it must be refused with.
struct Hostile {
    name: &'static str,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    reason: &'static str,
}

fn reading_with_device(device: &str) -> Vec<u8> {
    format!(r#"{{"time": 1452531600, "temperature": 20, "humidity": 40, "device": "{device}"}}"#)
        .into_bytes()
}

fn hostile() -> Vec<Hostile> {
    let h = |name, key: Option<&[u8]>, value: Vec<u8>, reason| Hostile {
        name,
        key: key.map(<[u8]>::to_vec),
        value,
        reason,
    };
    let room = Some(&b"room-1"[..]);
    vec![
        // The seven kinds refused before.
        h("deep nesting", room, format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(), "malformed"),
        h("binary", room, vec![0, 159, 146, 150, 255, 1, 2, 3], "malformed"),
        h("invalid UTF-8", room, b"{\"time\": 1452531600, \"temperature\": 20, \"humidity\": 40, \"device\": \"\xff\xfe\"}".to_vec(), "malformed"),
        h("number overflow", room, b"{\"time\": 1e400, \"temperature\": 20, \"humidity\": 40}".to_vec(), "malformed"),
        h("negative time", room, b"{\"time\": -5, \"temperature\": 20, \"humidity\": 40}".to_vec(), "out_of_range"),
        h("duplicate field", room, b"{\"time\": 1452531600, \"time\": 1452531601, \"temperature\": 20, \"humidity\": 40}".to_vec(), "malformed"),
        h("empty", room, Vec::new(), "malformed"),
        // The kinds accepted before.
        h("long device id", room, reading_with_device(&"d".repeat(200)), "device_id_too_long"),
        h("control characters in the device id", room, reading_with_device("pi\\u0001"), "device_id_invalid"),
        h("binary key as the device id", Some(&[0xff, 0xfe][..]), b"{\"time\": 1452531600, \"temperature\": 20, \"humidity\": 40}".to_vec(), "device_id_invalid"),
        h("900 KB device id", room, reading_with_device(&"d".repeat(900_000)), "too_large"),
        h("time 9e15 (the year 287 million)", room, b"{\"time\": 9e15, \"temperature\": 20, \"humidity\": 40}".to_vec(), "future_time"),
    ]
}

#[test]
fn hostile_records_are_dead_lettered_with_their_reason_and_the_rest_is_exact() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-hostile");
    kafka::create_topic(&brokers, &topic, 3);
    // The recorded input with the hostile records spread through it, each keyed like a
    // neighbour so they reach every partition.
    let valid = recorded_input(false);
    let bad = hostile();
    let mut records: Vec<(Option<Vec<u8>>, Vec<u8>)> = Vec::new();
    let every = valid.len() / (bad.len() + 1);
    let mut marker: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (i, (k, v)) in valid.iter().enumerate() {
        records.push((k.as_ref().map(|k| k.as_bytes().to_vec()), v.clone()));
        if i % every == every - 1
            && let Some(h) = bad.get(i / every)
        {
            let key = match &h.key {
                Some(k) if k.as_slice() != b"room-1" => Some(k.clone()),
                _ => k.as_ref().map(|k| k.as_bytes().to_vec()),
            };
            marker.insert(h.value.clone(), i / every);
            records.push((key, h.value.clone()));
        }
    }
    kafka::produce(&brokers, &topic, &records);
    let stored = kafka::read_all(&brokers, &topic);
    let (hostile_in, valid_in): (Vec<_>, Vec<_>) =
        stored.iter().partition(|r| marker.contains_key(&r.value));
    assert_eq!(hostile_in.len(), bad.len(), "every hostile kind produced");

    let out = flowcast_tests::unique_topic("hostile");
    let spec =
        JobSpec::parse(&spec_text(&brokers, &topic, &out), Path::new("t.toml")).expect("spec");
    let summary = runtime::run(
        &spec,
        &Execution::threads(2),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("the job runs to the end");
    assert_eq!(summary.records, stored.len() as u64, "every record read");

    // Valid records: exactly the reference output. Hostile ones: their own reason each.
    let valid_owned: Vec<_> = valid_in.into_iter().cloned().collect();
    let mut expected = reference::run(&as_input(&valid_owned), &params(), &reference::persistence);
    for r in &hostile_in {
        let h = &bad[marker[&r.value]];
        expected
            .dead
            .insert((r.partition, r.offset), h.reason.to_owned());
    }
    check_outputs(&brokers, &[&out], &expected, "with hostile records");

    // The 900 KB record was cut for the dead-letter topic and says so.
    let dead = kafka::read_all(&brokers, &format!("{out}-dead"));
    let huge = dead
        .iter()
        .find(|r| r.headers.get("flowcast.reason").map(String::as_str) == Some("too_large"))
        .expect("the too-large record is dead-lettered");
    assert_eq!(
        huge.headers.get("flowcast.truncated").map(String::as_str),
        Some("value")
    );
    let original: usize = huge.headers["flowcast.original-size"]
        .parse()
        .expect("size");
    assert!(
        original > 900_000 && huge.value.len() < original,
        "cut: {} of {original}",
        huge.value.len()
    );
    for h in &bad {
        assert!(
            dead.iter()
                .any(|r| r.headers.get("flowcast.reason").map(String::as_str) == Some(h.reason)),
            "{}: no dead letter with reason {}",
            h.name,
            h.reason
        );
    }
}
