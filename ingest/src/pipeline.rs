//! One ingest run: start the source (a sampler over sensors, or a replay) on its own
//! thread, append what it yields to the spool, let the delivery loop move the spool to
//! Kafka, and on shutdown (or when a replay is done) flush and persist the spool.

use crate::config::{Backend, Config};
use crate::delivery::Delivery;
use crate::replay;
use crate::sampler::Sampler;
use crate::sensor::{Sensor, iio::IioSensor, simulate};
use crate::shutdown::Shutdown;
use crate::spool::Spool;
use crate::telemetry::Metrics;
use crate::telemetry::events::{Evicted, Spooled};
use anyhow::Context;
use flowcast_operators::Reading;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Everything accepted was acknowledged by Kafka.
    pub delivered_all: bool,
    /// Readings left in the spool for the next start.
    pub pending: u64,
    /// The spool's next sequence number: readings ever accepted by this spool.
    pub next_seq: u64,
}

/// The metric label of a backend.
pub fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Iio => "iio",
        Backend::Gpio => "gpio",
        Backend::Simulate => "simulate",
        Backend::Replay => "replay",
    }
}

/// Runs until `shutdown` (or, for a replay, until every row is delivered).
pub fn run(cfg: &Config, shutdown: Shutdown, metrics: Arc<Metrics>) -> anyhow::Result<Summary> {
    let (mut spool, recovery) = Spool::open(&cfg.spool.dir, cfg.spool.max_bytes.0)
        .with_context(|| format!("opening the spool in {}", cfg.spool.dir.display()))?;
    for line in &recovery.repaired {
        tracing::warn!("spool repaired: {line}");
    }
    if recovery.pending > 0 {
        tracing::info!(
            readings = recovery.pending,
            "spool holds readings from an earlier run: sending them first"
        );
    }
    let mut delivery = Delivery::new(
        crate::kafka::producer_config(&cfg.kafka)?,
        &cfg.kafka.topic,
        cfg.kafka.max_in_flight,
    )?;
    let (tx, rx) = sync_channel::<Reading>(1024);
    let source = start_source(cfg, tx, shutdown.clone(), metrics.clone())?;
    tracing::info!(
        backend = backend_name(cfg.sensor.backend),
        kind = %cfg.sensor.kind(),
        topic = %cfg.kafka.topic,
        brokers = %cfg.kafka.brokers,
        "ingest running"
    );
    let mut source_done = false;
    while !shutdown.is_triggered() {
        let taken = take(&rx, &mut spool, &metrics, &mut source_done)?;
        delivery.pump(&mut spool, &metrics)?;
        spool.sync(cfg.spool.sync_interval, false)?;
        gauges(&spool, &metrics);
        if source_done && spool.unsent() == 0 && delivery.in_flight() == 0 {
            break;
        }
        if taken == 0 {
            if delivery.in_flight() > 0 || source_done {
                delivery.wait(Duration::from_millis(10));
            } else {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(r) => append(&mut spool, &r, &metrics)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => source_done = true,
                }
            }
        }
    }
    // Whatever the source still hands over goes to the spool before the flush.
    while !source_done {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => append(&mut spool, &r, &metrics)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => source_done = true,
        }
    }
    let source_result = source
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the source thread panicked")));
    let delivered_all = delivery.flush(&mut spool, cfg.kafka.flush_timeout, &metrics)?;
    spool.sync(Duration::ZERO, true)?;
    gauges(&spool, &metrics);
    let summary = Summary {
        delivered_all,
        pending: spool.pending(),
        next_seq: spool.next_seq(),
    };
    if delivered_all {
        tracing::info!(
            produced = Metrics::get(&metrics.produced),
            "stopped: everything delivered"
        );
    } else {
        tracing::warn!(
            pending = summary.pending,
            "stopped before Kafka acknowledged everything: the rest stays in the spool for the next start"
        );
    }
    source_result?;
    Ok(summary)
}

fn take(
    rx: &Receiver<Reading>,
    spool: &mut Spool,
    metrics: &Metrics,
    source_done: &mut bool,
) -> anyhow::Result<u64> {
    let mut n = 0;
    while n < 4096 {
        match rx.try_recv() {
            Ok(r) => {
                append(spool, &r, metrics)?;
                n += 1;
            }
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => {
                *source_done = true;
                break;
            }
        }
    }
    Ok(n)
}

fn append(spool: &mut Spool, r: &Reading, metrics: &Metrics) -> anyhow::Result<()> {
    let a = spool
        .append(r.device.as_bytes(), &r.to_json())
        .context("writing to the spool")?;
    Spooled { count: 1 }.emit(metrics);
    if let Some(e) = a.evicted {
        Evicted {
            readings: e.readings,
            bytes: e.bytes,
            seqs: e.seqs,
        }
        .emit(metrics);
    }
    Ok(())
}

fn gauges(spool: &Spool, metrics: &Metrics) {
    Metrics::set(&metrics.spool_bytes, spool.bytes());
    Metrics::set(&metrics.spool_readings, spool.pending());
}

fn start_source(
    cfg: &Config,
    tx: SyncSender<Reading>,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let kind = cfg.sensor.kind();
    let sensors: Vec<Box<dyn Sensor>> = match cfg.sensor.backend {
        Backend::Replay => {
            let rows = replay::open(&cfg.replay.file(), &cfg.replay)?;
            let rcfg = cfg.replay.clone();
            return Ok(std::thread::Builder::new()
                .name("replay".into())
                .spawn(move || replay::run(rows, &rcfg, kind, tx, shutdown, &metrics))?);
        }
        Backend::Iio => {
            let s = IioSensor::open(cfg.sensor.device(), &cfg.iio.path)?;
            tracing::info!(dir = %s.dir().display(), "reading the kernel's dht11 IIO device");
            vec![Box::new(s)]
        }
        Backend::Gpio => gpio_sensor(cfg)?,
        Backend::Simulate => simulate::devices(
            &cfg.simulate.device_prefix,
            cfg.simulate.devices,
            cfg.simulate.seed,
            cfg.simulate.fault_rate,
        )
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn Sensor>)
        .collect(),
    };
    let sampler = Sampler::new(sensors, kind, cfg.sensor.interval, cfg.sensor.max_retries);
    Ok(std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || {
            sampler.run(tx, shutdown, &metrics);
            Ok(())
        })?)
}

#[cfg(feature = "gpio")]
fn gpio_sensor(cfg: &Config) -> anyhow::Result<Vec<Box<dyn Sensor>>> {
    let s =
        crate::sensor::gpio::GpioSensor::open(cfg.sensor.device(), cfg.sensor.kind(), cfg.gpio.pin)
            .with_context(|| {
                format!(
                    "opening GPIO {} (is this a Raspberry Pi, and may this user open /dev/gpiomem? \
                 see ingest/README.md)",
                    cfg.gpio.pin
                )
            })?;
    Ok(vec![Box::new(s)])
}

#[cfg(not(feature = "gpio"))]
fn gpio_sensor(_: &Config) -> anyhow::Result<Vec<Box<dyn Sensor>>> {
    anyhow::bail!("this flowcast-ingest was built without the `gpio` feature; use the iio backend")
}
