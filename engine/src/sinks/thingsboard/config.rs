//! `type = "thingsboard"`: the settings of the ThingsBoard HTTP sink (and of
//! `flowcast tb-bridge`, which reads the same table from its `--config` file).
//!
//! ```toml
//! [[sinks]]
//! type = "thingsboard"
//! url = "http://127.0.0.1:8080"
//! tokens-file = "/etc/flowcast/tb-tokens"   # device = token lines; or FLOWCAST_TB_TOKENS_FILE
//! ```

use super::breaker::Backoff;
use super::delivery::DeliveryConfig;
use crate::sinks::util::defaults;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The ThingsBoard HTTP sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ThingsBoardSinkConfig {
    /// Base URL of the ThingsBoard server (`http://host:8080`, `https://tb.example.com`).
    pub url: String,
    /// The secrets file (`device = token` lines); default `FLOWCAST_TB_TOKENS_FILE`.
    /// Tokens never go in this spec.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// Timeout of one request, connect to last byte.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Concurrent requests per worker.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Predictions of one device per request, at most.
    #[serde(default = "defaults::max_batch")]
    pub max_batch: usize,
    /// Predictions undelivered per worker before the worker blocks (backpressure); all
    /// of them are part of every checkpoint, so checkpoints go on through an outage until
    /// this many have piled up.
    #[serde(default = "defaults::max_buffered")]
    pub max_buffered: usize,
    /// First retry delay.
    #[serde(default = "defaults::initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Largest retry delay, and largest circuit-breaker cool-down.
    #[serde(default = "defaults::max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Consecutive failed requests that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe (doubling while probes fail).
    #[serde(default = "default_breaker_cooldown", with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Topic for refused predictions; default: the job's dead-letter topic.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_in_flight() -> usize {
    4
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Duration {
    Duration::from_secs(2)
}

impl ThingsBoardSinkConfig {
    /// A config with every default and `url`.
    pub fn new(url: &str) -> Self {
        ThingsBoardSinkConfig {
            url: url.to_owned(),
            tokens_file: None,
            timeout: default_timeout(),
            max_in_flight: default_max_in_flight(),
            max_batch: defaults::max_batch(),
            max_buffered: defaults::max_buffered(),
            initial_backoff: defaults::initial_backoff(),
            max_backoff: defaults::max_backoff(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown: default_breaker_cooldown(),
            dead_letter_topic: None,
        }
    }

    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "`url` {:?} must start with http:// or https://",
                self.url
            ));
        }
        if self.url.contains("/api/v1/") {
            return Err("`url` is the server's base URL, without /api/v1/<token>/…".into());
        }
        for (key, v) in [
            ("max-in-flight", self.max_in_flight),
            ("max-batch", self.max_batch),
            ("max-buffered", self.max_buffered),
        ] {
            if v == 0 {
                return Err(format!("`{key}` must be at least 1"));
            }
        }
        if self.timeout.is_zero() || self.initial_backoff.is_zero() {
            return Err("`timeout` and `initial-backoff` must be positive".into());
        }
        if self.max_backoff < self.initial_backoff {
            return Err("`max-backoff` must not be below `initial-backoff`".into());
        }
        Ok(())
    }

    /// The delivery engine's settings.
    pub fn delivery(&self) -> DeliveryConfig {
        DeliveryConfig {
            max_in_flight: self.max_in_flight,
            max_batch: self.max_batch,
            max_buffered: self.max_buffered,
            backoff: Backoff {
                initial: self.initial_backoff,
                max: self.max_backoff,
            },
            breaker_failures: self.breaker_failures,
            breaker_cooldown: self.breaker_cooldown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::SinkSpec;

    #[test]
    fn round_trips_with_defaults_and_human_durations() {
        let text = r#"
type = "thingsboard"
url = "http://127.0.0.1:8080"
tokens-file = "/etc/flowcast/tb-tokens"
timeout = "5s"
breaker-cooldown = "500ms"
"#;
        let spec = crate::sinks::parse_valid(text);
        let SinkSpec::Thingsboard(c) = &spec else {
            panic!("not a thingsboard sink: {spec:?}");
        };
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.breaker_cooldown, Duration::from_millis(500));
        assert_eq!(c.max_in_flight, 4);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = toml::from_str::<SinkSpec>(
            "type = \"thingsboard\"\nurl = \"http://x\"\ntoken = \"abc\"\n",
        )
        .expect_err("no inline tokens");
        assert!(err.to_string().contains("token"), "{err}");
        let mut c = ThingsBoardSinkConfig::new("http://x");
        c.max_batch = 0;
        assert!(c.validate().expect_err("zero").contains("max-batch"));
        let c = ThingsBoardSinkConfig::new("http://x/api/v1/abc/telemetry");
        assert!(c.validate().is_err());
    }
}
