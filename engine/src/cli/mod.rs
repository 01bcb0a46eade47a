//! Subcommands of the `flowcast` binary.

pub mod demo;
pub mod run;
pub mod tail;
pub mod topics;
