//! What `flowcast-engine` and `flowcast-ingest` share, in one place both depend on without
//! ingest pulling in timely, tch or tokio:
//! - [`kafka`]: the idempotent producer profile every Flowcast producer uses and the
//!   `FLOWCAST_RDKAFKA_*` environment pass-through;
//! - [`telemetry`]: the metric naming convention (checked, not just written down), the
//!   `flowcast_job` label, the latency buckets and the text exposition of a registry.

pub mod kafka;
pub mod telemetry;
