//! Tumbling-window update, [`TumblingWindows::insert`] and [`TumblingWindows::advance`]:
//! readings of 1,000 devices every 240 s of event time (the end-to-end benchmark's pattern)
//! into 30-minute windows, the watermark (max event time − 1 min) advanced every 1,000
//! readings as the engine does per batch, and the final watermark firing what is left.
//!
//! `cargo bench -p flowcast-operators --bench window`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flowcast_operators::event_time::{EventTime, MAX_WATERMARK};
use flowcast_operators::window::TumblingWindows;
use std::hint::black_box;

const DEVICES: usize = 1000;
const MINUTE: EventTime = 60_000;

fn readings(n: usize) -> Vec<(String, EventTime, f64, f64)> {
    (0..n)
        .map(|i| {
            let d = i % DEVICES;
            let t = 1_699_920_000_000 + (i / DEVICES) as i64 * 240_000 + (d as i64 * 370) % 30_000;
            (
                format!("dev-{d:05}"),
                t,
                21.0 + (i % 13) as f64 * 0.37,
                45.0 + (i % 17) as f64 * 0.53,
            )
        })
        .collect()
}

fn window(c: &mut Criterion) {
    let input = readings(100_000);
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function("insert", |b| {
        b.iter_batched(
            || TumblingWindows::new(30 * MINUTE, 0),
            |mut w| {
                for (device, t, temp, hum) in &input {
                    black_box(w.insert(device, *t, *temp, *hum));
                }
                w
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("insert_and_advance", |b| {
        b.iter_batched(
            || (TumblingWindows::new(30 * MINUTE, 0), Vec::new()),
            |(mut w, mut fired)| {
                let mut max = EventTime::MIN;
                for (i, (device, t, temp, hum)) in input.iter().enumerate() {
                    black_box(w.insert(device, *t, *temp, *hum));
                    max = max.max(*t);
                    if i % 1000 == 999 {
                        w.advance(max - MINUTE, &mut fired);
                        fired.clear();
                    }
                }
                w.advance(MAX_WATERMARK, &mut fired);
                (w, fired)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, window);
criterion_main!(benches);
