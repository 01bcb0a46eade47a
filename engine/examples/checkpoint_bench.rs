//! How long a checkpoint of N devices' state takes, and what it costs the worker.
//!
//! The state is generated directly (issue 13: no need to feed 46 M readings through
//! Kafka): N devices' 60-window sequences, built with the sequence operator's own state
//! type (`flowcast_operators::sequence::Sequences::push`, one `WindowResult` per window).
//! Then, as a checkpoint does:
//!
//! 1. **pause** — what the worker thread spends: the sequence operator's `snapshot` code
//!    path (`split_by` key group, bincode per group) — the job's epochs wait for this;
//! 2. **to manifest** — the worker's snapshot handed to the background `CheckpointWriter`
//!    (encode, LZ4, CRC-32, fsync'd write), then the manifest written (create-if-absent):
//!    the time from the checkpoint's epoch to the checkpoint existing;
//! 3. **size** — bytes on disk per device.
//!
//! `cargo run --release -p flowcast-engine --example checkpoint_bench -- 10000 100000`

use flowcast_engine::checkpoint::{
    CheckpointInfo, CheckpointStore, CheckpointWriter, Completion, WriteJob, complete_checkpoint,
};
use flowcast_engine::lifecycle::KeyGroups;
use flowcast_engine::lifecycle::snapshot::{FORMAT_VERSION, OperatorSnapshot, WorkerSnapshot};
use flowcast_operators::event_time::JobWatermark;
use flowcast_operators::sequence::Sequences;
use flowcast_operators::window::WindowResult;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WINDOWS: i64 = 60;
const WINDOW_MS: i64 = 1_800_000;

fn state(devices: usize) -> Sequences {
    let mut s = Sequences::new(WINDOWS as usize);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for d in 0..devices {
        let device = format!("pi-{d:06}");
        for w in 0..WINDOWS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let start = 1_700_000_000_000 + w * WINDOW_MS;
            s.push(&WindowResult {
                device: device.clone(),
                start,
                end: start + WINDOW_MS,
                temperature: 18.0 + (x % 800) as f64 / 100.0,
                humidity: 35.0 + (x % 3000) as f64 / 100.0,
                count: 180,
                revision: 0,
            });
        }
    }
    s
}

fn run(devices: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let built = Instant::now();
    let seq = state(devices);
    let build = built.elapsed();
    let groups = KeyGroups::new(KeyGroups::DEFAULT)?;

    // 1. The worker's pause: the sequence operator's snapshot code path.
    let t0 = Instant::now();
    let mut keyed = BTreeMap::new();
    for (g, part) in seq.split_by(|d| groups.of(d)) {
        keyed.insert(g, bincode::serialize(&part)?);
    }
    let pause = t0.elapsed();

    // 2. Off the worker: the writer encodes and writes, then the manifest.
    let store = CheckpointStore::open(dir.to_str().unwrap_or("."))?;
    let writer = CheckpointWriter::spawn(&store)?;
    let snap = WorkerSnapshot {
        format: FORMAT_VERSION,
        job: "bench".into(),
        id: 1,
        epoch: 1,
        worker: 0,
        workers: 1,
        key_groups: groups.count(),
        operators: vec![OperatorSnapshot {
            id: "sequence".into(),
            version: 1,
            watermark: JobWatermark::new(0),
            keyed,
            partitions: BTreeMap::new(),
            replicated: None,
        }],
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let handed = Instant::now();
    writer.submit(
        WriteJob::Snapshot {
            snap: Box::new(snap),
            attempt: 0,
        },
        move |r| {
            let _ = tx.send(r);
        },
    )?;
    let handoff = handed.elapsed();
    let file = rx.recv_timeout(Duration::from_secs(120))??;
    let info = CheckpointInfo {
        job: "bench".into(),
        id: 1,
        attempt: 0,
        epoch: 1,
        workers: 1,
        key_groups: groups.count(),
    };
    let Completion::Written(_) = complete_checkpoint(&store, &info)? else {
        anyhow::bail!("the manifest was not written");
    };
    let to_manifest = t0.elapsed();
    writer.shutdown()?;
    println!(
        "| {devices} | {:.0} ms | {:.1} ms | {:.0} ms | {:.2} MB | {:.0} B | (state built in {:.1} s) |",
        pause.as_secs_f64() * 1e3,
        handoff.as_secs_f64() * 1e3,
        to_manifest.as_secs_f64() * 1e3,
        file.size as f64 / 1e6,
        file.size as f64 / devices as f64,
        build.as_secs_f64(),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    println!(
        "| devices | worker pause (snapshot hook) | hand-off | epoch → manifest | file | per device | |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for n in if counts.is_empty() {
        vec![10_000, 100_000]
    } else {
        counts
    } {
        let dir = tempfile::tempdir()?;
        run(n, dir.path())?;
    }
    Ok(())
}
