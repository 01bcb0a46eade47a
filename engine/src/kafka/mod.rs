//! Kafka I/O of the engine: client configuration and topic administration.

pub mod admin;
pub mod batch_consume;
pub mod config;
pub mod context;
pub mod partitioner;

pub use admin::{AdminError, TopicAdmin, TopicDescription, TopicSpec};
pub use config::ClientSettings;
