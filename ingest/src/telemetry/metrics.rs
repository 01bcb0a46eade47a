//! The counters and gauges of one ingest process, rendered in the Prometheus text format.
//!
//! Naming follows Flowcast's convention `flowcast_<thing>_<unit>_total` for counters
//! (gauges drop `_total`); labels are low-cardinality: `backend` and `reason`, never a
//! device id. All reading counters count readings, one per device per sample.

use crate::sensor::FailReason;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every metric of the process; shared by the sampler, the delivery loop and `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    backend: &'static str,
    /// Successful sensor reads (valid measurements).
    pub reads_ok: AtomicU64,
    /// Failed read attempts, indexed by [`FailReason::index`].
    pub reads_failed: [AtomicU64; FailReason::ALL.len()],
    /// Samples given up after every retry failed.
    pub samples_skipped: AtomicU64,
    /// Readings written to the spool (every accepted reading goes through it).
    pub spooled: AtomicU64,
    /// Readings acknowledged by Kafka.
    pub produced: AtomicU64,
    /// Unsent readings evicted because the spool hit its size bound.
    pub evicted: AtomicU64,
    /// Readings the broker refused for good (e.g. larger than the topic allows).
    pub undeliverable: AtomicU64,
    /// Readings handed to the producer again after a retriable delivery error.
    pub retried: AtomicU64,
    /// Gauge: bytes of the spool's segment files.
    pub spool_bytes: AtomicU64,
    /// Gauge: readings in the spool not yet acknowledged.
    pub spool_readings: AtomicU64,
    /// Gauge: readings handed to the producer, not yet acknowledged.
    pub in_flight: AtomicU64,
}

impl Metrics {
    /// All zero; `backend` labels the sensor metrics.
    pub fn new(backend: &'static str) -> Self {
        Metrics {
            backend,
            reads_ok: AtomicU64::new(0),
            reads_failed: std::array::from_fn(|_| AtomicU64::new(0)),
            samples_skipped: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            produced: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            undeliverable: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            spool_readings: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Failed reads of one reason.
    pub fn failed(&self, reason: FailReason) -> u64 {
        Metrics::get(&self.reads_failed[reason.index()])
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let b = self.backend;
        let g = Metrics::get;
        let mut one = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        one(
            "flowcast_ingest_sensor_ok_reads_total",
            "counter",
            "Sensor reads that gave a valid measurement.",
            &[(format!("{{backend=\"{b}\"}}"), g(&self.reads_ok))],
        );
        let failed: Vec<(String, u64)> = FailReason::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{backend=\"{b}\",reason=\"{r}\"}}"),
                    self.failed(*r),
                )
            })
            .collect();
        one(
            "flowcast_ingest_sensor_failed_reads_total",
            "counter",
            "Sensor read attempts that failed, by reason; never published.",
            &failed,
        );
        one(
            "flowcast_ingest_sensor_skipped_samples_total",
            "counter",
            "Samples given up after all retries failed.",
            &[(format!("{{backend=\"{b}\"}}"), g(&self.samples_skipped))],
        );
        let plain = |v: &AtomicU64| vec![(String::new(), g(v))];
        one(
            "flowcast_ingest_spooled_readings_total",
            "counter",
            "Readings written to the on-disk spool (every accepted reading).",
            &plain(&self.spooled),
        );
        one(
            "flowcast_ingest_produced_readings_total",
            "counter",
            "Readings acknowledged by Kafka (acks=all).",
            &plain(&self.produced),
        );
        one(
            "flowcast_ingest_spool_evicted_readings_total",
            "counter",
            "Unsent readings evicted because the spool reached spool.max-bytes.",
            &plain(&self.evicted),
        );
        one(
            "flowcast_ingest_undeliverable_readings_total",
            "counter",
            "Readings the broker refused permanently (e.g. message too large).",
            &plain(&self.undeliverable),
        );
        one(
            "flowcast_ingest_delivery_retried_readings_total",
            "counter",
            "Readings produced again after a retriable delivery error.",
            &plain(&self.retried),
        );
        one(
            "flowcast_ingest_spool_bytes",
            "gauge",
            "Size of the spool's segment files.",
            &plain(&self.spool_bytes),
        );
        one(
            "flowcast_ingest_spool_readings",
            "gauge",
            "Readings in the spool not yet acknowledged by Kafka.",
            &plain(&self.spool_readings),
        );
        one(
            "flowcast_ingest_in_flight_readings",
            "gauge",
            "Readings handed to the producer and not yet acknowledged.",
            &plain(&self.in_flight),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_labels() {
        let m = Metrics::new("iio");
        Metrics::add(&m.reads_ok, 3);
        Metrics::add(&m.reads_failed[FailReason::Checksum.index()], 2);
        Metrics::add(&m.produced, 5);
        m.spool_bytes.store(4096, Ordering::Relaxed);
        let text = m.render();
        for line in [
            "flowcast_ingest_sensor_ok_reads_total{backend=\"iio\"} 3",
            "flowcast_ingest_sensor_failed_reads_total{backend=\"iio\",reason=\"checksum\"} 2",
            "flowcast_ingest_sensor_failed_reads_total{backend=\"iio\",reason=\"timeout\"} 0",
            "flowcast_ingest_produced_readings_total 5",
            "flowcast_ingest_spool_bytes 4096",
            "# TYPE flowcast_ingest_spool_bytes gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert!(name.starts_with("flowcast_ingest_"), "{line}");
        }
    }
}
