//! Checkpoint files of 100 k devices' sequence state (60 windows of `[f32; 2]` means and
//! `u16` gaps per device, about what the sequence operator holds), synthetic and seeded:
//! encoding (bincode + LZ4 + CRC-32), verifying and decoding, and the whole path of a
//! checkpoint on 2 workers — the background writer writes both files (fsync'd) and the
//! manifest is written — into a temporary directory. Prints the file size per device.
//!
//! `cargo bench -p flowcast-engine --bench checkpoint`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowcast_engine::checkpoint::{
    self, CheckpointInfo, CheckpointStore, CheckpointWriter, Completion, WriteJob,
};
use flowcast_engine::lifecycle::snapshot::{FORMAT_VERSION, OperatorSnapshot, WorkerSnapshot};
use flowcast_operators::event_time::JobWatermark;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::mpsc;

const DEVICES: usize = 100_000;
const WINDOWS: usize = 60;
const KEY_GROUPS: u32 = 128;

/// One device's ring as the sequence operator keeps it: id, newest window start, means, gaps.
type Ring = (String, i64, Vec<[f32; 2]>, Vec<u16>);

/// One worker's snapshot of its share of `DEVICES` (every `workers`-th device).
fn snapshot(id: u64, worker: usize, workers: usize) -> WorkerSnapshot {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ worker as u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) as u32
    };
    let mut groups: BTreeMap<u32, Vec<Ring>> = BTreeMap::new();
    for d in (worker..DEVICES).step_by(workers) {
        let values = (0..WINDOWS)
            .map(|_| {
                [
                    20.0 + (next() % 500) as f32 / 100.0,
                    40.0 + (next() % 2000) as f32 / 100.0,
                ]
            })
            .collect();
        let device = format!("dev-{d:06}");
        groups.entry(d as u32 % KEY_GROUPS).or_default().push((
            device,
            1_700_000_000_000,
            values,
            vec![1; WINDOWS],
        ));
    }
    let keyed = groups
        .into_iter()
        .map(|(g, entries)| (g, bincode::serialize(&entries).expect("bincode")))
        .collect();
    WorkerSnapshot {
        format: FORMAT_VERSION,
        job: "bench".into(),
        id,
        epoch: id,
        worker,
        workers,
        key_groups: KEY_GROUPS,
        operators: vec![OperatorSnapshot {
            id: "sequence".into(),
            version: 1,
            watermark: JobWatermark::new(0),
            keyed,
            partitions: BTreeMap::new(),
            replicated: None,
            deferred: Default::default(),
        }],
    }
}

/// A copy of a snapshot with nothing deferred (snapshots are not `Clone`: deferred state
/// is a closure).
fn copy(s: &WorkerSnapshot) -> WorkerSnapshot {
    WorkerSnapshot {
        format: s.format,
        job: s.job.clone(),
        id: s.id,
        epoch: s.epoch,
        worker: s.worker,
        workers: s.workers,
        key_groups: s.key_groups,
        operators: s
            .operators
            .iter()
            .map(|o| OperatorSnapshot {
                id: o.id.clone(),
                version: o.version,
                watermark: o.watermark.clone(),
                keyed: o.keyed.clone(),
                partitions: o.partitions.clone(),
                replicated: o.replicated.clone(),
                deferred: Default::default(),
            })
            .collect(),
    }
}

fn format(c: &mut Criterion) {
    let snap = snapshot(1, 0, 1);
    let file = checkpoint::format::encode(&snap).expect("encode");
    let raw = bincode::serialized_size(&snap).expect("size");
    eprintln!(
        "{DEVICES} devices: {raw} bytes bincode, {} bytes on disk ({:.0} bytes/device, ratio {:.2})",
        file.len(),
        file.len() as f64 / DEVICES as f64,
        raw as f64 / file.len() as f64
    );
    let t = std::time::Instant::now();
    let body = bincode::serialize(&snap).expect("bincode");
    let t_bincode = t.elapsed();
    let t = std::time::Instant::now();
    let compressed = lz4_flex::block::compress(&body);
    let t_lz4 = t.elapsed();
    let t = std::time::Instant::now();
    black_box(crc32fast::hash(&compressed));
    let t_crc = t.elapsed();
    eprintln!("one pass: bincode {t_bincode:?}, lz4 {t_lz4:?}, crc32 {t_crc:?}");
    let mut group = c.benchmark_group("checkpoint-format");
    group.sample_size(10);
    group.throughput(Throughput::Elements(DEVICES as u64));
    group.bench_function("encode-100k-devices", |b| {
        b.iter(|| black_box(checkpoint::format::encode(black_box(&snap)).expect("encode")));
    });
    group.bench_function("decode-100k-devices", |b| {
        b.iter(|| black_box(checkpoint::format::decode(black_box(&file)).expect("decode")));
    });
    group.finish();
}

fn write_and_complete(c: &mut Criterion) {
    const WORKERS: usize = 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(&dir.path().display().to_string()).expect("store");
    let writer = CheckpointWriter::spawn(&store).expect("writer");
    let snaps: Vec<WorkerSnapshot> = (0..WORKERS).map(|w| snapshot(0, w, WORKERS)).collect();
    let mut id = 0;
    let mut group = c.benchmark_group("checkpoint-write");
    group.sample_size(10);
    group.throughput(Throughput::Elements(DEVICES as u64));
    group.bench_function("2-workers-100k-devices-to-manifest", |b| {
        b.iter(|| {
            id += 1;
            let (tx, rx) = mpsc::channel();
            for s in &snaps {
                let mut snap = copy(s);
                snap.id = id;
                let tx = tx.clone();
                let job = WriteJob::Snapshot {
                    snap: Box::new(snap),
                    attempt: 0,
                };
                writer
                    .submit(job, move |r| drop(tx.send(r)))
                    .expect("submit");
            }
            for _ in 0..WORKERS {
                rx.recv().expect("result").expect("written");
            }
            let info = CheckpointInfo {
                job: "bench".into(),
                id,
                attempt: 0,
                epoch: id,
                workers: WORKERS,
                key_groups: KEY_GROUPS,
            };
            let done = checkpoint::complete_checkpoint(&store, &info).expect("complete");
            assert!(matches!(done, Completion::Written(_)));
            checkpoint::retain(&store, 2).expect("retain");
        });
    });
    group.finish();
}

criterion_group!(benches, format, write_and_complete);
criterion_main!(benches);
