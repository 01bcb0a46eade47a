//! The librdkafka settings of the ingest producer.
//!
//! Fixed by ingest, because the no-loss/no-duplicate guarantee rests on them: Flowcast's
//! idempotent producer profile ([`flowcast_common::kafka::IDEMPOTENT_PRODUCER`]:
//! `enable.idempotence=true`, `acks=all`, `message.timeout.ms=0`, …). With no message
//! timeout a broker outage only makes the in-flight window fill up while the spool holds
//! the rest.
//!
//! Everything else (`security.protocol`, `sasl.*`, `ssl.*`, `compression.type`, …) comes
//! from `kafka.properties`, `FLOWCAST_RDKAFKA_*` and `kafka.secret-files`.

use crate::config::KafkaConfig;
use anyhow::Context;
use flowcast_common::kafka::idempotent_producer;
use rdkafka::ClientConfig;

/// The producer configuration for `cfg`; reads secret files.
pub fn producer_config(cfg: &KafkaConfig) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    idempotent_producer(&mut c)
        .set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        // Notice a broker that went away quickly and retry it without long back-offs.
        .set("reconnect.backoff.max.ms", "2000")
        .set("retry.backoff.max.ms", "2000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    for (k, path) in &cfg.secret_files {
        let secret = std::fs::read_to_string(path)
            .with_context(|| format!("reading kafka.secret-files.{k} from {}", path.display()))?;
        c.set(k, secret.trim_end_matches(['\n', '\r']));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarantees_are_set_and_secrets_come_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let mut k = KafkaConfig::default();
        k.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        k.secret_files.insert("sasl.password".into(), pw);
        let c = producer_config(&k).expect("builds");
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        k.secret_files
            .insert("sasl.password".into(), dir.path().join("missing"));
        assert!(producer_config(&k).is_err());
    }
}
