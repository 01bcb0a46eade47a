//! Recovery: the newest checkpoint whose every file is present and valid, falling back to
//! older ones; savepoints; the attempt and checkpoint id a new run starts with.

use super::format::{self, FormatError};
use super::manifest::{Kind, Manifest, read_manifest};
use super::store::CheckpointStore;
use super::{CheckpointError, MANIFEST, manifest_path, parse_attempt, parse_checkpoint_id};
use crate::lifecycle::snapshot::{self, RestorePlan, WorkerSnapshot};
use std::collections::BTreeSet;

/// A checkpoint recovery passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Checkpoint id.
    pub id: u64,
    /// Why it was not used.
    pub reason: String,
}

/// The outcome of [`latest_complete`].
#[derive(Debug)]
pub struct Recovered {
    /// The newest valid checkpoint and its merged state; `None` if there is none.
    pub latest: Option<(Manifest, RestorePlan)>,
    /// Newer checkpoints that were passed over, newest first.
    pub skipped: Vec<Skipped>,
}

/// Every checkpoint id with any object under `chk-{id}/`, and those with a manifest.
fn checkpoint_ids(
    store: &CheckpointStore,
) -> Result<(BTreeSet<u64>, BTreeSet<u64>), CheckpointError> {
    let mut ids = BTreeSet::new();
    let mut with_manifest = BTreeSet::new();
    for meta in store.list("")? {
        let path = meta.location.as_ref();
        if let Some(id) = parse_checkpoint_id(path) {
            ids.insert(id);
            if path == manifest_path(id) {
                with_manifest.insert(id);
            }
        }
    }
    Ok((ids, with_manifest))
}

/// Reads, verifies against `manifest` and decodes every file it names, then merges them.
/// Storage errors come back as errors; anything wrong with the data as `Err(reason)`
/// inside `Ok`.
fn load_files(
    store: &CheckpointStore,
    manifest: &Manifest,
) -> Result<Result<RestorePlan, String>, CheckpointError> {
    let mut snaps: Vec<WorkerSnapshot> = Vec::with_capacity(manifest.files.len());
    for entry in &manifest.files {
        let Some(bytes) = store.get(&entry.path)? else {
            return Ok(Err(format!("file `{}` is missing", entry.path)));
        };
        let found = bytes.len() as u64;
        let size_error = if found < entry.size {
            Some(FormatError::Truncated {
                expected: entry.size,
                found,
            })
        } else if found > entry.size {
            Some(FormatError::TooLong {
                expected: entry.size,
                found,
            })
        } else {
            None
        };
        let decoded = match size_error {
            Some(e) => Err(e),
            None => format::decode(&bytes).and_then(|(header, snap)| {
                if header.checksum == entry.checksum {
                    Ok(snap)
                } else {
                    Err(FormatError::ChecksumMismatch {
                        expected: entry.checksum,
                        found: header.checksum,
                    })
                }
            }),
        };
        let snap = match decoded {
            Ok(snap) => snap,
            Err(e) => return Ok(Err(format!("file `{}`: {e}", entry.path))),
        };
        if (snap.job.as_str(), snap.id, snap.worker, snap.workers)
            != (
                manifest.job.as_str(),
                manifest.checkpoint_id,
                entry.worker,
                manifest.workers,
            )
        {
            return Ok(Err(format!(
                "file `{}` holds worker {} of {} of job `{}` checkpoint {}, not what the manifest says",
                entry.path, snap.worker, snap.workers, snap.job, snap.id
            )));
        }
        snaps.push(snap);
    }
    let source = format!("checkpoint {}", manifest.checkpoint_id);
    Ok(snapshot::merge(snaps, &source).map_err(|e| e.to_string()))
}

