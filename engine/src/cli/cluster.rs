//! `flowcast coordinator`, `flowcast worker`, `flowcast job …` and `flowcast nodes`.

use crate::cluster::api::{JobView, NodeView, Parallelism, SubmitRequest};
use crate::cluster::client::{Client, token_from_env};
use crate::cluster::coordinator::{self, CoordinatorConfig};
use crate::cluster::node::{self, NodeConfig};
use crate::cluster::state::Settings;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `flowcast coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Where the REST API (and `/metrics`) listens.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// `host:port` nodes and Prometheus reach the coordinator by; default: --listen.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Where jobs and artifacts are kept (a directory, or s3://bucket/prefix): a restarted
    /// coordinator re-attaches to the jobs kept there.
    #[arg(long, default_value = "flowcast-coordinator")]
    pub state: String,
    /// A node whose heartbeats stop this long is dead.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub heartbeat_timeout: Duration,
    /// Failed restarts in a row before a job ends as failed.
    #[arg(long, default_value_t = 10)]
    pub restart_budget: u32,
    /// The web UI keeps the last 61 windows of at most this many devices per job (the least
    /// recently updated or viewed go first).
    #[arg(long, default_value_t = 10_000)]
    pub ui_devices: usize,
}

/// Options of `flowcast worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator, `http://host:8081`.
    #[arg(
        long,
        env = "FLOWCAST_COORDINATOR",
        default_value = "http://127.0.0.1:8081"
    )]
    pub coordinator: String,
    /// Worker threads this node offers.
    #[arg(long, default_value_t = 2)]
    pub slots: u32,
    /// This node's id (stable across its restarts); default: host name and first port.
    #[arg(long)]
    pub id: Option<String>,
    /// The address peers and Prometheus reach this host by; job processes bind to it.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Ports job processes may use (data, metrics, control), `FIRST-LAST`.
    #[arg(long, default_value = "7100-7199")]
    pub ports: String,
    /// Specs, fetched artifacts and the job processes' logs.
    #[arg(long, default_value = "flowcast-node")]
    pub work_dir: PathBuf,
    /// Longest time between heartbeats: the coordinator holds a heartbeat this long unless
    /// it has work for the node (a long poll), and a child's exit is reported at once.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
}

/// Where the coordinator is, for the client commands.
#[derive(Debug, Args)]
pub struct Target {
    /// The coordinator, `http://host:8081`.
    #[arg(
        long,
        global = true,
        env = "FLOWCAST_COORDINATOR",
        default_value = "http://127.0.0.1:8081"
    )]
    pub coordinator: String,
    /// JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `flowcast job …`.
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(subcommand)]
    command: JobCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Submit a job spec (absolute paths only), optionally with its model.
    Submit {
        /// The spec (TOML).
        spec: PathBuf,
        /// The model (`x.pt`, with `x.json` beside it), uploaded to the coordinator.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Workers: a number, or `auto` (one per source partition).
        #[arg(long, default_value = "1", value_parser = Parallelism::parse)]
        parallelism: Parallelism,
    },
    /// List the jobs.
    List,
    /// A job's detail.
    Show {
        /// Job id.
        id: String,
    },
    /// Cancel a job (its processes are killed; no savepoint).
    Cancel {
        /// Job id.
        id: String,
    },
    /// Stop a job with a savepoint.
    Stop {
        /// Job id.
        id: String,
    },
    /// Trigger a savepoint.
    Savepoint {
        /// Job id.
        id: String,
    },
    /// Rescale to N workers or `auto`.
    Rescale {
        /// Job id.
        id: String,
        /// A number, or `auto`.
        #[arg(value_parser = Parallelism::parse)]
        parallelism: Parallelism,
    },
}

/// `flowcast nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(flatten)]
    target: Target,
}

/// Runs `flowcast coordinator` until killed.
///
/// # Errors
/// Bad settings, an unreadable state location, an address in use.
pub fn coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let token = token_from_env()?;
    if token.is_none() {
        tracing::warn!("no FLOWCAST_COORDINATOR_TOKEN(_FILE): the API accepts every request");
    }
    let cfg = CoordinatorConfig {
        listen: args.listen,
        advertise: args.advertise.unwrap_or_else(|| args.listen.to_string()),
        state: args.state,
        token,
        settings: Settings {
            heartbeat_timeout: args.heartbeat_timeout,
            restart_budget: args.restart_budget,
            ..Settings::default()
        },
        ui_devices: args.ui_devices,
    };
    let (bound, _shared) = coordinator::start(cfg)?;
    tracing::info!("coordinator on http://{bound} (REST /v1/…, /metrics, /v1/prometheus/sd)");
    loop {
        std::thread::park();
    }
}

