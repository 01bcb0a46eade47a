//! Where the encrypted and authenticated test services are, and what they accept: the
//! SASL_SSL listener of the one-broker cluster (`FLOWCAST_TEST_SASL_BROKER`, default
//! `127.0.0.1:9097`), Mosquitto's TLS listener (`FLOWCAST_TEST_MQTT_TLS`, default
//! `127.0.0.1:8883`), and the throw-away CA and credentials `deploy/tls/certs.sh` made
//! (`FLOWCAST_TEST_TLS_DIR`, default the repository's `.flowcast-run/tls`). A test that
//! needs them fails when they are not there; it never skips.

use std::path::{Path, PathBuf};

/// Bootstrap server of the SASL_SSL (SCRAM-SHA-512) listener.
pub fn sasl_broker() -> String {
    std::env::var("FLOWCAST_TEST_SASL_BROKER").unwrap_or_else(|_| "127.0.0.1:9097".to_owned())
}

/// `host:port` of Mosquitto's TLS listener.
pub fn mqtt_tls_broker() -> String {
    std::env::var("FLOWCAST_TEST_MQTT_TLS").unwrap_or_else(|_| "127.0.0.1:8883".to_owned())
}

/// The folder of the test CA, certificates and credentials.
///
/// # Panics
/// If it holds no CA (the services were not started with `deploy/services.sh`).
pub fn tls_dir() -> PathBuf {
    let dir = std::env::var_os("FLOWCAST_TEST_TLS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.flowcast-run/tls"),
        PathBuf::from,
    );
    assert!(
        dir.join("ca.pem").is_file(),
        "no test CA in {} (start the services with deploy/services.sh, or set \
         FLOWCAST_TEST_TLS_DIR)",
        dir.display()
    );
    dir
}

/// The CA that signed the services' certificates.
pub fn ca() -> PathBuf {
    tls_dir().join("ca.pem")
}

/// A CA that signed nothing the services use.
pub fn wrong_ca() -> PathBuf {
    tls_dir().join("wrong-ca.pem")
}

/// One of the test credentials (`mqtt-token`, `mqtt-password`, `kafka-user`,
/// `kafka-password`), trailing newline trimmed.
///
/// # Panics
/// If it is not there.
pub fn secret(name: &str) -> String {
    let path = tls_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim_end()
        .to_owned()
}

/// The `FLOWCAST_RDKAFKA_*` environment of a client of the SASL_SSL listener, with the
/// given password and CA.
pub fn sasl_env(password: &str, ca: &Path) -> Vec<(String, String)> {
    [
        ("SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
        ("SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
        ("SASL_USERNAME", secret("kafka-user")),
        ("SASL_PASSWORD", password.to_owned()),
        ("SSL_CA_LOCATION", ca.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("FLOWCAST_RDKAFKA_{k}"), v))
    .collect()
}
