//! `flowcast`: the command line of the Flowcast engine.

use clap::{Parser, Subcommand};
use flowcast_engine::cli;

/// mimalloc, not glibc's malloc: glibc's per-thread arenas kept freed batches (peak RSS of a
/// 10 M-reading drain up to 1 GiB beside a heap peak of 265 MB) and contended between the
/// consumer threads and workers at 2 workers; see the memory section of BENCHMARKS.md.
/// Built without the default feature `mimalloc`, the binary uses the system allocator,
/// which heap profilers (heaptrack) see.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "flowcast",
    version,
    about = "Flowcast: stream processing on timely dataflow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Administer Kafka topics.
    Topics(cli::topics::TopicsArgs),
    /// The whole pipeline on one machine: replayed sensors, Kafka, the job, forecasts printed.
    Demo(cli::demo::DemoArgs),
    /// Run a job (see jobs/dht11-forecast.toml).
    Run(cli::run::RunArgs),
    /// Print a topic's messages (partition/offset, key, value).
    Tail(cli::tail::TailArgs),
    /// Deliver a predictions topic to ThingsBoard (consumer group, commits after delivery).
    TbBridge(cli::tb_bridge::TbBridgeArgs),
    /// The cluster's coordinator: REST API on :8081, jobs placed on nodes' slots.
    Coordinator(cli::cluster::CoordinatorArgs),
    /// A cluster node: runs the job processes the coordinator assigns to it.
    Worker(cli::cluster::WorkerArgs),
    /// Submit, list, show, cancel, stop, savepoint or rescale cluster jobs.
    Job(cli::cluster::JobArgs),
    /// The cluster's nodes.
    Nodes(cli::cluster::NodesArgs),
}

fn main() {
    // Two rustls providers are linked (ring for MQTT and ThingsBoard, aws-lc-rs through the
    // S3 client), so rustls picks no process default by itself: make it ring, for any
    // library that builds its TLS config without naming a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOWCAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or journald gets plain `key=value`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match Cli::parse().command {
        Command::Topics(args) => cli::topics::run(args),
        Command::Tail(args) => cli::tail::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::TbBridge(args) => cli::tb_bridge::run(args),
        Command::Coordinator(args) => cli::cluster::coordinator(args),
        Command::Worker(args) => cli::cluster::worker(args),
        Command::Job(args) => cli::cluster::job(args),
        Command::Nodes(args) => cli::cluster::nodes(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    // Done, and everything of ours is dropped: leave without the C++ static destructors
    // of LibTorch (about 0.1 s of every exit, more on a loaded machine; a job process's
    // exit is part of a rescale's pause). Output is flushed first.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    exit_now();
}

/// Ends the process with status 0 without running atexit handlers.
#[allow(unsafe_code)]
fn exit_now() -> ! {
    // SAFETY: `_exit` only ends the process; the atexit handlers it skips are C++ static
    // destructors, and nothing of ours waits on them.
    unsafe { libc::_exit(0) }
}
