//! Flowcast operator logic with no I/O.
//!
//! Everything here is plain, deterministic Rust that the engine wraps in timely operators
//! and that the Pi ingest shares: the record contracts and their validation
//! ([`record`]), and, with the `inference` feature, LSTM inference through LibTorch.
//! Nothing in this crate talks to Kafka, the network or the clock.

pub mod accuracy;
pub mod admission;
pub mod event_time;
#[cfg(feature = "inference")]
pub mod inference;
pub mod record;
pub mod sequence;
pub mod window;

pub use record::{
    Accuracy, FeatureAccuracy, FeatureServed, ForecasterKind, ObservedValues, ParseOptions,
    PredictedValues, Prediction, Reading, RejectReason, Rejection, SensorKind, Served,
    ServedReason,
};
