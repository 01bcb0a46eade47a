//! Checkpoint storage: the on-disk format, the layout of a checkpoint location, manifests,
//! recovery with fallback, savepoints and retention. No timely here: the lifecycle decides
//! when to snapshot and hands [`WorkerSnapshot`](crate::lifecycle::snapshot::WorkerSnapshot)s
//! to a [`CheckpointWriter`]; this module makes them durable and finds them again.
//!
//! **Files.** Each worker's state for one checkpoint is one file in the format of
//! [`format`]: a 40-byte header (magic `FLOWCKPT`, format version, compression kind,
//! uncompressed and stored body lengths, CRC-32 of the stored body, CRC-32 of the header)
//! and the LZ4-compressed bincode of the worker's snapshot. A reader checks magic, version,
//! lengths and both checksums before it decodes anything, and names what was wrong
//! (truncated, checksum mismatch, unknown version).
//!
//! Measured with `cargo bench -p flowcast-engine --bench checkpoint` (100 k devices of
//! 60-window sequence state, random floats): ~415 bytes per device on disk (LZ4 ratio
//! ~1.5); encoding is dominated by LZ4, then bincode; the CRC is negligible.
//!
//! **Layout.** A checkpoint location (a directory or an S3 prefix, through `object_store`;
//! see [`CheckpointStore::open`] and [`s3`]) holds, for checkpoint `id` written by run attempt `a` of a
//! job with `W` workers:
//!
//! ```text
//! {location}/chk-{id}/attempt-{a}/worker-{i}-of-{W}.bin   one per worker, 0 <= i < W
//! {location}/chk-{id}/_MANIFEST                           JSON, written last, create-if-absent
//! ```
//!
//! The attempt is the run generation: a restarted run takes [`next_attempt`] (one more
//! than any attempt in the location), so its files never collide with the half-written
//! files of the run that crashed. Workers hand their snapshots to a [`CheckpointWriter`]
//! (one background thread per process; `submit` never blocks) and learn through a
//! callback when their file is durable. A checkpoint exists only once its `_MANIFEST`
//! exists: [`complete_checkpoint`] (or [`CheckpointWriter::complete`], off-thread) writes
//! it with `PutMode::Create` (a second writer fails with
//! [`CheckpointError::AlreadyExists`]) once all `W` files of the attempt are there, naming
//! each file with its size and body checksum; while files are missing it returns
//! [`Completion::NotYet`] and can be called again. A crashed run's partial attempt never
//! gets a manifest, so it is never restored; retention deletes it. Recovery ([`latest_complete`]) reads
//! manifests newest first, validates and decodes every file a manifest names and merges
//! them into a [`RestorePlan`](crate::lifecycle::snapshot::RestorePlan); a checkpoint with
//! a missing manifest or a missing, truncated or corrupt file is skipped (logged and
//! returned) in favour of the previous one.
//!
//! **Savepoints** ([`copy_to_savepoint`]) are self-contained: a directory of their own with
//! `worker-{i}-of-{W}.bin` files copied from a checkpoint and a `_MANIFEST` of kind
//! `savepoint` naming only those files, so it can be moved and outlives the checkpoint
//! location. **Retention** ([`retain`]) keeps the newest N manifests and deletes every
//! other file under `chk-*/` that no retained manifest names — except under checkpoint
//! ids newer than the newest manifest (possibly in progress); it touches nothing outside
//! `chk-*/`, so savepoints kept in the location (e.g. under `savepoints/`) are safe.
//! Retention deletes a checkpoint's manifest before its files, so an interrupted run of it
//! leaves orphans (deleted next time), never a manifest naming deleted files.

pub mod coordinator;
pub mod format;
pub mod manifest;
pub mod recover;
pub mod retain;
pub mod s3;
pub mod savepoint;
pub mod store;
#[cfg(test)]
mod tests;

pub use format::FormatError;
pub use manifest::{
    CheckpointInfo, Completion, FileEntry, Kind, MANIFEST_FORMAT, Manifest, complete_checkpoint,
    complete_checkpoint_async, read_manifest,
};
pub use recover::{
    Recovered, Skipped, latest_complete, load_manifest, load_savepoint, next_attempt,
    next_checkpoint_id,
};
pub use retain::{RetainReport, retain};
pub use savepoint::copy_to_savepoint;
pub use store::{CheckpointStore, CheckpointWriter, WriteJob, WrittenFile};

