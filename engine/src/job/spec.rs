//! The job spec: a TOML file (`jobs/dht11-forecast.toml`) that says where a job reads,
//! how it treats event time, what it computes and where it writes.
//!
//! Every table refuses unknown keys, so a typo is an error naming the key; durations are
//! human (`"30m"`, `"500ms"`). Defaults live in one place, the `Default` impls below.

pub use crate::sinks::SinkSpec;
use flowcast_operators::{ParseOptions, SensorKind};
pub use guard::{GuardMode, GuardSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobSpec {
    /// Job name, used in logs, metrics labels and the consumer's client id.
    pub name: String,
    /// Where readings come from.
    pub source: SourceSpec,
    /// Event-time settings.
    #[serde(default)]
    pub event_time: EventTimeSpec,
    /// Window settings.
    #[serde(default)]
    pub window: WindowSpec,
    /// How many recent windows a forecast reads.
    #[serde(default)]
    pub sequence: SequenceSpec,
    /// The forecasting model.
    #[serde(default)]
    pub model: ModelSpec,
    /// Where predictions go (one or more sinks).
    #[serde(default = "default_sinks")]
    pub sinks: Vec<SinkSpec>,
    /// Topic for records that fail validation.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Topic for records later than the allowed lateness.
    #[serde(default = "default_late_topic")]
    pub late_data_topic: String,
    /// Delivery of the dead-letter topic: `at-least-once` (default) or `exactly-once`.
    #[serde(default)]
    pub dead_letter_delivery: crate::sinks::kafka::exactly_once::Delivery,
    /// Delivery of the late-data topic: `at-least-once` (default) or `exactly-once`.
    #[serde(default)]
    pub late_data_delivery: crate::sinks::kafka::exactly_once::Delivery,
    /// How often sources advance the epoch (the unit of progress and, later, checkpoints).
    #[serde(default = "default_epoch_interval", with = "humantime_serde")]
    pub epoch_interval: Duration,
    /// Operator state settings.
    #[serde(default)]
    pub state: StateSpec,
    /// Checkpoints (off without a location).
    #[serde(default)]
    pub checkpoint: super::checkpointing::CheckpointSpec,
}

/// Operator state settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateSpec {
    /// Number of key groups keyed state is split into (the most workers keyed operators
    /// can use). Fixed at a job's first start: a job restored from a snapshot keeps the
    /// snapshot's, and a different value here is refused. Default 128.
    #[serde(default)]
    pub key_groups: Option<u32>,
    /// A device silent for longer than this (event time, against the job watermark) is
    /// evicted from every operator's state. Default 7 days.
    #[serde(default = "default_state_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// At most this many devices in keyed state (enforced per key group:
    /// `ceil(max-devices / key-groups)` each, so the cap holds at any parallelism);
    /// readings of further devices go to the dead-letter topic, reason `device_limit`.
    /// Default: no cap.
    #[serde(default)]
    pub max_devices: Option<usize>,
}

impl Default for StateSpec {
    fn default() -> Self {
        StateSpec {
            key_groups: None,
            ttl: default_state_ttl(),
            max_devices: None,
        }
    }
}

fn default_state_ttl() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// Where the job starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StartPosition {
    /// The oldest retained offset of each partition.
    #[default]
    Earliest,
    /// The end of each partition at start-up.
    Latest,
}

/// Whether the job stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StopPosition {
    /// Run until cancelled (a stream).
    #[default]
    Never,
    /// Stop at the end offsets seen at start-up (a bounded run, like Flink's `setBounded`):
    /// the final watermark fires every window.
    Latest,
}

