//! Online accuracy and the guard end to end, on the real Kafka cluster and the real data:
//! an indoor room replayed as a DHT11 (readings rounded to whole degrees and percent, as a
//! DHT11 reports them) and the outdoor sensor `T6`/`RH_6` replayed as a DHT22, each through
//! the running job with the committed LSTM. Every prediction's `accuracy` must be the
//! rolling errors recomputed from the output alone, and who spoke must follow from them
//! (`flowcast_tests::accuracy`). Then a deliberately bad model — the LSTM with humidity
//! 4 %RH too high (`models/fixtures/humidity_biased.*`) — on the outdoor sensor, where the
//! LSTM is ahead of persistence on temperature: the guard must switch humidity, where that
//! model is behind, to persistence, and leave temperature with the model wherever it is
//! ahead. (On the indoor room as a DHT11 the committed LSTM is behind persistence on both
//! features — whole-degree input it was not trained on — so it cannot show "ahead".)

use flowcast_engine::job::JobSpec;
use flowcast_engine::runtime::{self, Execution};
use flowcast_tests::accuracy::{self, FeatureSummary, Guard, HALF_LIFE};
use flowcast_tests::data::room_readings;
use flowcast_tests::forecast::spec_with_model;
use flowcast_tests::kafka;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Days replayed: 60 windows of history, then some 370 forecasts per device.
const DAYS: f64 = 9.0;
const WINDOW_MS: i64 = 1_800_000;

/// Produces `rooms`' readings to a fresh topic (rounded when `whole`) and runs the job with
/// `model` (a `.pt` path under `models/`) as `sensor` to its end; returns the predictions.
fn run(
    rooms: &[u8],
    whole: bool,
    sensor: &str,
    model: &str,
) -> BTreeMap<(String, i64), serde_json::Value> {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("acc-in");
    kafka::create_topic(&brokers, &topic, 3);
    let round = |x: f64| if whole { x.round() } else { x };
    let records: Vec<(Option<String>, Vec<u8>)> = room_readings(rooms, DAYS)
        .into_iter()
        .map(|r| {
            let v = serde_json::json!({"time": r.time, "temperature": round(r.temperature),
                "humidity": round(r.humidity), "device": r.device});
            (Some(r.device), v.to_string().into_bytes())
        })
        .collect();
    kafka::produce(&brokers, &topic, &records);
    let out = flowcast_tests::unique_topic("acc");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(model);
    let table = format!("kind = \"torchscript\"\npath = \"{}\"", path.display());
    let text = spec_with_model(&brokers, &topic, &out, &table)
        .replace("sensor = \"dht22\"", &format!("sensor = \"{sensor}\""));
    let spec = JobSpec::parse(&text, Path::new("test.toml")).expect("spec");
    runtime::run(
        &spec,
        &Execution::threads(2),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("job runs");
    let preds = accuracy::read(&brokers, &format!("{out}-pred"));
    assert!(
        preds.len() > 300 * rooms.len(),
        "{} predictions",
        preds.len()
    );
    preds
}

fn summary<'a>(
    s: &'a BTreeMap<(String, &'static str), FeatureSummary>,
    device: &str,
    feature: &str,
) -> &'a FeatureSummary {
    s.iter()
        .find(|((d, f), _)| d == device && *f == feature)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {device} {feature}"))
}

fn ratio(s: &FeatureSummary) -> f64 {
    s.errors[0] / s.errors[1]
}

#[test]
fn accuracy_in_predictions_matches_errors_recomputed_from_the_output_indoors_and_out() {
    let guard = Some(Guard::default());
    let indoor = run(&[1], true, "dht11", "dht11_lstm.pt");
    let dht11 = [(0.0, 50.0), (0.0, 100.0)];
    let s = accuracy::check(
        &indoor,
        WINDOW_MS,
        HALF_LIFE,
        guard,
        dht11,
        "indoor as DHT11",
    );
    let outdoor = run(&[6], false, "dht22", "dht11_lstm.pt");
    let dht22 = [(-40.0, 80.0), (0.0, 100.0)];
    let o = accuracy::check(
        &outdoor,
        WINDOW_MS,
        HALF_LIFE,
        guard,
        dht22,
        "outdoor as DHT22",
    );
    for (what, s) in [("indoor", &s), ("outdoor", &o)] {
        for ((device, feature), f) in s.iter() {
            eprintln!(
                "{what} {device} {feature}: scored {}, rolling errors model {:.3} persistence {:.3} (ratio {:.2}); persistence spoke {} of {} after the warm-up; clamped {}",
                f.scored,
                f.errors[0],
                f.errors[1],
                ratio(f),
                f.persistence_spoke,
                f.after_warm_up,
                f.clamped
            );
            assert!(f.scored > 300, "{what} {device} {feature}: scored");
            // A model clearly ahead (beyond the hysteresis) always speaks.
            assert_eq!(
                f.ahead_and_model_spoke, f.ahead,
                "{what} {device} {feature}"
            );
        }
    }
}

#[test]
fn the_guard_switches_a_biased_feature_to_persistence_and_keeps_the_model_where_it_is_ahead() {
    let preds = run(&[6], false, "dht22", "fixtures/humidity_biased.pt");
    let guard = Guard::default();
    let ranges = [(-40.0, 80.0), (0.0, 100.0)];
    let s = accuracy::check(&preds, WINDOW_MS, HALF_LIFE, Some(guard), ranges, "biased");
    let humidity = summary(&s, "room-6", "humidity");
    let temperature = summary(&s, "room-6", "temperature");
    eprintln!("humidity {humidity:?}\ntemperature {temperature:?}");
    assert!(
        ratio(humidity) > 2.0,
        "4 %RH off: the model is behind on humidity"
    );
    assert_eq!(
        humidity.persistence_spoke, humidity.after_warm_up,
        "humidity: persistence speaks from the end of the warm-up on"
    );
    assert!(
        ratio(temperature) < 1.0,
        "temperature: the LSTM is ahead ({temperature:?})"
    );
    assert_eq!(
        temperature.ahead_and_model_spoke, temperature.ahead,
        "temperature: wherever the model is clearly ahead, it speaks"
    );
    assert!(
        temperature.persistence_spoke * 5 < temperature.after_warm_up,
        "temperature: the guard rarely steps in ({temperature:?})"
    );
    assert!(
        humidity.clamped > 0,
        "outdoors near 100 %RH, 4 %RH too high: forecasts clamped to 100"
    );
    // The record says why.
    let last = preds.values().last().expect("predictions");
    assert_eq!(last["served"]["humidity"]["why"], "model-behind", "{last}");
    assert_eq!(
        last["predicted"]["humidity"], last["observed"]["humidity"],
        "{last}"
    );
}
