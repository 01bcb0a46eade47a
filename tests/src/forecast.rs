//! The forecast job's end-to-end fixtures, shared by the job tests: the recorded input
//! (real readings of the eight rooms plus bad records), the job spec the tests run, the
//! reference's parameters, and the check of a run's output topics against the reference.

use crate::job::TestJob;
use crate::kafka::{self, Record};
use crate::reference::{self, Expected, InputRecord, Params};
use std::collections::BTreeMap;

/// Days of recorded data the job tests feed.
pub const DAYS: f64 = 16.0;

/// Real readings of the eight rooms (device = room), with a bad record every 397th.
pub fn recorded_input(shuffle: bool) -> Vec<(Option<String>, Vec<u8>)> {
    let mut readings = crate::data::room_readings(&crate::data::ROOMS, DAYS);
    if shuffle {
        // Reorder each device's readings by time + a pseudo-random delay below 50 minutes:
        // no record falls further behind its partition's newest than that, and the job
        // allows one hour of out-of-orderness.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut keyed: Vec<(f64, usize)> = readings
            .iter()
            .enumerate()
            .map(|(i, r)| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (r.time + (state % 3000) as f64, i)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        readings = keyed
            .into_iter()
            .map(|(_, i)| readings[i].clone())
            .collect();
    }
    let bad = [
        "{\"time\": 1452531600, \"temperature\": \"NaN\", \"humidity\": 40}",
        "not json at all",
        "{\"time\": 1452531600, \"humidity\": 40}",
        "{\"time\": 1452531600, \"temperature\": 85.5, \"humidity\": 40}",
        "[1, 2, 3]",
    ];
    let mut out = Vec::new();
    for (i, r) in readings.iter().enumerate() {
        let v = serde_json::json!({"time": r.time, "temperature": r.temperature, "humidity": r.humidity, "device": r.device});
        out.push((
            Some(r.device.clone()),
            serde_json::to_vec(&v).expect("json"),
        ));
        if i % 397 == 0 {
            out.push((
                Some(r.device.clone()),
                bad[(i / 397) % bad.len()].as_bytes().to_vec(),
            ));
        }
    }
    out
}

/// The persistence model's `[model]` table.
pub const PERSISTENCE: &str = "kind = \"persistence\"";

/// The job spec the tests run (persistence model), reading `topic`, writing `{out}-*`.
pub fn spec_text(brokers: &str, topic: &str, out: &str) -> String {
    spec_with_model(brokers, topic, out, PERSISTENCE)
}

/// The job spec with another `[model]` table.
pub fn spec_with_model(brokers: &str, topic: &str, out: &str, model: &str) -> String {
    let mut job = TestJob::new(out, brokers, topic);
    job.name = out.to_owned();
    job.stop = "latest";
    job.sensor = "dht22";
    job.out_of_orderness = "1h";
    job.window = "30m";
    job.sequence = 60;
    job.model = model.to_owned();
    job.toml()
}

/// The reference's parameters for [`spec_text`].
pub fn params() -> Params {
    Params {
        window_ms: 1_800_000,
        seq_len: 60,
        temperature: (-40.0, 80.0),
        humidity: (0.0, 100.0),
    }
}

/// Records read back from Kafka as the reference's input.
pub fn as_input(records: &[Record]) -> Vec<InputRecord> {
    records
        .iter()
        .map(|r| InputRecord {
            partition: r.partition,
            offset: r.offset,
            key: r.key.clone(),
            value: r.value.clone(),
        })
        .collect()
}

/// Reads the outputs of one run, or of several runs that continue each other (output
/// topics `{out}-pred`, `-dead`, `-late` of each prefix), and checks that together they
/// hold exactly the reference output: every prediction and dead letter once.
pub fn check_outputs(brokers: &str, outs: &[&str], expected: &reference::Output, what: &str) {
    let read = |suffix: &str| -> Vec<Record> {
        outs.iter()
            .flat_map(|out| kafka::read_all(brokers, &format!("{out}-{suffix}")))
            .collect()
    };
    let preds = read("pred");
    let mut got: BTreeMap<(String, i64), Expected> = BTreeMap::new();
    for r in &preds {
        let v: serde_json::Value = serde_json::from_slice(&r.value).expect("prediction json");
        let device = v["device"].as_str().expect("device").to_owned();
        assert_eq!(
            r.key.as_deref(),
            Some(device.as_bytes()),
            "{what}: key = device"
        );
        let end = (v["window_end"].as_f64().expect("window_end") * 1000.0).round() as i64;
        let e = Expected {
            observed: [
                v["observed"]["temperature"].as_f64().expect("t"),
                v["observed"]["humidity"].as_f64().expect("h"),
            ],
            predicted: [
                v["predicted"]["temperature"].as_f64().expect("pt"),
                v["predicted"]["humidity"].as_f64().expect("ph"),
            ],
            window_start: (v["window_start"].as_f64().expect("start") * 1000.0).round() as i64,
        };
        assert_eq!(
            v["predicted"]["for_window_end"]
                .as_f64()
                .map(|x| (x * 1000.0).round() as i64),
            Some(end + 1_800_000)
        );
        assert!(
            got.insert((device.clone(), end), e).is_none(),
            "{what}: duplicate prediction {device}@{end}"
        );
    }
    assert_eq!(
        got.len(),
        expected.predictions.len(),
        "{what}: number of predictions"
    );
    for (k, want) in &expected.predictions {
        let have = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: missing prediction {k:?}"));
        assert_eq!(have.window_start, want.window_start, "{what}: {k:?}");
        for i in 0..2 {
            assert!(
                (have.observed[i] - want.observed[i]).abs() < 1e-9,
                "{what}: {k:?} observed {have:?} vs {want:?}"
            );
            assert!(
                (have.predicted[i] - want.predicted[i]).abs() < 1e-5,
                "{what}: {k:?} predicted {have:?} vs {want:?}"
            );
        }
    }
    let dead = read("dead");
    let got_dead: BTreeMap<(i32, i64), String> = dead
        .iter()
        .map(|r| {
            let p: i32 = r.headers["flowcast.partition"]
                .parse()
                .expect("partition header");
            let o: i64 = r.headers["flowcast.offset"].parse().expect("offset header");
            ((p, o), r.headers["flowcast.reason"].clone())
        })
        .collect();
    assert_eq!(got_dead.len(), dead.len(), "{what}: each dead letter once");
    assert_eq!(&got_dead, &expected.dead, "{what}: dead letters");
    let late = read("late");
    let first: Vec<_> = late.iter().take(3).map(|r| &r.headers).collect();
    assert!(
        late.is_empty(),
        "{what}: nothing is late, but {} records are, e.g. {first:?}",
        late.len()
    );
}
