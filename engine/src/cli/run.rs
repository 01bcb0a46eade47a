//! `flowcast run JOB.toml`: runs a job on worker threads, or as one process of several.

use crate::job::JobSpec;
use crate::lifecycle::JobControl;
use crate::runtime::{self, Execution, RunOptions};
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
    /// Where snapshots are written. With it, SIGUSR1 to process 0 stops the job with a
    /// snapshot (`{dir}/snapshot-{id}/`) that `--restore-from` continues from.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Start from this snapshot directory (`.../snapshot-{id}`), at any worker count.
    #[arg(long)]
    pub restore_from: Option<PathBuf>,
    /// Drop the snapshot's state of operators this job does not have instead of refusing.
    #[arg(long)]
    pub allow_non_restored_state: bool,
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
    let control = args.state_dir.as_ref().map(|_| JobControl::new());
    if let Some(control) = &control {
        stop_on_sigusr1(control.clone())?;
    }
    let opts = RunOptions {
        shutdown,
        control,
        state_dir: args.state_dir,
        restore_from: args.restore_from,
        allow_non_restored_state: args.allow_non_restored_state,
    };
    let summary = runtime::run_with(&spec, &exec, opts)?;
    println!("flowcast: job {} {summary}", spec.name);
    Ok(())
}

/// SIGUSR1 → stop with a snapshot (process 0 feeds the control stream).
fn stop_on_sigusr1(control: JobControl) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])?;
    std::thread::Builder::new()
        .name("flowcast-sigusr1".into())
        .spawn(move || {
            for _ in signals.forever() {
                let id = control.stop_with_snapshot();
                tracing::info!(snapshot = id, "SIGUSR1: stopping with a snapshot");
            }
        })?;
    Ok(())
}
