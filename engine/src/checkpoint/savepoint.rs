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
        target.put(&path, bytes, false)?;
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
