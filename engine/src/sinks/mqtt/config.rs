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
//!
//! [[sinks]]
//! type = "mqtt"
//! broker = "broker.example.com:8883"
//! tokens-file = "/etc/flowcast/tb-tokens"
//! password-file = "/etc/flowcast/mqtt-password"   # optional: brokers that want one
//! tls = { ca-file = "/etc/flowcast/mqtt-ca.pem" } # MQTT over TLS, nothing else
//! ```
//!
//! With a `tls` table every connection is TLS (rustls), verified against the CA file and
//! the broker's host name or IP address; a handshake that fails is an error and a retry,
//! never a plaintext connection. Without one the sink speaks plaintext MQTT.

use crate::sinks::util::defaults;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Predictions undelivered per worker before the worker blocks (backpressure); all
    /// of them are part of every checkpoint, so checkpoints go on through an outage until
    /// this many have piled up.
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
    /// A file holding the MQTT password every connection sends with its token (trailing
    /// newline trimmed); without it the password is empty, as ThingsBoard's access
    /// tokens have it. Never logged.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// MQTT over TLS; without it, plaintext.
    #[serde(default)]
    pub tls: Option<MqttTls>,
}

/// `tls = { ... }`: MQTT over TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MqttTls {
    /// PEM file of the CA certificate(s) that signed the broker's certificate; the only
    /// roots trusted.
    pub ca_file: PathBuf,
    /// PEM certificate chain for client authentication (with `client-key-file`).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted) of `client-cert-file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

impl MqttTls {
    /// The rustls client configuration: the CA file's roots, TLS 1.2 and 1.3, ring's
    /// algorithms, the client certificate if one is set. Errors name the file, never a key.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let ca = &self.ca_file;
        let certs = read_certs("ca-file", ca)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| {
                format!(
                    "`tls.ca-file` {}: not a usable CA certificate: {e}",
                    ca.display()
                )
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certs("client-cert-file", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
                    format!(
                        "`tls.client-key-file` {}: no readable PEM private key",
                        key.display()
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("`tls.client-cert-file` and its key: {e}"))?
            }
            _ => {
                return Err(
                    "`tls.client-cert-file` and `tls.client-key-file` go together".to_owned(),
                );
            }
        };
        Ok(Arc::new(config))
    }
}

/// Every PEM certificate in `path` (at least one).
fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: String| format!("`tls.{key}` {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
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
            password_file: None,
            tls: None,
        }
    }

    /// The password from `password-file` (empty without one).
    pub fn password(&self) -> Result<String, String> {
        let Some(path) = &self.password_file else {
            return Ok(String::new());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("`password-file` {}: {}", path.display(), e.kind()))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
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
        // The files are read now, so a missing or broken one fails the job at its start.
        self.password()?;
        if let Some(tls) = &self.tls {
            tls.client_config()?;
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
        let spec = crate::sinks::parse_valid(
            "type = \"mqtt\"\nbroker = \"127.0.0.1:1883\"\nmode = \"gateway\"\ngateway = \"gw\"\nkeep-alive = \"10s\"\n",
        );
        let SinkSpec::Mqtt(c) = &spec else {
            panic!("not an mqtt sink: {spec:?}");
        };
        assert_eq!(c.mode, MqttMode::Gateway);
        assert_eq!(c.keep_alive, Duration::from_secs(10));
        assert_eq!(c.host_port().expect("addr"), ("127.0.0.1".to_owned(), 1883));
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

    #[test]
    fn tls_and_password_files_are_read_at_validation() {
        let text = "type = \"mqtt\"\nbroker = \"h:8883\"\npassword-file = \"/nonexistent/pw\"\n\
                    tls = { ca-file = \"/nonexistent/ca.pem\" }\n";
        let spec: SinkSpec = toml::from_str(text).expect("parses");
        let SinkSpec::Mqtt(mut c) = spec else {
            panic!("not an mqtt sink");
        };
        assert_eq!(
            c.tls.as_ref().map(|t| t.ca_file.clone()),
            Some(PathBuf::from("/nonexistent/ca.pem"))
        );
        let err = c.validate().expect_err("no password file");
        assert!(err.contains("password-file"), "{err}");
        c.password_file = None;
        let err = c.validate().expect_err("no CA file");
        assert!(
            err.contains("tls.ca-file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("flowcast-mqtt-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        c.password_file = Some(pw);
        assert_eq!(c.password().expect("readable"), "s3cret");
        c.tls = Some(MqttTls {
            ca_file: empty.clone(),
            client_cert_file: Some(empty),
            client_key_file: None,
        });
        let err = c.validate().expect_err("empty CA file");
        assert!(err.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
