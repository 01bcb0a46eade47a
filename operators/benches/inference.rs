//! Batched inference of the committed model: [`Forecaster::forecast`] (normalise, one input
//! tensor, forward, copy out, de-normalise) against a bare `CModule::forward_ts` on the same,
//! already normalised batch, at batch 1, 64 and 1024, with one LibTorch thread, so that
//! throughput is forecasts per second per core.
//!
//! After criterion's groups, a plain timing loop reports batch-1 latency percentiles (p50, p99,
//! p99.9) and the batch-1024 throughput ratio ours / bare, which are the targets
//! (ratio ≥ 0.90, p99 ≤ 1 ms).
//!
//! `cargo bench -p flowcast-operators --bench inference`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use flowcast_inference::Forecaster;
use serde::Deserialize;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::{CModule, Tensor};

const BATCHES: [usize; 3] = [1, 64, 1024];

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

#[derive(Deserialize)]
struct Fixtures {
    inputs: Vec<Vec<[f32; 2]>>,
}

/// Real sequences (the committed fixtures), repeated to `batch`.
fn sequences(batch: usize) -> Vec<Vec<[f32; 2]>> {
    let text = std::fs::read_to_string(models_dir().join("fixtures/dht11_lstm_fixtures.json"))
        .expect("fixtures are committed");
    let fx: Fixtures = serde_json::from_str(&text).expect("fixtures parse");
    fx.inputs.iter().cycle().take(batch).cloned().collect()
}

struct Setup {
    forecaster: Forecaster,
    bare: CModule,
}

fn setup() -> Setup {
    // LoadOptions::default() sets one intra-op thread, process-wide: the bare module runs with
    // it too.
    let forecaster = Forecaster::open(models_dir().join("dht11_lstm.json")).expect("model loads");
    let mut bare = CModule::load(models_dir().join("dht11_lstm.pt")).expect("bare load");
    bare.set_eval();
    Setup { forecaster, bare }
}

/// The bare module's input: the same sequences, normalised as the Forecaster does.
fn normalised_tensor(f: &Forecaster, seqs: &[Vec<[f32; 2]>]) -> Tensor {
    let n = &f.metadata().normalisation;
    let (mean, std) = (
        [n.mean[0] as f32, n.mean[1] as f32],
        [n.std[0] as f32, n.std[1] as f32],
    );
    let flat: Vec<f32> = seqs
        .iter()
        .flatten()
        .flat_map(|[t, h]| [(t - mean[0]) / std[0], (h - mean[1]) / std[1]])
        .collect();
    Tensor::from_slice(&flat).view([seqs.len() as i64, f.sequence_length() as i64, 2])
}

fn bare_forward(bare: &CModule, input: &Tensor) -> Tensor {
    tch::no_grad(|| bare.forward_ts(&[input])).expect("bare forward")
}

fn batched(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("inference");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for batch in BATCHES {
        let seqs = sequences(batch);
        let input = normalised_tensor(&s.forecaster, &seqs);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("forecaster", batch), &seqs, |b, seqs| {
            b.iter(|| s.forecaster.forecast(black_box(seqs)).expect("forecast"))
        });
        group.bench_with_input(
            BenchmarkId::new("bare_forward", batch),
            &input,
            |b, input| b.iter(|| bare_forward(&s.bare, black_box(input))),
        );
    }
    group.finish();
}

/// Percentile of sorted durations, in µs.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Batch-1 latency percentiles and the batch-1024 throughput ratio, by plain timing loops;
/// `calls` batch-1 calls and `rounds` rounds of batch 1024.
fn targets(calls: usize, rounds: u32) {
    let s = setup();
    let one = sequences(1);
    for _ in 0..200 {
        s.forecaster.forecast(&one).expect("warm up");
    }
    let mut lat: Vec<Duration> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            black_box(s.forecaster.forecast(black_box(&one)).expect("forecast"));
            start.elapsed()
        })
        .collect();
    lat.sort_unstable();
    println!(
        "batch-1 latency through Forecaster, 1 thread, {} calls: p50 {:.1} µs, p99 {:.1} µs, \
         p99.9 {:.1} µs, max {:.1} µs",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        percentile(&lat, 1.0)
    );

    let seqs = sequences(1024);
    let input = normalised_tensor(&s.forecaster, &seqs);
    let (mut ours, mut bare) = (Duration::ZERO, Duration::ZERO);
    // Alternate the two so that a noisy neighbour slows both alike.
    for _ in 0..rounds {
        let start = Instant::now();
        black_box(s.forecaster.forecast(black_box(&seqs)).expect("forecast"));
        ours += start.elapsed();
        let start = Instant::now();
        let _ = black_box(bare_forward(&s.bare, black_box(&input)));
        bare += start.elapsed();
    }
    let rate = |d: Duration| f64::from(rounds) * 1024.0 / d.as_secs_f64();
    println!(
        "batch 1024, 1 thread: Forecaster {:.0} forecasts/s, bare forward {:.0} forecasts/s, \
         ratio {:.3}",
        rate(ours),
        rate(bare),
        rate(ours) / rate(bare)
    );
}

criterion_group!(benches, batched);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // As criterion: `cargo bench` passes --bench; `cargo test --benches` (CI) does not, and then
    // the loops only run briefly, to test that they work.
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    if bench {
        targets(20_000, 60)
    } else {
        targets(100, 2)
    }
}