/// The Kafka source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceSpec {
    /// Bootstrap servers; `FLOWCAST_BROKERS` overrides. Security settings come from
    /// `FLOWCAST_RDKAFKA_*` variables, never from this file.
    pub brokers: String,
    /// Topic to read.
    pub topic: String,
    /// Where to start.
    #[serde(default)]
    pub start: StartPosition,
    /// Where to stop.
    #[serde(default)]
    pub stop: StopPosition,
    /// Which sensor the readings come from: decides the valid ranges.
    #[serde(default)]
    pub sensor: SensorKind,
    /// Longest device id (from the `device` field or the message key), in bytes; a
    /// longer one, or one with a control character, goes to the dead-letter topic.
    #[serde(default = "default_max_device_id_bytes")]
    pub max_device_id_bytes: usize,
    /// Largest record (key plus value), in bytes; a larger one goes to the dead-letter
    /// topic undecoded (reason `too_large`).
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// How far a reading's event time may lie ahead of its Kafka record timestamp (not
    /// the wall clock, so a replay decides the same); further goes to the dead-letter
    /// topic (reason `future_time`) instead of dragging the watermark ahead.
    #[serde(default = "default_max_future_skew", with = "humantime_serde")]
    pub max_future_skew: Duration,
}

impl SourceSpec {
    /// The bounds the source applies to every record, for [`flowcast_operators::Reading::parse_record`].
    pub fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            sensor: self.sensor,
            max_device_id_bytes: self.max_device_id_bytes,
            max_record_bytes: self.max_record_bytes,
            max_future_skew: self.max_future_skew,
        }
    }
}

/// Event-time settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventTimeSpec {
    /// The JSON field holding event time (Unix seconds). Only `time` is supported now.
    pub field: String,
    /// How far behind a partition's newest event time a record may arrive and still count
    /// as on time: watermark = max event time − this.
    #[serde(with = "humantime_serde")]
    pub out_of_orderness: Duration,
    /// A partition without records for this long stops holding the watermark back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for EventTimeSpec {
    fn default() -> Self {
        EventTimeSpec {
            field: "time".into(),
            out_of_orderness: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Tumbling window settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WindowSpec {
    /// Window length.
    #[serde(with = "humantime_serde")]
    pub length: Duration,
    /// How long after a window fires late records still update it.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec {
            length: Duration::from_secs(30 * 60),
            allowed_lateness: Duration::from_secs(0),
        }
    }
}

/// Sequence settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SequenceSpec {
    /// Number of most recent windows kept per device and fed to the model.
    pub length: usize,
}

impl Default for SequenceSpec {
    fn default() -> Self {
        SequenceSpec { length: 60 }
    }
}

/// Which model forecasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    tag = "kind"
)]
pub enum ModelSpec {
    /// A TorchScript LSTM with its metadata JSON beside it (`x.pt` + `x.json`).
    Torchscript {
        /// Path of the `.pt` file, relative to the job file.
        path: PathBuf,
        /// Largest batch per forward pass.
        #[serde(default = "default_max_batch")]
        max_batch: usize,
        /// Online accuracy and the guard ([`GuardSpec`]; `guard-*` and
        /// `accuracy-half-life` keys).
        #[serde(flatten)]
        guard: GuardSpec,
    },
    /// Next window = last window. A baseline, and what runs when no model is wanted.
    Persistence,
    /// No forecasting: the job stops after the sequence stage and emits window results
    /// (the streaming part alone, as benchmarks against engines without LibTorch need).
    Off,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Torchscript {
            path: PathBuf::from("../models/dht11_lstm.pt"),
            max_batch: default_max_batch(),
            guard: GuardSpec::default(),
        }
    }
}

fn default_sinks() -> Vec<SinkSpec> {
    vec![SinkSpec::Kafka(crate::sinks::kafka::KafkaSinkConfig {
        topic: "predicData".into(),
        brokers: None,
        delivery: Default::default(),
    })]
}
fn default_max_device_id_bytes() -> usize {
    ParseOptions::DEFAULT_MAX_DEVICE_ID_BYTES
}
fn default_max_record_bytes() -> usize {
    ParseOptions::DEFAULT_MAX_RECORD_BYTES
}
fn default_max_future_skew() -> Duration {
    ParseOptions::DEFAULT_MAX_FUTURE_SKEW
}
fn default_dead_letter_topic() -> String {
    "DHT11-dead-letter".into()
}
fn default_late_topic() -> String {
    "DHT11-late".into()
}
/// 10 ms: a window's output follows the record that closes it by at most one epoch plus
/// the work (p99 ≤ 30 ms in the sweep of BENCHMARKS.md), at no throughput cost measurable
/// above the drains' noise.
fn default_epoch_interval() -> Duration {
    Duration::from_millis(10)
}
fn default_max_batch() -> usize {
    1024
}

