//! Flowcast operator logic with no I/O.
//!
//! Everything here is plain, deterministic Rust that the engine wraps in timely operators
//! and that the Pi ingest shares: the record contracts and their validation
//! ([`record`]). LSTM inference through LibTorch is a crate of its own (`flowcast-inference`),
//! so that nothing that depends on this one can link LibTorch.
//! Nothing in this crate talks to Kafka, the network or the clock.

pub mod accuracy;
pub mod admission;
pub mod event_time;
pub mod record;
pub mod sequence;
pub mod window;

pub use record::{
    Accuracy, FeatureAccuracy, FeatureServed, ForecasterKind, ObservedValues, ParseOptions,
    PredictedValues, Prediction, Reading, RejectReason, Rejection, SensorKind, Served,
    ServedReason,
};
