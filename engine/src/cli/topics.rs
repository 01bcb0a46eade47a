//! `flowcast topics create|list|describe|delete`.

use crate::kafka::{ClientSettings, TopicAdmin, TopicSpec};
use clap::{Args, Subcommand};
use std::time::Duration;

/// Options shared by every topics subcommand.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// Bootstrap servers. SASL/SSL settings come from `FLOWCAST_RDKAFKA_*` variables.
    #[arg(
        long,
        env = "FLOWCAST_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub brokers: String,
    /// How long to wait for the cluster, in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    pub timeout_secs: u64,
    #[command(subcommand)]
    pub command: TopicsCommand,
}

/// The topics subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Replicas of each partition; at most the number of brokers.
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        /// Topic config `key=value` (repeatable), e.g. `--config retention.ms=86400000`.
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
        /// Succeed quietly when the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics (internal ones left out).
    List,
    /// Show partitions, leaders, replicas and in-sync replicas of a topic.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Grow a topic to more partitions (a job with `auto` parallelism follows).
    AddPartitions {
        /// Topic name.
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: usize,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got `{s}`"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// Runs a topics subcommand, printing to stdout.
pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let admin = TopicAdmin::new(
        &ClientSettings::new(&args.brokers),
        Duration::from_secs(args.timeout_secs),
    )?;
    match args.command {
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let spec = TopicSpec {
                name: name.clone(),
                partitions,
                replication_factor,
                configs,
            };
            match admin.create(&spec) {
                Ok(()) => println!(
                    "created topic {name}: {partitions} partition(s), replication factor {replication_factor}"
                ),
                Err(crate::kafka::AdminError::TopicExists(_)) if if_not_exists => {
                    println!("topic {name} exists already")
                }
                Err(e) => return Err(e.into()),
            }
        }
        TopicsCommand::List => {
            for name in admin.list()? {
                println!("{name}");
            }
        }
        TopicsCommand::Describe { name } => {
            let d = admin.describe(&name)?;
            let rf = d.partitions.first().map_or(0, |p| p.replicas.len());
            println!(
                "Topic: {}\tPartitionCount: {}\tReplicationFactor: {rf}",
                d.name,
                d.partitions.len()
            );
            for p in &d.partitions {
                println!(
                    "\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                    p.id,
                    p.leader,
                    join(&p.replicas),
                    join(&p.isr)
                );
            }
        }
        TopicsCommand::AddPartitions { name, partitions } => {
            admin.add_partitions(&name, partitions)?;
            println!("topic {name} now has {partitions} partitions");
        }
        TopicsCommand::Delete { name } => {
            admin.delete(&name)?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
