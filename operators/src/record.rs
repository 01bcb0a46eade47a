//! The data contracts of `../shared/DESIGN.md`: a sensor [`Reading`] on topic `DHT11`
//! and a [`Prediction`] on topic `predicData`, with the validation that decides
//! whether a reading may enter the pipeline.
//!
//! Validation never panics and never drops silently: a record that cannot be
//! accepted comes back as a [`Rejection`] whose [`RejectReason`] is what the
//! dead-letter topic and the rejection counters carry.

use serde::{Deserialize, Serialize};
use std::fmt;

pub mod limits;
pub mod quality;

pub use limits::ParseOptions;
pub use quality::{Accuracy, FeatureAccuracy, FeatureServed, ForecasterKind, Served, ServedReason};

/// Which sensor produced a reading; decides the physical range a value must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorKind {
    /// DHT11: 0–50 °C, 20–90 %RH, 1 s minimum sampling interval.
    #[default]
    Dht11,
    /// DHT22 (AM2302): −40–80 °C, 0–100 %RH, 2 s minimum sampling interval.
    Dht22,
}

impl SensorKind {
    /// Inclusive temperature range in °C.
    pub fn temperature_range(self) -> (f64, f64) {
        match self {
            SensorKind::Dht11 => (0.0, 50.0),
            SensorKind::Dht22 => (-40.0, 80.0),
        }
    }

    /// Inclusive relative-humidity range in %.
    pub fn humidity_range(self) -> (f64, f64) {
        match self {
            SensorKind::Dht11 => (20.0, 90.0),
            SensorKind::Dht22 => (0.0, 100.0),
        }
    }

    /// The shortest interval between two reads the datasheet allows.
    pub fn min_interval(self) -> std::time::Duration {
        match self {
            SensorKind::Dht11 => std::time::Duration::from_secs(1),
            SensorKind::Dht22 => std::time::Duration::from_secs(2),
        }
    }
}

impl fmt::Display for SensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SensorKind::Dht11 => "dht11",
            SensorKind::Dht22 => "dht22",
        })
    }
}

/// One temperature/humidity reading: the value of a message on topic `DHT11`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Event time, Unix seconds.
    pub time: f64,
    /// Temperature in °C.
    pub temperature: f64,
    /// Relative humidity in %.
    pub humidity: f64,
    /// Device id; also the message key.
    pub device: String,
}

/// Why a record was refused. The `as_str` form is the dead-letter reason and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not JSON, or JSON of the wrong shape.
    Malformed,
    /// A required field (`time`, `temperature`, `humidity`) is absent or null.
    MissingField,
    /// A value is NaN or infinite.
    NotFinite,
    /// A value lies outside the sensor's physical range.
    OutOfRange,
    /// The device id (field or key) is longer than the bound.
    DeviceIdTooLong,
    /// The device id holds a control character, or the key it comes from is not UTF-8.
    DeviceIdInvalid,
    /// The event time lies further ahead of the Kafka record timestamp than allowed.
    FutureTime,
    /// Key and value together are larger than the bound.
    TooLarge,
}

impl RejectReason {
    /// Every reason, for metric pre-registration.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::Malformed,
        RejectReason::MissingField,
        RejectReason::NotFinite,
        RejectReason::OutOfRange,
        RejectReason::DeviceIdTooLong,
        RejectReason::DeviceIdInvalid,
        RejectReason::FutureTime,
        RejectReason::TooLarge,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::MissingField => "missing_field",
            RejectReason::NotFinite => "not_finite",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::DeviceIdTooLong => "device_id_too_long",
            RejectReason::DeviceIdInvalid => "device_id_invalid",
            RejectReason::FutureTime => "future_time",
            RejectReason::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused record: the reason class and a human-readable detail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The class of the failure.
    pub reason: RejectReason,
    /// What exactly was wrong, for the dead-letter record and the log.
    pub detail: String,
}

impl Rejection {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// The wire form, with every field optional so a missing one is told apart from bad JSON.
/// Numbers are taken as `serde_json::Value` so that a JSON string or `null` is reported
/// precisely; unknown fields are ignored (producers may add some).
#[derive(Deserialize)]
struct WireReading<'a> {
    time: Option<serde_json::Value>,
    temperature: Option<serde_json::Value>,
    humidity: Option<serde_json::Value>,
    #[serde(borrow)]
    device: Option<std::borrow::Cow<'a, str>>,
}

