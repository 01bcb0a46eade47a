//! Jobs: the spec a user writes and the dataflow built from it.

pub mod checkpointing;
pub mod graph;
pub mod spec;

pub use spec::{JobSpec, ModelSpec, SinkSpec, SpecError, StartPosition, StopPosition};
