//! `flowcast demo`: the whole pipeline on one machine. Real recorded sensor data (the
//! ingest's replay of the UCI Appliances Energy rooms, sped up) goes through the real
//! `flowcast-ingest` binary — a child process, as it runs on a Pi — into Kafka topic
//! `DHT11`; the forecast job runs on worker threads with the LSTM; the demo reads
//! `predicData` back and prints each forecast as it arrives. Kafka is `--brokers` (e.g. the
//! broker `deploy/demo.sh` starts) or, without it, librdkafka's in-memory mock cluster (kept
//! under its 5 MiB per partition by `--days`).
//!
//! The engine does not link the ingest crate (nor rppal): `flowcast-ingest` is found by
//! `--ingest-bin` / `FLOWCAST_INGEST_BIN`, else beside the `flowcast` executable (where
//! cargo puts both), else on `PATH`.

use crate::job::{JobSpec, ModelSpec, StartPosition, StopPosition};
use crate::kafka::{ClientSettings, TopicAdmin, TopicSpec};
use crate::runtime::{self, Execution};
use crate::sinks::SinkSpec;
use crate::sinks::kafka::KafkaSinkConfig;
use clap::Args;
use flowcast_operators::SensorKind;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Options of `flowcast demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Kafka bootstrap servers; without it an in-memory mock cluster is started.
    #[arg(long, env = "FLOWCAST_BROKERS")]
    pub brokers: Option<String>,
    /// Days of recorded data to replay (eight rooms, a reading every 10 minutes each).
    #[arg(long, default_value_t = 6.0)]
    pub days: f64,
    /// Replay speed: recorded seconds per wall second (20000 ≈ a day in 4.3 s).
    #[arg(long, default_value_t = 20_000.0)]
    pub speed: f64,
    /// Worker threads of the job.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The TorchScript model (its metadata JSON beside it).
    #[arg(long, default_value = "models/dht11_lstm.pt")]
    pub model: PathBuf,
    /// Stop after this many forecasts have been printed.
    #[arg(long)]
    pub max_predictions: Option<u64>,
    /// The `flowcast-ingest` executable (default: beside `flowcast`, else on `PATH`).
    #[arg(long, env = "FLOWCAST_INGEST_BIN")]
    pub ingest_bin: Option<PathBuf>,
}

const READINGS: &str = "DHT11";
const PREDICTIONS: &str = "predicData";

/// Runs `flowcast demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.days > 0.0 && args.speed >= 0.0,
        "--days must be positive, --speed not negative"
    );
    anyhow::ensure!(
        args.model.exists(),
        "model {} not found: run the demo from the repository root or pass --model",
        args.model.display()
    );
    // The mock cluster lives as long as this binding.
    let mut mock = None;
    let brokers = match &args.brokers {
        Some(b) => b.clone(),
        None => {
            let m = rdkafka::mocking::MockCluster::new(3)?;
            for t in [READINGS, PREDICTIONS, "DHT11-dead-letter", "DHT11-late"] {
                m.create_topic(t, 3, 1)?;
            }
            let b = m.bootstrap_servers();
            mock = Some(m);
            eprintln!("demo: in-memory mock Kafka cluster at {b} (pass --brokers for a real one)");
            b
        }
    };
    if mock.is_none() {
        let admin = TopicAdmin::new(&ClientSettings::new(&brokers), Duration::from_secs(15))?;
        for t in [READINGS, PREDICTIONS] {
            match admin.create(&TopicSpec {
                name: t.into(),
                partitions: 3,
                replication_factor: 1,
                configs: vec![],
            }) {
                Ok(()) | Err(crate::kafka::AdminError::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }

    // Sensors: the real ingest binary replaying the real data through its producer and spool.
    let spool = std::env::temp_dir().join(format!("flowcast-demo-spool-{}", std::process::id()));
    let ingest_bin = ingest_binary(args.ingest_bin.as_deref())?;
    let mut ingest = IngestChild(
        Command::new(&ingest_bin)
            .arg("run")
            .env_remove("FLOWCAST_INGEST_CONFIG")
            .envs(ingest_env(&args, &brokers, &spool))
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", ingest_bin.display()))?,
    );

    // The job.
    let mut spec = JobSpec::parse(
        include_str!("../../../jobs/dht11-forecast.toml"),
        std::path::Path::new("jobs/dht11-forecast.toml"),
    )?;
    spec.name = "demo".into();
    spec.source.brokers = brokers.clone();
    spec.source.start = StartPosition::Earliest;
    spec.source.stop = StopPosition::Never;
    spec.source.sensor = SensorKind::Dht22;
    spec.event_time.idle_timeout = Duration::from_secs(5);
    spec.model = ModelSpec::Torchscript {
        path: args.model.clone(),
        max_batch: 1024,
        guard: Default::default(),
    };
    spec.sinks = vec![SinkSpec::Kafka(KafkaSinkConfig {
        topic: PREDICTIONS.into(),
        brokers: None,
        delivery: Default::default(),
    })];
    // The demo shows forecasts as they are made: no checkpoints, every output at-least-once
    // (exactly-once output would appear at checkpoint pace).
    spec.checkpoint.location = None;
    spec.dead_letter_delivery = Default::default();
    spec.late_data_delivery = Default::default();
    let job_stop = Arc::new(AtomicBool::new(false));
    let job_thread = {
        let (spec, flag, workers) = (spec.clone(), Arc::clone(&job_stop), args.workers);
        std::thread::Builder::new()
            .name("demo-job".into())
            .spawn(move || runtime::run(&spec, &Execution::threads(workers), flag))?
    };

    // Print forecasts from predicData as they arrive.
    let printed = print_predictions(&brokers, &args, &stop, &mut ingest);
    let ingest_status = ingest.stop();
    job_stop.store(true, Ordering::SeqCst);
    let job_result = job_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the job thread panicked"))?;
    let _ = std::fs::remove_dir_all(&spool);
    drop(mock);
    let printed = printed?;
    let status = ingest_status?;
    // Stopped by us (SIGTERM) or finished its replay: both are a clean end.
    anyhow::ensure!(
        status.success() || status.code().is_none(),
        "flowcast-ingest failed: {status}"
    );
    let summary = job_result?;
    eprintln!("demo: {printed} forecasts printed; job {summary}");
    anyhow::ensure!(printed > 0, "the demo printed no forecast");
    Ok(())
}

fn print_predictions(
    brokers: &str,
    args: &DemoArgs,
    stop: &AtomicBool,
    ingest: &mut IngestChild,
) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientSettings::new(brokers)
        .client_config()
        .set("group.id", "flowcast-demo")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(PREDICTIONS, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let printed = AtomicU64::new(0);
    let started = Instant::now();
    let mut last = Instant::now();
    println!(
        "{:<8} {:<17} {:>18} {:>22}  model",
        "device", "window end (UTC)", "observed °C / %RH", "forecast next °C / %RH"
    );
    loop {
        if stop.load(Ordering::SeqCst)
            || args
                .max_predictions
                .is_some_and(|m| printed.load(Ordering::Relaxed) >= m)
        {
            break;
        }
        // Once the replay is done, stop when forecasts have stopped coming.
        if let Some(status) = ingest.finished()? {
            anyhow::ensure!(status.success(), "flowcast-ingest failed: {status}");
            if last.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the demo ran for 10 minutes without finishing");
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg?;
        let Some(v) = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        else {
            continue;
        };
        last = Instant::now();
        printed.fetch_add(1, Ordering::Relaxed);
        let f = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<8} {:<17} {:>8.2} / {:>5.1} {:>12.2} / {:>5.1}  {}",
            v["device"].as_str().unwrap_or("?"),
            utc(f(&v["window_end"])),
            f(&v["observed"]["temperature"]),
            f(&v["observed"]["humidity"]),
            f(&v["predicted"]["temperature"]),
            f(&v["predicted"]["humidity"]),
            v["model"].as_str().unwrap_or("?"),
        );
    }
    Ok(printed.load(Ordering::Relaxed))
}

/// The `flowcast-ingest` child; killed if the demo ends early (an error, a panic).
#[derive(Debug)]
struct IngestChild(Child);

impl IngestChild {
    /// Its exit status once it has ended on its own (the replay is done).
    fn finished(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.0.try_wait()?)
    }

    /// Asks it to stop (SIGTERM: it flushes what it has spooled), waits up to 20 s, then kills.
    fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.0.try_wait()? {
            return Ok(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.0.kill()?;
        Ok(self.0.wait()?)
    }
}

impl Drop for IngestChild {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Where `flowcast-ingest` is: `explicit`, else beside this executable, else on `PATH`.
fn ingest_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "--ingest-bin {} is not a file", p.display());
        return Ok(p.to_owned());
    }
    let beside = std::env::current_exe()?.with_file_name("flowcast-ingest");
    if beside.is_file() {
        return Ok(beside);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("flowcast-ingest"))
        .find(|p| p.is_file());
    on_path.ok_or_else(|| {
        anyhow::anyhow!(
            "flowcast-ingest not found beside {} nor on PATH: build it (cargo build -p \
             flowcast-ingest) or pass --ingest-bin",
            beside.display()
        )
    })
}

