//! The metric convention of every Flowcast process (README, "Metrics"), and the text
//! exposition of a [`prometheus::Registry`].
//!
//! Names are `flowcast_<component>_<what>_<unit>`; counters end in `_total`, gauges and
//! histograms do not; units are base units spelled out (`seconds`, `bytes`). Labels are
//! job-level only — [`ALLOWED_LABELS`] — and never a device id or a token. The label for the
//! job name is [`JOB_LABEL`], because Prometheus sets `job` on every target itself.

pub use prometheus;

use prometheus::{Encoder, Registry, TextEncoder};

/// The label that carries a Flowcast job's name.
pub const JOB_LABEL: &str = "flowcast_job";

/// Every label key a Flowcast metric may carry (all low-cardinality, none from a record).
pub const ALLOWED_LABELS: [&str; 13] = [
    JOB_LABEL,
    "worker",
    "operator",
    "sink",
    "topic",
    "partition",
    "reason",
    "outcome",
    "mode",
    "backend",
    // `temperature` or `humidity`.
    "feature",
    // The upper bound of a gauge's bucket (`le` is for histograms only: promtool refuses it
    // elsewhere).
    "at_most",
    // The id of the model artifact a job serves (one per job).
    "model",
];

/// Unit abbreviations and non-base units a name must not use.
const FORBIDDEN_UNITS: [&str; 12] = [
    "ms",
    "us",
    "ns",
    "micros",
    "millis",
    "milliseconds",
    "microseconds",
    "minutes",
    "hours",
    "kb",
    "mb",
    "kib",
];

/// The kind of a metric, for [`check_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count` are added by the exposition).
    Histogram,
}

/// Checks `name` against the convention; the error says what is wrong.
pub fn check_name(name: &str, kind: Kind) -> Result<(), String> {
    let parts: Vec<&str> = name.split('_').collect();
    if parts.first() != Some(&"flowcast") || parts.len() < 3 {
        return Err(format!("{name}: not flowcast_<component>_<what>[_<unit>]"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!("{name}: not snake_case"));
    }
    if let Some(u) = parts.iter().find(|p| FORBIDDEN_UNITS.contains(p)) {
        return Err(format!("{name}: `{u}` is not a base unit (seconds, bytes)"));
    }
    match (kind, name.ends_with("_total")) {
        (Kind::Counter, false) => Err(format!("{name}: a counter ends in _total")),
        (Kind::Gauge | Kind::Histogram, true) => {
            Err(format!("{name}: only counters end in _total"))
        }
        _ => Ok(()),
    }
}

/// Checks a label key against [`ALLOWED_LABELS`].
pub fn check_label(key: &str) -> Result<(), String> {
    if ALLOWED_LABELS.contains(&key) {
        Ok(())
    } else {
        Err(format!("label {key:?} is not one of {ALLOWED_LABELS:?}"))
    }
}

/// Upper bounds (seconds) of latency histogram buckets: 50 µs to 5 s (`+Inf` is added).
pub const LATENCY_BUCKETS_SECONDS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5,
    1.0, 5.0,
];

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// `registry` in the Prometheus text format (0.0.4); an encoding error (a bug) gives the
/// text up to it.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_convention_is_checked() {
        assert!(check_name("flowcast_source_records_total", Kind::Counter).is_ok());
        assert!(check_name("flowcast_window_watermark_seconds", Kind::Gauge).is_ok());
        assert!(check_name("flowcast_watermark_ms", Kind::Gauge).is_err());
        assert!(check_name("flowcast_inference_micros_total", Kind::Counter).is_err());
        assert!(check_name("flowcast_sink_delivered", Kind::Counter).is_err());
        assert!(check_name("flowcast_ingest_spool_bytes_total", Kind::Gauge).is_err());
        assert!(check_name("other_records_total", Kind::Counter).is_err());
        assert!(check_label("flowcast_job").is_ok());
        assert!(check_label("job").is_err());
        assert!(check_label("device").is_err());
    }
}
