//! Prometheus metrics of a Flowcast process, on the `prometheus` crate.
//!
//! One process-wide [`prometheus::Registry`]; [`counter`], [`gauge`] and [`histogram`] create a
//! series on first use (a family per name, labelled by the keys of its first use) and share it
//! afterwards. Hot paths keep the returned handle and bump it once per batch. [`serve`] exposes
//! `GET /metrics` with axum; [`render`] is the same text for tests.
//!
//! Naming (README, "Metrics"): `flowcast_<component>_<what>_<unit>`, `_total` on counters,
//! base units (seconds, bytes), job-level labels only. Two things are mapped here, centrally,
//! so that call sites written before the convention still expose valid, conventional series:
//! - the label key `job` becomes `flowcast_job` (Prometheus adds its own `job` label to every
//!   target, the scrape job, and would rename ours `exported_job`);
//! - the old metric names in [`RENAMES`] are exposed under their new names (with a unit change
//!   where the old one was µs or ms). [`total`] and [`quantile_us`] accept either name and
//!   answer in the caller's old unit. The table goes once every call site uses the new names.

pub use flowcast_common::telemetry::JOB_LABEL;
use flowcast_common::telemetry::{self, LATENCY_BUCKETS_SECONDS, prometheus};
use prometheus::Registry;
use prometheus::core::Collector;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Old name → (new name, base units per old unit). Applied by every function of this module.
pub const RENAMES: &[(&str, &str, f64)] = &[
    (
        "flowcast_watermark_ms",
        "flowcast_window_watermark_seconds",
        1e-3,
    ),
    (
        "flowcast_inference_micros_total",
        "flowcast_forecast_inference_seconds_total",
        1e-6,
    ),
    (
        "flowcast_window_to_sink_seconds",
        "flowcast_sink_window_to_send_seconds",
        1.0,
    ),
];

/// The exposed name of `name` and the factor from the caller's unit to the base unit.
fn resolve(name: &str) -> (&str, f64) {
    RENAMES
        .iter()
        .find(|(old, _, _)| *old == name)
        .map(|(_, new, scale)| (*new, *scale))
        .unwrap_or((name, 1.0))
}

fn label_key(k: &str) -> &str {
    if k == "job" { JOB_LABEL } else { k }
}

/// Upper bounds (µs) of the latency histogram buckets; the last is `+Inf`.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    50,
    100,
    250,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    5_000_000,
    u64::MAX,
];

/// The finite bucket bounds in seconds (Prometheus adds `+Inf`): the same as
/// [`LATENCY_BUCKETS_US`].
fn latency_buckets_seconds() -> Vec<f64> {
    LATENCY_BUCKETS_SECONDS.to_vec()
}

#[derive(Clone)]
enum Vec_ {
    Counter(prometheus::CounterVec),
    Gauge(prometheus::GaugeVec),
    Histogram(prometheus::HistogramVec),
}

struct Family {
    /// Label keys (already mapped) in the order of the first use.
    keys: Vec<String>,
    vec: Vec_,
}

#[derive(Default)]
struct Families {
    by_name: HashMap<String, Family>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);
static FAMILIES: LazyLock<Mutex<Families>> = LazyLock::new(|| Mutex::new(Families::default()));

