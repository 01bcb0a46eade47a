//! Tests of the checkpoint module across its parts: write through the background writer,
//! complete with a manifest, recover (with fallback), savepoints, retention.

use super::*;
use crate::lifecycle::snapshot::{self, FORMAT_VERSION, OperatorSnapshot, WorkerSnapshot};
use bytes::Bytes;
use flowcast_operators::event_time::JobWatermark;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

const JOB: &str = "job";
const WORKERS: usize = 2;
const WAIT: Duration = Duration::from_secs(30);

fn snap(job: &str, id: u64, worker: usize, workers: usize) -> WorkerSnapshot {
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

fn info(id: u64, attempt: u64) -> CheckpointInfo {
    CheckpointInfo {
        job: JOB.into(),
        id,
        attempt,
        epoch: id * 10,
        workers: WORKERS,
        key_groups: 8,
    }
}

fn open(dir: &std::path::Path) -> CheckpointStore {
    CheckpointStore::open(&dir.display().to_string()).expect("open the location")
}

/// Writes the given workers' files of checkpoint `id` through a writer and waits for them.
fn write_files(store: &CheckpointStore, id: u64, attempt: u64, workers: &[usize]) {
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

fn checkpoint(store: &CheckpointStore, id: u64, attempt: u64) -> Manifest {
    write_files(store, id, attempt, &[0, 1]);
    match complete_checkpoint(store, &info(id, attempt)).expect("complete") {
        Completion::Written(m) => m,
        Completion::NotYet { missing } => panic!("files of workers {missing:?} missing"),
    }
}

fn path_of(dir: &std::path::Path, rel: &str) -> std::path::PathBuf {
    dir.join(rel)
}

fn assert_plan(plan: &snapshot::RestorePlan, id: u64) {
    assert_eq!((plan.job.as_str(), plan.id, plan.epoch), (JOB, id, id * 10));
    let op = &plan.operators["windows"];
    assert_eq!(op.keyed.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(op.keyed[&1], vec![id as u8; 1000]);
    assert_eq!(op.partitions.len(), 2);
    assert_eq!(op.replicated.as_deref(), Some(&b"same everywhere"[..]));
}

#[test]
fn a_checkpoint_round_trips_through_writer_manifest_and_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
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
        let on_disk = std::fs::metadata(path_of(dir.path(), &f.path)).expect("file");
        assert_eq!(on_disk.len(), f.size);
        assert_eq!(f.path, worker_file(1, 0, f.worker, WORKERS));
    }
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(path_of(dir.path(), "chk-1/_MANIFEST")).expect("manifest"),
    )
    .expect("JSON");
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

#[test]
fn a_second_manifest_writer_gets_already_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
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

/// Corrupts checkpoint 3 of 1..=3 with `damage` and expects recovery to use 2, saying why.
fn falls_back(damage: impl FnOnce(&std::path::Path, &Manifest), reason: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for id in 1..=3 {
        checkpoint(&store, id, 0);
    }
    let newest = read_manifest(&store, &manifest_path(3))
        .expect("read")
        .expect("manifest 3");
    damage(dir.path(), &newest);
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

#[test]
fn a_truncated_file_falls_back_to_the_previous_checkpoint() {
    falls_back(
        |dir, m| {
            let p = path_of(dir, &m.files[1].path);
            let bytes = std::fs::read(&p).expect("read");
            std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("truncate");
        },
        "truncated",
    );
}

#[test]
fn a_flipped_byte_falls_back_to_the_previous_checkpoint() {
    falls_back(
        |dir, m| {
            let p = path_of(dir, &m.files[0].path);
            let mut bytes = std::fs::read(&p).expect("read");
            let i = bytes.len() - 5;
            bytes[i] ^= 0x01;
            std::fs::write(&p, bytes).expect("flip");
        },
        "checksum mismatch",
    );
}

#[test]
fn a_deleted_manifest_falls_back_to_the_previous_checkpoint() {
    falls_back(
        |dir, _| std::fs::remove_file(path_of(dir, "chk-3/_MANIFEST")).expect("delete"),
        "no manifest",
    );
}

#[test]
fn a_missing_file_falls_back_to_the_previous_checkpoint() {
    falls_back(
        |dir, m| std::fs::remove_file(path_of(dir, &m.files[0].path)).expect("delete"),
        "is missing",
    );
}

#[test]
fn a_garbled_manifest_falls_back_to_the_previous_checkpoint() {
    falls_back(
        |dir, _| std::fs::write(path_of(dir, "chk-3/_MANIFEST"), b"{\"format\":").expect("w"),
        "invalid JSON",
    );
}

#[test]
fn another_jobs_checkpoint_is_not_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    checkpoint(&store, 1, 0);
    let recovered = latest_complete(&store, "other-job").expect("recover");
    assert!(recovered.latest.is_none());
    assert!(recovered.skipped[0].reason.contains("belongs to job `job`"));
}

#[test]
fn retention_deletes_old_checkpoints_and_orphans_but_not_in_progress_ones_or_savepoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for id in 1..=4 {
        checkpoint(&store, id, 0);
    }
    // A crashed attempt's half of checkpoint 3, and checkpoint 5 in progress (attempt 1).
    write_files(&store, 3, 1, &[0]);
    write_files(&store, 5, 1, &[0]);
    let savepoint = dir.path().join("savepoints").join("sp-2");
    let manifest_2 = read_manifest(&store, &manifest_path(2))
        .expect("read")
        .expect("2");
    copy_to_savepoint(&store, &manifest_2, &open(&savepoint)).expect("savepoint");

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
        assert!(!path_of(dir.path(), gone).exists(), "{gone} survived");
    }
    assert!(
        !path_of(dir.path(), "chk-1").exists(),
        "empty dirs are removed"
    );
    assert!(path_of(dir.path(), &worker_file(5, 1, 0, WORKERS)).exists());
    assert!(savepoint.join(MANIFEST).exists());
    assert!(savepoint.join(worker_file_name(0, WORKERS)).exists());

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
}

