//! Shared by the integration tests of this crate.

pub mod windows;
