//! The Flowcast runtime: job graphs on timely dataflow, the Kafka source and sink,
//! and the pieces behind the `flowcast` command line.

pub mod cli;
pub mod kafka;
