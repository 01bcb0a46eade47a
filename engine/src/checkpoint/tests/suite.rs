//! The checkpoint module's tests that hold for every backend: write through the background
//! writer, complete with a manifest (create-if-absent), recover with fallback, savepoints,
//! retention. They reach the location only through [`CheckpointStore`], so they run against
//! a local directory (`checkpoint::tests`) and a real S3 server
//! (`engine/tests/checkpoint_s3.rs`, which includes this file).
//!
//! The including module provides, through `super::*`: the `checkpoint` module's public
//! items, `snapshot` (`lifecycle::snapshot`), `encode_groups` and `JobWatermark`.

use super::*;
use bytes::Bytes;
use snapshot::{FORMAT_VERSION, OperatorSnapshot, WorkerSnapshot};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

pub const JOB: &str = "job";
pub const WORKERS: usize = 2;
const WAIT: Duration = Duration::from_secs(60);

/// Where a suite test's locations come from.
pub trait Fixture: Sync {
    /// A fresh, empty location, unique to this call.
    fn fresh(&self) -> String;
    /// Whether anything is at `location` (a directory; objects under an S3 prefix).
    fn exists(&self, location: &str) -> bool;
    /// Part of what reading a savepoint from an empty location says.
    fn nothing_there(&self) -> &'static str;
}

pub fn snap(job: &str, id: u64, worker: usize, workers: usize) -> WorkerSnapshot {
    WorkerSnapshot {
        format: FORMAT_VERSION,
        job: job.into(),
        id,
        epoch: id * 10,
        worker,
        workers,
        key_groups: 8,
        operators: vec![OperatorSnapshot {
            id: "windows".into(),
            version: 1,
            watermark: JobWatermark::new(0),
            keyed: BTreeMap::from([(worker as u32, vec![id as u8; 1000])]),
            partitions: BTreeMap::from([(worker as i32, id.to_le_bytes().to_vec())]),
            replicated: Some(b"same everywhere".to_vec()),
            deferred: Default::default(),
        }],
    }
}

pub fn info(id: u64, attempt: u64) -> CheckpointInfo {
    CheckpointInfo {
        job: JOB.into(),
        id,
        attempt,
        epoch: id * 10,
        workers: WORKERS,
        key_groups: 8,
    }
}

pub fn open(location: &str) -> CheckpointStore {
    CheckpointStore::open(location).expect("open the location")
}

/// Writes the given workers' files of checkpoint `id` through a writer and waits for them.
pub fn write_files(store: &CheckpointStore, id: u64, attempt: u64, workers: &[usize]) {
    let writer = CheckpointWriter::spawn(store).expect("writer");
    let (tx, rx) = mpsc::channel();
    for &w in workers {
        let tx = tx.clone();
        let job = WriteJob::Snapshot {
            snap: Box::new(snap(JOB, id, w, WORKERS)),
            attempt,
        };
        writer
            .submit(job, move |r| tx.send(r).expect("test alive"))
            .expect("submit");
    }
    for _ in workers {
        let written = rx.recv_timeout(WAIT).expect("a result").expect("written");
        assert!(written.path.starts_with(&attempt_prefix(id, attempt)));
        assert!(written.size > format::HEADER_LEN as u64);
    }
    writer.shutdown().expect("shutdown");
}

pub fn checkpoint(store: &CheckpointStore, id: u64, attempt: u64) -> Manifest {
    write_files(store, id, attempt, &[0, 1]);
    match complete_checkpoint(store, &info(id, attempt)).expect("complete") {
        Completion::Written(m) => m,
        Completion::NotYet { missing } => panic!("files of workers {missing:?} missing"),
    }
}

