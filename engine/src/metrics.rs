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
