//! The ThingsBoard sink and `flowcast tb-bridge` against the ThingsBoard test server
//! (`flowcast_tests::thingsboard`) and the real Kafka cluster:
//!
//! - the job writes to Kafka and ThingsBoard at once; ThingsBoard goes down in the middle
//!   of the stream; once it is back, every prediction of the Kafka output is in
//!   ThingsBoard, with the values the Kafka output has;
//! - with a token ThingsBoard does not know, the dead-letter topic holds every prediction
//!   of that device, with the 401 and the body, and the others still arrive;
//! - the bridge delivers `predicData` and commits only what was delivered: stopped during
//!   an outage, it commits nothing past the outage, and a second run delivers the rest;
//! - no token ever shows in a log line (captured at DEBUG, the `log` crate's records of
//!   librdkafka and rumqttc included), a metric, or a dead letter's headers.

use flowcast_engine::cli::tb_bridge::{self, BridgeConfig};
use flowcast_engine::job::JobSpec;
use flowcast_engine::kafka::ClientSettings;
use flowcast_engine::kafka::partitioner::partition_for_key;
use flowcast_engine::metrics;
use flowcast_engine::runtime::{self, Execution};
use flowcast_engine::sinks::thingsboard::ThingsBoardSinkConfig;
use flowcast_operators::Prediction;
use flowcast_tests::job::TestJob;
use flowcast_tests::kafka::{self, Record};
use flowcast_tests::logs;
use flowcast_tests::thingsboard::{BASE, TbServer, readings, write_tokens_file};
use flowcast_tests::wait::until;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Fails if a token shows in the logs, the metrics or dead letters' headers. `tb` is the
/// server this test's sink talked to: the capture must hold that sink's own start line
/// (which names the server's URL), or an empty or foreign capture would pass.
fn assert_no_token_leaks(tokens: &[&str], dead_letters: &[Record], tb: &TbServer) {
    let logs = logs::text();
    let started = format!("{}/api/v1/***/telemetry", tb.url());
    assert!(
        logs.lines()
            .any(|l| l.contains("ThingsBoard sink started") && l.contains(&started)),
        "the capture holds this test's sink start ({started})"
    );
    let rendered = metrics::render();
    for t in tokens {
        assert!(!logs.contains(t), "a token leaked into the logs");
        assert!(!rendered.contains(t), "a token leaked into the metrics");
        for r in dead_letters {
            assert!(
                r.headers.values().all(|v| !v.contains(t)),
                "a token leaked into dead-letter headers"
            );
        }
    }
}

/// A fresh random-looking token.
fn token(tag: &str) -> String {
    format!(
        "{tag}{}",
        flowcast_tests::unique_topic("Tk").replace('-', "x")
    )
}

/// One device name per partition `0..3` of a 3-partition topic.
fn device_on(partition: i32) -> String {
    (0..)
        .map(|i| format!("dev-{i}"))
        .find(|d| partition_for_key(d.as_bytes(), 3) == partition)
        .expect("some key hashes to each partition")
}

fn job_spec(name: &str, brokers: &str, topic: &str, stop: &'static str, tb: &str) -> JobSpec {
    let mut job = TestJob::new(name, brokers, topic);
    job.name = name.to_owned();
    job.stop = stop;
    job.extra_sinks = format!("[[sinks]]\ntype = \"thingsboard\"\n{tb}");
    job.create_outputs();
    JobSpec::parse(&job.toml(), Path::new("test.toml")).expect("spec")
}

fn predictions(records: &[Record]) -> Vec<Prediction> {
    records
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("prediction json"))
        .collect()
}

fn ts_ms(p: &Prediction) -> i64 {
    (p.predicted.for_window_end * 1000.0).round() as i64
}

