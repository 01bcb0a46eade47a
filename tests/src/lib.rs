//! Helpers shared by Flowcast's integration tests: where the real services are, fresh,
//! uniquely named topics so tests never see each other's data, the real data set, and a
//! reference implementation of the forecast pipeline.
//!
//! The brokers come from one environment variable each, with loopback defaults that
//! match what `deploy/test.sh` starts:
//! - `FLOWCAST_TEST_BROKERS` (default `127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094`):
//!   the three-broker KRaft cluster, the reference deployment.
//! - `FLOWCAST_TEST_SINGLE_BROKER` (default `127.0.0.1:9095`): a one-broker cluster.
//! - `FLOWCAST_TEST_SASL_BROKER`, `FLOWCAST_TEST_MQTT_TLS`, `FLOWCAST_TEST_TLS_DIR`: the
//!   encrypted and authenticated listeners and their CA ([`secure`]).

pub mod accuracy;
pub mod checkpoint;
pub mod data;
pub mod exposition;
pub mod forecast;
pub mod job;
pub mod kafka;
pub mod logs;
pub mod mqtt;
pub mod reference;
pub mod s3;
pub mod secure;
pub mod thingsboard;
pub mod wait;

use std::sync::atomic::{AtomicU32, Ordering};

/// Bootstrap servers of the three-broker test cluster.
pub fn brokers() -> String {
    std::env::var("FLOWCAST_TEST_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094".to_owned())
}

/// Bootstrap servers of the one-broker test cluster.
pub fn single_broker() -> String {
    std::env::var("FLOWCAST_TEST_SINGLE_BROKER").unwrap_or_else(|_| "127.0.0.1:9095".to_owned())
}

/// A topic name no other test (nor an earlier run) uses: `prefix-<pid>-<n>-<nanos>`.
pub fn unique_topic(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
