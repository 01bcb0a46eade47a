//! Encrypted and authenticated links end to end, against the listeners `deploy/services.sh`
//! starts: Kafka's SASL_SSL (SCRAM-SHA-512) listener on the one-broker cluster and
//! Mosquitto's TLS listener with password authentication, both with the throw-away CA of
//! `deploy/tls/certs.sh` (see `flowcast_tests::secure`).
//!
//! - The real `flowcast-ingest` replays readings into Kafka over SASL_SSL (password from a
//!   secret file), the real `flowcast run` reads them over SASL_SSL (settings from
//!   `FLOWCAST_RDKAFKA_*`) and publishes every prediction over MQTT/TLS; a subscriber on the
//!   TLS listener receives them all.
//! - An MQTT sink given the wrong CA, or pointed at the plaintext port, logs a TLS error and
//!   counts it, and nothing reaches either listener; a wrong MQTT password is refused and
//!   dead-lettered.
//! - A wrong SCRAM password or CA stops the job at once with librdkafka's reason; the
//!   ingest says so in its log and keeps its readings.
//!
//! No password or token appears in any of the processes' logs (at debug level).

use flowcast_engine::kafka::partitioner::partition_for_key;
use flowcast_operators::Prediction;
use flowcast_tests::job::TestJob;
use flowcast_tests::mqtt::Subscriber;
use flowcast_tests::secure::{ca, mqtt_tls_broker, sasl_broker, sasl_env, secret, wrong_ca};
use flowcast_tests::thingsboard::{entries, write_tokens_file};
use flowcast_tests::wait::{poll_for, until};
use flowcast_tests::{exposition, kafka};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A child process of the real binaries, its output in a file; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, dir: &Path, name: &str) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .env("FLOWCAST_LOG", "debug")
            .env_remove("FLOWCAST_INGEST_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&mut self, within: Duration) -> ExitStatus {
        let status = poll_for(within, || self.child.try_wait().ok().flatten());
        status.unwrap_or_else(|| {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(4000)..];
            panic!(
                "{} still running after {within:?}; its log ends:\n{tail}",
                self.name
            )
        })
    }

    /// Fails if any of `secrets` is in the log.
    fn assert_keeps(&self, secrets: &[&str]) {
        let log = self.log();
        for s in secrets {
            assert!(
                !log.contains(s),
                "a secret leaked into the log of {}",
                self.name
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `flowcast-ingest` executable, built beside `flowcast` (`cargo test --workspace`
/// builds it; alone: `cargo build -p flowcast-ingest`).
fn ingest_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_flowcast")).with_file_name("flowcast-ingest");
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build -p flowcast-ingest` first",
        p.display()
    );
    p
}

fn scratch(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(flowcast_tests::unique_topic(prefix));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// An ingest config replaying `rows` rows of the 8 rooms into `topic` over SASL_SSL, the
/// password read from `password_file`.
fn ingest_config(dir: &Path, topic: &str, rows: u64, password_file: &Path) -> PathBuf {
    let text = format!(
        r#"
[sensor]
backend = "replay"
[replay]
file = "{data}"
speed = 0.0
timestamps = "original"
max-rows = {rows}
[kafka]
brokers = "{brokers}"
topic = "{topic}"
flush-timeout = "2s"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "{user}"
"ssl.ca.location" = "{ca}"
[kafka.secret-files]
"sasl.password" = "{pw}"
[spool]
dir = "{spool}"
[metrics]
enabled = false
"#,
        data = flowcast_tests::data::data_path().display(),
        brokers = sasl_broker(),
        user = secret("kafka-user"),
        ca = ca().display(),
        pw = password_file.display(),
        spool = dir.join("spool").display(),
    );
    let path = dir.join("ingest.toml");
    std::fs::write(&path, text).expect("ingest config");
    path
}

/// An MQTT sink table in gateway mode.
fn mqtt_sink(broker: &str, tokens: &Path, password_file: &Path, ca_file: &Path) -> String {
    format!(
        "[[sinks]]\ntype = \"mqtt\"\nbroker = \"{broker}\"\nmode = \"gateway\"\n\
         gateway = \"flowcast-gateway\"\ntokens-file = \"{}\"\npassword-file = \"{}\"\n\
         tls = {{ ca-file = \"{}\" }}\n",
        tokens.display(),
        password_file.display(),
        ca_file.display()
    )
}

/// Creates the job's output topics through the plaintext listener of the same cluster.
fn create_outputs(plain: &str, job: &TestJob) {
    for suffix in ["dead", "late", "pred"] {
        kafka::create_topic(plain, &format!("{}-{suffix}", job.name), 3);
    }
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// `(device, ts ms)` → values, from gateway payloads `{"<device>": [{"ts":..,"values":..}]}`.
type Stored = BTreeMap<(String, i64), serde_json::Map<String, Value>>;

fn stored(payloads: &[Vec<u8>]) -> Stored {
    let mut got = Stored::new();
    for p in payloads {
        let v: Value = serde_json::from_slice(p).expect("json payload");
        for (device, list) in v.as_object().expect("{device: [...]}") {
            for (ts, values) in entries(list) {
                got.insert((device.clone(), ts), values);
            }
        }
    }
    got
}

#[test]
fn ingest_job_and_mqtt_deliver_every_prediction_over_sasl_ssl_and_tls() {
    let dir = scratch("secure-e2e");
    let plain = flowcast_tests::single_broker();
    let (kafka_pw, token, mqtt_pw) = (
        secret("kafka-password"),
        secret("mqtt-token"),
        secret("mqtt-password"),
    );
    let topic = flowcast_tests::unique_topic("DHT22-secure");
    kafka::create_topic(&plain, &topic, 3);
    let rows = 36;
    let pw_file = flowcast_tests::secure::tls_dir().join("kafka-password");
    let mut cmd = Command::new(ingest_bin());
    cmd.arg("--config")
        .arg(ingest_config(&dir, &topic, rows, &pw_file))
        .arg("run");
    let mut ingest = Proc::spawn(cmd, &dir, "ingest");
    let status = ingest.wait(Duration::from_secs(120));
    assert!(status.success(), "ingest failed:\n{}", ingest.log());
    let input = kafka::read_all(&plain, &topic);
    assert_eq!(input.len() as u64, rows * 8, "every reading, over SASL_SSL");

    let mut job = TestJob::new("securejob", &sasl_broker(), &topic);
    job.stop = "latest";
    job.sensor = "dht22";
    job.window = "10m";
    let tokens = write_tokens_file(&[("flowcast-gateway", &token)]);
    let mqtt_pw_file = write_file(&dir, "mqtt-password", &format!("{mqtt_pw}\n"));
    job.extra_sinks = mqtt_sink(&mqtt_tls_broker(), &tokens, &mqtt_pw_file, &ca());
    create_outputs(&plain, &job);
    let spec = write_file(&dir, "job.toml", &job.toml());
    let sub = Subscriber::start_tls(
        &mqtt_tls_broker(),
        "v1/gateway/telemetry",
        &ca(),
        &token,
        &mqtt_pw,
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowcast"));
    cmd.arg("run").arg(&spec).envs(sasl_env(&kafka_pw, &ca()));
    let mut run = Proc::spawn(cmd, &dir, "job");
    let status = run.wait(Duration::from_secs(180));
    assert!(status.success(), "the job failed:\n{}", run.log());

    let preds: Vec<Prediction> = kafka::read_all(&plain, &job.predictions_topic())
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("prediction"))
        .collect();
    assert!(preds.len() >= 8 * 20, "{} predictions", preds.len());
    let want: Stored = preds
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
            let ts = (p.predicted.for_window_end * 1000.0).round() as i64;
            ((p.device.clone(), ts), v)
        })
        .collect();
    let got = poll_for(Duration::from_secs(30), || {
        let got = stored(&sub.payloads());
        want.keys().all(|k| got.contains_key(k)).then_some(got)
    })
    .expect("every prediction reached the subscriber over TLS");
    for (k, v) in &want {
        assert_eq!(&got[k], v, "values of {k:?}");
    }
    assert!(
        run.log().contains("MQTT sink started"),
        "the job's log was captured"
    );
    assert!(
        ingest.log().contains("ingest running"),
        "the ingest's log was captured"
    );
    for p in [&ingest, &run] {
        p.assert_keeps(&[&kafka_pw, &token, &mqtt_pw]);
    }
    let _ = std::fs::remove_file(tokens);
    let _ = std::fs::remove_dir_all(dir);
}

/// Ten minutes of readings of three devices no other test uses.
fn readings(devices: &[String]) -> Vec<(Option<String>, Vec<u8>)> {
    let base = 1_700_000_040.0 - 1_700_000_040.0 % 60.0;
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        for s in (0..600).step_by(10) {
            let v = serde_json::json!({"time": base + f64::from(s),
                "temperature": 18.0 + i as f64, "humidity": 45.0, "device": d});
            out.push((Some(d.clone()), serde_json::to_vec(&v).expect("json")));
        }
    }
    out
}

fn series_total(text: &str, name: &str, job: &str) -> f64 {
    let job = format!("flowcast_job=\"{job}\"");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&job))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn mqtt_tls_failures_are_errors_never_plaintext() {
    let dir = scratch("secure-mqtt");
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-tlsneg");
    kafka::create_topic(&brokers, &topic, 3);
    let tag = flowcast_tests::unique_topic("tlsneg").replace('-', "");
    // One device on each partition: no partition idles and holds the watermark back.
    let devices: Vec<String> = (0..3)
        .map(|p| {
            (0..)
                .map(|i| format!("{tag}d{i}"))
                .find(|d| partition_for_key(d.as_bytes(), 3) == p)
                .expect("some key hashes to each partition")
        })
        .collect();
    kafka::produce(&brokers, &topic, &readings(&devices));
    let (token, mqtt_pw) = (secret("mqtt-token"), secret("mqtt-password"));
    let wrong_pw = format!("wrong{tag}");
    let tokens = write_tokens_file(&[("flowcast-gateway", &token)]);
    let good_pw = write_file(&dir, "mqtt-password", &mqtt_pw);
    let bad_pw = write_file(&dir, "wrong-password", &wrong_pw);
    let (tls, plain_mqtt) = (mqtt_tls_broker(), flowcast_tests::mqtt::broker());
    let mut job = TestJob::new("tlsnegjob", &brokers, &topic);
    // An untrusted broker certificate; TLS to the plaintext port; a wrong password.
    job.extra_sinks = [
        mqtt_sink(&tls, &tokens, &good_pw, &wrong_ca()),
        mqtt_sink(&plain_mqtt, &tokens, &good_pw, &ca()),
        mqtt_sink(&tls, &tokens, &bad_pw, &ca()),
    ]
    .concat();
    job.create_outputs();
    let spec = write_file(&dir, "job.toml", &job.toml());
    let tls_sub = Subscriber::start_tls(&tls, "v1/gateway/telemetry", &ca(), &token, &mqtt_pw);
    let plain_sub = Subscriber::start("v1/gateway/telemetry");
    let port = exposition::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowcast"));
    cmd.arg("run")
        .arg(&spec)
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let run = Proc::spawn(cmd, &dir, "job");
    // Whatever reaches either listener is a failure, found as soon as it arrives.
    let assert_nothing_delivered = || {
        for (sub, which) in [(&tls_sub, "TLS"), (&plain_sub, "plaintext")] {
            let leaked = sub
                .payloads()
                .iter()
                .any(|p| String::from_utf8_lossy(p).contains(&tag));
            assert!(!leaked, "a prediction reached the {which} listener");
        }
    };
    until(
        "both TLS failures and the refusal in the log",
        Duration::from_secs(120),
        || {
            assert_nothing_delivered();
            let log = run.log();
            log.contains(&format!("MQTT over TLS to {tls} failed"))
                && log.contains(&format!("MQTT over TLS to {plain_mqtt} failed"))
                && log.contains(&format!("the MQTT broker {tls} refused the credentials"))
        },
    );
    let log = run.log();
    assert!(
        log.contains("invalid peer certificate"),
        "rustls names the cause"
    );
    assert!(log.contains("no plaintext fallback"));
    until("TLS errors counted", Duration::from_secs(30), || {
        exposition::scrape(port)
            .is_some_and(|t| series_total(&t, "flowcast_sink_tls_errors_total", &job.name) >= 2.0)
    });
    let dead = format!("{}-dead", job.name);
    let refused = poll_for(Duration::from_secs(30), || {
        let recs = kafka::read_all(&brokers, &dead);
        (!recs.is_empty()).then_some(recs)
    })
    .expect("the refused predictions are dead-lettered");
    assert!(
        refused
            .iter()
            .all(|r| r.headers.values().any(|h| h == "mqtt_refused")),
        "{:?}",
        refused[0].headers
    );
    // Predictions existed (the Kafka sink has them: its acknowledgements may come after the
    // dead letters'), yet none reached either listener.
    assert!(
        poll_for(Duration::from_secs(30), || {
            (!kafka::read_all(&brokers, &job.predictions_topic()).is_empty()).then_some(())
        })
        .is_some(),
        "the Kafka sink has the predictions"
    );
    assert_nothing_delivered();
    run.assert_keeps(&[&token, &mqtt_pw, &wrong_pw]);
    let _ = std::fs::remove_file(tokens);
    drop(run);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn kafka_refuses_a_wrong_scram_password_or_ca_clearly() {
    let dir = scratch("secure-kafka");
    let plain = flowcast_tests::single_broker();
    let topic = flowcast_tests::unique_topic("DHT22-wrongpw");
    kafka::create_topic(&plain, &topic, 3);
    let wrong = format!(
        "wrong{}",
        flowcast_tests::unique_topic("pw").replace('-', "")
    );
    let right = secret("kafka-password");
    let pw_file = write_file(&dir, "wrong-password", &wrong);
    let mut cmd = Command::new(ingest_bin());
    cmd.arg("--config")
        .arg(ingest_config(&dir, &topic, 6, &pw_file))
        .arg("run");
    let ingest = Proc::spawn(cmd, &dir, "ingest");
    let job = TestJob::new("wrongpwjob", &sasl_broker(), &topic);
    let spec = write_file(&dir, "job.toml", &job.toml());
    let run = |name: &str, env: Vec<(String, String)>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowcast"));
        cmd.arg("run").arg(&spec).envs(env);
        let mut p = Proc::spawn(cmd, &dir, name);
        // Within the slice the metadata probe waits, not the 30 s timeout.
        let status = p.wait(Duration::from_secs(20));
        assert!(!status.success(), "{name} ran");
        p
    };
    let bad_pw = run("job-wrong-password", sasl_env(&wrong, &ca()));
    let bad_ca = run("job-wrong-ca", sasl_env(&right, &wrong_ca()));
    let log = bad_pw.log();
    assert!(
        log.contains("refused the connection") && log.contains("SASL authentication error"),
        "{log}"
    );
    let log = bad_ca.log();
    assert!(
        log.contains("refused the connection") && log.contains("certificate verify failed"),
        "{log}"
    );
    until(
        "the ingest to log the refusal",
        Duration::from_secs(60),
        || ingest.log().contains("SASL authentication error"),
    );
    assert!(ingest.log().contains("ERROR"), "at error level");
    assert!(
        kafka::read_all(&plain, &topic).is_empty(),
        "nothing got in without the password"
    );
    for p in [&ingest, &bad_pw, &bad_ca] {
        p.assert_keeps(&[&wrong, &right]);
    }
    drop(ingest);
    let _ = std::fs::remove_dir_all(dir);
}
