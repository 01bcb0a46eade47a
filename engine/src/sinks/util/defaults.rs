//! Defaults the delivery settings of the ThingsBoard and MQTT sinks share (serde
//! `default = "..."` functions).

use std::time::Duration;

/// Predictions per request or publish, at most.
pub fn max_batch() -> usize {
    100
}

/// Predictions queued per worker before the worker blocks.
pub fn max_buffered() -> usize {
    10_000
}

/// First retry or reconnect delay.
pub fn initial_backoff() -> Duration {
    Duration::from_millis(200)
}

/// Largest retry or reconnect delay.
pub fn max_backoff() -> Duration {
    Duration::from_secs(30)
}
