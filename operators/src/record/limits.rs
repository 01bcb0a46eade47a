//! Bounds on what a source accepts from a device it cannot trust: the size of a record,
//! the device id, and how far an event time may run ahead of the Kafka record timestamp.
//!
//! Each check is a pure function of the record (never of the wall clock), so a replay
//! after recovery refuses exactly what the first run refused. [`ParseOptions`] bundles the
//! bounds a job's `[source]` table sets; [`Reading::parse_record`](super::Reading::parse_record)
//! applies all of them in one call.

use super::{RejectReason, Rejection, SensorKind};
use std::time::Duration;

/// The bounds a source applies while it decodes records. The job spec's `[source]` table
/// sets them; [`Default`] is what a job gets when it sets nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Which sensor the readings come from: decides the valid ranges.
    pub sensor: SensorKind,
    /// Longest device id (from the `device` field or the message key), in bytes.
    pub max_device_id_bytes: usize,
    /// Largest record (key plus value), in bytes.
    pub max_record_bytes: usize,
    /// How far an event time may lie ahead of the Kafka record timestamp.
    pub max_future_skew: Duration,
}

impl ParseOptions {
    /// Default for [`max_device_id_bytes`](Self::max_device_id_bytes).
    pub const DEFAULT_MAX_DEVICE_ID_BYTES: usize = 128;
    /// Default for [`max_record_bytes`](Self::max_record_bytes): 64 KiB, some hundred
    /// times a real reading and far below what would strain the dead-letter producer.
    pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;
    /// Default for [`max_future_skew`](Self::max_future_skew): one hour, more than any
    /// sane clock error of a Pi without NTP over a short outage.
    pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(3600);

    /// The default bounds for readings of `sensor`.
    pub fn new(sensor: SensorKind) -> Self {
        ParseOptions {
            sensor,
            max_device_id_bytes: Self::DEFAULT_MAX_DEVICE_ID_BYTES,
            max_record_bytes: Self::DEFAULT_MAX_RECORD_BYTES,
            max_future_skew: Self::DEFAULT_MAX_FUTURE_SKEW,
        }
    }
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions::new(SensorKind::default())
    }
}

/// Refuses a device id that is longer than `max_bytes` or holds a control character
/// (a newline or NUL in a device id breaks log lines, ThingsBoard device names and
/// anything keyed by it).
pub fn check_device_id(device: &str, max_bytes: usize) -> Result<(), Rejection> {
    if device.len() > max_bytes {
        return Err(Rejection::new(
            RejectReason::DeviceIdTooLong,
            format!("device id of {} bytes exceeds {max_bytes}", device.len()),
        ));
    }
    if let Some((at, c)) = device.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Rejection::new(
            RejectReason::DeviceIdInvalid,
            format!("device id holds control character {c:?} at byte {at}"),
        ));
    }
    Ok(())
}

/// Refuses a record whose key and value together exceed `max_bytes`. Checked before
/// anything is decoded, so a huge record costs no parsing.
pub fn check_record_size(
    key_len: usize,
    payload_len: usize,
    max_bytes: usize,
) -> Result<(), Rejection> {
    let size = key_len.saturating_add(payload_len);
    if size > max_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!("record of {size} bytes exceeds {max_bytes}"),
        ));
    }
    Ok(())
}

