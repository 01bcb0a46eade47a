//! The counters and gauges of one ingest process, on a `prometheus` registry of its own.
//!
//! Naming follows Flowcast's convention (README, "Metrics"; checked by
//! [`flowcast_common::telemetry::check_name`]): `flowcast_ingest_<what>_<unit>`, `_total` on
//! counters, base units; labels are low-cardinality: `backend` and `reason`, never a device
//! id. All reading counters count readings, one per device per sample.

use crate::sensor::FailReason;
use flowcast_common::telemetry::{self, prometheus};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// A counter or a gauge of [`Metrics`].
pub trait Series {
    /// Adds `n`.
    fn add(&self, n: u64);
    /// The current value.
    fn value(&self) -> u64;
    /// Sets the value (a counter only moves up to it).
    fn set(&self, v: u64);
}

impl Series for IntCounter {
    fn add(&self, n: u64) {
        self.inc_by(n);
    }
    fn value(&self) -> u64 {
        self.get()
    }
    fn set(&self, v: u64) {
        let now = self.get();
        if v > now {
            self.inc_by(v - now);
        }
    }
}

impl Series for IntGauge {
    fn add(&self, n: u64) {
        self.add(i64::try_from(n).unwrap_or(i64::MAX));
    }
    fn value(&self) -> u64 {
        u64::try_from(self.get()).unwrap_or(0)
    }
    fn set(&self, v: u64) {
        self.set(i64::try_from(v).unwrap_or(i64::MAX));
    }
}

/// Every metric of the process; shared by the sampler, the delivery loop and `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Successful sensor reads (valid measurements).
    pub reads_ok: IntCounter,
    /// Failed read attempts, indexed by [`FailReason::index`].
    pub reads_failed: [IntCounter; FailReason::ALL.len()],
    /// Samples given up after every retry failed.
    pub samples_skipped: IntCounter,
    /// Readings written to the spool (every accepted reading goes through it).
    pub spooled: IntCounter,
    /// Readings acknowledged by Kafka.
    pub produced: IntCounter,
    /// Unsent readings evicted because the spool hit its size bound.
    pub evicted: IntCounter,
    /// Readings the broker refused for good (e.g. larger than the topic allows).
    pub undeliverable: IntCounter,
    /// Readings handed to the producer again after a retriable delivery error.
    pub retried: IntCounter,
    /// Gauge: bytes of the spool's segment files.
    pub spool_bytes: IntGauge,
    /// Gauge: readings in the spool not yet acknowledged.
    pub spool_readings: IntGauge,
    /// Gauge: readings handed to the producer, not yet acknowledged.
    pub in_flight: IntGauge,
}

/// Registers `c` in `r`; the names are constants, so a failure is a bug (two metrics of one
/// name), caught by the unit test below.
fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!("ingest metric not registered: {e}");
    }
    c
}

#[allow(clippy::expect_used)] // constant names and labels: a failure is a bug the tests catch
fn counter(r: &Registry, name: &str, help: &str, backend: Option<&'static str>) -> IntCounter {
    let mut o = Opts::new(name, help);
    if let Some(b) = backend {
        o = o.const_label("backend", b);
    }
    reg(r, IntCounter::with_opts(o).expect("valid counter"))
}

#[allow(clippy::expect_used)] // constant names: a failure is a bug the tests catch
fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::new(name, help).expect("valid gauge"))
}

impl Metrics {
    /// All zero; `backend` labels the sensor metrics.
    #[allow(clippy::expect_used)] // constant names and labels, as above
    pub fn new(backend: &'static str) -> Self {
        let r = Registry::new();
        let failed = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "flowcast_ingest_sensor_failed_reads_total",
                    "Sensor read attempts that failed, by reason; never published.",
                )
                .const_label("backend", backend),
                &["reason"],
            )
            .expect("valid counter"),
        );
        Metrics {
            reads_ok: counter(
                &r,
                "flowcast_ingest_sensor_ok_reads_total",
                "Sensor reads that gave a valid measurement.",
                Some(backend),
            ),
            reads_failed: FailReason::ALL
                .map(|reason| failed.with_label_values(&[reason.as_str()])),
            samples_skipped: counter(
                &r,
                "flowcast_ingest_sensor_skipped_samples_total",
                "Samples given up after all retries failed.",
                Some(backend),
            ),
            spooled: counter(
                &r,
                "flowcast_ingest_spooled_readings_total",
                "Readings written to the on-disk spool (every accepted reading).",
                None,
            ),
            produced: counter(
                &r,
                "flowcast_ingest_produced_readings_total",
                "Readings acknowledged by Kafka (acks=all).",
                None,
            ),
            evicted: counter(
                &r,
                "flowcast_ingest_spool_evicted_readings_total",
                "Unsent readings evicted because the spool reached spool.max-bytes.",
                None,
            ),
            undeliverable: counter(
                &r,
                "flowcast_ingest_undeliverable_readings_total",
                "Readings the broker refused permanently (e.g. message too large).",
                None,
            ),
            retried: counter(
                &r,
                "flowcast_ingest_delivery_retried_readings_total",
                "Readings produced again after a retriable delivery error.",
                None,
            ),
            spool_bytes: gauge(
                &r,
                "flowcast_ingest_spool_bytes",
                "Size of the spool's segment files.",
            ),
            spool_readings: gauge(
                &r,
                "flowcast_ingest_spool_readings",
                "Readings in the spool not yet acknowledged by Kafka.",
            ),
            in_flight: gauge(
                &r,
                "flowcast_ingest_in_flight_readings",
                "Readings handed to the producer and not yet acknowledged.",
            ),
            registry: r,
        }
    }

    /// Adds `n` to a counter or gauge.
    pub fn add(series: &impl Series, n: u64) {
        series.add(n);
    }

    /// Reads a counter or gauge.
    pub fn get(series: &impl Series) -> u64 {
        series.value()
    }

    /// Sets a gauge.
    pub fn set(series: &impl Series, v: u64) {
        series.set(v);
    }

    /// Failed reads of one reason.
    pub fn failed(&self, reason: FailReason) -> u64 {
        Metrics::get(&self.reads_failed[reason.index()])
    }

    /// The registry (to read the metrics back, as the run summary does).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        telemetry::render(&self.registry)
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
        Metrics::set(&m.spool_bytes, 4096);
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
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut f = line.split(' ').skip(2);
            let (name, kind) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            assert!(name.starts_with("flowcast_ingest_"), "{line}");
            let kind = match kind {
                "counter" => telemetry::Kind::Counter,
                "gauge" => telemetry::Kind::Gauge,
                _ => telemetry::Kind::Histogram,
            };
            telemetry::check_name(name, kind).expect("conventional name");
        }
        assert_eq!(
            text.matches("# TYPE ").count(),
            11,
            "every metric registered once"
        );
    }
}
