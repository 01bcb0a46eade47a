//! One operator lifecycle for every stateful operator and sink of a job.
//!
//! An operator implements [`Operator`]: plain Rust with hooks, no timely code. One timely
//! adapter, [`adapter::lifecycle`], runs it: it owns the epoch stash (records wait until
//! the frontier passes their epoch), the job watermark (from the broadcast partition
//! marks), the control stream's commands, and the state hand-off. Per epoch, in order:
//!
//! 1. [`Operator::on_records`] — the epoch's records, judged against the watermark as it
//!    stood before the epoch;
//! 2. the epoch's partition marks advance the job watermark;
//! 3. [`Operator::on_epoch_complete`] — with the new watermark (windows fire here);
//! 4. the epoch's commands: [`Command::Snapshot`] calls [`Operator::snapshot`],
//!    [`Command::StopWithSnapshot`] snapshots and then processes nothing later,
//!    [`Command::Committed`] calls [`Operator::on_checkpoint_committed`].
//!
//! [`Operator::restore`] runs before the first epoch when the job starts from a snapshot,
//! [`Operator::close`] once when the input has ended (or the job stopped).
//!
//! State comes in three kinds, as in Flink ([`state`]): keyed state in key groups (a device's
//! group is `murmur2(device) mod G`, the group's worker `group·W/G`, and the data exchange
//! routes by the same rule, so a restore at another parallelism moves whole groups);
//! per-partition source state (offsets, partition clocks), restored on the worker that
//! reads the partition; and replicated operator state, the same on every instance,
//! restored from instance 0's copy. Every operator has a stable id and a state version.
//!
//! # Examples
//!
//! An operator that counts each device's readings, keyed, with its counts in keyed state:
//!
//! ```
//! use flowcast_engine::lifecycle::{EpochContext, Operator, RestoredState, StateError, StateWriter};
//! use std::collections::HashMap;
//!
//! struct CountPerDevice {
//!     groups: flowcast_engine::lifecycle::KeyGroups,
//!     counts: HashMap<String, u64>,
//! }
//!
//! impl Operator for CountPerDevice {
//!     type In = String; // a device id per reading
//!     type Out = (String, u64);
//!
//!     fn id(&self) -> &str {
//!         "count-per-device"
//!     }
//!     fn on_records(&mut self, _: &EpochContext, records: Vec<String>, out: &mut Vec<(String, u64)>) {
//!         for device in records {
//!             let n = self.counts.entry(device.clone()).or_default();
//!             *n += 1;
//!             out.push((device, *n));
//!         }
//!     }
//!     fn snapshot(&mut self, _: &EpochContext, state: &mut StateWriter<'_>) -> Result<(), StateError> {
//!         let mut groups: HashMap<u32, Vec<(&String, &u64)>> = HashMap::new();
//!         for (d, n) in &self.counts {
//!             groups.entry(self.groups.of(d)).or_default().push((d, n));
//!         }
//!         for (g, entries) in groups {
//!             state.keyed(g, &entries)?;
//!         }
//!         Ok(())
//!     }
//!     fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
//!         for group in state.keyed::<Vec<(String, u64)>>() {
//!             self.counts.extend(group?.1);
//!         }
//!         Ok(())
//!     }
//! }
//! ```
//!
//! In a job graph it runs with `lifecycle(stream, ctx.keyed(|d: &String| d.as_str()), &ctx, op)`.

pub mod adapter;
pub mod control;
pub mod snapshot;
pub mod state;
#[cfg(test)]
mod tests;

pub use adapter::{JobContext, lifecycle};
pub use control::{JobControl, control_stream};
pub use state::{
    KeyGroups, RestoredState, StateError, StateWriter, WorkerState, encode_groups, partition_owner,
};

use crate::dataflow::{Epoch, PartitionMark};
use flowcast_operators::event_time::EventTime;
use serde::{Deserialize, Serialize};

/// A command of the control stream: fed on one worker, broadcast to every worker of every
/// process, applied by each operator when its frontier passes the command's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Snapshot every operator once the command's epoch is complete (the frontier is the
    /// barrier: no alignment).
    Snapshot {
        /// Snapshot id.
        id: u64,
    },
    /// Snapshot, then stop: nothing of a later epoch is processed or emitted, and the
    /// sources stop reading. A job restored from the snapshot continues exactly there.
    StopWithSnapshot {
        /// Snapshot id.
        id: u64,
    },
    /// Snapshot `id` is complete and durable everywhere.
    Committed {
        /// Snapshot id.
        id: u64,
    },
}

/// What every lifecycle operator receives beside its data, broadcast to all instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Signal {
    /// A source partition's watermark state.
    Mark(PartitionMark),
    /// A control command.
    Command(Command),
}

/// Where an operator instance is when a hook runs.
#[derive(Debug, Clone, Copy)]
pub struct EpochContext {
    /// The epoch being completed.
    pub epoch: Epoch,
    /// The job watermark (ms): before the epoch's marks in `on_records`, after them in
    /// `on_epoch_complete` and `snapshot`.
    pub watermark: EventTime,
    /// This worker's index.
    pub worker: usize,
    /// Number of workers of the job.
    pub workers: usize,
}

/// A stateful operator or sink, run by [`lifecycle`]. Every hook but `id` and
/// `on_records` has a default that does nothing.
pub trait Operator: 'static {
    /// Input records.
    type In: Clone + 'static;
    /// Output records (`()` for sinks).
    type Out: Clone + 'static;

    /// The stable id of this operator in the job: its state is found by it on restore.
    fn id(&self) -> &str;

    /// The version of the state format this operator writes and reads.
    fn state_version(&self) -> u32 {
        1
    }

    /// Turns state written by an older version into this version's, or refuses.
    ///
    /// # Errors
    /// By default every older version is refused with [`StateError::Version`].
    fn migrate(&self, state: RestoredState) -> Result<RestoredState, StateError> {
        Err(StateError::Version {
            operator: self.id().to_owned(),
            found: state.version(),
            supported: self.state_version(),
        })
    }

    /// Takes over restored state (this worker's key groups and partitions) before the
    /// first epoch.
    ///
    /// # Errors
    /// When the state cannot be decoded or does not fit the job.
    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        let _ = state;
        Ok(())
    }

    /// The records of one complete epoch, in arrival order.
    fn on_records(&mut self, ctx: &EpochContext, records: Vec<Self::In>, out: &mut Vec<Self::Out>);

    /// The epoch is complete: every record and mark of it has been applied.
    fn on_epoch_complete(&mut self, ctx: &EpochContext, out: &mut Vec<Self::Out>) {
        let _ = (ctx, out);
    }

    /// Writes the operator's state as of the end of `ctx.epoch`. A sink either delivers
    /// what it holds before returning (Kafka: a flush) or writes what it has not delivered
    /// into the snapshot to deliver again after a restore (ThingsBoard, MQTT): at-least-once
    /// either way, a snapshot never loses undelivered output.
    ///
    /// # Errors
    /// When the state cannot be encoded.
    fn snapshot(
        &mut self,
        ctx: &EpochContext,
        state: &mut StateWriter<'_>,
    ) -> Result<(), StateError> {
        let _ = (ctx, state);
        Ok(())
    }

    /// Snapshot `id` is complete everywhere.
    fn on_checkpoint_committed(&mut self, id: u64) {
        let _ = id;
    }

    /// The input has ended or the job stopped: deliver what is held.
    fn close(&mut self) {}
}
