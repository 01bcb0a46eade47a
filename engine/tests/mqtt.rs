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
use flowcast_tests::kafka;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const BASE: f64 = 1_700_000_040.0 - 1_700_000_040.0 % 60.0;

fn broker() -> String {
    std::env::var("FLOWCAST_TEST_MQTT").unwrap_or_else(|_| "127.0.0.1:1883".to_owned())
}

fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_token_leaks(tokens: &[String]) {
    let logs = String::from_utf8_lossy(&logs().lock().expect("logs")).into_owned();
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

/// A subscriber that records every payload published on `topic`.
struct Subscriber {
    payloads: Arc<Mutex<Vec<Vec<u8>>>>,
    client: Client,
}

impl Subscriber {
    /// Connects and returns once the broker acknowledged the subscription.
    fn start(topic: &str) -> Subscriber {
        let (host, port) = broker()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.parse::<u16>().expect("port")))
            .expect("host:port");
        let id = flowcast_tests::unique_topic("sub").replace('-', "");
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(opts, 16);
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .expect("subscribe");
        let payloads = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&payloads);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = tx.send(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        out.lock().expect("payloads").push(p.payload.to_vec());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the MQTT broker at {} is not usable: {e}", broker()),
            Err(_) => panic!("no SUBACK from the MQTT broker at {}", broker()),
        }
        Subscriber { payloads, client }
    }

    fn payloads(&self) -> Vec<Vec<u8>> {
        self.payloads.lock().expect("payloads").clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
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

fn tokens_file(entries: &[(String, String)]) -> PathBuf {
    let path = std::env::temp_dir().join(flowcast_tests::unique_topic("mqtt-tokens"));
    let mut f = std::fs::File::create(&path).expect("tokens file");
    for (d, t) in entries {
        writeln!(f, "{d} = {t}").expect("write");
    }
    path
}

/// Runs the job bounded with the given MQTT sink table; returns the Kafka output.
fn run_job(sink: &str) -> Vec<Prediction> {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11");
    kafka::create_topic(&brokers, &topic, 3);
    let devices: Vec<String> = (0..3).map(device_on).collect();
    kafka::produce(&brokers, &topic, &readings(&devices));
    let name = flowcast_tests::unique_topic("mqttjob");
    for suffix in ["dead", "late", "pred"] {
        kafka::create_topic(&brokers, &format!("{name}-{suffix}"), 3);
    }
    let text = format!(
        r#"
name = "{name}"
dead-letter-topic = "{name}-dead"
late-data-topic = "{name}-late"
epoch-interval = "50ms"
[source]
brokers = "{brokers}"
topic = "{topic}"
stop = "latest"
[event-time]
field = "time"
out-of-orderness = "10s"
idle-timeout = "10m"
[window]
length = "1m"
allowed-lateness = "0s"
[sequence]
length = 2
[model]
kind = "persistence"
[[sinks]]
type = "kafka"
topic = "{name}-pred"
[[sinks]]
type = "mqtt"
broker = "{}"
{sink}
"#,
        broker()
    );
    let spec = JobSpec::parse(&text, Path::new("mqtt.toml")).expect("spec");
    runtime::run(
        &spec,
        &Execution::threads(2),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("bounded run");
    kafka::read_all(&brokers, &format!("{name}-pred"))
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("prediction"))
        .collect()
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

fn entries(list: &Value) -> Vec<(i64, serde_json::Map<String, Value>)> {
    list.as_array()
        .expect("array form")
        .iter()
        .map(|e| {
            (
                e["ts"].as_i64().expect("ts"),
                e["values"].as_object().expect("values").clone(),
            )
        })
        .collect()
}

fn poll_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn device_mode_delivers_every_prediction_through_mosquitto() {
    logs();
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
    let file = tokens_file(&toks);
    let sub = Subscriber::start("v1/devices/me/telemetry");
    let preds = run_job(&format!(
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
    let got = poll_until(Duration::from_secs(30), || {
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
    let job_connects = metrics::render()
        .lines()
        .filter(|l| l.starts_with("flowcast_mqtt_connects_total") && l.contains("mode=\"device\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert!(job_connects >= 3, "one connection per device");
    let tokens: Vec<String> = toks.into_iter().map(|(_, t)| t).collect();
    assert_no_token_leaks(&tokens);
    let _ = std::fs::remove_file(file);
}

#[test]
fn gateway_mode_delivers_every_device_on_one_connection() {
    logs();
    let gw_token = flowcast_tests::unique_topic("gwtok").replace('-', "Z");
    let file = tokens_file(&[("flowcast-gateway".to_owned(), gw_token.clone())]);
    let sub = Subscriber::start("v1/gateway/telemetry");
    let preds = run_job(&format!(
        "mode = \"gateway\"\ngateway = \"flowcast-gateway\"\ntokens-file = \"{}\"",
        file.display()
    ));
    let want = expected(&preds);
    assert!(want.len() >= 3 * 10, "{} predictions", want.len());
    let got = poll_until(Duration::from_secs(30), || {
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

/// A TCP proxy in front of the broker that can drop every connection and refuse new ones.
struct Proxy {
    addr: std::net::SocketAddr,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (d, c) = (Arc::clone(&down), Arc::clone(&conns));
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            loop {
                if d.load(Ordering::SeqCst) {
                    listener = None;
                } else if listener.is_none() {
                    listener = TcpListener::bind(addr).ok();
                }
                let Some(l) = &listener else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                l.set_nonblocking(true).expect("nonblocking");
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).expect("blocking");
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut all = c.lock().expect("conns");
                for s in [&client, &server] {
                    all.push(s.try_clone().expect("clone"));
                }
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, down, conns }
    }

    fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().expect("conns").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_broken_connection_reconnects_and_loses_nothing() {
    use flowcast_engine::sinks::mqtt::{MqttDelivery, MqttMode, MqttSinkConfig};
    use flowcast_operators::{ObservedValues, PredictedValues};
    logs();
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
    let file = tokens_file(&toks);
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
        &flowcast_engine::kafka::ClientSettings::new(&brokers),
        &dead,
        &job,
        0,
    )
    .expect("start");
    for i in 0..10 {
        for k in 0..2 {
            d.submit(prediction(k, i));
        }
    }
    poll_until(Duration::from_secs(20), || {
        (ours(&sub).len() == 20).then_some(())
    })
    .expect("the first 20 arrive");

    // The connection breaks; 20 more predictions come, more than the sink may buffer.
    proxy.cut();
    let feed = prediction.clone();
    let feeder = std::thread::spawn(move || {
        let prediction = feed;
        for i in 10..20 {
            for k in 0..2 {
                d.submit(prediction(k, i));
            }
        }
        d
    });
    poll_until(Duration::from_secs(20), || {
        (metrics::total("flowcast_mqtt_connection_errors_total", &job) >= 2).then_some(())
    })
    .expect("reconnects fail while the link is down");
    poll_until(Duration::from_secs(20), || {
        (metrics::total("flowcast_mqtt_backpressure_waits_total", &job) >= 1).then_some(())
    })
    .expect("the feeder blocks at the bound");
    assert!(metrics::total("flowcast_mqtt_queued_records", &job) <= 8);
    proxy.heal();
    let mut d = feeder.join().expect("feeder");
    d.finish();
    let got = poll_until(Duration::from_secs(20), || {
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
