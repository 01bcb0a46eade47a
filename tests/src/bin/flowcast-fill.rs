//! `flowcast-fill`: pre-fills a topic with a fixed, seeded set of readings for benchmarks.
//!
//! Devices `dev-00000 …` each report every `--period-secs` with a diurnal temperature and
//! humidity plus noise; readings go out in event-time order, keyed by device.
//!
//!   flowcast-fill --brokers 127.0.0.1:9092 --topic DHT11-bench --readings 5000000 --devices 10000
//!   flowcast-fill ... --rate 100000 --start-time 1700000000   # paced, for latency runs

use flowcast_common::kafka::idempotent_producer;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::io::Write;
use std::time::{Duration, Instant};

struct Args {
    brokers: String,
    topic: String,
    readings: u64,
    devices: u64,
    period: f64,
    seed: u64,
    rate: f64,
    start: Option<f64>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        brokers: "127.0.0.1:9092".into(),
        topic: "DHT11".into(),
        readings: 1_000_000,
        devices: 1000,
        period: 240.0,
        seed: 42,
        rate: 0.0,
        start: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{k}: {e}"));
        match k.as_str() {
            "--brokers" => a.brokers = v,
            "--topic" => a.topic = v,
            "--readings" => a.readings = num(&v)?,
            "--devices" => a.devices = num(&v)?.max(1),
            "--period-secs" => a.period = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--seed" => a.seed = num(&v)?,
            "--rate" => a.rate = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--start-time" => a.start = Some(v.parse().map_err(|e| format!("{k}: {e}"))?),
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("flowcast-fill: {e}");
            std::process::exit(2);
        }
    };
    let mut cfg = ClientConfig::new();
    // Flowcast's producer profile, with bigger batches: the fill is a bulk load.
    let producer: ThreadedProducer<DefaultProducerContext> = match idempotent_producer(&mut cfg)
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "50")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("flowcast-fill: cannot create a producer: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    let mut rng = args.seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let base = args
        .start
        .unwrap_or(1_700_000_000.0 - 1_700_000_000.0 % 86_400.0);
    let devices: Vec<String> = (0..args.devices).map(|d| format!("dev-{d:05}")).collect();
    let mut value = Vec::with_capacity(128);
    // Draws only when stderr is a terminal: benchmark scripts that capture it see nothing.
    let progress = indicatif::ProgressBar::new(args.readings);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {bar:30} {human_pos}/{human_len} readings ({per_sec}, eta {eta}) {msg}",
    ) {
        progress.set_style(style);
    }
    for i in 0..args.readings {
        // Per thousand: a clock read per record would show in a 5-million-record fill.
        if i % 1000 == 0 {
            progress.set_position(i);
        }
        // Pacing (a load generator's, for latency runs): stay on `rate` readings/s.
        if args.rate > 0.0 && i % 1000 == 0 {
            let due = Duration::from_secs_f64(i as f64 / args.rate);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        let d = (i % args.devices) as usize;
        let step = i / args.devices;
        // Devices report a little apart (under 30 s) so that, per partition, event time is
        // out of order by less than the jobs' allowed out-of-orderness.
        let t = base + step as f64 * args.period + (d as f64 * 0.37) % 30.0;
        let phase = (t % 86_400.0) / 86_400.0 * std::f64::consts::TAU;
        let temp = 21.0 + 3.0 * phase.sin() + (d % 7) as f64 * 0.5 + (next() - 0.5) * 0.4;
        let hum = 45.0 - 8.0 * phase.sin() + (d % 5) as f64 + (next() - 0.5) * 2.0;
        value.clear();
        let _ = write!(
            value,
            "{{\"time\":{t:.1},\"temperature\":{temp:.2},\"humidity\":{hum:.2},\"device\":\"{}\"}}",
            devices[d]
        );
        let mut rec = BaseRecord::to(&args.topic)
            .key(devices[d].as_str())
            .payload(value.as_slice());
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    progress.set_position(args.readings);
    progress.set_message("flushing");
    if let Err(e) = producer.flush(Duration::from_secs(600)) {
        eprintln!("flowcast-fill: flush failed: {e}");
        std::process::exit(1);
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {} readings for {} devices to {} in {secs:.1}s ({:.0}/s)",
        args.readings,
        args.devices,
        args.topic,
        args.readings as f64 / secs
    );
}