/// The newest complete and valid checkpoint of `job` in `store`, merged into a restore
/// plan. A checkpoint without a manifest, of another job, or with a missing, truncated or
/// corrupt file is skipped (logged with `tracing::warn!` and listed in
/// [`Recovered::skipped`]) and the previous one tried.
///
/// # Errors
/// Storage errors (retrying may help; recovery does not fall back over them).
pub fn latest_complete(store: &CheckpointStore, job: &str) -> Result<Recovered, CheckpointError> {
    let (ids, with_manifest) = checkpoint_ids(store)?;
    let mut skipped = Vec::new();
    let mut skip = |id: u64, reason: String| {
        tracing::warn!(checkpoint = id, %reason, "recovery skips a checkpoint");
        skipped.push(Skipped { id, reason });
    };
    for &id in ids.iter().rev() {
        if !with_manifest.contains(&id) {
            skip(
                id,
                "no manifest: incomplete, in progress when the job stopped, or its manifest was deleted".into(),
            );
            continue;
        }
        let path = manifest_path(id);
        let manifest = match read_manifest(store, &path) {
            Ok(Some(m)) => m,
            Ok(None) => {
                skip(id, "its manifest disappeared during recovery".into());
                continue;
            }
            Err(e @ CheckpointError::Store { .. }) => return Err(e),
            Err(e) => {
                skip(id, e.to_string());
                continue;
            }
        };
        if manifest.job != job {
            skip(id, format!("it belongs to job `{}`", manifest.job));
            continue;
        }
        if (manifest.kind, manifest.checkpoint_id) != (Kind::Checkpoint, id) {
            skip(
                id,
                format!(
                    "its manifest is a {:?} of id {}, not checkpoint {id}",
                    manifest.kind, manifest.checkpoint_id
                ),
            );
            continue;
        }
        match load_files(store, &manifest)? {
            Ok(plan) => {
                return Ok(Recovered {
                    latest: Some((manifest, plan)),
                    skipped,
                });
            }
            Err(reason) => skip(id, reason),
        }
    }
    Ok(Recovered {
        latest: None,
        skipped,
    })
}

/// Loads the savepoint at `location` (a directory or `file://` URL holding a savepoint's
/// `_MANIFEST` and files), validating every file.
///
/// # Errors
/// No savepoint there, a manifest that is not a savepoint's, a missing or corrupt file,
/// or storage errors.
pub fn load_savepoint(location: &str) -> Result<(Manifest, RestorePlan), CheckpointError> {
    let store = CheckpointStore::open_existing(location)?;
    let not_savepoint = |reason: String| CheckpointError::Manifest {
        path: format!("{location}/{MANIFEST}"),
        reason,
    };
    let manifest = read_manifest(&store, MANIFEST)?
        .ok_or_else(|| not_savepoint("no savepoint here: there is no manifest".into()))?;
    if manifest.kind != Kind::Savepoint {
        return Err(not_savepoint(format!(
            "this is a {:?} manifest, not a savepoint's; resume from checkpoints through the checkpoint location",
            manifest.kind
        )));
    }
    let plan = load_files(&store, &manifest)?.map_err(not_savepoint)?;
    Ok((manifest, plan))
}

/// The attempt a new run uses: one more than any attempt in `store`, 0 if there is none.
///
/// # Errors
/// Storage errors.
pub fn next_attempt(store: &CheckpointStore) -> Result<u64, CheckpointError> {
    let max = store
        .list("")?
        .iter()
        .filter_map(|m| parse_attempt(m.location.as_ref()))
        .max();
    Ok(max.map_or(0, |a| a + 1))
}

/// The id of a new run's first checkpoint: one more than any checkpoint id in `store`
/// (complete or not), 1 if there is none.
///
/// # Errors
/// Storage errors.
pub fn next_checkpoint_id(store: &CheckpointStore) -> Result<u64, CheckpointError> {
    let (ids, _) = checkpoint_ids(store)?;
    Ok(ids.last().map_or(1, |id| id + 1))
}

/// Reads and validates the files of a manifest found in `store` (a checkpoint's or a
/// savepoint's) and merges them.
///
/// # Errors
/// A missing or corrupt file ([`CheckpointError::Manifest`] saying which), or storage
/// errors.
pub fn load_manifest(
    store: &CheckpointStore,
    manifest: &Manifest,
) -> Result<RestorePlan, CheckpointError> {
    load_files(store, manifest)?.map_err(|reason| CheckpointError::Manifest {
        path: match manifest.kind {
            Kind::Checkpoint => manifest_path(manifest.checkpoint_id),
            Kind::Savepoint => MANIFEST.into(),
        },
        reason,
    })
}
