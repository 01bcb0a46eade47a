//! What `flowcast-ingest` tells its operator: counters and gauges ([`metrics`]), the events
//! that move them and write the log lines ([`events`]), and the `/metrics` endpoint
//! ([`http`]).

pub mod events;
pub mod http;
pub mod metrics;

pub use metrics::Metrics;
