//! A ThingsBoard test server: a real HTTP/1.1 server on `127.0.0.1:0` that implements
//! the device telemetry API as ThingsBoard documents it, records what it accepted, and
//! misbehaves on request.
//!
//! - `POST /api/v1/{token}/telemetry` with `{"ts": ms, "values": {...}}`, a bare
//!   `{...}` values object (server time), or an array of the `ts` form;
//! - 200 on success, 400 on a body that is not JSON or not one of those forms, 401 on an
//!   unknown token, 404 on any other path, 405 on another method;
//! - keep-alive connections, `Content-Length` and chunked bodies;
//! - faults: latency before each answer ([`TbServer::set_latency`]), a burst of 5xx
//!   ([`TbServer::fail_next`]), an outage where connections are refused and open ones
//!   reset ([`TbServer::outage`] / [`TbServer::restore`]).
//!
//! Like ThingsBoard, a telemetry entry is stored under `(device, key, ts)`: a second write
//! of the same `ts` overwrites. [`TbServer::accepted`] lists every accepted entry in
//! arrival order (duplicates included); [`TbServer::latest`] is the stored view.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One accepted telemetry entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The device the token belongs to.
    pub device: String,
    /// Client-side timestamp (ms), or the server's when the body had none.
    pub ts: i64,
    /// Whether `ts` came from the client.
    pub client_ts: bool,
    /// The values.
    pub values: Map<String, Value>,
}

#[derive(Debug, Default)]
struct Faults {
    latency: Duration,
    fail_next: usize,
    fail_status: u16,
}

#[derive(Debug, Default)]
struct Shared {
    tokens: Mutex<HashMap<String, String>>,
    accepted: Mutex<Vec<Telemetry>>,
    statuses: Mutex<BTreeMap<u16, usize>>,
    faults: Mutex<Faults>,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicUsize,
    down: AtomicBool,
    stop: AtomicBool,
    requests: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub struct TbServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl TbServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Panics
    /// If no port can be bound.
    pub fn start() -> TbServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("tb-test-server".into())
            .spawn(move || accept_loop(Some(listener), addr, &s))
            .expect("spawn the acceptor");
        TbServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Provisions a device with its access token.
    pub fn add_device(&self, device: &str, token: &str) {
        lock(&self.shared.tokens).insert(token.to_owned(), device.to_owned());
    }

    /// Every accepted entry, in arrival order (a replayed `ts` appears twice).
    pub fn accepted(&self) -> Vec<Telemetry> {
        lock(&self.shared.accepted).clone()
    }

    /// What ThingsBoard would store: the last write of each `(device, ts)`.
    pub fn latest(&self) -> BTreeMap<(String, i64), Map<String, Value>> {
        let mut out = BTreeMap::new();
        for t in lock(&self.shared.accepted).iter() {
            out.insert((t.device.clone(), t.ts), t.values.clone());
        }
        out
    }

    /// How many answers of each status were sent.
    pub fn statuses(&self) -> BTreeMap<u16, usize> {
        lock(&self.shared.statuses).clone()
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Waits before each answer.
    pub fn set_latency(&self, d: Duration) {
        lock(&self.shared.faults).latency = d;
    }

    /// Answers the next `n` requests with `status` (a 5xx burst) without storing them.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut f = lock(&self.shared.faults);
        f.fail_next = n;
        f.fail_status = status;
    }

