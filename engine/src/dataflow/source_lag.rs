//! The source's consumer lag per partition: `flowcast_source_lag_records`, the records in
//! Kafka the source has not read yet (the partition's high watermark minus the next offset
//! to read), every 5 s. The high watermarks come from a client of their own on a thread of
//! their own, so a slow broker never holds up the consumer.

use crate::kafka::ClientSettings;
use crate::metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(5);

/// The consumer's side: the next offset to read of each partition it reads.
#[derive(Debug)]
pub struct SourceLag {
    next: Arc<Vec<(i32, AtomicI64)>>,
    done: Arc<AtomicBool>,
}

impl SourceLag {
    /// Starts measuring the lag of `partitions` of `topic`, read from the offsets `starts`.
    pub fn start(job: &str, settings: &ClientSettings, topic: &str, starts: &[(i32, i64)]) -> Self {
        let next: Arc<Vec<(i32, AtomicI64)>> = Arc::new(
            starts
                .iter()
                .map(|&(p, o)| (p, AtomicI64::new(o)))
                .collect(),
        );
        let done = Arc::new(AtomicBool::new(false));
        let gauges: Vec<metrics::Counter> = starts
            .iter()
            .map(|(p, _)| {
                metrics::gauge(
                    "flowcast_source_lag_records",
                    "Records in the Kafka partition the source has not read yet (consumer lag)",
                    &[("job", job), ("partition", p.to_string().as_str())],
                )
            })
            .collect();
        let client: Option<BaseConsumer> = settings
            .client_config()
            .set("client.id", format!("flowcast-{job}-lag"))
            .create()
            .map_err(|e| tracing::warn!(job, "no consumer lag: cannot create a client: {e}"))
            .ok();
        if let Some(client) = client {
            let (next, done, topic) = (Arc::clone(&next), Arc::clone(&done), topic.to_owned());
            let spawned = std::thread::Builder::new()
                .name("kafka-source-lag".into())
                .spawn(move || measure(&client, &topic, &next, &gauges, &done));
            if let Err(e) = spawned {
                tracing::warn!("no consumer lag: cannot start its thread: {e}");
            }
        }
        SourceLag { next, done }
    }

    /// The consumer read `offset` of `partition`.
    pub fn read(&self, partition: i32, offset: i64) {
        if let Some((_, next)) = self.next.iter().find(|(p, _)| *p == partition) {
            next.store(offset + 1, Ordering::Relaxed);
        }
    }
}

impl Drop for SourceLag {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

fn measure(
    client: &BaseConsumer,
    topic: &str,
    next: &[(i32, AtomicI64)],
    gauges: &[metrics::Counter],
    done: &AtomicBool,
) {
    while !done.load(Ordering::Relaxed) {
        for ((p, n), gauge) in next.iter().zip(gauges) {
            if let Ok((_, high)) = client.fetch_watermarks(topic, *p, Duration::from_secs(2)) {
                gauge.set((high - n.load(Ordering::Relaxed)).max(0) as u64);
            }
        }
        let mut slept = Duration::ZERO;
        while slept < EVERY && !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}