pub fn assert_plan(plan: &snapshot::RestorePlan, id: u64) {
    assert_eq!((plan.job.as_str(), plan.id, plan.epoch), (JOB, id, id * 10));
    let op = &plan.operators["windows"];
    assert_eq!(op.keyed.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(op.keyed[&1], vec![id as u8; 1000]);
    assert_eq!(op.partitions.len(), 2);
    assert_eq!(op.replicated.as_deref(), Some(&b"same everywhere"[..]));
}

fn read(store: &CheckpointStore, path: &str) -> Bytes {
    store
        .get(path)
        .expect("read")
        .unwrap_or_else(|| panic!("{path} is missing"))
}

fn exists(store: &CheckpointStore, path: &str) -> bool {
    store.get(path).expect("read").is_some()
}

pub fn round_trip(fx: &dyn Fixture) {
    let store = open(&fx.fresh());
    assert_eq!(next_attempt(&store).expect("attempt"), 0);
    assert_eq!(next_checkpoint_id(&store).expect("id"), 1);
    assert!(
        latest_complete(&store, JOB)
            .expect("recover")
            .latest
            .is_none()
    );

    write_files(&store, 1, 0, &[1]);
    assert_eq!(
        complete_checkpoint(&store, &info(1, 0)).expect("not yet"),
        Completion::NotYet { missing: vec![0] }
    );
    assert!(
        latest_complete(&store, JOB)
            .expect("recover")
            .latest
            .is_none(),
        "no manifest, no checkpoint"
    );
    write_files(&store, 1, 0, &[0]);
    let Completion::Written(manifest) = complete_checkpoint(&store, &info(1, 0)).expect("done")
    else {
        panic!("all files are there");
    };
    assert_eq!(manifest.kind, Kind::Checkpoint);
    assert_eq!(manifest.files.len(), WORKERS);
    for f in &manifest.files {
        assert_eq!(read(&store, &f.path).len() as u64, f.size);
        assert_eq!(f.path, worker_file(1, 0, f.worker, WORKERS));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&read(&store, "chk-1/_MANIFEST")).expect("JSON");
    assert_eq!(json["kind"], "checkpoint");
    assert_eq!(json["checkpoint_id"], 1);

    let recovered = latest_complete(&store, JOB).expect("recover");
    assert!(recovered.skipped.is_empty());
    let (m, plan) = recovered.latest.expect("checkpoint 1");
    assert_eq!(m, manifest);
    assert_plan(&plan, 1);
    assert_eq!(next_attempt(&store).expect("attempt"), 1);
    assert_eq!(next_checkpoint_id(&store).expect("id"), 2);
}

/// The commit point: a create-if-absent write of an existing object fails with
/// `AlreadyExists` and leaves the first write's bytes (on S3: `If-None-Match: *` → 412).
pub fn create_if_absent_is_honoured(fx: &dyn Fixture) {
    let store = open(&fx.fresh());
    store
        .put("chk-9/_MANIFEST", Bytes::from_static(b"first"), true)
        .expect("the first create");
    let second = store
        .put("chk-9/_MANIFEST", Bytes::from_static(b"second"), true)
        .expect_err("the second create must fail");
    assert!(
        matches!(&second, CheckpointError::AlreadyExists(p) if p == "chk-9/_MANIFEST"),
        "the server did not refuse the second create-if-absent put: {second}"
    );
    assert_eq!(&read(&store, "chk-9/_MANIFEST")[..], b"first");
    store
        .put("chk-9/_MANIFEST", Bytes::from_static(b"third"), false)
        .expect("an overwrite");
    assert_eq!(&read(&store, "chk-9/_MANIFEST")[..], b"third");
}

pub fn second_manifest_writer_gets_already_exists(fx: &dyn Fixture) {
    let store = open(&fx.fresh());
    write_files(&store, 1, 0, &[0, 1]);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| complete_checkpoint(&store, &info(1, 0))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let written = results
        .iter()
        .filter(|r| matches!(r, Ok(Completion::Written(_))))
        .count();
    let exists = results
        .iter()
        .filter(|r| matches!(r, Err(CheckpointError::AlreadyExists(p)) if p == "chk-1/_MANIFEST"))
        .count();
    assert_eq!((written, exists), (1, 1), "{results:?}");
    let again = complete_checkpoint(&store, &info(1, 0)).expect_err("exists");
    assert!(again.to_string().contains("already exists"), "{again}");
}

/// Damage done to checkpoint 3 of 1..=3 (through the store) before recovery.
pub type Damage = fn(&CheckpointStore, &Manifest);

/// Corrupts checkpoint 3 of 1..=3 with `damage` and expects recovery to use 2, saying why.
pub fn falls_back(fx: &dyn Fixture, damage: Damage, reason: &str) {
    let store = open(&fx.fresh());
    for id in 1..=3 {
        checkpoint(&store, id, 0);
    }
    let newest = read_manifest(&store, &manifest_path(3))
        .expect("read")
        .expect("manifest 3");
    damage(&store, &newest);
    let recovered = latest_complete(&store, JOB).expect("recover");
    let (m, plan) = recovered.latest.expect("a previous checkpoint");
    assert_eq!(m.checkpoint_id, 2);
    assert_plan(&plan, 2);
    assert_eq!(recovered.skipped.len(), 1, "{:?}", recovered.skipped);
    assert_eq!(recovered.skipped[0].id, 3);
    assert!(
        recovered.skipped[0].reason.contains(reason),
        "expected `{reason}` in: {}",
        recovered.skipped[0].reason
    );
}

/// Every kind of damage [`falls_back`] is tested with, and what recovery must say.
pub const DAMAGES: [(&str, Damage, &str); 5] = [
    ("truncated file", truncate_file, "truncated"),
    ("flipped byte", flip_byte, "checksum mismatch"),
    ("deleted manifest", delete_manifest, "no manifest"),
    ("missing file", delete_file, "is missing"),
    ("garbled manifest", garble_manifest, "invalid JSON"),
];

fn truncate_file(store: &CheckpointStore, m: &Manifest) {
    let bytes = read(store, &m.files[1].path);
    let half = bytes.slice(..bytes.len() / 2);
    store.put(&m.files[1].path, half, false).expect("truncate");
}

fn flip_byte(store: &CheckpointStore, m: &Manifest) {
    let mut bytes = read(store, &m.files[0].path).to_vec();
    let i = bytes.len() - 5;
    bytes[i] ^= 0x01;
    store
        .put(&m.files[0].path, bytes.into(), false)
        .expect("flip");
}

fn delete_manifest(store: &CheckpointStore, _: &Manifest) {
    store.delete("chk-3/_MANIFEST").expect("delete");
}

fn delete_file(store: &CheckpointStore, m: &Manifest) {
    store.delete(&m.files[0].path).expect("delete");
}

fn garble_manifest(store: &CheckpointStore, _: &Manifest) {
    let garbled = Bytes::from_static(b"{\"format\":");
    store
        .put("chk-3/_MANIFEST", garbled, false)
        .expect("garble");
}

pub fn another_jobs_checkpoint_is_not_restored(fx: &dyn Fixture) {
    let store = open(&fx.fresh());
    checkpoint(&store, 1, 0);
    let recovered = latest_complete(&store, "other-job").expect("recover");
    assert!(recovered.latest.is_none());
    assert!(recovered.skipped[0].reason.contains("belongs to job `job`"));
}

/// Retention keeps the newest manifests, deletes the rest and orphans, spares in-progress
/// checkpoints and savepoints. Returns the location, for backend-specific checks after it.
pub fn retention(fx: &dyn Fixture) -> String {
    let base = fx.fresh();
    let store = open(&base);
    for id in 1..=4 {
        checkpoint(&store, id, 0);
    }
    // A crashed attempt's half of checkpoint 3, and checkpoint 5 in progress (attempt 1).
    write_files(&store, 3, 1, &[0]);
    write_files(&store, 5, 1, &[0]);
    let savepoint = open(&format!("{base}/savepoints/sp-2"));
    let manifest_2 = read_manifest(&store, &manifest_path(2))
        .expect("read")
        .expect("2");
    copy_to_savepoint(&store, &manifest_2, &savepoint).expect("savepoint");

    let report = retain(&store, 2).expect("retain");
    assert_eq!(report.kept, vec![4, 3]);
    let mut expected = vec![
        "chk-1/_MANIFEST".to_owned(),
        "chk-2/_MANIFEST".to_owned(),
        worker_file(3, 1, 0, WORKERS),
    ];
    for id in 1..=2 {
        expected.extend((0..WORKERS).map(|w| worker_file(id, 0, w, WORKERS)));
    }
    expected.sort();
    assert_eq!(report.deleted, expected);
    for gone in &expected {
        assert!(!exists(&store, gone), "{gone} survived");
    }
    assert!(store.list("chk-1").expect("list").is_empty());
    assert!(exists(&store, &worker_file(5, 1, 0, WORKERS)));
    assert!(exists(&savepoint, MANIFEST));
    assert!(exists(&savepoint, &worker_file_name(0, WORKERS)));

    let recovered = latest_complete(&store, JOB).expect("recover");
    assert_eq!(recovered.latest.expect("4").0.checkpoint_id, 4);
    assert_eq!(
        recovered.skipped.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!(
        retain(&store, 2).expect("again").deleted,
        Vec::<String>::new()
    );
    assert!(retain(&store, 0).is_err());
    assert_eq!(next_attempt(&store).expect("attempt"), 2);
    assert_eq!(next_checkpoint_id(&store).expect("id"), 6);
    base
}

/// Copies every object of `from` to `to` and deletes them from `from` (a move, on S3).
fn move_all(from: &CheckpointStore, to: &CheckpointStore) {
    for meta in from.list("").expect("list") {
        let path = meta.location.as_ref();
        to.put(path, read(from, path), true).expect("copy");
        from.delete(path).expect("delete");
    }
}

pub fn savepoint_outlives_its_checkpoints_and_restores(fx: &dyn Fixture) {
    let base = fx.fresh();
    let checkpoints = format!("{base}/checkpoints");
    let store = open(&checkpoints);
    let manifest = checkpoint(&store, 7, 2);
    let target = format!("{base}/sp");
    let sp = copy_to_savepoint(&store, &manifest, &open(&target)).expect("savepoint");
    assert_eq!(sp.kind, Kind::Savepoint);
    assert_eq!(
        sp.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        vec!["worker-0-of-2.bin", "worker-1-of-2.bin"]
    );
    let again = copy_to_savepoint(&store, &manifest, &open(&target)).expect_err("exists");
    assert!(
        matches!(again, CheckpointError::AlreadyExists(_)),
        "{again}"
    );

    for meta in store.list("").expect("list") {
        store
            .delete(meta.location.as_ref())
            .expect("delete the checkpoints");
    }
    drop(store);
    let moved = format!("{base}/moved-sp");
    move_all(&open(&target), &open(&moved));
    let (m, plan) = load_savepoint(&moved).expect("restore");
    assert_eq!((m.checkpoint_id, m.attempt), (7, 2));
    assert_plan(&plan, 7);

    assert!(load_savepoint(&target).is_err(), "moved away");
    let typo = format!("{base}/no-such-savepoint");
    let typo_err = load_savepoint(&typo).expect_err("nothing there");
    assert!(
        typo_err.to_string().contains(fx.nothing_there()),
        "{typo_err}"
    );
    assert!(!fx.exists(&typo), "reading a savepoint creates nothing");
    let not_one = format!("{base}/not-a-savepoint");
    open(&not_one)
        .put("notes.txt", Bytes::from_static(b"hello"), false)
        .expect("put");
    let not_one = load_savepoint(&not_one).expect_err("no manifest");
    assert!(
        not_one.to_string().contains("no savepoint here"),
        "{not_one}"
    );
    let corrupt = open(&moved);
    let bytes = read(&corrupt, "worker-1-of-2.bin").slice(..30);
    corrupt
        .put("worker-1-of-2.bin", bytes, false)
        .expect("truncate");
    let err = load_savepoint(&moved).expect_err("corrupt");
    assert!(err.to_string().contains("truncated"), "{err}");
}

pub fn writer_reports_every_job_and_refuses_to_overwrite(fx: &dyn Fixture) {
    let store = open(&fx.fresh());
    let writer = CheckpointWriter::spawn(&store).expect("writer");
    let (tx, rx) = mpsc::channel();
    for i in 0..20 {
        let tx = tx.clone();
        let job = WriteJob::Bytes {
            path: format!("savepoints/x/{}", i % 10),
            bytes: Bytes::from(vec![i as u8; 10]),
        };
        writer
            .submit(job, move |r| tx.send(r).expect("alive"))
            .expect("submit");
    }
    drop(tx);
    writer.shutdown().expect("shutdown finishes the queue");
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), 20);
    let failed = results
        .iter()
        .filter(|r| matches!(r, Err(CheckpointError::AlreadyExists(_))))
        .count();
    assert_eq!(failed, 10, "each path is written once: {results:?}");
}

