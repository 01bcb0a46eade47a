//! What every sink needs, in one place (as Vector's `sinks/util`): each sink folder is
//! thin on top of it.
//!
//! - [`breaker`]: the circuit breaker and exponential backoff with jitter
//! - [`tokens`]: device → access token, from a secrets file or the environment
//! - [`dead_letter`]: refused output to the job's dead-letter topic, one header scheme
//! - [`payload`]: ThingsBoard telemetry JSON (HTTP and MQTT speak the same)

pub mod breaker;
pub mod dead_letter;
pub mod payload;
pub mod tokens;
