//! Keyed last-60 state, [`Sequences::push`]: window results of 1,000 devices, 100 windows
//! each in window order, into rings of 60; from the 60th window on, every push emits the
//! sequence the model reads (a 60-entry copy), as in the job.
//!
//! `cargo bench -p flowcast-operators --bench sequence`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flowcast_operators::event_time::EventTime;
use flowcast_operators::sequence::Sequences;
use flowcast_operators::window::WindowResult;
use std::hint::black_box;

const DEVICES: usize = 1000;
const WINDOWS: usize = 100;
const LENGTH: EventTime = 1_800_000;

fn results() -> Vec<WindowResult> {
    let mut out = Vec::with_capacity(DEVICES * WINDOWS);
    for w in 0..WINDOWS {
        for d in 0..DEVICES {
            let start = 1_699_920_000_000 + w as EventTime * LENGTH;
            out.push(WindowResult {
                device: format!("dev-{d:05}"),
                start,
                end: start + LENGTH,
                temperature: 21.0 + ((w + d) % 13) as f64 * 0.37,
                humidity: 45.0 + ((w * 7 + d) % 17) as f64 * 0.53,
                count: 8,
                revision: 0,
            });
        }
    }
    out
}

fn sequence(c: &mut Criterion) {
    let input = results();
    let mut group = c.benchmark_group("sequence");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function("push_60", |b| {
        b.iter_batched(
            || Sequences::new(60),
            |mut s| {
                let mut emitted = 0usize;
                for w in &input {
                    emitted += usize::from(black_box(s.push(w)).is_some());
                }
                (s, emitted)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, sequence);
criterion_main!(benches);
