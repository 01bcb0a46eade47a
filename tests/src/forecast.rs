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

/// `spec` (a [`spec_text`] or [`spec_with_model`]) made unbounded, with every Kafka output
/// exactly-once and checkpoints to `location` every `interval`.
pub fn exactly_once_spec(spec: &str, out: &str, location: &str, interval: &str) -> String {
    let pred = format!("topic = \"{out}-pred\"\n");
    spec.replace("stop = \"latest\"", "stop = \"never\"")
        .replace(&pred, &format!("{pred}delivery = \"exactly-once\"\n"))
        .replacen(
            "\n[source]",
            "\ndead-letter-delivery = \"exactly-once\"\nlate-data-delivery = \"exactly-once\"\n[source]",
            1,
        )
        + &format!("\n[checkpoint]\nlocation = \"{location}\"\ninterval = \"{interval}\"\n")
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

/// One prediction record as the reference states it: its key and values.
pub fn parse_prediction(r: &Record, what: &str) -> ((String, i64), Expected) {
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
    check_quality_fields(&v, what);
    ((device, end), e)
}

/// The record says per feature who spoke, why, and the model's own (clamped) forecast —
/// `predicted` is that forecaster's value — and carries the device's rolling errors.
///
/// # Panics
/// If a field is missing or does not agree with `predicted`.
pub fn check_quality_fields(v: &serde_json::Value, what: &str) {
    for feature in ["temperature", "humidity"] {
        let s = &v["served"][feature];
        let served = v["predicted"][feature].as_f64().expect("predicted");
        let spoke = match s["by"].as_str() {
            Some("model") => s["model"].as_f64(),
            Some("persistence") => v["observed"][feature].as_f64(),
            other => panic!("{what}: served.{feature}.by = {other:?}: {v}"),
        };
        assert_eq!(spoke, Some(served), "{what}: {feature} is who spoke's: {v}");
        assert!(
            s["why"].is_string() && s["clamped"].is_boolean(),
            "{what}: {v}"
        );
        let a = &v["accuracy"];
        let scored = a["scored"].as_u64().expect("accuracy.scored");
        assert_eq!(
            a[feature].is_object(),
            scored > 0,
            "{what}: errors once scored: {v}"
        );
    }
}

/// The online accuracy and the guard's decisions of the predictions of [`spec_text`]'s
/// job (or one with another model; a job with the guard off says `guard-off`), across
/// runs that continue each other: a restored run continues each device's rolling errors.
pub fn check_accuracy(preds: &BTreeMap<(String, i64), serde_json::Value>, what: &str) {
    let guard_off = preds
        .values()
        .any(|v| v["served"]["temperature"]["why"] == "guard-off");
    let guard = (!guard_off).then(crate::accuracy::Guard::default);
    let ranges = [(-40.0, 80.0), (0.0, 100.0)];
    let half_life = crate::accuracy::HALF_LIFE;
    crate::accuracy::check(preds, 1_800_000, half_life, guard, ranges, what);
}

/// A dead letter's origin (source partition and offset) and reason.
pub fn parse_dead_letter(r: &Record) -> ((i32, i64), String) {
    let p: i32 = r.headers["flowcast.partition"]
        .parse()
        .expect("partition header");
    let o: i64 = r.headers["flowcast.offset"].parse().expect("offset header");
    ((p, o), r.headers["flowcast.reason"].clone())
}

/// Checks that `got` holds exactly the reference's predictions, values included.
pub fn check_predictions(
    got: &BTreeMap<(String, i64), Expected>,
    expected: &reference::Output,
    what: &str,
) {
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
    let mut got: BTreeMap<(String, i64), Expected> = BTreeMap::new();
    let mut values = BTreeMap::new();
    for r in &read("pred") {
        let (k, e) = parse_prediction(r, what);
        assert!(
            got.insert(k.clone(), e).is_none(),
            "{what}: duplicate prediction {k:?}"
        );
        values.insert(k, serde_json::from_slice(&r.value).expect("json"));
    }
    check_predictions(&got, expected, what);
    check_accuracy(&values, what);
    let dead = read("dead");
    let got_dead: BTreeMap<(i32, i64), String> = dead.iter().map(parse_dead_letter).collect();
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

/// The run that wrote `r`: runs are told apart by the record's create time, against the
/// time each run's process had ended (`ended_ms[k]` for run `k`). A produce request a
/// killed process had sent may be appended after it is gone; its create time still says
/// which run made it.
fn run_of(r: &Record, ended_ms: &[i64]) -> usize {
    let t = r.timestamp_ms.expect("records carry their create time");
    ended_ms
        .iter()
        .position(|e| t <= *e)
        .unwrap_or(ended_ms.len())
}

/// The at-least-once check of a job restarted after crashes from its checkpoints: the
/// output topics `{out}-pred` and `{out}-dead` hold every reference record (values
/// exact), nothing is missing, and a record appears more than once only because a
/// restart redid what came after the checkpoint it restored: within each run's output
/// of a partition, the records written again later form a suffix (nothing before the
/// restored checkpoint is repeated), and no run writes a record twice. `ended_ms[k]` is
/// when run `k`'s process had ended (wall clock, ms); returns, per run, how many
/// predictions it wrote and how many of those a later run wrote again.
pub fn check_restarted_outputs(
    brokers: &str,
    out: &str,
    ended_ms: &[i64],
    expected: &reference::Output,
    what: &str,
) -> Vec<(usize, usize)> {
    let preds = kafka::read_all(brokers, &format!("{out}-pred"));
    let keyed: Vec<_> = preds
        .iter()
        .map(|r| (parse_prediction(r, what), r))
        .collect();
    let mut got: BTreeMap<(String, i64), Expected> = BTreeMap::new();
    for ((k, e), _) in &keyed {
        if let Some(prev) = got.insert(k.clone(), e.clone()) {
            assert_eq!(
                &prev, e,
                "{what}: a repeated prediction {k:?} has other values"
            );
        }
    }
    check_predictions(&got, expected, what);
    let repeated = suffix_check(
        keyed.iter().map(|((k, _), r)| (format!("{k:?}"), *r)),
        ended_ms,
        &format!("{what}: predictions"),
    );
    let dead = kafka::read_all(brokers, &format!("{out}-dead"));
    let got_dead: BTreeMap<(i32, i64), String> = dead.iter().map(parse_dead_letter).collect();
    assert_eq!(&got_dead, &expected.dead, "{what}: dead letters");
    suffix_check(
        dead.iter()
            .map(|r| (format!("{:?}", parse_dead_letter(r).0), r)),
        ended_ms,
        &format!("{what}: dead letters"),
    );
    repeated
}

/// Records by identity: each at most once per run, and a run's records repeated by a
/// later run form a suffix of each of its partitions. Returns, per run, how many records
/// it wrote and how many of them were written again later.
fn suffix_check<'a>(
    records: impl Iterator<Item = (String, &'a Record)>,
    ends: &[i64],
    what: &str,
) -> Vec<(usize, usize)> {
    let mut runs: BTreeMap<String, Vec<(usize, i32, i64)>> = BTreeMap::new();
    for (id, r) in records {
        runs.entry(id)
            .or_default()
            .push((run_of(r, ends), r.partition, r.offset));
    }
    // (run, partition) → offsets of its records, and of those repeated later.
    let mut all: BTreeMap<(usize, i32), Vec<i64>> = BTreeMap::new();
    let mut again: BTreeMap<(usize, i32), Vec<i64>> = BTreeMap::new();
    let mut per_run = vec![(0, 0); ends.len() + 1];
    for (id, copies) in &runs {
        let mut seen = std::collections::BTreeSet::new();
        for (run, _, _) in copies {
            assert!(seen.insert(*run), "{what}: {id} written twice by run {run}");
        }
        let last = copies.iter().map(|c| c.0).max().unwrap_or(0);
        for &(run, p, o) in copies {
            all.entry((run, p)).or_default().push(o);
            per_run[run].0 += 1;
            if run < last {
                again.entry((run, p)).or_default().push(o);
                per_run[run].1 += 1;
            }
        }
    }
    for (key, offsets) in &again {
        let lowest = offsets.iter().min().copied().unwrap_or(i64::MAX);
        let after = all[key].iter().filter(|o| **o >= lowest).count();
        assert_eq!(
            after,
            offsets.len(),
            "{what}: run {} partition {} repeats records that a restored checkpoint covered (from offset {lowest} on, {after} records but only {} repeated)",
            key.0,
            key.1,
            offsets.len()
        );
    }
    per_run.truncate(ends.len());
    per_run
}

/// Checks a job's exactly-once outputs as a `read_committed` consumer sees them: every
/// reference prediction and dead letter exactly once and nothing else, and no late
/// records (the recorded input has none). Reading panics if an open transaction keeps the
/// reader from the end of a topic.
pub fn check_exactly_once(brokers: &str, out: &str, expected: &reference::Output, what: &str) {
    let mut got = BTreeMap::new();
    let mut at: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for r in kafka::read_committed(brokers, &format!("{out}-pred")) {
        let (k, e) = parse_prediction(&r, what);
        at.entry(k.clone()).or_default().push(format!(
            "p{}@{} t={}",
            r.partition,
            r.offset,
            r.timestamp_ms.unwrap_or(0)
        ));
        got.insert(k, e);
    }
    let twice: Vec<_> = at.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: {} predictions committed more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    check_predictions(&got, expected, what);
    let mut dead = BTreeMap::new();
    for r in kafka::read_committed(brokers, &format!("{out}-dead")) {
        let (k, reason) = parse_dead_letter(&r);
        assert!(
            dead.insert(k, reason).is_none(),
            "{what}: dead letter {k:?} committed twice"
        );
    }
    assert_eq!(&dead, &expected.dead, "{what}: dead letters");
    let late = kafka::read_committed(brokers, &format!("{out}-late"));
    assert!(late.is_empty(), "{what}: {} late records", late.len());
}
