//! Prometheus metrics of a Flowcast process.
//!
//! Names follow `flowcast_<thing>_<unit>_total` for counters; labels are low-cardinality
//! (job, operator, worker, partition, reason): never a device id or a token. Hot paths
//! bump a cached [`Counter`] once per batch. [`serve`] exposes `/metrics` in the text format.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

type Key = (&'static str, Vec<(&'static str, String)>);

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: &'static str,
}

#[derive(Debug, Default)]
struct Registry {
    families: BTreeMap<&'static str, Family>,
    series: BTreeMap<Key, Arc<AtomicU64>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

/// A monotonically increasing counter (or, through [`Counter::set`], a gauge).
#[derive(Debug, Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Sets the value (gauges).
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn register(
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &[(&'static str, &str)],
) -> Counter {
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.families.entry(name).or_insert(Family { help, kind });
    let key = (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    );
    Counter(Arc::clone(reg.series.entry(key).or_default()))
}

/// A counter series (created on first use, shared afterwards).
pub fn counter(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Counter {
    register(name, help, "counter", labels)
}

/// A gauge series.
pub fn gauge(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Counter {
    register(name, help, "gauge", labels)
}

/// The sum of every series of `name` whose `job` label is `job` (for tests and summaries).
pub fn total(name: &str, job: &str) -> u64 {
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.series
        .iter()
        .filter(|((n, labels), _)| {
            *n == name && labels.iter().any(|(k, v)| *k == "job" && v == job)
        })
        .map(|(_, v)| v.load(Ordering::Relaxed))
        .sum()
}

/// The whole registry in Prometheus text format.
pub fn render() -> String {
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    let mut last = "";
    for ((name, labels), value) in &reg.series {
        if *name != last {
            if let Some(f) = reg.families.get(name) {
                out.push_str(&format!(
                    "# HELP {name} {}\n# TYPE {name} {}\n",
                    f.help, f.kind
                ));
            }
            last = name;
        }
        out.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            out.push_str(&format!("{{{}}}", l.join(",")));
        }
        out.push_str(&format!(" {}\n", value.load(Ordering::Relaxed)));
    }
    out
}

/// Serves `GET /metrics` on `addr` from a background thread; returns the bound address.
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") {
                ("200 OK", render())
            } else {
                ("404 Not Found", "not found\n".to_owned())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(local)
}

/// Upper bounds (µs) of the latency histogram buckets.
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

/// A latency histogram in µs (Prometheus `_bucket`/`_sum`/`_count` series).
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<Counter>,
    sum: Counter,
    count: Counter,
}

impl Histogram {
    /// Records one observation.
    pub fn observe_us(&self, us: u64) {
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].inc();
        }
        self.sum.add(us);
        self.count.inc();
    }
}

/// A histogram series: one counter per bucket (non-cumulative inside, cumulative when rendered).
pub fn histogram(
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &str)],
) -> Histogram {
    let bucket_name: &'static str = Box::leak(format!("{name}_bucket").into_boxed_str());
    let mut buckets = Vec::new();
    for b in LATENCY_BUCKETS_US {
        let le = if b == u64::MAX {
            "+Inf".to_owned()
        } else {
            format!("{}", b as f64 / 1e6)
        };
        let mut l: Vec<(&'static str, &str)> = labels.to_vec();
        l.push(("le", &le));
        buckets.push(register(bucket_name, help, "histogram", &l));
    }
    let sum_name: &'static str = Box::leak(format!("{name}_sum_us").into_boxed_str());
    let count_name: &'static str = Box::leak(format!("{name}_count").into_boxed_str());
    Histogram {
        buckets,
        sum: counter(sum_name, help, labels),
        count: counter(count_name, help, labels),
    }
}

/// The `q` quantile (0..1) of a histogram over every series whose `job` is `job`, as the
/// upper bound of the bucket holding it (µs); `None` without observations.
pub fn quantile_us(name: &str, job: &str, q: f64) -> Option<u64> {
    let bucket_name = format!("{name}_bucket");
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let mut per_bucket = vec![0u64; LATENCY_BUCKETS_US.len()];
    for ((n, labels), v) in &reg.series {
        if *n != bucket_name || !labels.iter().any(|(k, val)| *k == "job" && val == job) {
            continue;
        }
        let Some((_, le)) = labels.iter().find(|(k, _)| *k == "le") else {
            continue;
        };
        let idx = LATENCY_BUCKETS_US.iter().position(|b| {
            if *b == u64::MAX {
                le == "+Inf"
            } else {
                *le == format!("{}", *b as f64 / 1e6)
            }
        });
        if let Some(i) = idx {
            per_bucket[i] += v.load(Ordering::Relaxed);
        }
    }
    let total: u64 = per_bucket.iter().sum();
    if total == 0 {
        return None;
    }
    let target = (q * total as f64).ceil() as u64;
    let mut seen = 0;
    for (i, n) in per_bucket.iter().enumerate() {
        seen += n;
        if seen >= target {
            return Some(LATENCY_BUCKETS_US[i]);
        }
    }
    None
}
