//! Subcommands of the `flowcast` binary.

pub mod tail;
pub mod topics;
