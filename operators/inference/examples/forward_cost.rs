//! What one forward pass of the committed LSTM costs per sequence, by batch size, with one
//! LibTorch thread: the bare TorchScript module (LibTorch's own LSTM) on random normalised
//! input. Run it on a quiet machine:
//!
//! `cargo run --release -p flowcast-inference --example forward_cost -- [ROUNDS] [BATCH...]`
//!
//! (defaults: 30 rounds; batches 64, 256, 1024, 4096). `perf record` around it shows where
//! the time goes.

use std::time::Instant;
use tch::{CModule, Device, Kind, Tensor};

fn main() {
    tch::set_num_threads(1);
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().map_or(30, |s| s.parse().expect("ROUNDS"));
    let mut batches: Vec<i64> = args.map(|s| s.parse().expect("BATCH")).collect();
    if batches.is_empty() {
        batches = vec![64, 256, 1024, 4096];
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/dht11_lstm.pt");
    let mut module = CModule::load(path).expect("the committed model loads");
    module.set_eval();
    let _no_grad = tch::no_grad_guard();
    for batch in batches {
        let input = Tensor::randn([batch, 60, 2], (Kind::Float, Device::Cpu)) * 0.3;
        // The first pass at a batch size the process has not run yet pays for LibTorch's
        // and oneDNN's set-up of that shape; it is printed apart from the steady cost.
        let first = Instant::now();
        let _ = std::hint::black_box(module.forward_ts(&[&input]).expect("first forward"));
        let first = first.elapsed();
        for _ in 0..2 {
            let _ = std::hint::black_box(module.forward_ts(&[&input]).expect("warm-up forward"));
        }
        let started = Instant::now();
        for _ in 0..rounds {
            let _ = std::hint::black_box(module.forward_ts(&[&input]).expect("forward"));
        }
        let per_pass = started.elapsed() / rounds;
        println!(
            "batch {batch}: {:.2} ms per forward pass, {:.2} µs per sequence ({rounds} rounds, 1 thread); first pass at this size {:.2} ms",
            per_pass.as_secs_f64() * 1e3,
            per_pass.as_secs_f64() * 1e6 / batch as f64,
            first.as_secs_f64() * 1e3
        );
    }
}
