//! `GET /metrics` on `tiny_http` (small, synchronous: the Pi binary has no async runtime),
//! from one background thread that notices shutdown within 100 ms.

use super::Metrics;
use crate::shutdown::Shutdown;
use flowcast_common::telemetry::CONTENT_TYPE;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Response, Server};

/// Binds `addr` and serves `/metrics` from a background thread until `shutdown`.
/// Returns the bound address (useful with port 0).
pub fn serve(addr: &str, metrics: Arc<Metrics>, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let server = Server::http(addr).map_err(std::io::Error::other)?;
    let local = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            while !shutdown.is_triggered() {
                match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(request)) => {
                        if let Err(e) = answer(request, &metrics) {
                            tracing::debug!("metrics request failed: {e}");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("metrics listener: {e}");
                        shutdown.wait(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(local)
}

fn header(value: &str) -> Option<Header> {
    Header::from_bytes("Content-Type", value).ok()
}

fn answer(request: tiny_http::Request, metrics: &Metrics) -> std::io::Result<()> {
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let (status, ctype, body) = match (request.method(), path.as_str()) {
        (Method::Get, "/metrics") => (200, CONTENT_TYPE, metrics.render()),
        (Method::Get, "/") => (
            200,
            "text/plain; charset=utf-8",
            "flowcast-ingest: see /metrics\n".to_owned(),
        ),
        (Method::Get, _) => (404, "text/plain", "not found\n".to_owned()),
        _ => (405, "text/plain", "GET only\n".to_owned()),
    };
    let mut response = Response::from_string(body).with_status_code(status);
    if let Some(h) = header(ctype) {
        response = response.with_header(h);
    }
    request.respond(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connects");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("writes");
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