/// A job file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read job spec {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or schema error; the message names the key.
    #[error("invalid job spec {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the bad key and line).
        message: String,
    },
    /// A value out of its allowed range.
    #[error("invalid job spec {path}: `{key}` {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl JobSpec {
    /// Reads, parses and validates a job file; relative model paths are resolved against
    /// the file's folder.
    pub fn load(path: &Path) -> Result<JobSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut spec = JobSpec::parse(&text, path)?;
        if let ModelSpec::Torchscript { path: model, .. } = &mut spec.model
            && model.is_relative()
        {
            *model = path.parent().unwrap_or(Path::new(".")).join(&*model);
        }
        Ok(spec)
    }

    /// Parses and validates TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<JobSpec, SpecError> {
        let spec: JobSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        spec.validate(path)?;
        Ok(spec)
    }

    fn validate(&self, path: &Path) -> Result<(), SpecError> {
        let bad = |key: &'static str, message: &str| SpecError::Invalid {
            path: path.to_owned(),
            key,
            message: message.to_owned(),
        };
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        if self.source.topic.trim().is_empty() {
            return Err(bad("source.topic", "must not be empty"));
        }
        if self.source.brokers.trim().is_empty() {
            return Err(bad("source.brokers", "must not be empty"));
        }
        if self.source.max_device_id_bytes == 0 {
            return Err(bad("source.max-device-id-bytes", "must be at least 1"));
        }
        if self.source.max_record_bytes == 0 {
            return Err(bad("source.max-record-bytes", "must be at least 1"));
        }
        if self.event_time.field != "time" {
            return Err(bad(
                "event-time.field",
                "must be \"time\" (the reading contract's field)",
            ));
        }
        if self.window.length.as_millis() == 0 {
            return Err(bad("window.length", "must be positive"));
        }
        if self.sequence.length == 0 {
            return Err(bad("sequence.length", "must be at least 1"));
        }
        if self.epoch_interval.is_zero() {
            return Err(bad("epoch-interval", "must be positive"));
        }
        if let ModelSpec::Torchscript { max_batch: 0, .. } = self.model {
            return Err(bad("model.max-batch", "must be at least 1"));
        }
        if let ModelSpec::Torchscript { guard, .. } = &self.model
            && let Err((key, message)) = guard.validate()
        {
            return Err(bad(key, message));
        }
        if self.state.key_groups == Some(0) {
            return Err(bad("state.key-groups", "must be at least 1"));
        }
        if self.state.ttl < self.window.length + self.window.allowed_lateness {
            return Err(bad(
                "state.ttl",
                "must be at least the window length plus the allowed lateness",
            ));
        }
        if self.state.max_devices == Some(0) {
            return Err(bad("state.max-devices", "must be at least 1"));
        }
        if let Err(m) = self.checkpoint.validate() {
            return Err(SpecError::Invalid {
                path: path.to_owned(),
                key: "checkpoint",
                message: m,
            });
        }
        if matches!(self.model, ModelSpec::Off)
            && let Some(i) = self
                .sinks
                .iter()
                .position(|s| !matches!(s, SinkSpec::Kafka(_)))
        {
            return Err(SpecError::Invalid {
                path: path.to_owned(),
                key: "sinks",
                message: format!(
                    "[{i}]: with `model.kind = \"off\"` the job writes window sequences, which only Kafka sinks take; choose a model or remove this sink"
                ),
            });
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.validate().map_err(|message| SpecError::Invalid {
                path: path.to_owned(),
                key: "sinks",
                message: format!("[{i}]: {message}"),
            })?;
        }
        if self.sinks.is_empty() && !matches!(self.model, ModelSpec::Off) {
            return Err(bad("sinks", "needs at least one sink"));
        }
        if self.exactly_once() && self.checkpoint.location.is_none() {
            return Err(bad(
                "checkpoint.location",
                "is needed: exactly-once output is committed at checkpoints (add a [checkpoint] table or use delivery = \"at-least-once\")",
            ));
        }
        Ok(())
    }

    /// Whether any Kafka output of the job is exactly-once.
    pub fn exactly_once(&self) -> bool {
        use crate::sinks::kafka::exactly_once::Delivery::ExactlyOnce;
        self.dead_letter_delivery == ExactlyOnce
            || self.late_data_delivery == ExactlyOnce
            || self
                .sinks
                .iter()
                .any(|s| matches!(s, SinkSpec::Kafka(k) if k.delivery == ExactlyOnce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../../jobs/dht11-forecast.toml");

    #[test]
    fn reference_job_parses_and_round_trips() {
        let spec = JobSpec::parse(REFERENCE, Path::new("dht11-forecast.toml")).expect("valid");
        assert_eq!(spec.window.length, Duration::from_secs(1800));
        assert_eq!(spec.sequence.length, 60);
        assert_eq!(spec.source.topic, "DHT11");
        let text = toml::to_string(&spec).expect("serialise");
        assert_eq!(
            JobSpec::parse(&text, Path::new("x")).expect("reparse"),
            spec
        );
    }

    #[test]
    fn source_bounds_default_and_round_trip() {
        let spec = JobSpec::parse(REFERENCE, Path::new("j.toml")).expect("valid");
        assert_eq!(
            spec.source.parse_options(),
            ParseOptions::new(spec.source.sensor)
        );
        // The reference file spells the defaults out; set other values in their place.
        let text: String = REFERENCE
            .lines()
            .filter(|l| !l.starts_with("max-"))
            .map(|l| {
                if l.starts_with("sensor =") {
                    "sensor = \"dht22\"\nmax-device-id-bytes = 64\nmax-record-bytes = 4096\nmax-future-skew = \"90s\"\n".to_owned()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let spec = JobSpec::parse(&text, Path::new("j.toml")).expect("valid");
        let opts = spec.source.parse_options();
        assert_eq!(opts.sensor, SensorKind::Dht22);
        assert_eq!(opts.max_device_id_bytes, 64);
        assert_eq!(opts.max_record_bytes, 4096);
        assert_eq!(opts.max_future_skew, Duration::from_secs(90));
        let text = toml::to_string(&spec).expect("serialise");
        assert!(text.contains("max-future-skew = \"1m 30s\""), "{text}");
        assert_eq!(
            JobSpec::parse(&text, Path::new("x")).expect("reparse"),
            spec
        );
        let text = REFERENCE.replace("max-record-bytes = 65536", "max-record-bytes = 0");
        let err = JobSpec::parse(&text, Path::new("j.toml")).expect_err("zero");
        assert!(
            err.to_string().contains("`source.max-record-bytes`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let text = REFERENCE.replace("allowed-lateness", "allowed-latenes");
        let err = JobSpec::parse(&text, Path::new("j.toml")).expect_err("typo");
        assert!(err.to_string().contains("allowed-latenes"), "{err}");
    }

    #[test]
    fn a_bad_sink_setting_is_refused_at_load() {
        let text = format!("{REFERENCE}\n[[sinks]]\ntype = \"thingsboard\"\nurl = \"ftp://tb\"\n");
        let err = JobSpec::parse(&text, Path::new("j.toml")).expect_err("bad url");
        assert!(err.to_string().contains("`sinks` [1]: `url`"), "{err}");
    }

    #[test]
    fn out_of_range_value_is_named() {
        let text = REFERENCE.replace("length = 60", "length = 0");
        let err = JobSpec::parse(&text, Path::new("j.toml")).expect_err("zero");
        assert!(err.to_string().contains("`sequence.length`"), "{err}");
        let text = REFERENCE.replace("length = \"30m\"", "length = \"thirty\"");
        let err = JobSpec::parse(&text, Path::new("j.toml")).expect_err("duration");
        assert!(err.to_string().contains("length"), "{err}");
    }
}

mod guard;
#[cfg(test)]
mod proptests;