#[test]
fn a_savepoint_outlives_its_checkpoint_directory_and_restores() {
    let base = tempfile::tempdir().expect("tempdir");
    let checkpoints = base.path().join("checkpoints");
    let store = open(&checkpoints);
    let manifest = checkpoint(&store, 7, 2);
    let target = base.path().join("sp");
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

    drop(store);
    std::fs::remove_dir_all(&checkpoints).expect("delete the checkpoints");
    let moved = base.path().join("moved-sp");
    std::fs::rename(&target, &moved).expect("move the savepoint");
    let (m, plan) = load_savepoint(&format!("file://{}", moved.display())).expect("restore");
    assert_eq!((m.checkpoint_id, m.attempt), (7, 2));
    assert_plan(&plan, 7);

    let typo = load_savepoint(&checkpoints.display().to_string()).expect_err("gone");
    assert!(typo.to_string().contains("no such directory"), "{typo}");
    assert!(!checkpoints.exists(), "reading a savepoint creates nothing");
    std::fs::create_dir(&checkpoints).expect("mkdir");
    let not_one = load_savepoint(&checkpoints.display().to_string()).expect_err("empty dir");
    assert!(
        not_one.to_string().contains("no savepoint here"),
        "{not_one}"
    );
    let corrupt = moved.join("worker-1-of-2.bin");
    let mut bytes = std::fs::read(&corrupt).expect("read");
    bytes.truncate(30);
    std::fs::write(&corrupt, bytes).expect("truncate");
    let err = load_savepoint(&moved.display().to_string()).expect_err("corrupt");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn locations_other_than_local_directories_are_refused_clearly() {
    let err = CheckpointStore::open("s3://bucket/flowcast").expect_err("s3");
    assert!(err.to_string().contains("exactly-once"), "{err}");
    assert!(CheckpointStore::open("").is_err());
}

#[test]
fn the_blocking_facade_refuses_to_run_inside_a_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let err = rt.block_on(async { store.list("") }).expect_err("inside");
    assert!(matches!(err, CheckpointError::Runtime(_)), "{err}");
}

#[test]
fn the_writer_reports_every_job_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
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
fn the_writer_completes_checkpoints_off_the_calling_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
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

#[test]
fn deferred_keyed_state_is_encoded_by_the_writer_and_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = CheckpointWriter::spawn(&store).expect("writer");
    let (tx, rx) = mpsc::channel();
    for w in 0..WORKERS {
        let mut s = snap(JOB, 1, w, WORKERS);
        // Each worker's key group is written only by the deferred encoding (bincode of
        // the bytes, decoded below).
        let part = s.operators[0].keyed.remove(&(w as u32)).expect("group");
        s.operators[0].deferred.push(Box::new(move || {
            crate::lifecycle::encode_groups([(w as u32, part)])
        }));
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