pub fn writer_completes_checkpoints_off_the_calling_thread(fx: &dyn Fixture) {
    let store = open(&fx.fresh());
    let writer = std::sync::Arc::new(CheckpointWriter::spawn(&store).expect("writer"));
    let (tx, rx) = mpsc::channel();
    let complete = |tx: mpsc::Sender<_>| {
        writer
            .complete(info(1, 3), move |r| tx.send(r).expect("alive"))
            .expect("queue");
    };
    complete(tx.clone());
    assert_eq!(
        rx.recv_timeout(WAIT).expect("outcome").expect("not yet"),
        Completion::NotYet {
            missing: vec![0, 1]
        }
    );
    let (files_tx, files_rx) = mpsc::channel();
    for w in 0..WORKERS {
        let (writer, files_tx) = (std::sync::Arc::clone(&writer), files_tx.clone());
        std::thread::spawn(move || {
            let job = WriteJob::Snapshot {
                snap: Box::new(snap(JOB, 1, w, WORKERS)),
                attempt: 3,
            };
            writer
                .submit(job, move |r| files_tx.send(r).expect("alive"))
                .expect("submit");
        });
    }
    for _ in 0..WORKERS {
        files_rx
            .recv_timeout(WAIT)
            .expect("result")
            .expect("written");
    }
    complete(tx);
    let Completion::Written(m) = rx.recv_timeout(WAIT).expect("outcome").expect("written") else {
        panic!("all files are there");
    };
    assert_eq!((m.checkpoint_id, m.attempt), (1, 3));
    let (restored, plan) = latest_complete(&store, JOB)
        .expect("recover")
        .latest
        .expect("checkpoint 1");
    assert_eq!(restored, m);
    assert_plan(&plan, 1);
}

