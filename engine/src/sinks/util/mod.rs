//! What every sink needs, in one place (as Vector's `sinks/util`): each sink folder is
//! thin on top of it.
//!
//! - [`queue`]: the bounded delivery queue (blocking submit, flush; per-key order)
//! - [`breaker`]: the circuit breaker and exponential backoff with jitter
//! - [`tokens`]: device → access token, from a secrets file or the environment
//! - [`dead_letter`]: refused output to the job's dead-letter topic, one header scheme
//! - [`payload`]: the one prediction encoder, ThingsBoard telemetry JSON (HTTP and MQTT)
//! - [`metrics`]: one metric set for every sink, labelled `sink` and `operator`
//! - [`events`]: internal events, each one log line and its metrics in one call
//! - [`operator`]: the lifecycle operator of every sink with a delivery engine
//! - [`defaults`]: default delivery settings

pub mod breaker;
pub mod dead_letter;
pub mod defaults;
pub mod events;
pub mod metrics;
pub mod operator;
pub mod payload;
pub mod queue;
pub mod tokens;