use crate::lifecycle::StateError;

/// Name of the manifest object of a checkpoint or savepoint.
pub const MANIFEST: &str = "_MANIFEST";

/// The directory (prefix) of checkpoint `id`: `chk-{id}`.
pub fn checkpoint_prefix(id: u64) -> String {
    format!("chk-{id}")
}

/// The manifest of checkpoint `id`: `chk-{id}/_MANIFEST`.
pub fn manifest_path(id: u64) -> String {
    format!("chk-{id}/{MANIFEST}")
}

/// The attempt directory of checkpoint `id`: `chk-{id}/attempt-{attempt}`.
pub fn attempt_prefix(id: u64, attempt: u64) -> String {
    format!("chk-{id}/attempt-{attempt}")
}

/// A worker's file name: `worker-{worker}-of-{workers}.bin`.
pub fn worker_file_name(worker: usize, workers: usize) -> String {
    format!("worker-{worker}-of-{workers}.bin")
}

/// A worker's file of a checkpoint: `chk-{id}/attempt-{a}/worker-{i}-of-{W}.bin`.
pub fn worker_file(id: u64, attempt: u64, worker: usize, workers: usize) -> String {
    format!(
        "{}/{}",
        attempt_prefix(id, attempt),
        worker_file_name(worker, workers)
    )
}

/// The checkpoint id of a path's first segment `chk-{id}`, if it is one.
pub(crate) fn parse_checkpoint_id(path: &str) -> Option<u64> {
    path.split('/').next()?.strip_prefix("chk-")?.parse().ok()
}

/// The attempt of a path `chk-{id}/attempt-{a}/...`, if it is one.
pub(crate) fn parse_attempt(path: &str) -> Option<u64> {
    path.split('/')
        .nth(1)?
        .strip_prefix("attempt-")?
        .parse()
        .ok()
}

/// Everything that can go wrong in checkpoint storage.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint location is not usable (the user's configuration).
    #[error("checkpoint location `{location}`: {reason}")]
    Location {
        /// The location as given.
        location: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The storage backend failed (external; a retry may help).
    #[error("checkpoint storage: cannot {op} `{path}`: {source}")]
    Store {
        /// What was attempted.
        op: &'static str,
        /// Path within the location.
        path: String,
        /// The backend's error.
        source: object_store::Error,
    },
    /// A create-if-absent write found the object there (a second manifest writer).
    #[error("`{0}` already exists: another writer got there first")]
    AlreadyExists(String),
    /// An object that must exist does not.
    #[error("`{0}` does not exist")]
    NotFound(String),
    /// A state file is invalid.
    #[error("`{path}`: {source}")]
    Format {
        /// Path within the location.
        path: String,
        /// What is wrong with it.
        source: FormatError,
    },
    /// A manifest is invalid or does not match its files.
    #[error("manifest `{path}`: {reason}")]
    Manifest {
        /// Path within the location.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The files do not merge into a restorable state.
    #[error(transparent)]
    State(#[from] StateError),
    /// The async machinery failed: no runtime, a facade call from inside a runtime, or
    /// the background writer has stopped (a bug or shutdown).
    #[error("checkpoint I/O runtime: {0}")]
    Runtime(String),
}

impl CheckpointError {
    /// Whether retrying the same operation may succeed (storage hiccups), as opposed to
    /// a configuration error, corrupt data or a bug.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CheckpointError::Store { .. })
    }

    pub(crate) fn store(op: &'static str, path: &str, source: object_store::Error) -> Self {
        match source {
            object_store::Error::AlreadyExists { .. } => {
                CheckpointError::AlreadyExists(path.to_owned())
            }
            object_store::Error::NotFound { .. } => CheckpointError::NotFound(path.to_owned()),
            source => CheckpointError::Store {
                op,
                path: path.to_owned(),
                source,
            },
        }
    }
}
