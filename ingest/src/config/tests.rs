//! Tests of config loading: defaults, round trip, env overrides, refusals, redaction.

use super::*;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ingest.toml");
    std::fs::write(&path, text).expect("write");
    Config::load(
        Some(&path),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn empty_file_is_the_defaults() {
    let c = load("", &[]).expect("defaults");
    assert_eq!(c, Config::default());
    assert_eq!(c.kafka.topic, "DHT11");
    assert_eq!(c.metrics.listen, "0.0.0.0:9250");
    assert_eq!(c.sensor.kind(), SensorKind::Dht11);
}

#[test]
fn round_trips_through_toml() {
    let mut c = Config::default();
    c.sensor.backend = Backend::Replay;
    c.sensor.interval = Duration::from_millis(2500);
    c.replay.max_rows = Some(10);
    c.replay.timestamps = Timestamps::Original;
    c.spool.max_bytes = ByteSize::mib(3);
    c.kafka
        .properties
        .insert("security.protocol".into(), "SASL_SSL".into());
    c.kafka
        .secret_files
        .insert("sasl.password".into(), "/etc/flowcast/pw".into());
    let text = c.to_toml();
    assert_eq!(load(&text, &[]).expect("reloads"), c, "{text}");
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ingest/ingest.example.toml");
    let c = Config::load(Some(&path), std::iter::empty()).expect("example config loads");
    assert_eq!(c.kafka.topic, "DHT11");
}

#[test]
fn kebab_case_humantime_and_sizes() {
    let c = load(
        r#"
        [sensor]
        backend = "simulate"
        kind = "dht22"
        interval = "1m 30s"
        max-retries = 5
        [spool]
        max-bytes = "8 MiB"
        sync-interval = "250ms"
        "#,
        &[],
    )
    .expect("valid");
    assert_eq!(c.sensor.interval, Duration::from_secs(90));
    assert_eq!(c.sensor.max_retries, 5);
    assert_eq!(c.spool.max_bytes, ByteSize(8 << 20));
    assert_eq!(c.spool.sync_interval, Duration::from_millis(250));
}

#[test]
fn unknown_keys_are_refused() {
    for text in [
        "[sensor]\nbackend = \"iio\"\nintervall = \"2s\"",
        "[kafka]\nmax_in_flight = 3",
        "[nonsense]\nx = 1",
        "[sensor]\nbackend = \"bluetooth\"",
    ] {
        assert!(
            matches!(load(text, &[]), Err(ConfigError::Parse(_))),
            "{text}"
        );
    }
}

#[test]
fn env_overrides_the_file() {
    let c = load(
        "[kafka]\nbrokers = \"file:9092\"\n[sensor]\nbackend = \"simulate\"",
        &[
            ("FLOWCAST_INGEST_KAFKA_BROKERS", "env-a:9092,env-b:9092"),
            ("FLOWCAST_INGEST_KAFKA_MAX_IN_FLIGHT", "7"),
            ("FLOWCAST_INGEST_SENSOR_INTERVAL", "3s"),
            ("FLOWCAST_INGEST_REPLAY_ROOMS", "[1, 2]"),
            ("FLOWCAST_INGEST_METRICS_ENABLED", "false"),
            ("FLOWCAST_INGEST_CONFIG", "/ignored/here.toml"),
            ("FLOWCAST_RDKAFKA_SASL_PASSWORD", "hunter2"),
            ("FLOWCAST_RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("UNRELATED", "x"),
        ],
    )
    .expect("valid");
    assert_eq!(c.kafka.brokers, "env-a:9092,env-b:9092");
    assert_eq!(c.kafka.max_in_flight, 7);
    assert_eq!(c.sensor.backend, Backend::Simulate);
    assert_eq!(c.sensor.interval, Duration::from_secs(3));
    assert_eq!(c.replay.rooms, vec![1, 2]);
    assert!(!c.metrics.enabled);
    assert_eq!(c.kafka.properties["sasl.password"], "hunter2");
    assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
    assert!(matches!(
        load("", &[("FLOWCAST_INGEST_KAFKA_BROKRS", "x")]),
        Err(ConfigError::Parse(_))
    ));
    assert!(matches!(
        load("", &[("FLOWCAST_INGEST_WHATEVER", "x")]),
        Err(ConfigError::Parse(_))
    ));
}

#[test]
fn sampling_faster_than_the_sensor_allows_is_refused() {
    let e = load("[sensor]\nkind = \"dht22\"\ninterval = \"1s\"", &[]).expect_err("too fast");
    assert!(e.to_string().contains("minimum sampling interval"), "{e}");
    load("[sensor]\nkind = \"dht11\"\ninterval = \"1s\"", &[]).expect("dht11 may read each second");
    // A replay is paced by its recording, not by a sensor.
    load("[sensor]\nbackend = \"replay\"\ninterval = \"1ms\"", &[]).expect("replay");
}

#[test]
fn guarantees_cannot_be_configured_away() {
    for prop in ["enable.idempotence", "acks", "message.timeout.ms"] {
        let text = format!("[kafka.properties]\n\"{prop}\" = \"0\"");
        assert!(
            matches!(load(&text, &[]), Err(ConfigError::Invalid(_))),
            "{prop}"
        );
    }
}

#[test]
fn redaction_hides_secrets_only() {
    let c = load(
        "",
        &[
            ("FLOWCAST_RDKAFKA_SASL_PASSWORD", "hunter2"),
            ("FLOWCAST_RDKAFKA_SSL_KEY_PASSWORD", "hunter3"),
            ("FLOWCAST_RDKAFKA_SASL_USERNAME", "pi"),
        ],
    )
    .expect("valid");
    let shown = c.redacted().to_toml();
    assert!(!shown.contains("hunter"), "{shown}");
    assert!(shown.contains("\"pi\""), "{shown}");
    assert!(!format!("{:?}", c.redacted()).contains("hunter"));
}
