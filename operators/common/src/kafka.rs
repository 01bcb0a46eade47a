//! Kafka client settings every Flowcast process shares.
//!
//! Security settings (SASL/SSL) and any other librdkafka property come from the
//! environment, never from argv, so credentials stay out of `ps` and of the logs: every
//! `FLOWCAST_RDKAFKA_<PROPERTY>` variable becomes the librdkafka property `<property>` with
//! `_` turned into `.` (`FLOWCAST_RDKAFKA_SASL_PASSWORD` → `sasl.password`).

use rdkafka::ClientConfig;

/// Prefix of environment variables passed through to librdkafka.
pub const RDKAFKA_ENV_PREFIX: &str = "FLOWCAST_RDKAFKA_";

/// The producer profile of every Flowcast producer that must neither lose nor duplicate:
/// `enable.idempotence` (the broker drops retried duplicates and keeps each partition in
/// order), `acks=all`, and `message.timeout.ms=0` — librdkafka retries a message for as long
/// as the process lives instead of failing it after a timeout (a timed-out message may or may
/// not have been written, so sending it again could duplicate it). `murmur2_random` is
/// Kafka's (Java) default key hash: a device's partition is the one Flink, the Java tools,
/// ingest and the engine all compute.
pub const IDEMPOTENT_PRODUCER: [(&str, &str); 5] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("message.timeout.ms", "0"),
    ("linger.ms", "5"),
    ("partitioner", "murmur2_random"),
];

/// Applies [`IDEMPOTENT_PRODUCER`] to `cfg`.
pub fn idempotent_producer(cfg: &mut ClientConfig) -> &mut ClientConfig {
    for (k, v) in IDEMPOTENT_PRODUCER {
        cfg.set(k, v);
    }
    cfg
}

/// The librdkafka property named by a `FLOWCAST_RDKAFKA_*` variable, if `var` is one.
pub fn rdkafka_property(var: &str) -> Option<String> {
    let rest = var.strip_prefix(RDKAFKA_ENV_PREFIX)?;
    (!rest.is_empty()).then(|| rest.to_ascii_lowercase().replace('_', "."))
}

/// The librdkafka properties set by the `FLOWCAST_RDKAFKA_*` variables among `vars`, sorted.
pub fn rdkafka_properties(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((rdkafka_property(&k)?, v)))
        .collect();
    props.sort();
    props
}

/// [`rdkafka_properties`] of this process's environment.
pub fn rdkafka_env() -> Vec<(String, String)> {
    rdkafka_properties(std::env::vars())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_become_properties() {
        let vars = [
            ("FLOWCAST_RDKAFKA_SASL_PASSWORD", "pw"),
            ("FLOWCAST_RDKAFKA_", "ignored"),
            ("FLOWCAST_RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            rdkafka_properties(vars),
            vec![
                ("sasl.password".to_owned(), "pw".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ]
        );
    }

    #[test]
    fn the_profile_is_idempotent_and_never_times_out() {
        let mut c = ClientConfig::new();
        idempotent_producer(&mut c);
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
    }
}
