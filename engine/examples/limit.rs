//! The limit row of the benchmarks (issue 18): what this machine allows for a job's
//! unavoidable work. A bare consumer loop with the source's own librdkafka settings
//! ([`flowcast_engine::dataflow::source::consumer_config`]), read in batches as the source
//! reads them ([`BatchConsumer`]), takes every partition of the
//! job's topic from its beginning to the end offsets it had at the start, and decodes and
//! validates every record with the source's own call ([`Reading::parse_record`] with the
//! spec's bounds) — and does nothing else: no dataflow, no windows, no output.
//!
//! ```sh
//! cargo run --release -p flowcast-engine --example limit -- JOB.toml [--brokers HOST:PORT]
//! ```
//!
//! Prints `limit: N records (V valid, D refused) in S s (R records/s)`.

use flowcast_engine::dataflow::source::consumer_config;
use flowcast_engine::job::JobSpec;
use flowcast_engine::kafka::ClientSettings;
use flowcast_engine::kafka::batch_consume::{BatchConsumer, Polled};
use flowcast_operators::Reading;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: limit JOB.toml [--brokers HOST:PORT]";
    let job = args.first().ok_or_else(|| anyhow::anyhow!(usage))?;
    let mut spec = JobSpec::load(std::path::Path::new(job))?;
    match args.get(1..).unwrap_or_default() {
        [] => {}
        [flag, brokers] if flag == "--brokers" => spec.source.brokers = brokers.clone(),
        _ => anyhow::bail!(usage),
    }
    let parse = spec.source.parse_options();
    let topic = spec.source.topic.clone();
    let settings = ClientSettings::new(&spec.source.brokers);
    let consumer: BaseConsumer =
        consumer_config(&settings, &format!("{}-limit", spec.name)).create()?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(!partitions.is_empty(), "topic `{topic}` has no partitions");
    let mut tpl = TopicPartitionList::new();
    // Partition → end offset: the loop stops when every partition reached its end.
    let mut left: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, p, timeout)?;
        if high > low {
            tpl.add_partition_offset(&topic, p, Offset::Offset(low))?;
            left.insert(p, high);
        }
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let (mut valid, mut refused) = (0u64, 0u64);
    let mut error = None;
    let mut reader = BatchConsumer::new(&consumer, 8192);
    while !left.is_empty() {
        let on_message = |m: Polled<'_>| {
            match Reading::parse_record(m.key, m.payload, m.timestamp, &parse) {
                Ok(r) => {
                    valid += 1;
                    std::hint::black_box(r);
                }
                Err(e) => {
                    refused += 1;
                    std::hint::black_box(e);
                }
            }
            if left
                .get(&m.partition)
                .is_some_and(|&end| m.offset + 1 >= end)
            {
                left.remove(&m.partition);
            }
        };
        reader.poll_batch(Duration::from_millis(100), 8192, on_message, |e| {
            error = Some(e);
        });
        if let Some(e) = error {
            anyhow::bail!("Kafka consumer error: {e}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = valid + refused;
    println!(
        "limit: {n} records ({valid} valid, {refused} refused) in {secs:.2} s ({:.0} records/s)",
        n as f64 / secs
    );
    Ok(())
}
