//! Checking a process's `/metrics` as Prometheus would: scrape it over HTTP, run
//! `promtool check metrics` on the text (Debian package `prometheus`, installed by
//! `deploy/setup.sh`), and read series back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A port free on 127.0.0.1 right now.
///
/// # Panics
/// If no port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The body of `GET /metrics` on `127.0.0.1:port`, if it answers 200.
pub fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// `promtool check metrics` on `text`: Ok with its output when it passes, Err with it when not.
///
/// # Panics
/// If promtool cannot be run (not installed: run `deploy/setup.sh`).
pub fn promtool_check(text: &str) -> Result<String, String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by deploy/setup.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(said)
    } else {
        Err(said)
    }
}

/// The sum of the samples of `series` (a name, or a name and `{` and a label prefix such as
/// `flowcast_x_total{flowcast_job="j"`) in `text`; `None` if there is none.
pub fn value(text: &str, series: &str) -> Option<f64> {
    let name = series.split('{').next().unwrap_or(series);
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let line_name = line.split(['{', ' ']).next().unwrap_or("");
        if line_name != name || !line.starts_with(series) {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn value_sums_the_matching_series_only() {
        let text = "# TYPE a_total counter\na_total{x=\"1\"} 2\na_total{x=\"2\"} 3\na_total_b 7\n";
        assert_eq!(super::value(text, "a_total"), Some(5.0));
        assert_eq!(super::value(text, "a_total{x=\"2\""), Some(3.0));
        assert_eq!(super::value(text, "b_total"), None);
    }
}
