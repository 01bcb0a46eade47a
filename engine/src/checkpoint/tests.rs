//! Tests of the checkpoint module across its parts. The backend-independent ones are in
//! `tests/suite.rs` and run here against local directories (and against a real S3 server
//! in `engine/tests/checkpoint_s3.rs`); the local-only ones are below.

use super::*;
pub(super) use crate::lifecycle::encode_groups;
pub(super) use crate::lifecycle::snapshot;
pub(super) use flowcast_operators::event_time::JobWatermark;
use snapshot::OperatorSnapshot;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use suite::{JOB, WORKERS, open, snap};

#[macro_use]
mod suite;

/// Fresh subdirectories of one temporary directory per test.
struct LocalDirs {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl LocalDirs {
    fn new() -> Self {
        LocalDirs {
            dir: tempfile::tempdir().expect("tempdir"),
            next: AtomicUsize::new(0),
        }
    }
}

impl suite::Fixture for LocalDirs {
    fn fresh(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir
            .path()
            .join(format!("loc-{n}"))
            .display()
            .to_string()
    }
    fn exists(&self, location: &str) -> bool {
        std::path::Path::new(location).exists()
    }
    fn nothing_there(&self) -> &'static str {
        "no such directory"
    }
}

suite_tests!(LocalDirs::new());

#[test]
fn retention_removes_empty_directories_and_keeps_savepoints() {
    let fx = LocalDirs::new();
    let base = suite::retention(&fx);
    let base = std::path::Path::new(&base);
    assert!(!base.join("chk-1").exists(), "empty dirs are removed");
    assert!(base.join("chk-4").is_dir());
    let savepoint = base.join("savepoints").join("sp-2");
    assert!(savepoint.join(MANIFEST).exists());
    let file = savepoint.join(worker_file_name(0, WORKERS));
    // On one filesystem the savepoint's file is a hard link: its checkpoint's copy is
    // gone (retention), and the savepoint still loads.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&file).expect("savepoint file").nlink(), 1);
    let sp = savepoint.display().to_string();
    load_savepoint(&sp).expect("the savepoint loads without its checkpoint");
}

#[test]
fn a_local_savepoint_links_its_files_and_another_backend_gets_copies() {
    use std::os::unix::fs::MetadataExt;
    let fx = LocalDirs::new();
    let dir = suite::Fixture::fresh(&fx);
    let store = open(&dir);
    let manifest = suite::checkpoint(&store, 1, 0);
    let target = open(&format!("{dir}/savepoints/sp-1"));
    copy_to_savepoint(&store, &manifest, &target).expect("savepoint");
    let base = std::path::Path::new(&dir);
    for w in 0..WORKERS {
        let linked = base
            .join("savepoints/sp-1")
            .join(worker_file_name(w, WORKERS));
        assert_eq!(std::fs::metadata(&linked).expect("file").nlink(), 2);
    }
    let memory = CheckpointStore::with_store(
        "memory",
        std::sync::Arc::new(object_store::memory::InMemory::new()),
    )
    .expect("in-memory store");
    copy_to_savepoint(&store, &manifest, &memory).expect("copied");
    let m = read_manifest(&memory, MANIFEST)
        .expect("read")
        .expect("its manifest");
    assert_eq!(m.files.len(), WORKERS);
    load_manifest(&memory, &m).expect("the copies load");
    for w in 0..WORKERS {
        let copied = memory.get(&worker_file_name(w, WORKERS)).expect("read");
        let original = store.get(&manifest.files[w].path).expect("read");
        assert_eq!(copied, original);
    }
}

#[test]
fn a_file_url_and_a_plain_path_are_the_same_location() {
    let fx = LocalDirs::new();
    let dir = suite::Fixture::fresh(&fx);
    let manifest = suite::checkpoint(&open(&dir), 1, 0);
    let url = open(&format!("file://{dir}"));
    assert_eq!(
        read_manifest(&url, &manifest_path(1)).expect("read"),
        Some(manifest)
    );
    let on_disk = std::fs::read(std::path::Path::new(&dir).join("chk-1/_MANIFEST"));
    assert!(on_disk.expect("a plain file").starts_with(b"{"));
}

#[test]
fn other_schemes_and_malformed_s3_locations_are_refused_clearly() {
    let err = CheckpointStore::open("gs://bucket/flowcast").expect_err("gs");
    assert!(err.to_string().contains("s3://bucket/prefix"), "{err}");
    assert!(CheckpointStore::open("").is_err());
    assert_eq!(
        s3::parse("s3://bucket/a/b/").expect("ok"),
        ("bucket".to_owned(), "a/b".to_owned())
    );
    assert_eq!(
        s3::parse("s3://bucket").expect("ok"),
        ("bucket".to_owned(), String::new())
    );
    let no_bucket = CheckpointStore::open("s3:///prefix").expect_err("no bucket");
    assert!(no_bucket.to_string().contains("no bucket"), "{no_bucket}");
    let secret = CheckpointStore::open("s3://key:secret@bucket/p").expect_err("userinfo");
    assert!(secret.to_string().contains("environment"), "{secret}");
}

#[test]
fn the_blocking_facade_refuses_to_run_inside_a_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().display().to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let err = rt.block_on(async { store.list("") }).expect_err("inside");
    assert!(matches!(err, CheckpointError::Runtime(_)), "{err}");
}

#[test]
fn snapshot_files_use_the_checkpoint_format_and_legacy_files_still_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = snapshot::write(dir.path(), &mut snap(JOB, 4, 0, WORKERS)).expect("write");
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(&bytes[..8], format::MAGIC);
    let mut legacy = b"FLOWSNAP".to_vec();
    legacy.extend(bincode::serialize(&snap(JOB, 4, 1, WORKERS)).expect("bincode"));
    std::fs::write(path.with_file_name("worker-1-of-2.bin"), legacy).expect("legacy");
    let plan = snapshot::load(&snapshot::snapshot_dir(dir.path(), 4)).expect("load");
    assert_eq!(plan.operators["windows"].keyed.len(), 2);
}

#[test]
fn state_blobs_encode_as_before_the_bytes_serde() {
    #[derive(serde::Serialize)]
    struct Before {
        id: String,
        version: u32,
        watermark: JobWatermark,
        keyed: BTreeMap<u32, Vec<u8>>,
        partitions: BTreeMap<i32, Vec<u8>>,
        replicated: Option<Vec<u8>>,
    }
    let now = snap(JOB, 2, 1, WORKERS).operators.remove(0);
    let before = Before {
        id: now.id.clone(),
        version: now.version,
        watermark: now.watermark.clone(),
        keyed: now.keyed.clone(),
        partitions: now.partitions.clone(),
        replicated: now.replicated.clone(),
    };
    let old = bincode::serialize(&before).expect("old");
    assert_eq!(bincode::serialize(&now).expect("new"), old);
    let back: OperatorSnapshot = bincode::deserialize(&old).expect("reads the old bytes");
    assert_eq!((back.keyed, back.replicated), (now.keyed, now.replicated));
    let json = serde_json::to_string(&before).expect("json");
    let from_json: OperatorSnapshot = serde_json::from_str(&json).expect("sequences too");
    assert_eq!(from_json.partitions, now.partitions);
}
