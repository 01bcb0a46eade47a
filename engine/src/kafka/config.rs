//! Settings shared by every Kafka client the engine makes.
//!
//! Bootstrap servers come from the caller; security settings (SASL/SSL) come from the
//! environment, never from argv, so credentials stay out of `ps` and of the logs:
//! every `FLOWCAST_RDKAFKA_<PROPERTY>` variable becomes the librdkafka property
//! `<property>` with `_` turned into `.` (`FLOWCAST_RDKAFKA_SASL_PASSWORD` → `sasl.password`).

use rdkafka::ClientConfig;

/// Prefix of environment variables passed through to librdkafka.
pub const ENV_PREFIX: &str = "FLOWCAST_RDKAFKA_";

/// Connection settings for one cluster.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (from the environment or a job spec).
    pub extra: Vec<(String, String)>,
}

impl ClientSettings {
    /// Settings for `bootstrap_servers` plus the `FLOWCAST_RDKAFKA_*` environment.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        ClientSettings {
            bootstrap_servers: bootstrap_servers.into(),
            extra: env_properties(),
        }
    }

    /// A librdkafka configuration holding these settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.extra {
            cfg.set(k, v);
        }
        cfg
    }
}

fn env_properties() -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = std::env::vars()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(ENV_PREFIX)?;
            (!rest.is_empty()).then(|| (rest.to_ascii_lowercase().replace('_', "."), v))
        })
        .collect();
    props.sort();
    props
}
