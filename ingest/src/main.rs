//! `flowcast-ingest`: DHT11/DHT22 readings into Kafka topic `DHT11`.
//!
//! ```text
//! flowcast-ingest [--config FILE] [run]     # sample and produce until SIGTERM
//! flowcast-ingest [--config FILE] check     # print the effective config (secrets redacted)
//! flowcast-ingest [--config FILE] read      # one validated reading from the sensor, as JSON
//! ```
//! Logs go to stderr (the journal under systemd), filtered by `FLOWCAST_LOG` (default
//! `info`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use flowcast_ingest::config::Backend;
use flowcast_ingest::pipeline::backend_name;
use flowcast_ingest::sampler::{Sampler, Step};
use flowcast_ingest::sensor::Sensor;
use flowcast_ingest::{Config, Metrics, Shutdown, telemetry};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "flowcast-ingest",
    version,
    about = "DHT11/DHT22 readings into Kafka"
)]
struct Cli {
    /// Config file (TOML). Without one, the defaults plus FLOWCAST_INGEST_* overrides.
    #[arg(long, short, env = "FLOWCAST_INGEST_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample and produce until SIGTERM/SIGINT (the default).
    Run,
    /// Print the effective configuration, secrets redacted, and exit.
    Check,
    /// Take one reading from the configured sensor (iio, gpio, simulate), print it as the
    /// JSON that would be produced, and exit; for checking the wiring.
    Read,
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOWCAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = real_main() {
        eprintln!("flowcast-ingest: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref(), std::env::vars())?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            print!("{}", cfg.redacted().to_toml());
            Ok(())
        }
        Command::Read => read_once(&cfg),
        Command::Run => run(&cfg),
    }
}

fn run(cfg: &Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown
        .on_signals()
        .context("installing signal handlers")?;
    let metrics = Arc::new(Metrics::new(backend_name(cfg.sensor.backend)));
    if cfg.metrics.enabled {
        let addr = telemetry::http::serve(&cfg.metrics.listen, metrics.clone(), shutdown.clone())
            .with_context(|| format!("serving /metrics on {}", cfg.metrics.listen))?;
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let result = flowcast_ingest::run(cfg, shutdown.clone(), metrics);
    // Stops the metrics thread too when a replay ended on its own.
    shutdown.trigger();
    result.map(|_| ())
}

fn read_once(cfg: &Config) -> anyhow::Result<()> {
    let metrics = Metrics::new(backend_name(cfg.sensor.backend));
    let kind = cfg.sensor.kind();
    let sensor: Box<dyn Sensor> = match cfg.sensor.backend {
        Backend::Iio => Box::new(flowcast_ingest::sensor::iio::IioSensor::open(
            cfg.sensor.device(),
            &cfg.iio.path,
        )?),
        #[cfg(feature = "gpio")]
        Backend::Gpio => Box::new(flowcast_ingest::sensor::gpio::GpioSensor::open(
            cfg.sensor.device(),
            kind,
            cfg.gpio.pin,
        )?),
        #[cfg(not(feature = "gpio"))]
        Backend::Gpio => anyhow::bail!("built without the `gpio` feature"),
        Backend::Simulate => Box::new(flowcast_ingest::sensor::simulate::SimulatedSensor::new(
            format!("{}0", cfg.simulate.device_prefix),
            cfg.simulate.seed,
            0,
            cfg.simulate.fault_rate,
        )),
        Backend::Replay => anyhow::bail!("`read` takes one reading from a sensor; replay has none"),
    };
    let mut sampler = Sampler::new(
        vec![sensor],
        kind,
        cfg.sensor.interval,
        cfg.sensor.max_retries,
    );
    loop {
        match sampler.attempt(0, flowcast_ingest::clock::unix_now(), &metrics) {
            Step::Reading(r) => {
                println!("{}", String::from_utf8_lossy(&r.to_json()));
                return Ok(());
            }
            Step::Retry => std::thread::sleep(kind.min_interval()),
            Step::GiveUp => anyhow::bail!("every attempt failed (see the log above)"),
        }
    }
}
