//! `flowcast run JOB.toml`: runs a job on worker threads, or as one process of several.

use crate::cli::control_http;
use crate::job::JobSpec;
use crate::lifecycle::JobControl;
use crate::lifecycle::control::Request;
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
    /// Ignore the checkpoints in the spec's `[checkpoint] location`; start from the spec's
    /// source positions.
    #[arg(long, conflicts_with = "from_savepoint")]
    pub fresh: bool,
    /// Start from this savepoint directory instead of the latest checkpoint.
    #[arg(long)]
    pub from_savepoint: Option<String>,
    /// Where the control endpoint (POST /savepoint, /stop) listens when a token is set
    /// (`FLOWCAST_CONTROL_TOKEN` or `FLOWCAST_CONTROL_TOKEN_FILE`).
    #[arg(long, default_value = "127.0.0.1:9252")]
    pub control_addr: SocketAddr,
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
    if args.processes > 1 {
        exit_when_a_peer_is_lost();
    }
    if let Some(v) = std::env::var_os("FLOWCAST_EXIT_WITH_PARENT") {
        exit_with_parent(v.to_str().and_then(|v| v.parse().ok()))?;
    }
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
    let checkpoints = spec.checkpoint.location.is_some();
    let control = (checkpoints || args.state_dir.is_some()).then(JobControl::new);
    match &control {
        Some(c) if checkpoints => checkpoint_signals(c.clone(), Arc::clone(&shutdown))?,
        _ => {
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, Arc::clone(&shutdown))?;
            }
            if let Some(c) = &control {
                stop_on_sigusr1(c.clone())?;
            }
        }
    }
    if let (Some(c), Some(token)) = (&control, control_http::token_from_env()?) {
        anyhow::ensure!(
            checkpoints,
            "FLOWCAST_CONTROL_TOKEN is set but the job has no `[checkpoint] location`: there is nothing to control"
        );
        let bound = control_http::serve(args.control_addr, c.clone(), token)?;
        tracing::info!("control endpoint on http://{bound} (POST /savepoint, /stop)");
    }
    let opts = RunOptions {
        shutdown,
        control,
        state_dir: args.state_dir,
        restore_from: args.restore_from,
        allow_non_restored_state: args.allow_non_restored_state,
        fresh: args.fresh,
        from_savepoint: args.from_savepoint,
    };
    let summary = runtime::run_with(&spec, &exec, opts)?;
    println!("flowcast: job {} {summary}", spec.name);
    Ok(())
}

/// The exit code of a process whose peer process went away (sysexits' `EX_TEMPFAIL`: start
/// every process of the job again; it resumes from its latest checkpoint).
pub const PEER_LOST: i32 = 75;

/// timely takes every process of a job down when one dies: its network threads panic
/// ("timely communication error: …"). Instead of that panic's backtrace and exit 101,
/// say in one line what happened and what to do, and exit with [`PEER_LOST`].
fn exit_when_a_peer_is_lost() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let network = thread.starts_with("timely:send") || thread.starts_with("timely:recv");
        let lost = ["timely communication error", "MergeQueue", "Send thread"]
            .iter()
            .any(|m| msg.contains(m));
        if lost || network {
            eprintln!(
                "flowcast: lost the connection to a peer process of this job ({}); stopping this process too. Start every process of the job again: it resumes from its latest checkpoint.",
                msg.lines().next().unwrap_or("no detail")
            );
            std::process::exit(PEER_LOST);
        }
        default(info);
    }));
}

/// A cluster node's child: when the node dies (even by `kill -9`), its job processes must
/// not run on as orphans nobody supervises; the coordinator restarts the job elsewhere.
/// Watches the parent process and exits when it is gone (re-parented). `expected` is the
/// node's pid as the node passed it: a node that died while this process was starting
/// (before it could read its parent) is noticed too.
fn exit_with_parent(expected: Option<u32>) -> anyhow::Result<()> {
    let parent = expected.unwrap_or_else(std::os::unix::process::parent_id);
    std::thread::Builder::new()
        .name("flowcast-parent".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(200));
                if std::os::unix::process::parent_id() != parent {
                    eprintln!("flowcast: the node that started this process is gone; exiting");
                    std::process::exit(PEER_LOST);
                }
            }
        })?;
    Ok(())
}

/// A job that checkpoints: SIGTERM or SIGINT → stop with a final checkpoint (what
/// systemd's stop should do; a second one stops at once), SIGUSR1 → a savepoint.
fn checkpoint_signals(control: JobControl, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1])?;
    std::thread::Builder::new()
        .name("flowcast-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for sig in signals.forever() {
                match sig {
                    SIGUSR1 => {
                        tracing::info!("SIGUSR1: taking a savepoint");
                        control.request(Request::Savepoint);
                    }
                    _ if stopping => {
                        tracing::warn!("second stop signal: stopping now, without waiting for the final checkpoint");
                        shutdown.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => {
                        stopping = true;
                        tracing::info!("stop signal: stopping with a final checkpoint");
                        control.request(Request::StopWithCheckpoint);
                    }
                }
            }
        })?;
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
