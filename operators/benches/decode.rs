//! JSON decode + validate of one Kafka message, [`Reading::parse`]: the first thing every
//! record meets. Payloads are `flowcast-fill`'s (the end-to-end benchmark's input), plus a
//! mix with one refused record in ten (malformed, missing, not finite, out of range), whose
//! rejection builds a detail string.
//!
//! `cargo bench -p flowcast-operators --bench decode`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowcast_operators::{Reading, SensorKind};
use std::hint::black_box;

fn valid(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let d = i % 1000;
            let device = format!("dev-{d:05}");
            let t = 1_699_920_000.0 + (i / 1000) as f64 * 240.0 + (d as f64 * 0.37) % 30.0;
            let value = format!(
                "{{\"time\":{t:.1},\"temperature\":{:.2},\"humidity\":{:.2},\"device\":\"{device}\"}}",
                21.0 + (i % 13) as f64 * 0.37,
                45.0 + (i % 17) as f64 * 0.53
            );
            (device.into_bytes(), value.into_bytes())
        })
        .collect()
}

fn mixed(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let bad: [&[u8]; 4] = [
        b"not json",
        br#"{"time": 1700000000, "humidity": 45.0}"#,
        br#"{"time": 1700000000, "temperature": "NaN", "humidity": 45.0}"#,
        br#"{"time": 1700000000, "temperature": 51.0, "humidity": 45.0}"#,
    ];
    let mut v = valid(n);
    for (i, m) in v.iter_mut().enumerate().filter(|(i, _)| i % 10 == 0) {
        m.1 = bad[(i / 10) % bad.len()].to_vec();
    }
    v
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, msgs) in [
        ("valid", valid(10_000)),
        ("one_in_ten_refused", mixed(10_000)),
    ] {
        group.throughput(Throughput::Elements(msgs.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut ok = 0usize;
                for (key, value) in &msgs {
                    ok += usize::from(
                        Reading::parse(Some(key), black_box(value), SensorKind::Dht11).is_ok(),
                    );
                }
                black_box(ok)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