    /// Goes down: the port refuses connections and open connections are reset.
    pub fn outage(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        for (_, c) in lock(&self.shared.conns).drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
        // The acceptor drops the listener within one poll; wait until the port refuses.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
            assert!(Instant::now() < deadline, "the test server did not go down");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Comes back on the same port.
    ///
    /// # Panics
    /// If the port cannot be bound again within 5 s.
    pub fn restore(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test server did not come back"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls until at least `n` distinct `(device, ts)` are stored or `within` passes;
    /// returns the stored view.
    pub fn wait_for_latest(
        &self,
        n: usize,
        within: Duration,
    ) -> BTreeMap<(String, i64), Map<String, Value>> {
        let deadline = Instant::now() + within;
        loop {
            let latest = self.latest();
            if latest.len() >= n || Instant::now() >= deadline {
                return latest;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TbServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (_, c) in lock(&self.shared.conns).drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(mut listener: Option<TcpListener>, addr: SocketAddr, s: &Arc<Shared>) {
    while !s.stop.load(Ordering::SeqCst) {
        let down = s.down.load(Ordering::SeqCst);
        if down {
            listener = None;
        } else if listener.is_none() {
            listener = TcpListener::bind(addr).ok();
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        if l.set_nonblocking(true).is_err() {
            continue;
        }
        match l.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let id = s.next_conn.fetch_add(1, Ordering::SeqCst) as u64;
                if let Ok(c) = stream.try_clone() {
                    lock(&s.conns).insert(id, c);
                }
                let s = Arc::clone(s);
                let _ = std::thread::Builder::new()
                    .name("tb-test-conn".into())
                    .spawn(move || {
                        serve(stream, &s);
                        // Close for real: the clone kept for outages holds the socket open.
                        if let Some(c) = lock(&s.conns).remove(&id) {
                            let _ = c.shutdown(Shutdown::Both);
                        }
                    });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    close: bool,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut length = 0usize;
    let mut chunked = false;
    let mut close = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => length = v.parse().ok()?,
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => close = v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Request {
        method,
        path,
        body,
        close,
    })
}

fn serve(stream: TcpStream, s: &Arc<Shared>) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        s.requests.fetch_add(1, Ordering::SeqCst);
        let (status, body) = handle(&req, s);
        let latency = lock(&s.faults).latency;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        *lock(&s.statuses).entry(status).or_default() += 1;
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if req.close {
                "Connection: close\r\n"
            } else {
                ""
            }
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(body.as_bytes()).is_err() {
            return;
        }
        if req.close || s.down.load(Ordering::SeqCst) {
            return;
        }
    }
}

fn error_body(status: u16, message: &str) -> String {
    serde_json::json!({"status": status, "message": message}).to_string()
}

fn handle(req: &Request, s: &Shared) -> (u16, String) {
    let path = req.path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["api", "v1", token, "telemetry"] = segments.as_slice() else {
        return (404, error_body(404, "Not Found"));
    };
    if req.method != "POST" {
        return (405, error_body(405, "Method Not Allowed"));
    }
    let token = percent_decode(token);
    let Some(device) = lock(&s.tokens).get(&token).cloned() else {
        return (401, String::new());
    };
    {
        let mut f = lock(&s.faults);
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return (f.fail_status, error_body(f.fail_status, "injected failure"));
        }
    }
    let entries = match parse_telemetry(&req.body) {
        Ok(e) => e,
        Err(why) => return (400, error_body(400, &why)),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut acc = lock(&s.accepted);
    for (ts, values) in entries {
        acc.push(Telemetry {
            device: device.clone(),
            ts: ts.unwrap_or(now),
            client_ts: ts.is_some(),
            values,
        });
    }
    (200, String::new())
}

type Entry = (Option<i64>, Map<String, Value>);

fn parse_telemetry(body: &[u8]) -> Result<Vec<Entry>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON: {e}"))?;
    match v {
        Value::Array(items) => items.into_iter().map(ts_form).collect(),
        Value::Object(o) if o.contains_key("ts") => Ok(vec![ts_form(Value::Object(o))?]),
        Value::Object(values) => Ok(vec![(None, check_values(values)?)]),
        _ => Err("telemetry must be a JSON object or array".into()),
    }
}

fn ts_form(v: Value) -> Result<Entry, String> {
    let Value::Object(mut o) = v else {
        return Err("array elements must be {\"ts\":..,\"values\":{..}}".into());
    };
    let ts = o
        .remove("ts")
        .and_then(|t| t.as_i64())
        .ok_or("`ts` must be an integer (ms)")?;
    let Some(Value::Object(values)) = o.remove("values") else {
        return Err("`values` must be an object".into());
    };
    if !o.is_empty() {
        return Err("unexpected fields beside ts and values".into());
    }
    Ok((Some(ts), check_values(values)?))
}

fn check_values(values: Map<String, Value>) -> Result<Map<String, Value>, String> {
    if let Some((k, _)) = values.iter().find(|(_, v)| v.is_null()) {
        return Err(format!("Can't parse value of key {k}: null"));
    }
    Ok(values)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(byte) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes a tokens file (`device = "token"` lines) to a fresh temporary path.
///
/// # Panics
/// If the file cannot be written.
pub fn write_tokens_file(entries: &[(&str, &str)]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(crate::unique_topic("tb-tokens"));
    let text: String = entries
        .iter()
        .map(|(d, t)| format!("{d} = \"{t}\"\n"))
        .collect();
    std::fs::write(&path, text).expect("write the tokens file");
    path
}

/// The `(ts, values)` entries of a telemetry array (`[{"ts":..,"values":{..}}, ...]`).
///
/// # Panics
/// If `list` is not of that form.
pub fn entries(list: &Value) -> Vec<(i64, Map<String, Value>)> {
    list.as_array()
        .expect("array form")
        .iter()
        .map(|e| {
            (
                e["ts"].as_i64().expect("ts"),
                e["values"].as_object().expect("values").clone(),
            )
        })
        .collect()
}

/// A minute boundary, in Unix seconds: where the ThingsBoard tests' readings start.
pub const BASE: f64 = 1_700_000_040.0 - 1_700_000_040.0 % 60.0;

/// Readings of `devices` every 10 s over `[from, to)` seconds after [`BASE`], keyed by
/// device, with temperatures and humidities that vary within each minute.
pub fn readings(devices: &[String], from: u32, to: u32) -> Vec<(Option<String>, Vec<u8>)> {
    let mut out = Vec::new();
    for d in devices {
        for s in (from..to).step_by(10) {
            let v = serde_json::json!({"time": BASE + f64::from(s),
                "temperature": 20.0 + f64::from(s % 70) / 10.0,
                "humidity": 40.0 + f64::from(s % 30) / 10.0, "device": d});
            out.push((Some(d.clone()), serde_json::to_vec(&v).expect("json")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw HTTP/1.1 exchange on a fresh connection.
    fn send(url_addr: &str, method: &str, path: &str, body: &str) -> u16 {
        let mut c = TcpStream::connect(url_addr).expect("connect");
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut resp = String::new();
        c.read_to_string(&mut resp).expect("read");
        resp.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status")
    }

    #[test]
    fn implements_the_device_api() {
        let tb = TbServer::start();
        tb.add_device("pi-01", "A1/b");
        let addr = tb.url().trim_start_matches("http://").to_owned();
        let p = "/api/v1/A1%2Fb/telemetry";
        assert_eq!(
            send(&addr, "POST", p, r#"{"ts":1000,"values":{"t":1}}"#),
            200
        );
        assert_eq!(send(&addr, "POST", p, r#"{"t":2,"h":3}"#), 200);
        assert_eq!(
            send(
                &addr,
                "POST",
                p,
                r#"[{"ts":2000,"values":{"t":4}},{"ts":1000,"values":{"t":5}}]"#
            ),
            200
        );
        assert_eq!(send(&addr, "POST", p, "{not json"), 400);
        assert_eq!(send(&addr, "POST", p, r#"[{"t":1}]"#), 400);
        assert_eq!(send(&addr, "POST", "/api/v1/nope/telemetry", "{}"), 401);
        assert_eq!(
            send(&addr, "POST", "/api/v1/A1%2Fb/attributes/x", "{}"),
            404
        );
        assert_eq!(send(&addr, "GET", p, ""), 405);
        let acc = tb.accepted();
        assert_eq!(acc.len(), 4);
        assert!(acc[1].values.contains_key("h") && !acc[1].client_ts);
        let latest = tb.latest();
        assert_eq!(
            latest[&("pi-01".to_owned(), 1000)]["t"],
            5,
            "same ts overwrites"
        );
        tb.fail_next(2, 503);
        assert_eq!(send(&addr, "POST", p, r#"{"t":1}"#), 503);
        assert_eq!(send(&addr, "POST", p, r#"{"t":1}"#), 503);
        assert_eq!(send(&addr, "POST", p, r#"{"t":1}"#), 200);
        tb.outage();
        assert!(TcpStream::connect(&addr).is_err(), "refused while down");
        tb.restore();
        assert_eq!(send(&addr, "POST", p, r#"{"t":1}"#), 200);
        assert_eq!(tb.statuses()[&503], 2);
    }
}
