//! The configuration of `flowcast-ingest`: a TOML file (every key optional, kebab-case,
//! unknown keys refused, durations as `"2s"`), then environment overrides, then checks.
//!
//! Environment overrides: `FLOWCAST_INGEST_<SECTION>_<KEY>` sets `<section>.<key>`, the
//! key with `_` for `-` (`FLOWCAST_INGEST_KAFKA_MAX_IN_FLIGHT=100` → `kafka.max-in-flight`).
//! The value is read as a TOML value when it is one (`3`, `true`, `[1, 2]`), else as a
//! string. Extra librdkafka properties, SASL/SSL ones included, come from
//! `FLOWCAST_RDKAFKA_<PROPERTY>` as in the engine (`FLOWCAST_RDKAFKA_SASL_PASSWORD` →
//! `sasl.password`), from `kafka.properties`, or — for secrets — from files named in
//! `kafka.secret-files`. Secrets never come from the command line and never reach a log:
//! [`Config::redacted`] is what gets printed.
//!
//! Every default lives in this file, in the `Default` impls.

pub mod bytesize;

pub use bytesize::ByteSize;
use flowcast_operators::SensorKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "FLOWCAST_INGEST_";
pub use flowcast_common::kafka::RDKAFKA_ENV_PREFIX;
use flowcast_common::kafka::rdkafka_property;
/// librdkafka properties that the no-loss guarantees depend on: set by ingest, not by users.
pub const RESERVED_PROPERTIES: [&str; 8] = [
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "message.send.max.retries",
];

/// Everything `flowcast-ingest` can be told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Which sensor backend, and how often to sample it.
    pub sensor: SensorConfig,
    /// Settings of the `iio` backend.
    pub iio: IioConfig,
    /// Settings of the `gpio` backend.
    pub gpio: GpioConfig,
    /// Settings of the `simulate` backend.
    pub simulate: SimulateConfig,
    /// Settings of the `replay` backend.
    pub replay: ReplayConfig,
    /// Where readings go.
    pub kafka: KafkaConfig,
    /// The on-disk queue of readings not yet acknowledged by Kafka.
    pub spool: SpoolConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// Which kind of source produces readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The kernel's dht11 IIO driver (sysfs).
    #[default]
    Iio,
    /// Bit-banging a GPIO pin (cargo feature `gpio`).
    Gpio,
    /// Seeded simulated sensors.
    Simulate,
    /// A recorded data set.
    Replay,
}

/// The sensor and its sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SensorConfig {
    /// Backend: `iio`, `gpio`, `simulate` or `replay`.
    pub backend: Backend,
    /// `dht11` or `dht22`: decides the frame format and the valid ranges. Default: `dht22`
    /// for `replay` (the recorded data exceeds the DHT11's humidity range), else `dht11`.
    pub kind: Option<SensorKind>,
    /// Device id of an `iio`/`gpio` sensor: message key and `device` field. Default: the
    /// host name.
    pub device: Option<String>,
    /// Time between samples; at least the sensor's minimum (DHT11 1 s, DHT22 2 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Further attempts after a failed read of one sample, each after the sensor's
    /// minimum interval, before the sample is given up (counted and logged).
    pub max_retries: u32,
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            backend: Backend::Iio,
            kind: None,
            device: None,
            interval: Duration::from_secs(5),
            max_retries: 3,
        }
    }
}

impl SensorConfig {
    /// The configured kind, or the backend's default.
    pub fn kind(&self) -> SensorKind {
        self.kind.unwrap_or(match self.backend {
            Backend::Replay => SensorKind::Dht22,
            _ => SensorKind::Dht11,
        })
    }

    /// The configured device id, or the host name, or `"default"`.
    pub fn device(&self) -> String {
        self.device
            .clone()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned())
    }
}

/// The `iio` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct IioConfig {
    /// An IIO device directory, or a directory of them in which exactly one is a DHT.
    pub path: PathBuf,
}

