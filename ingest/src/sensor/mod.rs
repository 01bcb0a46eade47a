//! Sensor backends: where a temperature/humidity measurement comes from.
//!
//! A [`Sensor`] is one physical (or simulated) DHT11/DHT22. Each call to [`Sensor::read`]
//! is one attempt; the [`crate::sampler`] decides when to attempt, retries failures as
//! the datasheet says and validates the result. Backends:
//! - [`iio`]: the kernel's `dht11` IIO driver (recommended on a Raspberry Pi);
//! - `gpio` (cargo feature `gpio`): bit-banging the data pin through rppal, decoded by [`frame`];
//! - [`simulate`]: seeded devices with a diurnal cycle, noise and occasional faults.
//!
//! Recorded data is not a sensor (its timestamps are given, not sampled): see [`crate::replay`].

pub mod frame;
#[cfg(feature = "gpio")]
pub mod gpio;
pub mod iio;
pub mod simulate;

use flowcast_operators::record::{RejectReason, Rejection};
use std::fmt;

/// A temperature/humidity pair as the sensor reported it, before range validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Temperature in °C.
    pub temperature: f64,
    /// Relative humidity in %.
    pub humidity: f64,
}

/// Why one attempt at reading a sensor gave no usable value. The `as_str` form is the
/// `reason` label of `flowcast_ingest_sensor_failed_reads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// The frame's checksum byte does not match its data bytes.
    Checksum,
    /// The sensor did not answer, or stopped answering mid-frame (kernel: `ETIMEDOUT`).
    Timeout,
    /// An I/O error other than a timeout (kernel: `EIO`, a missing sysfs file, GPIO access).
    Io,
    /// The frame passed its checksum but cannot be a reading (e.g. tenths byte above 9).
    BadFrame,
    /// A value is outside the sensor's physical range.
    OutOfRange,
    /// A value is NaN or infinite.
    NotFinite,
    /// The backend panicked; caught, counted, and treated as a failed attempt.
    Panic,
}

impl FailReason {
    /// Every reason, for metric pre-registration.
    pub const ALL: [FailReason; 7] = [
        FailReason::Checksum,
        FailReason::Timeout,
        FailReason::Io,
        FailReason::BadFrame,
        FailReason::OutOfRange,
        FailReason::NotFinite,
        FailReason::Panic,
    ];

    /// Stable snake_case name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Checksum => "checksum",
            FailReason::Timeout => "timeout",
            FailReason::Io => "io",
            FailReason::BadFrame => "bad_frame",
            FailReason::OutOfRange => "out_of_range",
            FailReason::NotFinite => "not_finite",
            FailReason::Panic => "panic",
        }
    }

    /// Position in [`FailReason::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt: the reason class and what exactly happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct ReadFailure {
    /// The class of the failure.
    pub reason: FailReason,
    /// A human-readable detail for the log.
    pub detail: String,
}

impl ReadFailure {
    /// A failure of class `reason`.
    pub fn new(reason: FailReason, detail: impl Into<String>) -> Self {
        ReadFailure {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<Rejection> for ReadFailure {
    fn from(r: Rejection) -> Self {
        let reason = match r.reason {
            RejectReason::NotFinite => FailReason::NotFinite,
            RejectReason::OutOfRange => FailReason::OutOfRange,
            // A measurement is never JSON, so these cannot happen; keep them visible anyway.
            RejectReason::Malformed | RejectReason::MissingField => FailReason::BadFrame,
            // Bounds of a Kafka source; a measurement never meets them.
            RejectReason::DeviceIdTooLong
            | RejectReason::DeviceIdInvalid
            | RejectReason::FutureTime
            | RejectReason::TooLarge => FailReason::BadFrame,
        };
        ReadFailure::new(reason, r.detail)
    }
}

/// One temperature/humidity sensor.
pub trait Sensor: Send {
    /// Device id: the message key and the reading's `device`.
    fn device(&self) -> &str;
    /// One attempt at a measurement. Must not block much longer than a sensor
    /// transaction (tens of milliseconds) and should not panic (a panic is caught and
    /// counted as [`FailReason::Panic`]).
    fn read(&mut self) -> Result<Measurement, ReadFailure>;
}