/// The ingest's configuration, as `FLOWCAST_INGEST_<SECTION>_<KEY>` overrides of its defaults.
fn ingest_env(args: &DemoArgs, brokers: &str, spool: &Path) -> Vec<(String, String)> {
    [
        ("SENSOR_BACKEND", "replay".to_owned()),
        (
            "SENSOR_KIND",
            SensorKind::Dht22.to_string().to_ascii_lowercase(),
        ),
        ("REPLAY_SPEED", format!("{:?}", args.speed)),
        ("REPLAY_TIMESTAMPS", "original".to_owned()),
        (
            "REPLAY_MAX_ROWS",
            ((args.days * 144.0).ceil() as u64).to_string(),
        ),
        ("KAFKA_BROKERS", brokers.to_owned()),
        ("KAFKA_TOPIC", READINGS.to_owned()),
        ("SPOOL_DIR", spool.display().to_string()),
        ("METRICS_ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("FLOWCAST_INGEST_{k}"), v))
    .collect()
}

/// `YYYY-MM-DD HH:MM` of Unix seconds (UTC), without a date crate.
fn utc(secs: f64) -> String {
    let s = secs.floor() as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_civil_time() {
        assert_eq!(super::utc(1_452_531_600.0), "2016-01-11 17:00");
        assert_eq!(super::utc(0.0), "1970-01-01 00:00");
    }
}
