//! Manifests: the JSON object that makes a checkpoint (or savepoint) exist, and the one
//! function that writes a checkpoint's manifest once all its files are there.

use super::format::{self, HEADER_LEN};
use super::store::{self, CheckpointStore};
use super::{CheckpointError, MANIFEST, attempt_prefix, manifest_path, worker_file};
use crate::dataflow::Epoch;
use bytes::Bytes;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

/// The manifest format version this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// Whether a manifest is a periodic checkpoint or a self-contained savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A periodic checkpoint under `chk-{id}/`, subject to retention.
    Checkpoint,
    /// A savepoint: its own directory, its own copies of the files, never retained away.
    Savepoint,
}

/// One worker's file as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the manifest's location.
    pub path: String,
    /// File size in bytes (header included).
    pub size: u64,
    /// CRC-32 of the file's stored body (the header's checksum).
    pub checksum: u32,
    /// The worker that wrote it.
    pub worker: usize,
}

/// The manifest of a checkpoint or savepoint, stored as JSON at `_MANIFEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`] when written.
    pub format: u32,
    /// Job name.
    pub job: String,
    /// Checkpoint id (a savepoint keeps the id of the checkpoint it copies).
    pub checkpoint_id: u64,
    /// Checkpoint or savepoint.
    pub kind: Kind,
    /// The run attempt that wrote the files.
    pub attempt: u64,
    /// The epoch the state was taken at.
    pub epoch: Epoch,
    /// Workers of the job that wrote it.
    pub workers: usize,
    /// The job's key groups.
    pub key_groups: u32,
    /// Every worker's file, by worker.
    pub files: Vec<FileEntry>,
    /// When the manifest was written, ms since the Unix epoch.
    pub created_unix_ms: u64,
}

impl Manifest {
    /// The manifest as pretty JSON.
    ///
    /// # Errors
    /// Never in practice (serde_json of plain data).
    pub fn to_json(&self) -> Result<Vec<u8>, CheckpointError> {
        serde_json::to_vec_pretty(self).map_err(|e| CheckpointError::Manifest {
            path: MANIFEST.into(),
            reason: format!("cannot encode: {e}"),
        })
    }

    /// Parses and checks a manifest read from `path`.
    ///
    /// # Errors
    /// Invalid JSON, another manifest format, or files that do not cover each worker once.
    pub fn from_json(path: &str, bytes: &[u8]) -> Result<Self, CheckpointError> {
        let bad = |reason: String| CheckpointError::Manifest {
            path: path.to_owned(),
            reason,
        };
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "manifest format {}; this build reads format {MANIFEST_FORMAT}",
                m.format
            )));
        }
        let mut workers: Vec<usize> = m.files.iter().map(|f| f.worker).collect();
        workers.sort_unstable();
        if workers != (0..m.workers).collect::<Vec<_>>() {
            return Err(bad(format!(
                "names files of workers {workers:?}, expected one for each of {} workers",
                m.workers
            )));
        }
        Ok(m)
    }
}

/// What the manifest writer knows about a checkpoint when it tries to complete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Job name.
    pub job: String,
    /// Checkpoint id.
    pub id: u64,
    /// This run's attempt.
    pub attempt: u64,
    /// The epoch the checkpoint was taken at.
    pub epoch: Epoch,
    /// Workers of the job (all processes).
    pub workers: usize,
    /// The job's key groups.
    pub key_groups: u32,
}

/// The outcome of [`complete_checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The manifest is written: the checkpoint exists.
    Written(Manifest),
    /// Some workers' files are not there yet; call again later.
    NotYet {
        /// Workers without a file.
        missing: Vec<usize>,
    },
}

pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The single manifest writer: if all `info.workers` files of `info.attempt` are present,
/// reads each one's header (size and checksum, not the body) and writes
/// `chk-{id}/_MANIFEST` create-if-absent. Safe to call repeatedly while files are
/// missing ([`Completion::NotYet`]).
///
/// # Errors
/// [`CheckpointError::AlreadyExists`] if the manifest exists (another writer, or a
/// repeated call after success); a file whose header is invalid or whose size disagrees
/// with it ([`CheckpointError::Format`]); storage errors.
pub fn complete_checkpoint(
    store: &CheckpointStore,
    info: &CheckpointInfo,
) -> Result<Completion, CheckpointError> {
    store.block_on(complete_checkpoint_async(&*store.object_store(), info))?
}

/// [`complete_checkpoint`] for async callers (and the writer thread,
/// [`CheckpointWriter::complete`](super::CheckpointWriter::complete)).
///
/// # Errors
/// As [`complete_checkpoint`].
pub async fn complete_checkpoint_async(
    store: &dyn ObjectStore,
    info: &CheckpointInfo,
) -> Result<Completion, CheckpointError> {
    let prefix = attempt_prefix(info.id, info.attempt);
    let present: std::collections::HashMap<String, u64> = store::list(store, &prefix)
        .await?
        .into_iter()
        .map(|m| (m.location.to_string(), m.size))
        .collect();
    let missing: Vec<usize> = (0..info.workers)
        .filter(|&w| !present.contains_key(&worker_file(info.id, info.attempt, w, info.workers)))
        .collect();
    if !missing.is_empty() {
        return Ok(Completion::NotYet { missing });
    }
    let mut files = Vec::with_capacity(info.workers);
    for worker in 0..info.workers {
        let path = worker_file(info.id, info.attempt, worker, info.workers);
        let size = present.get(&path).copied().unwrap_or_default();
        let head = store::read_prefix(store, &path, HEADER_LEN as u64)
            .await?
            .ok_or_else(|| CheckpointError::NotFound(path.clone()))?;
        let header = format::Header::parse(&head).map_err(|source| CheckpointError::Format {
            path: path.clone(),
            source,
        })?;
        if header.file_len() != size {
            return Err(CheckpointError::Format {
                path,
                source: format::FormatError::Truncated {
                    expected: header.file_len(),
                    found: size,
                },
            });
        }
        files.push(FileEntry {
            path,
            size,
            checksum: header.checksum,
            worker,
        });
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        job: info.job.clone(),
        checkpoint_id: info.id,
        kind: Kind::Checkpoint,
        attempt: info.attempt,
        epoch: info.epoch,
        workers: info.workers,
        key_groups: info.key_groups,
        files,
        created_unix_ms: now_unix_ms(),
    };
    store::put(
        store,
        &manifest_path(info.id),
        Bytes::from(manifest.to_json()?),
        true,
    )
    .await?;
    tracing::info!(
        job = %info.job,
        checkpoint = info.id,
        attempt = info.attempt,
        epoch = info.epoch,
        "checkpoint complete: manifest written"
    );
    Ok(Completion::Written(manifest))
}

/// Reads a manifest at `path`; `None` if there is none.
///
/// # Errors
/// Storage errors or an invalid manifest.
pub fn read_manifest(
    store: &CheckpointStore,
    path: &str,
) -> Result<Option<Manifest>, CheckpointError> {
    store
        .get(path)?
        .map(|bytes| Manifest::from_json(path, &bytes))
        .transpose()
}