fn number(field: &'static str, v: Option<serde_json::Value>) -> Result<f64, Rejection> {
    match v {
        None | Some(serde_json::Value::Null) => Err(Rejection::new(
            RejectReason::MissingField,
            format!("field `{field}` is missing"),
        )),
        Some(serde_json::Value::Number(n)) => n.as_f64().ok_or_else(|| {
            Rejection::new(
                RejectReason::Malformed,
                format!("field `{field}` is not a float"),
            )
        }),
        // JSON has no NaN, but some producers (Python's json.dumps) write it as a string
        // or a bare token; a string "NaN"/"inf" is reported as not finite, anything else
        // as malformed.
        Some(serde_json::Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(x) if !x.is_finite() => Err(Rejection::new(
                RejectReason::NotFinite,
                format!("field `{field}` is {s:?}"),
            )),
            _ => Err(Rejection::new(
                RejectReason::Malformed,
                format!("field `{field}` is a string, not a number"),
            )),
        },
        Some(other) => Err(Rejection::new(
            RejectReason::Malformed,
            format!("field `{field}` is not a number: {other}"),
        )),
    }
}

impl Reading {
    /// Decodes and validates a message value with the default bounds of
    /// [`ParseOptions::new`]. `key` is the message key, used as the device id when the
    /// value has no `device`; failing both the device is `"default"`.
    pub fn parse(
        key: Option<&[u8]>,
        payload: &[u8],
        sensor: SensorKind,
    ) -> Result<Reading, Rejection> {
        Reading::parse_with(key, payload, &ParseOptions::new(sensor))
    }

    /// Everything a source decides about one Kafka record, cheapest check first: its size
    /// (before any decoding), the reading and its device id ([`parse_with`](Self::parse_with)),
    /// then the event time against the record's timestamp (`timestamp_ms`, Unix ms, `None`
    /// when the record has none).
    pub fn parse_record(
        key: Option<&[u8]>,
        payload: &[u8],
        timestamp_ms: Option<i64>,
        opts: &ParseOptions,
    ) -> Result<Reading, Rejection> {
        limits::check_record_size(
            key.map_or(0, <[u8]>::len),
            payload.len(),
            opts.max_record_bytes,
        )?;
        let reading = Reading::parse_with(key, payload, opts)?;
        limits::check_future_skew(reading.time, timestamp_ms, opts.max_future_skew)?;
        Ok(reading)
    }

    /// Decodes and validates a message value: the sensor's ranges and the device id bound
    /// of `opts`. The size and future-time bounds need the whole Kafka record and are
    /// [`parse_record`](Self::parse_record)'s.
    pub fn parse_with(
        key: Option<&[u8]>,
        payload: &[u8],
        opts: &ParseOptions,
    ) -> Result<Reading, Rejection> {
        let wire: WireReading<'_> = serde_json::from_slice(payload).map_err(|e| {
            // serde_json reports NaN/Infinity tokens as syntax errors; keep the message.
            Rejection::new(RejectReason::Malformed, format!("not a JSON reading: {e}"))
        })?;
        let time = number("time", wire.time)?;
        let temperature = number("temperature", wire.temperature)?;
        let humidity = number("humidity", wire.humidity)?;
        let device = match wire.device {
            Some(d) if !d.is_empty() => d,
            _ => match key {
                Some(k) if !k.is_empty() => match std::str::from_utf8(k) {
                    Ok(k) => std::borrow::Cow::Borrowed(k),
                    // The key would be the device id; a binary one cannot be named anywhere.
                    Err(e) => {
                        return Err(Rejection::new(
                            RejectReason::DeviceIdInvalid,
                            format!("message key is not UTF-8: {e}"),
                        ));
                    }
                },
                _ => std::borrow::Cow::Borrowed("default"),
            },
        };
        // Before the copy: a 900 KB id is refused without being allocated again.
        limits::check_device_id(&device, opts.max_device_id_bytes)?;
        let reading = Reading {
            time,
            temperature,
            humidity,
            device: device.into_owned(),
        };
        reading.validate(opts.sensor)?;
        Ok(reading)
    }

    /// Checks finiteness, event time and the sensor's physical ranges.
    pub fn validate(&self, sensor: SensorKind) -> Result<(), Rejection> {
        for (name, v) in [
            ("time", self.time),
            ("temperature", self.temperature),
            ("humidity", self.humidity),
        ] {
            if !v.is_finite() {
                return Err(Rejection::new(
                    RejectReason::NotFinite,
                    format!("field `{name}` is {v}"),
                ));
            }
        }
        if self.time < 0.0 {
            return Err(Rejection::new(
                RejectReason::OutOfRange,
                format!("time {} is before 1970", self.time),
            ));
        }
        let (lo, hi) = sensor.temperature_range();
        if !(lo..=hi).contains(&self.temperature) {
            return Err(Rejection::new(
                RejectReason::OutOfRange,
                format!(
                    "temperature {} °C outside {sensor} range {lo}..={hi}",
                    self.temperature
                ),
            ));
        }
        let (lo, hi) = sensor.humidity_range();
        if !(lo..=hi).contains(&self.humidity) {
            return Err(Rejection::new(
                RejectReason::OutOfRange,
                format!(
                    "humidity {} %RH outside {sensor} range {lo}..={hi}",
                    self.humidity
                ),
            ));
        }
        Ok(())
    }

    /// The JSON value of this reading, as produced to topic `DHT11`.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of floats and a string cannot fail; non-finite floats
        // become `null`, which `parse` rejects as missing rather than accepting.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Observed means of the window that just closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedValues {
    /// Mean temperature in °C.
    pub temperature: f64,
    /// Mean relative humidity in %.
    pub humidity: f64,
}