/// The process-wide registry (for a caller that registers a collector of its own).
pub fn registry() -> &'static Registry {
    &REGISTRY
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Finds or creates the family `name` and returns the label values in its key order, or
/// `None` (logged) when the name is taken by another kind or another set of label keys.
fn family<R>(
    name: &str,
    help: &str,
    kind: Kind,
    labels: &[(&str, &str)],
    with: impl FnOnce(&Vec_, &[&str]) -> R,
) -> Option<R> {
    let mut fams = FAMILIES.lock().unwrap_or_else(|p| p.into_inner());
    if !fams.by_name.contains_key(name) {
        let keys: Vec<String> = labels
            .iter()
            .map(|(k, _)| label_key(k).to_owned())
            .collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let help = if help.is_empty() { name } else { help };
        let vec = match kind {
            Kind::Counter => {
                prometheus::CounterVec::new(prometheus::Opts::new(name, help), &key_refs)
                    .map(Vec_::Counter)
            }
            Kind::Gauge => prometheus::GaugeVec::new(prometheus::Opts::new(name, help), &key_refs)
                .map(Vec_::Gauge),
            Kind::Histogram => prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(name, help).buckets(latency_buckets_seconds()),
                &key_refs,
            )
            .map(Vec_::Histogram),
        };
        let registered = vec.and_then(|v| {
            let boxed: Box<dyn Collector> = match &v {
                Vec_::Counter(c) => Box::new(c.clone()),
                Vec_::Gauge(g) => Box::new(g.clone()),
                Vec_::Histogram(h) => Box::new(h.clone()),
            };
            REGISTRY.register(boxed).map(|()| v)
        });
        match registered {
            Ok(vec) => {
                fams.by_name.insert(name.to_owned(), Family { keys, vec });
            }
            Err(e) => {
                tracing::warn!("metric {name} not registered: {e}");
                return None;
            }
        }
    }
    let fam = fams.by_name.get(name)?;
    let same_kind = matches!(
        (&fam.vec, kind),
        (Vec_::Counter(_), Kind::Counter)
            | (Vec_::Gauge(_), Kind::Gauge)
            | (Vec_::Histogram(_), Kind::Histogram)
    );
    let mut values = Vec::with_capacity(fam.keys.len());
    for key in &fam.keys {
        match labels.iter().find(|(k, _)| label_key(k) == key) {
            Some((_, v)) => values.push(*v),
            None => break,
        }
    }
    if !same_kind || values.len() != labels.len() || values.len() != fam.keys.len() {
        tracing::warn!(
            "metric {name}: used with other labels or another type than first; this series is not exposed"
        );
        return None;
    }
    Some(with(&fam.vec, &values))
}

/// A counter or a gauge series. The integer API counts in the caller's unit (records, or µs
/// and ms for the old names in [`RENAMES`]); the series holds base units.
#[derive(Debug, Clone)]
pub struct Counter {
    inner: Inner,
    /// Base units per caller unit.
    scale: f64,
}

#[derive(Debug, Clone)]
enum Inner {
    Counter(prometheus::Counter),
    Gauge(prometheus::Gauge),
}

impl Counter {
    /// Adds `n` (caller units).
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.add_base(n as f64 * self.scale);
        }
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Sets the value (gauges; a counter only moves up to it).
    pub fn set(&self, v: u64) {
        self.set_base(v as f64 * self.scale);
    }
    /// The current value in caller units.
    pub fn get(&self) -> u64 {
        (self.get_base() / self.scale).round() as u64
    }
    /// Adds `v` in the base unit (seconds, bytes, records).
    pub fn add_base(&self, v: f64) {
        match &self.inner {
            Inner::Counter(c) => {
                if v > 0.0 {
                    c.inc_by(v)
                }
            }
            Inner::Gauge(g) => g.add(v),
        }
    }
    /// Adds a duration to a `_seconds_total` counter.
    pub fn add_duration(&self, d: Duration) {
        self.add_base(d.as_secs_f64());
    }
    /// Sets the value in the base unit.
    pub fn set_base(&self, v: f64) {
        match &self.inner {
            Inner::Counter(c) => {
                let now = c.get();
                if v > now {
                    c.inc_by(v - now);
                }
            }
            Inner::Gauge(g) => g.set(v),
        }
    }
    /// The value in the base unit.
    pub fn get_base(&self) -> f64 {
        match &self.inner {
            Inner::Counter(c) => c.get(),
            Inner::Gauge(g) => g.get(),
        }
    }
}

