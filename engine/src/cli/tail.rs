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
    /// Read with `isolation.level=read_committed`: only committed transactions (what an
    /// exactly-once output's readers see).
    #[arg(long)]
    pub read_committed: bool,
    /// Instead of printing messages, print at the end how long after its window closed each
    /// message became visible here (from the `flowcast.window-closed-ms` header that
    /// exactly-once predictions carry): count, p50, p99, max.
    #[arg(long)]
    pub latency: bool,
}

/// Runs `flowcast tail`.
pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let settings = ClientSettings::new(&args.brokers);
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", "flowcast-tail")
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            if args.read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
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
    let mut lags: Vec<i64> = Vec::new();
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
        if args.latency {
            if let Some(closed) = closed_ms(&msg) {
                lags.push(now_ms() - closed);
            }
            continue;
        }
        let key = msg.key().map(String::from_utf8_lossy).unwrap_or_default();
        let value = msg
            .payload()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        println!("{}/{}\t{key}\t{value}", msg.partition(), msg.offset());
    }
    if args.latency {
        lags.sort_unstable();
        let q = |p: f64| {
            lags.get(((lags.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "visible after the window closed: n={} p50={} ms p99={} ms max={} ms",
            lags.len(),
            q(0.5),
            q(0.99),
            lags.last().copied().unwrap_or(0)
        );
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn closed_ms(msg: &rdkafka::message::BorrowedMessage<'_>) -> Option<i64> {
    use rdkafka::message::Headers;
    msg.headers()?
        .iter()
        .find(|h| h.key == crate::sinks::kafka::exactly_once::WINDOW_CLOSED_HEADER)
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}
