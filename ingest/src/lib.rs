//! The Raspberry Pi side of Flowcast: `flowcast-ingest` reads a DHT11/DHT22 (or simulates
//! or replays one) and produces JSON readings to Kafka topic `DHT11`, key = device id,
//! losing nothing while the broker is away. Builds without timely and without tch.
//!
//! The path of a reading, one module each:
//! [`sensor`] (a backend) → [`sampler`] (schedule, retries, validation) or [`replay`] →
//! [`pipeline`] → [`spool`] (on-disk, ordered, bounded) → [`delivery`] (idempotent
//! producer, [`kafka`] settings) → Kafka. Around it: [`config`], [`telemetry`]
//! (metrics, events, `/metrics`), [`shutdown`], [`clock`].

pub mod clock;
pub mod config;
pub mod delivery;
pub mod kafka;
pub mod pipeline;
pub mod replay;
pub mod sampler;
pub mod sensor;
pub mod shutdown;
pub mod spool;
pub mod telemetry;

pub use config::Config;
pub use flowcast_operators::record::{Reading, SensorKind};
pub use pipeline::{Summary, run};
pub use shutdown::Shutdown;
pub use telemetry::Metrics;
