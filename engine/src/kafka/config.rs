//! Settings shared by every Kafka client the engine makes.
//!
//! Bootstrap servers come from the caller; security settings (SASL/SSL) come from the
//! environment, never from argv, so credentials stay out of `ps` and of the logs:
//! every `FLOWCAST_RDKAFKA_<PROPERTY>` variable becomes the librdkafka property
//! `<property>` with `_` turned into `.` (`FLOWCAST_RDKAFKA_SASL_PASSWORD` → `sasl.password`),
//! parsed by [`flowcast_common::kafka`] as in `flowcast-ingest`.

pub use flowcast_common::kafka::RDKAFKA_ENV_PREFIX as ENV_PREFIX;
pub use flowcast_common::kafka::{IDEMPOTENT_PRODUCER, idempotent_producer};
use rdkafka::ClientConfig;

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
            extra: flowcast_common::kafka::rdkafka_env(),
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