/// A counter series (created on first use, shared afterwards).
pub fn counter(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Counter {
    let (exposed, scale) = resolve(name);
    let inner = family(exposed, help, Kind::Counter, labels, |v, values| match v {
        Vec_::Counter(c) => c.get_metric_with_label_values(values).ok(),
        _ => None,
    })
    .flatten()
    .unwrap_or_else(|| {
        prometheus::Counter::new(exposed, exposed).unwrap_or_else(|_| detached_counter())
    });
    Counter {
        inner: Inner::Counter(inner),
        scale,
    }
}

/// A gauge series.
pub fn gauge(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Counter {
    let (exposed, scale) = resolve(name);
    let inner = family(exposed, help, Kind::Gauge, labels, |v, values| match v {
        Vec_::Gauge(g) => g.get_metric_with_label_values(values).ok(),
        _ => None,
    })
    .flatten()
    .unwrap_or_else(|| {
        prometheus::Gauge::new(exposed, exposed).unwrap_or_else(|_| detached_gauge())
    });
    Counter {
        inner: Inner::Gauge(inner),
        scale,
    }
}

fn detached_counter() -> prometheus::Counter {
    #[allow(clippy::unwrap_used)] // a constant, valid name
    prometheus::Counter::new("flowcast_detached", "not exposed").unwrap()
}

fn detached_gauge() -> prometheus::Gauge {
    #[allow(clippy::unwrap_used)] // a constant, valid name
    prometheus::Gauge::new("flowcast_detached", "not exposed").unwrap()
}

/// A latency histogram (buckets [`LATENCY_BUCKETS_US`], exposed in seconds).
#[derive(Debug, Clone)]
pub struct Histogram(Option<prometheus::Histogram>);

impl Histogram {
    /// Records one observation in µs.
    pub fn observe_us(&self, us: u64) {
        self.observe_seconds(us as f64 / 1e6);
    }
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.observe_seconds(d.as_secs_f64());
    }
    /// Records one observation in seconds.
    pub fn observe_seconds(&self, s: f64) {
        if let Some(h) = &self.0 {
            h.observe(s);
        }
    }
}

/// A histogram series.
pub fn histogram(
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &str)],
) -> Histogram {
    let (exposed, _) = resolve(name);
    Histogram(
        family(
            exposed,
            help,
            Kind::Histogram,
            labels,
            |v, values| match v {
                Vec_::Histogram(h) => h.get_metric_with_label_values(values).ok(),
                _ => None,
            },
        )
        .flatten(),
    )
}

/// The metric families of `name` (old or new) restricted to the series of job `job`.
fn job_series(name: &str, job: &str) -> Vec<prometheus::proto::Metric> {
    labelled_series(name, job, &[])
}

/// The series of `name` of job `job` that also carry every label of `labels`.
fn labelled_series(
    name: &str,
    job: &str,
    labels: &[(&str, &str)],
) -> Vec<prometheus::proto::Metric> {
    let has = |m: &prometheus::proto::Metric, k: &str, v: &str| {
        m.get_label()
            .iter()
            .any(|l| l.name() == k && l.value() == v)
    };
    job_series_all(name, job)
        .into_iter()
        .filter(|m| labels.iter().all(|(k, v)| has(m, k, v)))
        .collect()
}

fn job_series_all(name: &str, job: &str) -> Vec<prometheus::proto::Metric> {
    let (exposed, _) = resolve(name);
    REGISTRY
        .gather()
        .into_iter()
        .filter(|f| f.name() == exposed)
        .flat_map(|f| f.get_metric().to_vec())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == JOB_LABEL && l.value() == job)
        })
        .collect()
}

/// The sum of every series of `name` whose job is `job`, in the unit of `name` (so µs for
/// `flowcast_inference_micros_total`, seconds for its new name).
pub fn total(name: &str, job: &str) -> u64 {
    (total_base(name, job) / resolve(name).1).round() as u64
}

/// Like [`total`], over the series of one sink type (`sink` label: `thingsboard`, `mqtt`, …).
pub fn sink_total(name: &str, job: &str, sink: &str) -> u64 {
    labelled_series(name, job, &[("sink", sink)])
        .iter()
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum::<f64>()
        .round() as u64
}

/// The sum of every counter or gauge series of `name` whose job is `job`, in base units.
pub fn total_base(name: &str, job: &str) -> f64 {
    job_series(name, job)
        .iter()
        // A series is a counter or a gauge; the other field is zero.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

/// The `q` quantile (0..1) of a histogram over every series whose job is `job`, as the upper
/// bound of the bucket holding it (µs, `u64::MAX` for `+Inf`); `None` without observations.
pub fn quantile_us(name: &str, job: &str, q: f64) -> Option<u64> {
    let bounds = latency_buckets_seconds();
    // Cumulative counts per finite bucket, then the total (+Inf).
    let mut cumulative = vec![0u64; bounds.len()];
    let mut count = 0u64;
    for m in job_series(name, job) {
        let h = m.get_histogram();
        count += h.get_sample_count();
        for b in h.get_bucket() {
            if let Some(i) = bounds.iter().position(|x| *x == b.upper_bound()) {
                cumulative[i] += b.cumulative_count();
            }
        }
    }
    if count == 0 {
        return None;
    }
    let target = (q * count as f64).ceil() as u64;
    for (i, c) in cumulative.iter().enumerate() {
        if *c >= target {
            return Some(LATENCY_BUCKETS_US[i]);
        }
    }
    Some(u64::MAX)
}

/// The whole registry in the Prometheus text format (0.0.4).
pub fn render() -> String {
    telemetry::render(&REGISTRY)
}

async fn metrics_handler() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        render(),
    )
}