/// Refuses an event time (Unix seconds) more than `max_skew` ahead of the Kafka record
/// timestamp (Unix ms). A record without a timestamp (`None` or negative, as librdkafka
/// reports "not available") has nothing to compare against and passes: the decision must
/// depend on the record alone, never on the wall clock.
pub fn check_future_skew(
    event_time_secs: f64,
    record_timestamp_ms: Option<i64>,
    max_skew: Duration,
) -> Result<(), Rejection> {
    let Some(ts_ms) = record_timestamp_ms.filter(|t| *t >= 0) else {
        return Ok(());
    };
    // In f64: an event time of 9e15 s is 9e18 ms, beyond what i64 arithmetic on
    // milliseconds should be trusted with; the comparison needs no exactness at that scale.
    let limit_ms = ts_ms as f64 + max_skew.as_secs_f64() * 1000.0;
    let event_ms = event_time_secs * 1000.0;
    // A NaN event time is refused too (validation refuses it first).
    if event_ms.is_nan() || event_ms > limit_ms {
        return Err(Rejection::new(
            RejectReason::FutureTime,
            format!(
                "event time {event_time_secs} s is more than {} s ahead of the record timestamp {ts_ms} ms",
                max_skew.as_secs_f64()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reading;

    const SKEW: Duration = Duration::from_secs(3600);

    #[test]
    fn device_id_bound_is_inclusive() {
        assert!(check_device_id(&"a".repeat(128), 128).is_ok());
        let err = check_device_id(&"a".repeat(129), 128).expect_err("129 bytes");
        assert_eq!(err.reason, RejectReason::DeviceIdTooLong);
        // Bytes, not chars: 43 three-byte chars are 129 bytes.
        let err = check_device_id(&"€".repeat(43), 128).expect_err("129 bytes");
        assert_eq!(err.reason, RejectReason::DeviceIdTooLong);
    }

    #[test]
    fn device_id_with_control_characters_is_invalid() {
        for id in ["pi\n01", "pi\u{0}", "\u{1b}[31mred", "pi\u{7f}", "pi\u{85}"] {
            let err = check_device_id(id, 128).expect_err(id);
            assert_eq!(err.reason, RejectReason::DeviceIdInvalid, "{id:?}");
        }
        assert!(check_device_id("pi-01 küche ☃", 128).is_ok());
    }

    #[test]
    fn record_size_bound() {
        assert!(check_record_size(10, 65_526, 65_536).is_ok());
        let err = check_record_size(11, 65_526, 65_536).expect_err("one byte over");
        assert_eq!(err.reason, RejectReason::TooLarge);
        assert!(err.detail.contains("65537"), "{err}");
        let err = check_record_size(usize::MAX, 1, 65_536).expect_err("saturates");
        assert_eq!(err.reason, RejectReason::TooLarge);
    }

    #[test]
    fn future_skew_compares_with_the_record_timestamp() {
        let ts = 1_700_000_000_000;
        assert!(check_future_skew(1_700_000_000.0 + 3600.0, Some(ts), SKEW).is_ok());
        let err = check_future_skew(1_700_000_000.0 + 3600.001, Some(ts), SKEW)
            .expect_err("just past the skew");
        assert_eq!(err.reason, RejectReason::FutureTime);
        // Far in the past is not this check's business (lateness is).
        assert!(check_future_skew(0.0, Some(ts), SKEW).is_ok());
        // No timestamp: nothing to compare against, never the wall clock.
        assert!(check_future_skew(9e15, None, SKEW).is_ok());
        assert!(check_future_skew(9e15, Some(-1), SKEW).is_ok());
        assert_eq!(
            check_future_skew(f64::NAN, Some(ts), SKEW)
                .expect_err("nan")
                .reason,
            RejectReason::FutureTime
        );
    }

    #[test]
    fn time_9e15_is_refused_as_future_time() {
        let payload =
            br#"{"time": 9e15, "temperature": 21.0, "humidity": 45.0, "device": "pi-01"}"#;
        // Alone, the reading is valid: 9e15 s is finite and after 1970.
        assert!(Reading::parse(None, payload, SensorKind::Dht11).is_ok());
        let err = Reading::parse_record(
            None,
            payload,
            Some(1_700_000_000_000),
            &ParseOptions::default(),
        )
        .expect_err("year 287 million");
        assert_eq!(err.reason, RejectReason::FutureTime);
    }

    #[test]
    fn a_900_kb_device_id_is_refused() {
        let id = "x".repeat(900 * 1024);
        let payload = format!(r#"{{"time":1,"temperature":21,"humidity":45,"device":"{id}"}}"#);
        let no_size_bound = ParseOptions {
            max_record_bytes: usize::MAX,
            ..ParseOptions::default()
        };
        let err = Reading::parse_with(None, payload.as_bytes(), &no_size_bound)
            .expect_err("900 KB id in the value");
        assert_eq!(err.reason, RejectReason::DeviceIdTooLong);
        let err = Reading::parse_with(
            Some(id.as_bytes()),
            br#"{"time":1,"temperature":21,"humidity":45}"#,
            &no_size_bound,
        )
        .expect_err("900 KB id in the key");
        assert_eq!(err.reason, RejectReason::DeviceIdTooLong);
        // Through the whole source path the size bound refuses it before any decoding.
        let err = Reading::parse_record(None, payload.as_bytes(), None, &ParseOptions::default())
            .expect_err("too large");
        assert_eq!(err.reason, RejectReason::TooLarge);
        // The unchanged three-argument parse applies the default id bound too.
        let err = Reading::parse(None, payload.as_bytes(), SensorKind::Dht11).expect_err("id");
        assert_eq!(err.reason, RejectReason::DeviceIdTooLong);
    }

    #[test]
    fn device_id_from_key_is_checked_like_the_field() {
        let value = br#"{"time":1,"temperature":21,"humidity":45}"#;
        let opts = ParseOptions::default();
        let err = Reading::parse_with(Some(b"pi\r\n01"), value, &opts).expect_err("crlf key");
        assert_eq!(err.reason, RejectReason::DeviceIdInvalid);
        let err = Reading::parse_with(Some(&[0xff, 0xfe]), value, &opts).expect_err("not utf-8");
        assert_eq!(err.reason, RejectReason::DeviceIdInvalid);
        let err = Reading::parse_with(
            None,
            br#"{"time":1,"temperature":21,"humidity":45,"device":"a\u0000b"}"#,
            &opts,
        )
        .expect_err("escaped NUL in the field");
        assert_eq!(err.reason, RejectReason::DeviceIdInvalid);
        // A valid `device` field wins over a bad key: the key is not the device id then.
        let r = Reading::parse_with(
            Some(b"bad\nkey"),
            br#"{"time":1,"temperature":21,"humidity":45,"device":"pi-01"}"#,
            &opts,
        )
        .expect("field wins");
        assert_eq!(r.device, "pi-01");
    }

    #[test]
    fn the_device_id_bound_is_configurable() {
        let value = br#"{"time":1,"temperature":21,"humidity":45,"device":"pi-0001"}"#;
        let tight = ParseOptions {
            max_device_id_bytes: 4,
            ..ParseOptions::default()
        };
        let err = Reading::parse_with(None, value, &tight).expect_err("7 > 4");
        assert_eq!(err.reason, RejectReason::DeviceIdTooLong);
        let loose = ParseOptions {
            max_device_id_bytes: 7,
            ..ParseOptions::default()
        };
        assert!(Reading::parse_with(None, value, &loose).is_ok());
    }
}