pub fn deferred_keyed_state_is_encoded_by_the_writer_and_restores(fx: &dyn Fixture) {
    let store = open(&fx.fresh());
    let writer = CheckpointWriter::spawn(&store).expect("writer");
    let (tx, rx) = mpsc::channel();
    for w in 0..WORKERS {
        let mut s = snap(JOB, 1, w, WORKERS);
        // Each worker's key group is written only by the deferred encoding (bincode of
        // the bytes, decoded below).
        let part = s.operators[0].keyed.remove(&(w as u32)).expect("group");
        s.operators[0]
            .deferred
            .push(Box::new(move || encode_groups([(w as u32, part)])));
        assert!(
            format::encode(&s).is_err(),
            "unresolved state is not encoded"
        );
        let tx = tx.clone();
        let job = WriteJob::Snapshot {
            snap: Box::new(s),
            attempt: 0,
        };
        writer
            .submit(job, move |r| tx.send(r).expect("test alive"))
            .expect("submit");
    }
    for _ in 0..WORKERS {
        rx.recv_timeout(WAIT).expect("a result").expect("written");
    }
    writer.shutdown().expect("shutdown");
    let Completion::Written(_) = complete_checkpoint(&store, &info(1, 0)).expect("done") else {
        panic!("all files are there");
    };
    let (_, plan) = latest_complete(&store, JOB)
        .expect("recover")
        .latest
        .expect("checkpoint 1");
    let op = &plan.operators["windows"];
    assert_eq!(op.keyed.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    let restored: Vec<u8> = bincode::deserialize(&op.keyed[&1]).expect("decodes");
    assert_eq!(restored, vec![1u8; 1000]);
}

/// One `#[test]` per suite test, against the locations of `$fixture` (an expression of a
/// type that implements [`Fixture`]); invoke it where `suite` is this module.
macro_rules! suite_tests {
    ($fixture:expr) => {
        suite_tests!(@each $fixture;
            round_trip,
            create_if_absent_is_honoured,
            second_manifest_writer_gets_already_exists,
            another_jobs_checkpoint_is_not_restored,
            savepoint_outlives_its_checkpoints_and_restores,
            writer_reports_every_job_and_refuses_to_overwrite,
            writer_completes_checkpoints_off_the_calling_thread,
            deferred_keyed_state_is_encoded_by_the_writer_and_restores);
        suite_tests!(@damage $fixture;
            a_truncated_file_falls_back = 0,
            a_flipped_byte_falls_back = 1,
            a_deleted_manifest_falls_back = 2,
            a_missing_file_falls_back = 3,
            a_garbled_manifest_falls_back = 4);
    };
    (@each $fixture:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                suite::$name(&$fixture);
            }
        )*
    };
    (@damage $fixture:expr; $($name:ident = $i:expr),*) => {
        $(
            #[test]
            fn $name() {
                let (_, damage, reason) = suite::DAMAGES[$i];
                suite::falls_back(&$fixture, damage, reason);
            }
        )*
    };
}