/// The `/metrics` route, for a caller that serves more routes (the coordinator).
pub fn router() -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(metrics_handler))
}

/// Serves `GET /metrics` on `addr` ([`serve_router`]); binding errors are returned.
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    serve_router(addr, router(), "metrics")
}

/// Serves `app` on `addr` from a thread of its own (named `name`) with a small runtime;
/// returns the bound address. The metrics endpoint and the control endpoint use it.
///
/// # Errors
/// If the address cannot be bound or the thread not started.
pub fn serve_router(
    addr: SocketAddr,
    app: axum::Router,
    name: &str,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let what = name.to_owned();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            rt.block_on(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => axum::serve(l, app).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = served {
                    tracing::warn!("{what} endpoint stopped: {e}");
                }
            })
        })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_in_seconds_and_quantiles_read_back() {
        let h = histogram(
            "flowcast_test_request_seconds",
            "test",
            &[("job", "t-hist"), ("worker", "0")],
        );
        for us in [40, 90, 90, 3_000] {
            h.observe_us(us);
        }
        let text = render();
        assert!(text.contains("flowcast_test_request_seconds_bucket{flowcast_job=\"t-hist\",worker=\"0\",le=\"0.0001\"} 3"), "{text}");
        assert!(
            text.contains(
                "flowcast_test_request_seconds_sum{flowcast_job=\"t-hist\",worker=\"0\"} 0.003"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE flowcast_test_request_seconds ")
                .count(),
            1
        );
        assert_eq!(
            quantile_us("flowcast_test_request_seconds", "t-hist", 0.5),
            Some(100)
        );
        assert_eq!(
            quantile_us("flowcast_test_request_seconds", "t-hist", 0.99),
            Some(5_000)
        );
        assert_eq!(
            quantile_us("flowcast_test_request_seconds", "nope", 0.5),
            None
        );
    }

    #[test]
    fn old_names_are_exposed_renamed_in_base_units() {
        let labels = [
            ("job", "t-rename"),
            ("operator", "forecast"),
            ("worker", "0"),
        ];
        let micros = counter(
            "flowcast_inference_micros_total",
            "Time spent in the model",
            &labels,
        );
        micros.add(1_500_000);
        let wm = gauge("flowcast_watermark_ms", "watermark", &labels);
        wm.set(1_700_000_000_500);
        let text = render();
        assert!(
            text.contains("# TYPE flowcast_forecast_inference_seconds_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE flowcast_window_watermark_seconds gauge"),
            "{text}"
        );
        assert!(!text.contains("micros"), "{text}");
        assert_eq!(
            total("flowcast_inference_micros_total", "t-rename"),
            1_500_000
        );
        assert_eq!(
            total("flowcast_forecast_inference_seconds_total", "t-rename"),
            2
        );
        assert!((total_base("flowcast_watermark_ms", "t-rename") - 1_700_000_000.5).abs() < 1e-3);
        assert_eq!(wm.get(), 1_700_000_000_500);
    }

    #[test]
    fn renamed_names_follow_the_convention() {
        use flowcast_common::telemetry::{Kind, check_name};
        for (old, new, _) in RENAMES {
            let kind = if new.ends_with("_total") {
                Kind::Counter
            } else if old.ends_with("_seconds") {
                Kind::Histogram
            } else {
                Kind::Gauge
            };
            check_name(new, kind).unwrap_or_else(|e| panic!("{old} -> {e}"));
        }
        let us: Vec<f64> = LATENCY_BUCKETS_US[..15]
            .iter()
            .map(|b| *b as f64 / 1e6)
            .collect();
        assert_eq!(us, LATENCY_BUCKETS_SECONDS.to_vec());
    }

    #[test]
    fn a_second_label_set_is_refused_not_panicking() {
        let a = counter("flowcast_test_mixed_total", "t", &[("job", "t-mixed")]);
        a.inc();
        let b = counter(
            "flowcast_test_mixed_total",
            "t",
            &[("job", "t-mixed"), ("worker", "1")],
        );
        b.inc();
        assert_eq!(total("flowcast_test_mixed_total", "t-mixed"), 1);
    }
}
