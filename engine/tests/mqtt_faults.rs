//! The MQTT sink when things go wrong, with the real Mosquitto broker: a broken link
//! (a TCP proxy that resets every connection and refuses new ones) is reconnected with
//! backoff and loses nothing while the sink blocks at its bound; a broker that refuses
//! the credentials (a private Mosquitto with a password file, started by
//! `deploy/mosquitto/start.sh`) sends every prediction to the dead-letter topic.

use flowcast_engine::kafka::ClientSettings;
use flowcast_engine::metrics;
use flowcast_engine::sinks::mqtt::{MqttDelivery, MqttMode, MqttSinkConfig};
use flowcast_operators::{ObservedValues, PredictedValues, Prediction};
use flowcast_tests::mqtt::{PrivateBroker, Proxy, Subscriber, broker};
use flowcast_tests::thingsboard::{entries, write_tokens_file};
use flowcast_tests::wait::poll_for;
use flowcast_tests::{kafka, logs};
use serde_json::Value;
use std::time::Duration;

const BASE: f64 = 1_700_000_040.0 - 1_700_000_040.0 % 60.0;

fn assert_no_token_leaks(tokens: &[String]) {
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

#[test]
fn a_broken_connection_reconnects_and_loses_nothing() {
    logs::capture();
    let brokers = flowcast_tests::brokers();
    let proxy = Proxy::start(broker());
    let model = flowcast_tests::unique_topic("model");
    let devices = ["pa", "pb"];
    let toks: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            (
                d.to_string(),
                flowcast_tests::unique_topic("rtok").replace('-', "R"),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = toks.iter().map(|(d, t)| (d.as_str(), t.as_str())).collect();
    let file = write_tokens_file(&pairs);
    let mut c = MqttSinkConfig::new(&proxy.addr.to_string(), MqttMode::Device);
    c.tokens_file = Some(file.clone());
    c.max_buffered = 8;
    c.max_in_flight = 4;
    c.initial_backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(400);
    let job = flowcast_tests::unique_topic("mqttre");
    let dead = format!("{job}-dead");
    kafka::create_topic(&brokers, &dead, 1);
    let m = model.clone();
    let prediction = move |d: usize, i: u32| Prediction {
        device: devices[d].to_owned(),
        window_start: BASE + f64::from(i) * 60.0,
        window_end: BASE + f64::from(i + 1) * 60.0,
        observed: ObservedValues {
            temperature: 10.0 * d as f64 + f64::from(i),
            humidity: 40.0,
        },
        predicted: PredictedValues {
            temperature: 21.0,
            humidity: 41.0,
            for_window_end: BASE + f64::from(i + 2) * 60.0,
        },
        model: m.clone(),
        served: Default::default(),
        accuracy: Default::default(),
    };
    let sub = Subscriber::start("v1/devices/me/telemetry");
    let ours = |sub: &Subscriber| -> std::collections::BTreeSet<(i64, String)> {
        sub.payloads()
            .iter()
            .filter_map(|p| serde_json::from_slice::<Value>(p).ok())
            .flat_map(|v| entries(&v))
            .filter(|(_, v)| v["model"] == model.as_str())
            .map(|(ts, v)| (ts, v["observed_temperature"].to_string()))
            .collect()
    };
    let mut d = MqttDelivery::start(
        &c,
        &ClientSettings::new(&brokers),
        &dead,
        &job,
        "sink-0:mqtt",
        0,
    )
    .expect("start");
    for i in 0..10 {
        for k in 0..2 {
            d.submit(u64::from(i) * 2 + k as u64, prediction(k, i));
        }
    }
    poll_for(Duration::from_secs(20), || {
        (ours(&sub).len() == 20).then_some(())
    })
    .expect("the first 20 arrive");

    // The connection breaks; 20 more predictions come, more than the sink may buffer. The
    // sink must block during the cut, not merely have blocked at some point before it.
    let waits_before = metrics::sink_total("flowcast_sink_backpressure_waits_total", &job, "mqtt");
    proxy.cut();
    let feed = prediction.clone();
    let feeder = std::thread::spawn(move || {
        let prediction = feed;
        for i in 10..20 {
            for k in 0..2 {
                d.submit(u64::from(i) * 2 + k as u64, prediction(k, i));
            }
        }
        d
    });
    poll_for(Duration::from_secs(20), || {
        (metrics::sink_total("flowcast_sink_connection_errors_total", &job, "mqtt") >= 2)
            .then_some(())
    })
    .expect("reconnects fail while the link is down");
    poll_for(Duration::from_secs(20), || {
        (metrics::sink_total("flowcast_sink_backpressure_waits_total", &job, "mqtt") > waits_before)
            .then_some(())
    })
    .expect("the feeder blocks at the bound");
    assert!(metrics::sink_total("flowcast_sink_queued_records", &job, "mqtt") <= 8);
    proxy.heal();
    let mut d = feeder.join().expect("feeder");
    d.finish();
    let got = poll_for(Duration::from_secs(20), || {
        let got = ours(&sub);
        (got.len() >= 40).then_some(got)
    })
    .expect("every prediction arrives after the reconnect");
    assert_eq!(got.len(), 40);
    assert!(
        kafka::read_all(&brokers, &dead).is_empty(),
        "nothing dead-lettered"
    );
    let tokens: Vec<String> = toks.into_iter().map(|(_, t)| t).collect();
    assert_no_token_leaks(&tokens);
    let _ = std::fs::remove_file(file);
}

#[test]
fn refused_credentials_send_the_predictions_to_the_dead_letter_topic() {
    logs::capture();
    let brokers = flowcast_tests::brokers();
    let broker = PrivateBroker::start();
    let token = flowcast_tests::unique_topic("unknowntok").replace('-', "U");
    let file = write_tokens_file(&[("pi-x", &token)]);
    let mut c = MqttSinkConfig::new(&format!("127.0.0.1:{}", broker.port), MqttMode::Device);
    c.tokens_file = Some(file.clone());
    c.initial_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(100);
    let job = flowcast_tests::unique_topic("mqttauth");
    let dead = format!("{job}-dead");
    kafka::create_topic(&brokers, &dead, 1);
    let mut d = MqttDelivery::start(
        &c,
        &ClientSettings::new(&brokers),
        &dead,
        &job,
        "sink-0:mqtt",
        0,
    )
    .expect("start");
    let mut sent = Vec::new();
    for i in 0..5 {
        let p: Prediction = serde_json::from_value(serde_json::json!({"device": "pi-x",
            "window_start": BASE + f64::from(i) * 60.0, "window_end": BASE + f64::from(i + 1) * 60.0,
            "observed": {"temperature": 20.0, "humidity": 40.0},
            "predicted": {"temperature": 21.0, "humidity": 41.0, "for_window_end": BASE + f64::from(i + 2) * 60.0},
            "model": "m"}))
        .expect("prediction");
        sent.push(p.clone());
        d.submit(sent.len() as u64, p);
    }
    d.finish();
    let records = kafka::read_all(&brokers, &dead);
    assert_eq!(records.len(), 5, "every refused prediction, once");
    let mut got = Vec::new();
    for r in &records {
        assert_eq!(r.headers["flowcast.reason"], "mqtt_refused");
        assert_eq!(r.headers["flowcast.sink"], "mqtt");
        assert!(!r.headers["flowcast.detail"].contains(token.as_str()));
        assert_eq!(r.key.as_deref(), Some(&b"pi-x"[..]));
        got.push(serde_json::from_slice::<Prediction>(&r.value).expect("prediction"));
    }
    got.sort_by(|a, b| a.window_end.total_cmp(&b.window_end));
    assert_eq!(got, sent);
    assert_eq!(
        metrics::sink_total("flowcast_sink_dead_letter_records_total", &job, "mqtt"),
        5
    );
    assert_no_token_leaks(&[token]);
    let _ = std::fs::remove_file(file);
}
