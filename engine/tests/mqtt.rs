//! The MQTT sink through the real Mosquitto broker that `deploy/services.sh` starts
//! (`FLOWCAST_TEST_MQTT`, default `127.0.0.1:1883`): a test subscriber on ThingsBoard's
//! topics checks that the device mode (`v1/devices/me/telemetry`, one connection per
//! device) and the gateway mode (`v1/gateway/telemetry`, `{"<device>": [...]}`) deliver
//! every prediction of the job's Kafka output with its values, and that no token shows
//! in the logs or the metrics.

use flowcast_engine::job::JobSpec;
use flowcast_engine::kafka::partitioner::partition_for_key;
use flowcast_engine::metrics;
use flowcast_engine::runtime::{self, Execution};
use flowcast_operators::Prediction;
use flowcast_tests::job::TestJob;
use flowcast_tests::mqtt::{Subscriber, broker};
use flowcast_tests::thingsboard::{entries, write_tokens_file};
use flowcast_tests::wait::poll_for;
use flowcast_tests::{kafka, logs};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const BASE: f64 = 1_700_000_040.0 - 1_700_000_040.0 % 60.0;

/// Fails if a token shows in the logs or the metrics.
pub fn assert_no_token_leaks(tokens: &[String]) {
    let logs = logs::text();
    assert!(logs.contains("MQTT sink started"), "logs were captured");
    let rendered = metrics::render();
    for t in tokens {
        assert!(!logs.contains(t.as_str()), "a token leaked into the logs");
        assert!(
            !rendered.contains(t.as_str()),
            "a token leaked into the metrics"
        );
    }
}

fn device_on(partition: i32) -> String {
    (0..)
        .map(|i| format!("dev-{i}"))
        .find(|d| partition_for_key(d.as_bytes(), 3) == partition)
        .expect("some key hashes to each partition")
}

/// Ten minutes of readings per device, each device at its own temperature.
fn readings(devices: &[String]) -> Vec<(Option<String>, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        for s in (0..900).step_by(10) {
            let v = serde_json::json!({"time": BASE + f64::from(s),
                "temperature": 15.0 + i as f64 + f64::from(s % 70) / 10.0,
                "humidity": 40.0 + f64::from(s % 30) / 10.0, "device": d});
            out.push((Some(d.clone()), serde_json::to_vec(&v).expect("json")));
        }
    }
    out
}

/// Runs the job bounded with the given MQTT sink table; returns its name and the Kafka
/// output.
fn run_job(sink: &str) -> (String, Vec<Prediction>) {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11");
    kafka::create_topic(&brokers, &topic, 3);
    let devices: Vec<String> = (0..3).map(device_on).collect();
    kafka::produce(&brokers, &topic, &readings(&devices));
    let mut job = TestJob::new("mqttjob", &brokers, &topic);
    job.stop = "latest";
    job.extra_sinks = format!(
        "[[sinks]]\ntype = \"mqtt\"\nbroker = \"{}\"\n{sink}",
        broker()
    );
    job.create_outputs();
    let (name, text) = (job.name.clone(), job.toml());
    let spec = JobSpec::parse(&text, Path::new("mqtt.toml")).expect("spec");
    runtime::run(
        &spec,
        &Execution::threads(2),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("bounded run");
    let preds = kafka::read_all(&brokers, &format!("{name}-pred"))
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("prediction"))
        .collect();
    (name, preds)
}

/// `(device, ts)` → values, as ThingsBoard would store them.
type Stored = BTreeMap<(String, i64), serde_json::Map<String, Value>>;

fn expected(preds: &[Prediction]) -> Stored {
    preds
        .iter()
        .map(|p| {
            let v = serde_json::json!({
                "predicted_temperature": p.predicted.temperature,
                "predicted_humidity": p.predicted.humidity,
                "observed_temperature": p.observed.temperature,
                "observed_humidity": p.observed.humidity,
                "model": p.model,
            });
            let Value::Object(v) = v else { unreachable!() };
            (
                (
                    p.device.clone(),
                    (p.predicted.for_window_end * 1000.0).round() as i64,
                ),
                v,
            )
        })
        .collect()
}

#[test]
fn device_mode_delivers_every_prediction_through_mosquitto() {
    logs::capture();
    let devices: Vec<String> = (0..3).map(device_on).collect();
    let toks: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            (
                d.clone(),
                flowcast_tests::unique_topic("mqtok").replace('-', "Q"),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = toks.iter().map(|(d, t)| (d.as_str(), t.as_str())).collect();
    let file = write_tokens_file(&pairs);
    let sub = Subscriber::start("v1/devices/me/telemetry");
    let (name, preds) = run_job(&format!(
        "mode = \"device\"\ntokens-file = \"{}\"\nmax-in-flight = 4\nmax-batch = 3",
        file.display()
    ));
    let want = expected(&preds);
    assert!(want.len() >= 3 * 10, "{} predictions", want.len());
    // Device mode names no device in the payload: compare (ts, values), which differ
    // between devices here (each device reads its own temperature).
    let want_set: BTreeMap<(i64, String), _> = want
        .iter()
        .map(|((_, ts), v)| ((*ts, Value::Object(v.clone()).to_string()), ()))
        .collect();
    let got = poll_for(Duration::from_secs(30), || {
        let mut got = BTreeMap::new();
        for p in sub.payloads() {
            let v: Value = serde_json::from_slice(&p).expect("json payload");
            for (ts, values) in entries(&v) {
                got.insert((ts, Value::Object(values).to_string()), ());
            }
        }
        (got.len() >= want_set.len()).then_some(got)
    })
    .expect("every prediction reached the subscriber");
    let got: Vec<_> = got.keys().filter(|k| want_set.contains_key(k)).collect();
    assert_eq!(got.len(), want_set.len(), "every prediction, values intact");
    // This job's MQTT connections only: other tests' jobs share the process's registry.
    let job_connects = metrics::sink_total("flowcast_sink_connects_total", &name, "mqtt");
    assert_eq!(job_connects, 3, "one connection per device");
    let tokens: Vec<String> = toks.into_iter().map(|(_, t)| t).collect();
    assert_no_token_leaks(&tokens);
    let _ = std::fs::remove_file(file);
}

#[test]
fn gateway_mode_delivers_every_device_on_one_connection() {
    logs::capture();
    let gw_token = flowcast_tests::unique_topic("gwtok").replace('-', "Z");
    let file = write_tokens_file(&[("flowcast-gateway", &gw_token)]);
    let sub = Subscriber::start("v1/gateway/telemetry");
    let (_, preds) = run_job(&format!(
        "mode = \"gateway\"\ngateway = \"flowcast-gateway\"\ntokens-file = \"{}\"",
        file.display()
    ));
    let want = expected(&preds);
    assert!(want.len() >= 3 * 10, "{} predictions", want.len());
    let got = poll_for(Duration::from_secs(30), || {
        let mut got: Stored = BTreeMap::new();
        for p in sub.payloads() {
            let v: Value = serde_json::from_slice(&p).expect("json payload");
            for (device, list) in v.as_object().expect("{device: [...]}") {
                for (ts, values) in entries(list) {
                    got.insert((device.clone(), ts), values);
                }
            }
        }
        let complete = want.keys().all(|k| got.contains_key(k));
        complete.then_some(got)
    })
    .expect("every prediction reached the subscriber");
    for (k, v) in &want {
        assert_eq!(&got[k], v, "values of {k:?}");
    }
    assert_no_token_leaks(&[gw_token]);
    let _ = std::fs::remove_file(file);
}
