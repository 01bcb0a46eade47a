//! The engine's timely operators, one per file, each an extension trait in the style of
//! timely's own (`stream.tumbling_window(...)`), so a job can be written in Rust as
//! well as from a job spec:
//!
//! - [`source`]: Kafka partitions → readings, dead letters and partition watermarks
//! - [`window`]: tumbling event-time windows keyed by device
//! - [`sequence`]: the last N windows per device
//! - [`inference`]: batched forecasts of the next window, on a thread of their own for the LSTM
//! - [`forecast`]: each forecast through its device's accuracy guard
//!
//! Sinks live in [`crate::sinks`], one folder each.
//!
//! Timely timestamps are epochs ([`Epoch`]): sources advance them on an interval, and an
//! epoch is complete everywhere once the frontier passes it. Event time travels in the
//! records and in [`PartitionMark`]s, which the lifecycle adapter
//! ([`crate::lifecycle`]) applies only when an epoch is complete, so the result does not
//! depend on how workers interleave. Keyed operators route by key group.

pub mod forecast;
pub mod forecast_quality;
pub mod inference;
pub mod latency;
pub mod sequence;
pub mod source;
mod source_consumer;
pub mod source_lag;
pub mod source_state;
pub mod window;

use flowcast_operators::Reading;
use flowcast_operators::event_time::EventTime;
pub use flowcast_operators::event_time::PartitionMark;
use serde::{Deserialize, Serialize};

/// The timely timestamp of every Flowcast dataflow: the epoch.
pub type Epoch = u64;

/// A valid reading with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcedReading {
    /// The reading.
    pub reading: Reading,
    /// Its event time in ms.
    pub event_time: EventTime,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
}

/// A record refused by validation, with everything needed to find and replay it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Original key bytes.
    pub key: Option<Vec<u8>>,
    /// Original value bytes.
    pub payload: Vec<u8>,
    /// Reason class (`malformed`, `missing_field`, `not_finite`, `out_of_range`).
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

/// A reading that arrived after its window's allowed lateness.
#[derive(Debug, Clone, PartialEq)]
pub struct LateRecord {
    /// The reading and its origin.
    pub record: SourcedReading,
    /// End of the window it belonged to (ms).
    pub window_end: EventTime,
    /// The watermark when it arrived (ms).
    pub watermark: EventTime,
}
