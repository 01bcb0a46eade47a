//! Subcommands of the `flowcast` binary.

pub mod cluster;
pub mod control_http;
pub mod demo;
pub mod run;
pub mod tail;
pub mod tb_bridge;
pub mod topics;
