//! A deliberately small HTTP/1.1 server for `GET /metrics` on a std `TcpListener`: one
//! thread, one request per connection, short timeouts so a stuck client cannot block it.

use super::Metrics;
use crate::shutdown::Shutdown;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Binds `addr` and serves `/metrics` from a background thread until `shutdown`.
/// Returns the bound address (useful with port 0).
pub fn serve(addr: &str, metrics: Arc<Metrics>, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    // Non-blocking accept so the thread notices shutdown.
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            while !shutdown.is_triggered() {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = answer(stream, &metrics) {
                            tracing::debug!("metrics request failed: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        shutdown.wait(Duration::from_millis(100));
                    }
                    Err(e) => {
                        tracing::warn!("metrics listener: {e}");
                        shutdown.wait(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(local)
}

fn answer(stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers (up to the blank line) so the client sees a clean close.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "flowcast-ingest: see /metrics\n".to_owned(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connects");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("writes");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("reads");
        out
    }

    #[test]
    fn serves_metrics_and_404() {
        let m = Arc::new(Metrics::new("simulate"));
        Metrics::add(&m.produced, 42);
        let stop = Shutdown::new();
        let addr = serve("127.0.0.1:0", m, stop.clone()).expect("binds");
        let ok = get(addr, "/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(
            ok.contains("\nflowcast_ingest_produced_readings_total 42\n"),
            "{ok}"
        );
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        stop.trigger();
    }
}