/// Runs `flowcast worker` until killed.
///
/// # Errors
/// Bad settings.
pub fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let (lo, hi) = args
        .ports
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b && b - a >= 2)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--ports must be FIRST-LAST with at least 3 ports, not `{}`",
                args.ports
            )
        })?;
    let cfg = NodeConfig {
        coordinator: args.coordinator.trim_end_matches('/').to_owned(),
        token: token_from_env()?,
        id: args.id.unwrap_or_else(|| format!("{}-{lo}", args.host)),
        host: args.host,
        slots: args.slots,
        ports: (lo, hi),
        work_dir: args.work_dir,
        binary: std::env::current_exe()?,
        interval: args.heartbeat,
    };
    node::run(&cfg)
}

fn client(t: &Target) -> anyhow::Result<Client> {
    Ok(Client::new(&t.coordinator, token_from_env()?))
}

fn print_jobs(jobs: &[JobView]) {
    println!(
        "{:<24} {:<11} {:>11} {:>7} {:>9} {:>8}  REASON",
        "JOB", "STATE", "PARALLELISM", "WORKERS", "PROCESSES", "RESTARTS"
    );
    for j in jobs {
        println!(
            "{:<24} {:<11} {:>11} {:>7} {:>9} {:>8}  {}",
            j.id,
            j.state.name(),
            j.parallelism.to_string(),
            j.workers,
            format!("{}×{}", j.processes, j.threads),
            j.restarts,
            j.reason.as_deref().unwrap_or("")
        );
    }
}

fn print_detail(j: &JobView) {
    print_jobs(std::slice::from_ref(j));
    println!("\noperators: {}", j.operators.join(" → "));
    println!(
        "topic: {} ({} partitions); attempt {}; watermark: {}",
        j.topic,
        j.partitions.map_or("?".into(), |p| p.to_string()),
        j.attempt,
        j.watermark_ms
            .map_or("none yet".into(), |w| format!("{w:.0} ms")),
    );
    if let Some(ms) = j.last_rescale_pause_ms {
        println!("last rescale paused output for {ms} ms");
    }
    println!(
        "\n{:<8} {:<16} {:<22} {:<10} {:<14} {:<18} STATUS",
        "PROCESS", "NODE", "DATA", "WORKERS", "PARTITIONS", "KEY GROUPS"
    );
    for p in &j.placement {
        let kg: Vec<String> = p
            .key_groups
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        println!(
            "{:<8} {:<16} {:<22} {:<10} {:<14} {:<18} {}",
            p.placement.index,
            p.placement.node,
            format!("{}:{}", p.placement.host, p.placement.data_port),
            format!("{:?}", p.workers),
            format!("{:?}", p.partitions),
            kg.join(","),
            p.status
        );
    }
    if !j.checkpoints.is_empty() {
        println!(
            "\n{:<6} {:<11} {:>10}  CREATED (ms since epoch)",
            "ID", "KIND", "BYTES"
        );
        for c in &j.checkpoints {
            println!(
                "{:<6} {:<11} {:>10}  {}",
                c.id, c.kind, c.bytes, c.created_unix_ms
            );
        }
    }
}

/// Runs `flowcast job …`.
///
/// # Errors
/// The coordinator's refusal (its message), or an unreadable file.
pub fn job(args: JobArgs) -> anyhow::Result<()> {
    let c = client(&args.target)?;
    let json = args.target.json;
    let view = match args.command {
        JobCommand::Submit {
            spec,
            model,
            parallelism,
        } => {
            let text = std::fs::read_to_string(&spec)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", spec.display()))?;
            let model = model.map(|m| c.upload_model(&m)).transpose()?;
            c.submit(&SubmitRequest {
                spec: text,
                model,
                parallelism: Some(parallelism),
            })?
        }
        JobCommand::List => {
            let jobs = c.jobs()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print_jobs(&jobs);
            }
            return Ok(());
        }
        JobCommand::Show { id } => {
            let j = c.job(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&j)?);
            } else {
                print_detail(&j);
            }
            return Ok(());
        }
        JobCommand::Cancel { id } => c.action(&id, "cancel")?,
        JobCommand::Stop { id } => c.action(&id, "stop")?,
        JobCommand::Savepoint { id } => c.action(&id, "savepoint")?,
        JobCommand::Rescale { id, parallelism } => c.rescale(&id, parallelism)?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_jobs(&[view]);
    }
    Ok(())
}

fn print_nodes(nodes: &[NodeView]) {
    println!(
        "{:<20} {:<16} {:>5} {:>4} {:>5} {:>9} {:>10} {:>12}",
        "NODE", "HOST", "SLOTS", "FREE", "ALIVE", "PROCESSES", "HEARTBEAT", "CLOCK OFFSET"
    );
    for n in nodes {
        println!(
            "{:<20} {:<16} {:>5} {:>4} {:>5} {:>9} {:>8}ms {:>12}",
            n.id,
            n.host,
            n.slots,
            n.free_slots,
            if n.alive { "yes" } else { "no" },
            n.processes,
            n.last_heartbeat_ms,
            n.clock_offset_ms
                .map_or("?".into(), |o| format!("{o:+.1} ms"))
        );
    }
}

/// Runs `flowcast nodes`.
///
/// # Errors
/// The coordinator's refusal.
pub fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    let nodes = client(&args.target)?.nodes()?;
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print_nodes(&nodes);
    }
    Ok(())
}
