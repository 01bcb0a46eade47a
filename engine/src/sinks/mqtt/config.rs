//! `type = "mqtt"`: the settings of the MQTT sink.
//!
//! ```toml
//! [[sinks]]
//! type = "mqtt"
//! broker = "127.0.0.1:1883"
//! mode = "device"                 # one connection per device, username = its token
//! tokens-file = "/etc/flowcast/tb-tokens"
//!
//! [[sinks]]
//! type = "mqtt"
//! broker = "127.0.0.1:1883"
//! mode = "gateway"                # one connection for every device
//! gateway = "flowcast-gateway"    # whose token (tokens file / env) is the username
//! ```

use crate::sinks::util::defaults;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Which ThingsBoard MQTT API the sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MqttMode {
    /// `v1/devices/me/telemetry`, one connection per device, username = the device's token.
    #[default]
    Device,
    /// `v1/gateway/telemetry`, one connection (per worker), username = the gateway's token.
    Gateway,
}

impl MqttMode {
    /// The topic telemetry is published to.
    pub fn topic(self) -> &'static str {
        match self {
            MqttMode::Device => "v1/devices/me/telemetry",
            MqttMode::Gateway => "v1/gateway/telemetry",
        }
    }

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            MqttMode::Device => "device",
            MqttMode::Gateway => "gateway",
        }
    }
}

/// The MQTT sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MqttSinkConfig {
    /// `host:port` of the broker (ThingsBoard's MQTT transport listens on 1883).
    pub broker: String,
    /// Device or gateway API.
    #[serde(default)]
    pub mode: MqttMode,
    /// Gateway mode: the gateway device's id, whose token (tokens file or
    /// `FLOWCAST_TB_TOKEN_<ID>`) is the connection's username.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The secrets file (`device = token` lines); default `FLOWCAST_TB_TOKENS_FILE`.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// QoS 1 publishes awaiting their acknowledgement, per connection.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u16,
    /// Predictions per publish, at most (the array and gateway forms batch).
    #[serde(default = "defaults::max_batch")]
    pub max_batch: usize,
    /// Predictions queued per worker before the worker blocks (backpressure).
    #[serde(default = "defaults::max_buffered")]
    pub max_buffered: usize,
    /// MQTT keep-alive.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// First reconnect delay.
    #[serde(default = "defaults::initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Largest reconnect delay.
    #[serde(default = "defaults::max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Topic for refused predictions; default: the job's dead-letter topic.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

fn default_max_in_flight() -> u16 {
    32
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

impl MqttSinkConfig {
    /// A config with every default.
    pub fn new(broker: &str, mode: MqttMode) -> Self {
        MqttSinkConfig {
            broker: broker.to_owned(),
            mode,
            gateway: None,
            tokens_file: None,
            max_in_flight: default_max_in_flight(),
            max_batch: defaults::max_batch(),
            max_buffered: defaults::max_buffered(),
            keep_alive: default_keep_alive(),
            initial_backoff: defaults::initial_backoff(),
            max_backoff: defaults::max_backoff(),
            dead_letter_topic: None,
        }
    }

    /// `(host, port)` of the broker.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        let (host, port) = self
            .broker
            .rsplit_once(':')
            .ok_or_else(|| format!("`broker` {:?} is not host:port", self.broker))?;
        let port = port
            .parse()
            .map_err(|_| format!("`broker` {:?} has no valid port", self.broker))?;
        Ok((host.trim_matches(['[', ']']).to_owned(), port))
    }

    /// Checks ranges and combinations; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.host_port()?;
        if self.mode == MqttMode::Gateway && self.gateway.is_none() {
            return Err("`gateway` (the gateway device's id) is required in gateway mode".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight == u16::MAX {
            return Err("`max-in-flight` must be in 1..65535".into());
        }
        if self.max_batch == 0 || self.max_buffered == 0 {
            return Err("`max-batch` and `max-buffered` must be at least 1".into());
        }
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            return Err("`initial-backoff` must be positive and at most `max-backoff`".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::SinkSpec;

    #[test]
    fn round_trips_and_validates() {
        let text = r#"
type = "mqtt"
broker = "127.0.0.1:1883"
mode = "gateway"
gateway = "gw"
keep-alive = "10s"
"#;
        let spec: SinkSpec = toml::from_str(text).expect("parses");
        let SinkSpec::Mqtt(c) = &spec else {
            panic!("not an mqtt sink: {spec:?}");
        };
        assert_eq!(c.mode, MqttMode::Gateway);
        assert_eq!(c.keep_alive, Duration::from_secs(10));
        assert_eq!(c.host_port().expect("addr"), ("127.0.0.1".to_owned(), 1883));
        c.validate().expect("valid");
        let back: SinkSpec = toml::from_str(&toml::to_string(&spec).expect("ser")).expect("de");
        assert_eq!(back, spec);
    }

    #[test]
    fn gateway_mode_needs_a_gateway_and_typos_are_named() {
        let c = MqttSinkConfig::new("h:1883", MqttMode::Gateway);
        assert!(c.validate().expect_err("no gateway").contains("gateway"));
        assert!(
            MqttSinkConfig::new("h", MqttMode::Device)
                .validate()
                .is_err()
        );
        let err = toml::from_str::<SinkSpec>("type = \"mqtt\"\nbroker = \"h:1\"\nqos = 2\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("qos"), "{err}");
    }
}