/// Checks that ThingsBoard stores exactly the Kafka output's predictions, with its values.
fn assert_same(tb: &TbServer, kafka_out: &[Prediction]) {
    let latest = tb.latest();
    let want: BTreeMap<(String, i64), &Prediction> = kafka_out
        .iter()
        .map(|p| ((p.device.clone(), ts_ms(p)), p))
        .collect();
    assert_eq!(
        want.len(),
        kafka_out.len(),
        "one prediction per device and window"
    );
    let got: Vec<_> = latest.keys().cloned().collect();
    let expected: Vec<_> = want.keys().cloned().collect();
    assert_eq!(got, expected, "ThingsBoard holds exactly the Kafka output");
    for (k, p) in want {
        let v = &latest[&k];
        assert_eq!(
            v["predicted_temperature"].as_f64(),
            Some(p.predicted.temperature)
        );
        assert_eq!(v["predicted_humidity"].as_f64(), Some(p.predicted.humidity));
        assert_eq!(
            v["observed_temperature"].as_f64(),
            Some(p.observed.temperature)
        );
        assert_eq!(v["observed_humidity"].as_f64(), Some(p.observed.humidity));
        assert_eq!(v["model"].as_str(), Some(p.model.as_str()));
    }
}

#[test]
fn thingsboard_down_mid_stream_loses_nothing() {
    logs::capture();
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11");
    kafka::create_topic(&brokers, &topic, 3);
    let devices: Vec<String> = (0..3).map(device_on).collect();
    let tb = TbServer::start();
    let toks: Vec<String> = devices.iter().map(|_| token("ok")).collect();
    for (d, t) in devices.iter().zip(&toks) {
        tb.add_device(d, t);
    }
    let entries: Vec<(&str, &str)> = devices
        .iter()
        .map(String::as_str)
        .zip(toks.iter().map(String::as_str))
        .collect();
    let file = write_tokens_file(&entries);
    let name = flowcast_tests::unique_topic("tbjob");
    let spec = job_spec(
        &name,
        &brokers,
        &topic,
        "never",
        &format!(
            "url = \"{}\"\ntokens-file = \"{}\"\ntimeout = \"2s\"\nmax-buffered = 4\n\
             initial-backoff = \"50ms\"\nmax-backoff = \"1s\"\nbreaker-failures = 3\nbreaker-cooldown = \"200ms\"",
            tb.url(),
            file.display()
        ),
    );
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&shutdown);
    let job = std::thread::spawn(move || runtime::run(&spec, &Execution::threads(2), flag));

    // Phase 1: ten minutes of data; predictions reach ThingsBoard.
    kafka::produce(&brokers, &topic, &readings(&devices, 0, 600));
    let first = tb.wait_for_latest(24, Duration::from_secs(60)).len();
    assert_eq!(first, 24, "phase 1: 8 predictions per device");

    // ThingsBoard goes down; twenty more minutes of data arrive. Backpressure counted
    // during the warm-up does not count: the sink must block during the outage.
    let waits_before = metrics::sink_total(
        "flowcast_sink_backpressure_waits_total",
        &name,
        "thingsboard",
    );
    tb.outage();
    kafka::produce(&brokers, &topic, &readings(&devices, 600, 1800));
    until("the circuit to open", Duration::from_secs(60), || {
        metrics::sink_total("flowcast_sink_circuit_open", &name, "thingsboard") > 0
    });
    until(
        "the sink's queue to fill during the outage (backpressure)",
        Duration::from_secs(60),
        || {
            metrics::sink_total(
                "flowcast_sink_backpressure_waits_total",
                &name,
                "thingsboard",
            ) > waits_before
        },
    );
    assert_eq!(tb.latest().len(), 24, "nothing arrives while down");

    // Back up: everything the job made arrives.
    tb.restore();
    let pred_topic = format!("{name}-pred");
    until(
        "ThingsBoard to catch up with Kafka",
        Duration::from_secs(120),
        || {
            let k = kafka::read_all(&brokers, &pred_topic).len();
            k > 24 && tb.latest().len() == k
        },
    );
    shutdown.store(true, Ordering::SeqCst);
    job.join().expect("job thread").expect("job ends cleanly");

    let out = predictions(&kafka::read_all(&brokers, &pred_topic));
    assert!(
        out.len() >= 24 + 3 * 20,
        "phase 2 predictions: {}",
        out.len()
    );
    assert_same(&tb, &out);
    assert!(
        tb.accepted().iter().all(|t| t.client_ts),
        "every entry carries the client's ts"
    );
    assert!(metrics::sink_total("flowcast_sink_circuit_opened_total", &name, "thingsboard") >= 1);
    assert_eq!(
        metrics::sink_total("flowcast_sink_circuit_open", &name, "thingsboard"),
        0
    );
    assert_eq!(
        metrics::sink_total(
            "flowcast_sink_dead_letter_records_total",
            &name,
            "thingsboard"
        ),
        0
    );
    let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
    assert_no_token_leaks(&refs, &[], &tb);
    let text = logs::text();
    assert!(text.contains("circuit open"), "the outage is logged");
    assert!(
        text.contains("/api/v1/***/telemetry"),
        "errors name the URL, redacted"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_bad_token_sends_every_prediction_to_the_dead_letter_topic_with_the_401() {
    logs::capture();
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11");
    kafka::create_topic(&brokers, &topic, 3);
    let devices: Vec<String> = (0..3).map(device_on).collect();
    let tb = TbServer::start();
    let good = [token("good"), token("good")];
    let bad = token("bad");
    tb.add_device(&devices[0], &good[0]);
    tb.add_device(&devices[1], &good[1]);
    // devices[2]'s token is unknown to ThingsBoard.
    let file = write_tokens_file(&[
        (&devices[0], &good[0]),
        (&devices[1], &good[1]),
        (&devices[2], &bad),
    ]);
    kafka::produce(&brokers, &topic, &readings(&devices, 0, 900));
    let name = flowcast_tests::unique_topic("tbbad");
    let spec = job_spec(
        &name,
        &brokers,
        &topic,
        "latest",
        &format!(
            "url = \"{}\"\ntokens-file = \"{}\"",
            tb.url(),
            file.display()
        ),
    );
    runtime::run(
        &spec,
        &Execution::threads(2),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("bounded run");

    let out = predictions(&kafka::read_all(&brokers, &format!("{name}-pred")));
    let (rejected, accepted): (Vec<Prediction>, Vec<Prediction>) =
        out.into_iter().partition(|p| p.device == devices[2]);
    assert!(!rejected.is_empty() && !accepted.is_empty());
    assert_same(&tb, &accepted);
    let dead = kafka::read_all(&brokers, &format!("{name}-dead"));
    assert_eq!(
        dead.len(),
        rejected.len(),
        "every rejected prediction, once"
    );
    let mut dead_preds = Vec::new();
    for r in &dead {
        assert_eq!(r.headers["flowcast.http-status"], "401");
        assert_eq!(r.headers["flowcast.reason"], "thingsboard_rejected");
        assert_eq!(r.headers["flowcast.sink"], "thingsboard");
        assert!(r.headers.contains_key("flowcast.detail"));
        assert_eq!(r.key.as_deref(), Some(devices[2].as_bytes()));
        dead_preds
            .push(serde_json::from_slice::<Prediction>(&r.value).expect("original prediction"));
    }
    let key = |p: &Prediction| ts_ms(p);
    let mut want = rejected.clone();
    want.sort_by_key(key);
    dead_preds.sort_by_key(key);
    assert_eq!(
        dead_preds, want,
        "the dead letters are the rejected predictions as they were"
    );
    assert!(tb.statuses().get(&401).copied().unwrap_or(0) > 0);
    assert_no_token_leaks(&[&good[0], &good[1], &bad], &dead, &tb);
    let _ = std::fs::remove_file(file);
}

fn bridge_config(
    brokers: &str,
    topic: &str,
    group: &str,
    tb: &TbServer,
    file: &Path,
) -> BridgeConfig {
    let mut t = ThingsBoardSinkConfig::new(&tb.url());
    t.tokens_file = Some(file.to_owned());
    t.timeout = Duration::from_secs(2);
    t.initial_backoff = Duration::from_millis(50);
    t.max_backoff = Duration::from_millis(500);
    t.breaker_cooldown = Duration::from_millis(100);
    t.max_buffered = 16;
    BridgeConfig {
        kafka: ClientSettings::new(brokers),
        topic: topic.to_owned(),
        group: group.to_owned(),
        thingsboard: t,
        dead_letter_topic: format!("{topic}-dead"),
        commit_interval: Duration::from_millis(200),
        drain_timeout: Duration::from_millis(500),
    }
}

#[test]
fn the_bridge_commits_only_what_was_delivered() {
    logs::capture();
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("predicData");
    kafka::create_topic(&brokers, &topic, 3);
    kafka::create_topic(&brokers, &format!("{topic}-dead"), 3);
    let devices: Vec<String> = (0..4).map(|i| format!("pi-{i}")).collect();
    let tb = TbServer::start();
    let toks: Vec<String> = devices.iter().map(|_| token("br")).collect();
    for (d, t) in devices.iter().zip(&toks) {
        tb.add_device(d, t);
    }
    let entries: Vec<(&str, &str)> = devices
        .iter()
        .map(String::as_str)
        .zip(toks.iter().map(String::as_str))
        .collect();
    let file = write_tokens_file(&entries);
    let batch = |from: u32, to: u32| -> Vec<(Option<String>, Vec<u8>)> {
        let mut v = Vec::new();
        for i in from..to {
            for d in &devices {
                let p = serde_json::json!({"device": d, "window_start": BASE + f64::from(i) * 60.0,
                    "window_end": BASE + f64::from(i + 1) * 60.0,
                    "observed": {"temperature": 20.0 + f64::from(i) / 10.0, "humidity": 40.0},
                    "predicted": {"temperature": 21.0, "humidity": 41.0, "for_window_end": BASE + f64::from(i + 2) * 60.0},
                    "model": "m1"});
                v.push((Some(d.clone()), serde_json::to_vec(&p).expect("json")));
            }
        }
        v
    };
    let mut input = batch(0, 25);
    input.push((Some("pi-0".into()), b"not a prediction".to_vec()));
    kafka::produce(&brokers, &topic, &input);
    let group = flowcast_tests::unique_topic("bridge");
    let cfg = bridge_config(&brokers, &topic, &group, &tb, &file);

    // Run 1 delivers the first 100, then ThingsBoard goes down and 100 more arrive; the
    // bridge is stopped during the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let run1 = {
        let (cfg, stop) = (cfg.clone(), Arc::clone(&stop));
        std::thread::spawn(move || tb_bridge::run_bridge(&cfg, stop))
    };
    assert_eq!(tb.wait_for_latest(100, Duration::from_secs(60)).len(), 100);
    tb.outage();
    kafka::produce(&brokers, &topic, &batch(25, 50));
    let job = format!("tb-bridge-{group}");
    until("the circuit to open", Duration::from_secs(30), || {
        metrics::sink_total("flowcast_sink_circuit_open", &job, "thingsboard") > 0
    });
    stop.store(true, Ordering::SeqCst);
    let s1 = run1.join().expect("bridge thread").expect("bridge run 1");
    assert_eq!(s1.malformed, 1);
    assert!(s1.abandoned > 0, "stopped with deliveries pending");
    let committed1: i64 = s1.committed.values().sum();
    assert!(
        committed1 < 201,
        "nothing undelivered is committed ({committed1})"
    );
    assert!(
        committed1 >= 101,
        "what was delivered is committed ({committed1})"
    );

    // Run 2, ThingsBoard back: the rest arrives, nothing twice in storage.
    tb.restore();
    let stop = Arc::new(AtomicBool::new(false));
    let run2 = {
        let (cfg, stop) = (cfg.clone(), Arc::clone(&stop));
        std::thread::spawn(move || tb_bridge::run_bridge(&cfg, stop))
    };
    let latest = tb.wait_for_latest(200, Duration::from_secs(60));
    assert_eq!(latest.len(), 200, "every prediction stored");
    stop.store(true, Ordering::SeqCst);
    let s2 = run2.join().expect("bridge thread").expect("bridge run 2");
    assert_eq!(s2.abandoned, 0);
    assert_eq!(
        s2.committed.values().sum::<i64>(),
        201,
        "committed to the end"
    );
    assert!(
        (s2.consumed as i64) <= 201 - committed1,
        "run 2 starts at run 1's commit"
    );
    let dead = kafka::read_all(&brokers, &format!("{topic}-dead"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers["flowcast.reason"], "malformed");
    let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
    assert_no_token_leaks(&refs, &dead, &tb);
    let _ = std::fs::remove_file(file);
}

#[test]
fn bursts_of_5xx_and_timeouts_are_retried_and_a_replay_overwrites() {
    use flowcast_engine::sinks::thingsboard::delivery::Item;
    use flowcast_engine::sinks::thingsboard::start_delivery;
    logs::capture();
    let brokers = flowcast_tests::brokers();
    let tb = TbServer::start();
    let devices = ["r-0", "r-1", "r-2"];
    let toks: Vec<String> = devices.iter().map(|_| token("rt")).collect();
    for (d, t) in devices.iter().zip(&toks) {
        tb.add_device(d, t);
    }
    let entries: Vec<(&str, &str)> = devices
        .iter()
        .copied()
        .zip(toks.iter().map(String::as_str))
        .collect();
    let file = write_tokens_file(&entries);
    let mut c = ThingsBoardSinkConfig::new(&tb.url());
    c.tokens_file = Some(file.clone());
    c.timeout = Duration::from_millis(300);
    c.initial_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(200);
    c.breaker_cooldown = Duration::from_millis(50);
    let job = flowcast_tests::unique_topic("tbretry");
    let d = start_delivery::<u32>(
        &c,
        &ClientSettings::new(&brokers),
        &format!("{job}-dead"),
        &job,
        "sink-0:thingsboard",
        0,
    )
    .expect("start");
    let prediction = |dev: &str, i: u32| -> Prediction {
        serde_json::from_value(serde_json::json!({"device": dev, "window_start": BASE + f64::from(i) * 60.0,
            "window_end": BASE + f64::from(i + 1) * 60.0,
            "observed": {"temperature": 20.0 + f64::from(i), "humidity": 40.0},
            "predicted": {"temperature": 21.0, "humidity": 41.0, "for_window_end": BASE + f64::from(i + 2) * 60.0},
            "model": "m"}))
        .expect("prediction")
    };
    let mut all = Vec::new();
    let mut submit = |from: u32, to: u32| {
        for i in from..to {
            for dev in devices {
                let p = prediction(dev, i);
                all.push(p.clone());
                d.submit(Item {
                    raw: Vec::new(),
                    prediction: p,
                    tag: i,
                });
            }
        }
    };
    // A burst of 503s.
    tb.fail_next(7, 503);
    submit(0, 10);
    assert!(
        d.flush_for(Duration::from_secs(30)),
        "delivered despite the 503s"
    );
    assert_eq!(tb.statuses()[&503], 7);
    // Answers slower than the timeout: ThingsBoard stores the data, the client gives up
    // and sends it again; the same ts overwrites.
    tb.set_latency(Duration::from_millis(500));
    submit(10, 12);
    until("timeouts", Duration::from_secs(30), || {
        metrics::sink_total("flowcast_sink_requests_total", &job, "thingsboard") > 10
            && tb.accepted().len() > tb.latest().len()
    });
    tb.set_latency(Duration::ZERO);
    assert!(
        d.flush_for(Duration::from_secs(30)),
        "delivered once answers are quick again"
    );
    assert_same(&tb, &all);
    assert!(
        tb.accepted().len() > all.len(),
        "some entries were sent twice"
    );
    let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
    assert_no_token_leaks(&refs, &[], &tb);
    let _ = std::fs::remove_file(file);
}