impl Default for IioConfig {
    fn default() -> Self {
        IioConfig {
            path: PathBuf::from(crate::sensor::iio::DEFAULT_ROOT),
        }
    }
}

/// The `gpio` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GpioConfig {
    /// BCM number of the data pin (GPIO4 is physical pin 7).
    pub pin: u8,
}

impl Default for GpioConfig {
    fn default() -> Self {
        GpioConfig { pin: 4 }
    }
}

/// The `simulate` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SimulateConfig {
    /// Number of simulated devices.
    pub devices: u32,
    /// Device ids are this prefix plus 0, 1, ….
    pub device_prefix: String,
    /// Seed: the same seed gives the same devices and faults.
    pub seed: u64,
    /// Probability that one read fails (checksum, no answer, garbled values).
    pub fault_rate: f64,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            devices: 3,
            device_prefix: "sim-".to_owned(),
            seed: 1,
            fault_rate: 0.02,
        }
    }
}

/// Which timestamps a replay gives its readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timestamps {
    /// The recorded times.
    Original,
    /// Shifted so the first replayed row is now (spacing kept, so with `speed` above 1
    /// event time runs ahead of the wall clock).
    #[default]
    Now,
}

/// The `replay` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ReplayConfig {
    /// The recording: the UCI Appliances Energy CSV, plain or `.xz`. Default: where
    /// `deploy/data/fetch.sh` puts it (`$FLOWCAST_CACHE` or `~/.cache/flowcast`).
    pub file: Option<PathBuf>,
    /// Replay speed relative to the recording (600 = ten minutes per second); 0 = as
    /// fast as Kafka takes it.
    pub speed: f64,
    /// `original` or `now`.
    pub timestamps: Timestamps,
    /// Rows to skip at the start.
    pub skip_rows: u64,
    /// Rows to replay (default: all); each row gives one reading per room.
    pub max_rows: Option<u64>,
    /// Rooms replayed, each one device (6 is outdoors, hence not a default).
    pub rooms: Vec<u8>,
    /// Device ids are this prefix plus the room number.
    pub device_prefix: String,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            file: None,
            speed: 600.0,
            timestamps: Timestamps::Now,
            skip_rows: 0,
            max_rows: None,
            rooms: vec![1, 2, 3, 4, 5, 7, 8, 9],
            device_prefix: "room-".to_owned(),
        }
    }
}

impl ReplayConfig {
    /// The file to replay.
    pub fn file(&self) -> PathBuf {
        self.file.clone().unwrap_or_else(|| {
            let cache = std::env::var_os("FLOWCAST_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                    Path::new(&home).join(".cache/flowcast")
                });
            cache.join("data/minute_energy_appliance.csv.xz")
        })
    }
}

