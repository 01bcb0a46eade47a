//! Savepoints: a checkpoint's files copied into a directory of their own with a manifest
//! that names only those copies, so the savepoint can be moved and outlives the checkpoint
//! location.

use super::format;
use super::manifest::{FileEntry, Kind, MANIFEST_FORMAT, Manifest, now_unix_ms};
use super::store::CheckpointStore;
use super::{CheckpointError, MANIFEST, worker_file_name};
use bytes::Bytes;

/// Copies the files of checkpoint `manifest` (in `store`) into `target` as a savepoint:
/// `worker-{i}-of-{W}.bin` and a `_MANIFEST` of kind `savepoint` written last,
/// create-if-absent. Each file's checksum is verified before it is copied, so a savepoint
/// is never made of a corrupt checkpoint. Returns the savepoint's manifest.
///
/// When both are local directories on one filesystem, a file is copied as a hard link:
/// checkpoint files are never changed after they are written, so the link is as
/// independent of the checkpoint as a copy (deleting or moving either leaves the other),
/// and costs no write of the bytes again (a stop with a savepoint of 100 k devices' state
/// spent about 0.3 s copying 45 MB).
///
/// # Errors
/// A missing or corrupt source file, a target that already holds a savepoint
/// ([`CheckpointError::AlreadyExists`]), or storage errors.
pub fn copy_to_savepoint(
    store: &CheckpointStore,
    manifest: &Manifest,
    target: &CheckpointStore,
) -> Result<Manifest, CheckpointError> {
    let mut files = Vec::with_capacity(manifest.files.len());
    for entry in &manifest.files {
        let bytes = store
            .get(&entry.path)?
            .ok_or_else(|| CheckpointError::NotFound(entry.path.clone()))?;
        verify(entry, &bytes)?;
        let path = worker_file_name(entry.worker, manifest.workers);
        if !linked(store, &entry.path, target, &path) {
            target.put(&path, bytes, false)?;
        }
        files.push(FileEntry {
            path,
            ..entry.clone()
        });
    }
    let savepoint = Manifest {
        format: MANIFEST_FORMAT,
        kind: Kind::Savepoint,
        files,
        created_unix_ms: now_unix_ms(),
        ..manifest.clone()
    };
    target.put(MANIFEST, Bytes::from(savepoint.to_json()?), true)?;
    tracing::info!(
        job = %manifest.job,
        checkpoint = manifest.checkpoint_id,
        target = target.location(),
        "savepoint written"
    );
    Ok(savepoint)
}

/// Hard-links `from` in `store` as `to` in `target` when both are local directories, and
/// makes the new name durable; `false` when they are not, or linking fails (another
/// filesystem, say): then the caller copies.
fn linked(store: &CheckpointStore, from: &str, target: &CheckpointStore, to: &str) -> bool {
    let (Some(src), Some(dst)) = (store.local_dir(), target.local_dir()) else {
        return false;
    };
    let (src, dst) = (src.join(from), dst.join(to));
    if src == dst {
        return false;
    }
    let _ = std::fs::remove_file(&dst);
    let done = std::fs::hard_link(&src, &dst).and_then(|()| {
        let dir = dst.parent().unwrap_or(std::path::Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    });
    match done {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(from = %src.display(), to = %dst.display(), "cannot hard-link, copying: {e}");
            false
        }
    }
}

/// Checks a file's size, header and body checksum against its manifest entry.
fn verify(entry: &FileEntry, bytes: &[u8]) -> Result<(), CheckpointError> {
    let err = |source| CheckpointError::Format {
        path: entry.path.clone(),
        source,
    };
    let header = format::Header::parse(bytes).map_err(err)?;
    let found = bytes.len() as u64;
    if found != entry.size || found != header.file_len() {
        return Err(err(format::FormatError::Truncated {
            expected: entry.size,
            found,
        }));
    }
    let crc = crc32fast::hash(&bytes[format::HEADER_LEN..]);
    if crc != entry.checksum || crc != header.checksum {
        return Err(err(format::FormatError::ChecksumMismatch {
            expected: entry.checksum,
            found: crc,
        }));
    }
    Ok(())
}
