//! Retention: keep the newest N checkpoints, delete what no retained manifest names.

use super::manifest::read_manifest;
use super::store::CheckpointStore;
use super::{CheckpointError, manifest_path, parse_checkpoint_id};
use std::collections::{BTreeMap, HashSet};

/// What [`retain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetainReport {
    /// Checkpoint ids whose manifests were kept, newest first.
    pub kept: Vec<u64>,
    /// Paths deleted, sorted.
    pub deleted: Vec<String>,
}

/// Keeps the newest `keep_last` checkpoints that have a readable manifest and deletes,
/// under `chk-*/` only: older manifests, unreadable manifests older than the newest
/// readable one, and every file no kept manifest names (the orphans of crashed attempts
/// included). Nothing under a checkpoint id newer than the newest readable manifest is
/// touched (it may be in progress), nor anything outside `chk-*/` (savepoints).
///
/// # Errors
/// `keep_last == 0` (retention must keep the checkpoint recovery would use), or storage
/// errors (retention stops at the first; calling it again continues).
pub fn retain(store: &CheckpointStore, keep_last: usize) -> Result<RetainReport, CheckpointError> {
    if keep_last == 0 {
        return Err(CheckpointError::Location {
            location: store.location().to_owned(),
            reason: "retention must keep at least 1 checkpoint".into(),
        });
    }
    let mut by_id: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for meta in store.list("")? {
        let path = meta.location.to_string();
        if let Some(id) = parse_checkpoint_id(&path) {
            by_id.entry(id).or_default().push(path);
        }
    }
    let mut manifests = Vec::new();
    for (&id, paths) in by_id.iter().rev() {
        let mpath = manifest_path(id);
        if !paths.contains(&mpath) {
            continue;
        }
        match read_manifest(store, &mpath) {
            Ok(Some(m)) => manifests.push((id, m)),
            Ok(None) => {}
            Err(e @ CheckpointError::Store { .. }) => return Err(e),
            Err(e) => tracing::warn!(checkpoint = id, error = %e, "retention: unreadable manifest"),
        }
    }
    let Some(&(newest, _)) = manifests.first() else {
        return Ok(RetainReport::default());
    };
    let kept: Vec<u64> = manifests
        .iter()
        .take(keep_last)
        .map(|(id, _)| *id)
        .collect();
    let mut named: HashSet<String> = HashSet::new();
    for (id, m) in manifests.iter().take(keep_last) {
        named.insert(manifest_path(*id));
        named.extend(m.files.iter().map(|f| f.path.clone()));
    }
    let mut deleted: Vec<String> = by_id
        .range(..=newest)
        .flat_map(|(_, paths)| paths.iter())
        .filter(|p| !named.contains(*p))
        .cloned()
        .collect();
    deleted.sort();
    // Manifests first: a checkpoint ceases to exist at once, and if retention is
    // interrupted its files are orphans the next call deletes, never a manifest naming
    // deleted files.
    let (manifest_paths, files): (Vec<&String>, Vec<&String>) =
        deleted.iter().partition(|p| p.ends_with(super::MANIFEST));
    for path in manifest_paths.into_iter().chain(files) {
        store.delete(path)?;
    }
    tracing::debug!(kept = ?kept, deleted = deleted.len(), "checkpoint retention");
    Ok(RetainReport { kept, deleted })
}