/// The model's forecast for the next window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictedValues {
    /// Predicted mean temperature in °C.
    pub temperature: f64,
    /// Predicted mean relative humidity in %.
    pub humidity: f64,
    /// End of the window the forecast is for, Unix seconds.
    pub for_window_end: f64,
}

/// One forecast: the value of a message on topic `predicData`, key = device id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Device id.
    pub device: String,
    /// Start of the window that closed, Unix seconds.
    pub window_start: f64,
    /// End of the window that closed, Unix seconds.
    pub window_end: f64,
    /// The closed window's means.
    pub observed: ObservedValues,
    /// The served forecast for the next window (per feature the model's or, when the guard
    /// switched, persistence's; see `served`).
    pub predicted: PredictedValues,
    /// Id of the model artifact (its sha256 prefix) that made the forecast.
    pub model: String,
    /// Per feature: which forecaster spoke and why, the model's own forecast, the clamp.
    #[serde(default)]
    pub served: Served,
    /// The device's rolling errors of the model and of persistence.
    #[serde(default)]
    pub accuracy: Accuracy,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Reading, Rejection> {
        Reading::parse(Some(b"key-1"), s.as_bytes(), SensorKind::Dht11)
    }

    #[test]
    fn accepts_the_reference_reading() {
        let r = parse(
            r#"{"time": 1700000000.5, "temperature": 21.0, "humidity": 45.0, "device": "pi-01"}"#,
        )
        .expect("valid");
        assert_eq!(r.device, "pi-01");
        assert_eq!(r.time, 1_700_000_000.5);
    }

    #[test]
    fn device_defaults_to_key_then_default() {
        assert_eq!(
            parse(r#"{"time":1,"temperature":21,"humidity":45}"#)
                .expect("ok")
                .device,
            "key-1"
        );
        let r = Reading::parse(
            None,
            br#"{"time":1,"temperature":21,"humidity":45}"#,
            SensorKind::Dht11,
        );
        assert_eq!(r.expect("ok").device, "default");
    }

    #[test]
    fn each_failure_has_its_reason() {
        let cases = [
            ("not json", RejectReason::Malformed),
            (r#"[1,2]"#, RejectReason::Malformed),
            (
                r#"{"temperature":21,"humidity":45}"#,
                RejectReason::MissingField,
            ),
            (
                r#"{"time":1,"temperature":null,"humidity":45}"#,
                RejectReason::MissingField,
            ),
            (
                r#"{"time":1,"temperature":"NaN","humidity":45}"#,
                RejectReason::NotFinite,
            ),
            (
                r#"{"time":1,"temperature":"warm","humidity":45}"#,
                RejectReason::Malformed,
            ),
            (
                r#"{"time":1,"temperature":NaN,"humidity":45}"#,
                RejectReason::Malformed,
            ),
            (
                r#"{"time":1,"temperature":51,"humidity":45}"#,
                RejectReason::OutOfRange,
            ),
            (
                r#"{"time":1,"temperature":20,"humidity":19.9}"#,
                RejectReason::OutOfRange,
            ),
            (
                r#"{"time":-5,"temperature":20,"humidity":40}"#,
                RejectReason::OutOfRange,
            ),
        ];
        for (input, want) in cases {
            let got = parse(input).expect_err(input);
            assert_eq!(got.reason, want, "{input}: {got}");
        }
    }

    #[test]
    fn dht22_range_admits_frost() {
        let r = Reading::parse(
            None,
            br#"{"time":1,"temperature":-12.5,"humidity":5}"#,
            SensorKind::Dht22,
        );
        assert!(r.is_ok());
        let r = Reading::parse(
            None,
            br#"{"time":1,"temperature":-12.5,"humidity":5}"#,
            SensorKind::Dht11,
        );
        assert_eq!(r.expect_err("dht11 range").reason, RejectReason::OutOfRange);
    }

    #[test]
    fn round_trips_through_json() {
        let r = Reading {
            time: 12.25,
            temperature: 22.5,
            humidity: 40.1,
            device: "d".into(),
        };
        assert_eq!(
            Reading::parse(None, &r.to_json(), SensorKind::Dht11).expect("ok"),
            r
        );
    }
}
