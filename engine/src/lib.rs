//! The Flowcast runtime: job graphs on timely dataflow, the Kafka source and sink,
//! and the pieces behind the `flowcast` command line.

pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod dataflow;
pub mod failpoint;
pub mod job;
pub mod kafka;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod runtime;
pub mod sinks;

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
