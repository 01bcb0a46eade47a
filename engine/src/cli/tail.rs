//! `flowcast tail TOPIC`: prints a topic's messages (partition, offset, key, value), like
//! `kcat -C`. Reads every partition from the chosen start without a consumer group.

use crate::kafka::ClientSettings;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Options of `flowcast tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read.
    pub topic: String,
    /// Bootstrap servers. SASL/SSL settings come from `FLOWCAST_RDKAFKA_*` variables.
    #[arg(long, env = "FLOWCAST_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Start at the end of each partition instead of the beginning.
    #[arg(long)]
    pub from_end: bool,
    /// Stop after this many messages.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Stop after this many seconds without a new message.
    #[arg(long)]
    pub idle_exit_secs: Option<u64>,
}

/// Runs `flowcast tail`.
pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let settings = ClientSettings::new(&args.brokers);
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", "flowcast-tail")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .ok_or_else(|| anyhow::anyhow!("topic `{}` does not exist", args.topic))?;
    let start = if args.from_end {
        Offset::End
    } else {
        Offset::Beginning
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&args.topic, p, start)?;
    }
    consumer.assign(&tpl)?;
    let mut count = 0u64;
    let mut last = Instant::now();
    loop {
        if args.max_messages.is_some_and(|m| count >= m) {
            break;
        }
        if args
            .idle_exit_secs
            .is_some_and(|s| last.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg?;
        last = Instant::now();
        count += 1;
        let key = msg.key().map(String::from_utf8_lossy).unwrap_or_default();
        let value = msg
            .payload()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        println!("{}/{}\t{key}\t{value}", msg.partition(), msg.offset());
    }
    Ok(())
}
