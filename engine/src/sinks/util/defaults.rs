//! Defaults the delivery settings of the ThingsBoard and MQTT sinks share (serde
//! `default = "..."` functions).

use std::time::Duration;

/// Predictions per request or publish, at most.
pub fn max_batch() -> usize {
    100
}

/// Predictions undelivered per worker (queued, in flight or being retried) before the
/// worker blocks. Every one of them is in each checkpoint, so checkpoints keep completing
/// through an outage until this many have piled up: with 10 k devices on a worker and
/// 30-minute windows, five hours.
pub fn max_buffered() -> usize {
    100_000
}

/// First retry or reconnect delay.
pub fn initial_backoff() -> Duration {
    Duration::from_millis(200)
}

/// Largest retry or reconnect delay.
pub fn max_backoff() -> Duration {
    Duration::from_secs(30)
}