/// The Kafka producer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic readings go to.
    pub topic: String,
    /// Kafka client id.
    pub client_id: String,
    /// Readings handed to the producer and not yet acknowledged, at most; the rest wait
    /// in the spool. Bounds memory while the broker is away.
    pub max_in_flight: usize,
    /// How long a clean shutdown waits for acknowledgements; what is left stays in the
    /// spool for the next start.
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.mechanism`).
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose value is read from a file (e.g. `sasl.password` from
    /// `/etc/flowcast/kafka-password` or `$CREDENTIALS_DIRECTORY/…`), trailing newline
    /// trimmed.
    pub secret_files: BTreeMap<String, PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "DHT11".to_owned(),
            client_id: "flowcast-ingest".to_owned(),
            max_in_flight: 1000,
            flush_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
            secret_files: BTreeMap::new(),
        }
    }
}

/// The spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SpoolConfig {
    /// Directory of the spool's segment files (created if missing).
    pub dir: PathBuf,
    /// Bound on the spool's size on disk; past it the oldest unsent readings are evicted
    /// (counted and logged).
    pub max_bytes: ByteSize,
    /// Longest time between two fsyncs of the spool (what a power cut can lose or repeat).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("/var/lib/flowcast-ingest/spool"),
            max_bytes: ByteSize::mib(64),
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// The `/metrics` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "0.0.0.0:9250".to_owned(),
        }
    }
}

/// A config that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file (or an override) is not valid TOML for this config.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is out of bounds.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path` (if any), applies the overrides in `env` and checks the result.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.into(), e))?,
            None => String::new(),
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let mut rdkafka = BTreeMap::new();
        for (k, v) in env {
            if k.starts_with(RDKAFKA_ENV_PREFIX) {
                if let Some(prop) = rdkafka_property(&k) {
                    rdkafka.insert(prop, v);
                }
            } else if let Some(rest) = k.strip_prefix(ENV_PREFIX)
                && rest != "CONFIG"
            {
                apply_override(&mut table, &k, rest, &v)?;
            }
        }
        let mut cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        cfg.kafka.properties.extend(rdkafka);
        cfg.check()?;
        Ok(cfg)
    }

    /// Refuses values the guarantees or the hardware cannot live with.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let kind = self.sensor.kind();
        if self.sensor.backend != Backend::Replay && self.sensor.interval < kind.min_interval() {
            return bad(format!(
                "sensor.interval {} is below the {kind}'s minimum sampling interval {}",
                humantime::format_duration(self.sensor.interval),
                humantime::format_duration(kind.min_interval()),
            ));
        }
        if self.kafka.max_in_flight == 0 {
            return bad("kafka.max-in-flight must be at least 1".into());
        }
        if self.kafka.topic.is_empty() || self.kafka.brokers.is_empty() {
            return bad("kafka.topic and kafka.brokers must not be empty".into());
        }
        for key in self
            .kafka
            .properties
            .keys()
            .chain(self.kafka.secret_files.keys())
        {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                return bad(format!(
                    "kafka property {key:?} is set by flowcast-ingest (idempotent, acks=all, \
                     no delivery timeout: the no-loss guarantee depends on it); use \
                     kafka.brokers for the servers"
                ));
            }
        }
        if !(self.replay.speed.is_finite() && self.replay.speed >= 0.0) {
            return bad("replay.speed must be 0 (as fast as possible) or positive".into());
        }
        if !(0.0..=1.0).contains(&self.simulate.fault_rate) {
            return bad("simulate.fault-rate must be between 0 and 1".into());
        }
        if self.spool.max_bytes < ByteSize(64 << 10) {
            return bad("spool.max-bytes must be at least 64 KiB".into());
        }
        if self.simulate.devices == 0 || self.replay.rooms.is_empty() {
            return bad("simulate.devices and replay.rooms must not be empty".into());
        }
        Ok(())
    }

    /// This config with secret-looking property values replaced, for logs and printing.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        for (k, v) in c.kafka.properties.iter_mut() {
            if is_secret(k) {
                *v = "<redacted>".to_owned();
            }
        }
        c
    }

    /// The TOML form (round-trips through [`Config::load`]).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print config: {e}"))
    }
}

/// Whether a librdkafka property holds a secret.
pub fn is_secret(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
    ]
    .iter()
    .any(|s| p.contains(s))
}

const SECTIONS: [&str; 8] = [
    "sensor", "iio", "gpio", "simulate", "replay", "kafka", "spool", "metrics",
];

fn apply_override(
    table: &mut toml::Table,
    var: &str,
    rest: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let lower = rest.to_ascii_lowercase();
    let (section, key) = lower
        .split_once('_')
        .filter(|(s, k)| SECTIONS.contains(s) && !k.is_empty())
        .ok_or_else(|| {
            ConfigError::Parse(format!(
                "environment variable {var}: expected {ENV_PREFIX}<SECTION>_<KEY> with a \
                 section among {SECTIONS:?}"
            ))
        })?;
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let entry = table
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(key.replace('_', "-"), value);
            Ok(())
        }
        _ => Err(ConfigError::Parse(format!("[{section}] is not a table"))),
    }
}

#[cfg(test)]
mod tests;
