//! `flowcast run JOB.toml`: runs a job on worker threads, or as one process of several.

use crate::job::JobSpec;
use crate::runtime::{self, Execution};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Options of `flowcast run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job spec (TOML).
    pub job: PathBuf,
    /// Worker threads in this process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Number of processes of the job (each started with the same arguments but its index).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// This process's index, 0..processes.
    #[arg(long, default_value_t = 0)]
    pub process_index: usize,
    /// `host:port` of every process in index order, comma-separated, or `@FILE` with one
    /// per line. Default: 127.0.0.1:2101, 2102, …
    #[arg(long)]
    pub hosts: Option<String>,
    /// Overrides the source's bootstrap servers.
    #[arg(long, env = "FLOWCAST_BROKERS")]
    pub brokers: Option<String>,
    /// Serve Prometheus metrics here (e.g. 0.0.0.0:9249).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
}

/// Parses `--hosts`.
pub fn hosts(arg: Option<&str>, processes: usize) -> anyhow::Result<Vec<String>> {
    let list: Vec<String> = match arg {
        None => (0..processes)
            .map(|i| format!("127.0.0.1:{}", 2101 + i))
            .collect(),
        Some(a) if a.starts_with('@') => std::fs::read_to_string(&a[1..])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
        Some(a) => a
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    anyhow::ensure!(
        list.len() == processes,
        "--hosts names {} process(es) but --processes is {processes}",
        list.len()
    );
    Ok(list)
}

/// Runs `flowcast run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut spec = JobSpec::load(&args.job)?;
    if let Some(b) = args.brokers {
        spec.source.brokers = b;
    }
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(args.processes >= 1, "--processes must be at least 1");
    anyhow::ensure!(
        args.process_index < args.processes,
        "--process-index {} is not below --processes {}",
        args.process_index,
        args.processes
    );
    let exec = Execution {
        workers: args.workers,
        process_index: args.process_index,
        hosts: if args.processes > 1 {
            hosts(args.hosts.as_deref(), args.processes)?
        } else {
            Vec::new()
        },
    };
    if let Some(addr) = args.metrics_addr {
        let bound = crate::metrics::serve(addr)?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&shutdown))?;
    }
    let summary = runtime::run(&spec, &exec, shutdown)?;
    println!("flowcast: job {} {summary}", spec.name);
    Ok(())
}
