//! How long a checkpoint of N devices' state takes, and what it costs the worker.
//!
//! The state is generated directly (issue 13: no need to feed 46 M readings through
//! Kafka): N devices' 60-window sequences and one open window each, built with the
//! operators' own state types (`Sequences::push`, `TumblingWindows::insert`). Then, as a
//! checkpoint does:
//!
//! 1. **pause** — what the worker thread spends in the two operators' `snapshot` code
//!    paths — the job's epochs wait for this: the window state split by key group and
//!    encoded; the sequences frozen copy-on-write (their grouping and encoding deferred to
//!    the writer);
//! 2. **to manifest** — the worker's snapshot handed to the background `CheckpointWriter`
//!    (encode, LZ4, CRC-32, fsync'd write), then the manifest written (create-if-absent):
//!    the time from the checkpoint's epoch to the checkpoint existing;
//! 3. **size** — bytes on disk per device;
//! 4. **next window** — the worker pushing one window for every device while the writer
//!    still holds the frozen rings, so each push copies its ring once (what
//!    copy-on-write costs, spread over the epochs after a checkpoint).
//!
//! `cargo run --release -p flowcast-engine --example checkpoint_bench -- 10000 100000`

use flowcast_engine::checkpoint::{
    CheckpointInfo, CheckpointStore, CheckpointWriter, Completion, WriteJob, complete_checkpoint,
};
use flowcast_engine::lifecycle::snapshot::{
    Deferred, FORMAT_VERSION, OperatorSnapshot, WorkerSnapshot,
};
use flowcast_engine::lifecycle::{KeyGroups, encode_groups};
use flowcast_operators::event_time::JobWatermark;
use flowcast_operators::sequence::Sequences;
use flowcast_operators::window::{TumblingWindows, WindowResult};
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

/// N devices with one open window each, as the window operator holds them mid-window.
fn windows(devices: usize) -> TumblingWindows {
    let mut w = TumblingWindows::new(WINDOW_MS, 0);
    let t = 1_700_000_000_000 + 60 * WINDOW_MS + 1_000;
    for d in 0..devices {
        let _ = w.insert(&format!("pi-{d:06}"), t, 21.5, 40.0);
    }
    w
}

/// Pushes the window starting at `start` for every device; returns how long it took.
fn window_for_all(seq: &mut Sequences, devices: usize, start: i64) -> Duration {
    let t = Instant::now();
    for d in 0..devices {
        seq.push(&WindowResult {
            device: format!("pi-{d:06}"),
            start,
            end: start + WINDOW_MS,
            temperature: 20.0,
            humidity: 40.0,
            count: 180,
            revision: 0,
        });
    }
    t.elapsed()
}

fn run(devices: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let built = Instant::now();
    let mut seq = state(devices);
    let win = windows(devices);
    let build = built.elapsed();
    let groups = KeyGroups::new(KeyGroups::DEFAULT)?;

    // 1. The worker's pause: the window operator's snapshot code path (split by key
    //    group, sharing each device's windows) and the sequence operator's (a
    //    copy-on-write freeze); grouping and encoding are deferred to the writer.
    let t0 = Instant::now();
    let parts = win.split_by(|d| groups.of(d));
    let mut win_deferred = Deferred::default();
    win_deferred.push(Box::new(move || encode_groups(parts)));
    let win_pause = t0.elapsed();
    let t1 = Instant::now();
    let frozen = seq.clone();
    let mut deferred = Deferred::default();
    deferred.push(Box::new(move || {
        encode_groups(frozen.split_by(|d| groups.of(d)))
    }));
    let seq_pause = t1.elapsed();
    let pause = t0.elapsed();

    let op = |id: &str, keyed, deferred| OperatorSnapshot {
        id: id.into(),
        version: 1,
        watermark: JobWatermark::new(0),
        keyed,
        partitions: BTreeMap::new(),
        replicated: None,
        deferred,
    };
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
        operators: vec![
            op("window", BTreeMap::new(), win_deferred),
            op("sequence", BTreeMap::new(), deferred),
        ],
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
    // The worker goes on while the writer works: the first windows after the checkpoint
    // copy the rings they change (copy-on-write); time one window for every device.
    let next = 1_700_000_000_000 + 60 * WINDOW_MS;
    let after = window_for_all(&mut seq, devices, next);
    let file = rx.recv_timeout(Duration::from_secs(120))??;
    // The same pushes again, nothing shared any more: the copy-on-write cost is the
    // difference.
    let unshared = window_for_all(&mut seq, devices, next + WINDOW_MS);
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
        "| {devices} | {:.1} ms ({:.1} window + {:.1} sequence) | {:.1} ms | {:.0} ms | {:.2} MB | {:.0} B | {:.0} ms ({:.0} ms unshared) | (state built in {:.1} s) |",
        pause.as_secs_f64() * 1e3,
        win_pause.as_secs_f64() * 1e3,
        seq_pause.as_secs_f64() * 1e3,
        handoff.as_secs_f64() * 1e3,
        to_manifest.as_secs_f64() * 1e3,
        file.size as f64 / 1e6,
        file.size as f64 / devices as f64,
        after.as_secs_f64() * 1e3,
        unshared.as_secs_f64() * 1e3,
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
        "| devices | worker pause (snapshot hooks) | hand-off | epoch → manifest | file | per device | next window, all devices | |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
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
