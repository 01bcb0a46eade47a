//! The cluster, in the manner of Flink's JobManager/TaskManagers: a **coordinator**
//! (`flowcast coordinator`, REST on :8081) that accepts jobs, places their timely workers
//! on the slots of **nodes** (`flowcast worker`), restarts them from their latest
//! checkpoint when a process or node dies, rescales them through savepoints, and tells
//! Prometheus where every process's `/metrics` is. timely's own cluster communication
//! stays the distributed runtime: a job is N `flowcast run` processes started by nodes with
//! the process indices, data ports and peer list the coordinator hands out.
//!
//! Nodes pull: each heartbeat carries what the node runs (and what exited), each answer
//! lists what it must run; anything else it kills. So a restarted coordinator loads its
//! persisted jobs, hears the nodes' heartbeats, and finds the processes still running.

pub mod api;
pub mod client;
pub mod connect;
pub mod coordinator;
pub mod detail;
pub mod loops;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod server;
pub mod state;
pub mod ui;
