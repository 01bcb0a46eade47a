//! The delivery engine against a scripted transport: order, batching, retries, the
//! breaker, backpressure and dead letters, without a network. (The real HTTP path is
//! tested against the test server in `engine/tests/thingsboard*.rs`.)

use super::breaker::Backoff;
use super::dead_letter::{DeadLetters, Refusal, Refused};
use super::delivery::{Delivery, DeliveryConfig, Item};
use super::error::TbError;
use super::http::Transport;
use super::payload::sample;
use super::tokens::{Token, TokenStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Accepts or fails requests by a rule; records accepted `(token, ts)` in arrival order.
struct Scripted {
    down: AtomicBool,
    fail_every: usize,
    calls: AtomicUsize,
    status: u16,
    accepted: Mutex<Vec<(String, i64)>>,
}

impl Scripted {
    fn new(fail_every: usize, status: u16) -> Arc<Self> {
        Arc::new(Scripted {
            down: AtomicBool::new(false),
            fail_every,
            calls: AtomicUsize::new(0),
            status,
            accepted: Mutex::new(Vec::new()),
        })
    }
}

impl Transport for Scripted {
    fn post(&self, token: &Token, body: &[u8]) -> Result<(), TbError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.down.load(Ordering::SeqCst) {
            return Err(TbError::Connect {
                url: "x".into(),
                detail: "refused".into(),
            });
        }
        if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
            return Err(TbError::from_status(self.status, "nope".into()));
        }
        let entries: Vec<serde_json::Value> = serde_json::from_slice(body).expect("array form");
        let mut acc = self.accepted.lock().expect("lock");
        for e in entries {
            acc.push((token.expose().to_owned(), e["ts"].as_i64().expect("ts")));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String, Option<u16>)>>);

impl DeadLetters for Recorder {
    fn write(&self, records: &[Refused<'_>], why: Refusal<'_>) -> Result<(), String> {
        let mut v = self.0.lock().expect("lock");
        for r in records {
            v.push((r.device.to_owned(), why.reason.to_owned(), why.status));
        }
        Ok(())
    }
}

fn config(max_buffered: usize) -> DeliveryConfig {
    DeliveryConfig {
        max_in_flight: 4,
        max_batch: 8,
        max_buffered,
        backoff: Backoff {
            initial: Duration::from_millis(2),
            max: Duration::from_millis(40),
        },
        breaker_failures: 3,
        breaker_cooldown: Duration::from_millis(20),
    }
}

fn tokens(devices: &[&str]) -> Arc<TokenStore> {
    let mut t = TokenStore::default();
    for d in devices {
        t.insert(d, Token::new(&format!("tok-{d}")).expect("token"));
    }
    Arc::new(t)
}

fn item(device: &str, i: u32) -> Item<(String, u32)> {
    Item {
        prediction: sample(device, i),
        raw: Vec::new(),
        tag: (device.to_owned(), i),
    }
}

fn test_metrics() -> crate::sinks::util::metrics::SinkMetrics {
    crate::sinks::util::metrics::SinkMetrics::new("t", "thingsboard", "sink-0:thingsboard", 0)
}

fn wait_until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn every_prediction_arrives_once_in_device_order_despite_5xx() {
    let devices = ["a", "b", "c", "d", "e"];
    let t = Scripted::new(3, 503);
    let dead = Arc::new(Recorder::default());
    let d = Delivery::start(config(16), t.clone(), tokens(&devices), dead.clone(), test_metrics(), 0)
    .expect("start");
    for i in 0..60 {
        for dev in devices {
            d.submit(item(dev, i));
        }
    }
    assert!(d.flush_for(Duration::from_secs(30)), "flushed");
    let acc = t.accepted.lock().expect("lock").clone();
    let mut by_device: HashMap<String, Vec<i64>> = HashMap::new();
    for (tok, ts) in acc {
        by_device.entry(tok).or_default().push(ts);
    }
    for dev in devices {
        let got = &by_device[&format!("tok-{dev}")];
        let want: Vec<i64> = (0..60)
            .map(|i| super::payload::ts_ms(&sample(dev, i)))
            .collect();
        assert_eq!(got, &want, "device {dev}: every prediction once, in order");
    }
    assert!(dead.0.lock().expect("lock").is_empty());
    let mut done = d.take_completed();
    done.sort();
    assert_eq!(done.len(), 300);
    done.dedup();
    assert_eq!(done.len(), 300, "each tag completes once");
}

#[test]
fn rejections_and_missing_tokens_become_dead_letters() {
    let t = Scripted::new(1, 401);
    let dead = Arc::new(Recorder::default());
    let d = Delivery::start(config(100), t.clone(), tokens(&["a"]), dead.clone(), test_metrics(), 0)
        .expect("start");
    for i in 0..5 {
        d.submit(item("a", i));
        d.submit(item("no-token", i));
    }
    assert!(d.flush_for(Duration::from_secs(10)));
    let got = dead.0.lock().expect("lock").clone();
    assert_eq!(got.len(), 10);
    let rejected = got.iter().filter(|(dev, reason, status)| {
        dev == "a" && reason == "thingsboard_rejected" && *status == Some(401)
    });
    assert_eq!(rejected.count(), 5);
    let no_token = got.iter().filter(|(dev, reason, status)| {
        dev == "no-token" && reason == "no_token" && status.is_none()
    });
    assert_eq!(no_token.count(), 5);
    assert_eq!(d.take_completed().len(), 10);
}

#[test]
fn an_outage_fills_the_bounded_queue_blocks_the_caller_and_does_not_hammer() {
    let devices: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
    let names: Vec<&str> = devices.iter().map(String::as_str).collect();
    let t = Scripted::new(0, 503);
    t.down.store(true, Ordering::SeqCst);
    let dead = Arc::new(Recorder::default());
    let d = Arc::new(
        Delivery::start(config(20), t.clone(), tokens(&names), dead, test_metrics(), 0).expect("start"),
    );
    let submitted = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (d, submitted, devices) = (Arc::clone(&d), Arc::clone(&submitted), devices.clone());
        std::thread::spawn(move || {
            for i in 0..5 {
                for dev in &devices {
                    d.submit(item(dev, i));
                    submitted.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    wait_until("a full queue", Duration::from_secs(10), || {
        d.outstanding() == 20
    });
    let calls_at_full = t.calls.load(Ordering::SeqCst);
    let window_start = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    // Counted before the clock is read: the window measured is at least the one counted,
    // however long the sleep really took on a busy machine.
    let calls = t.calls.load(Ordering::SeqCst) - calls_at_full;
    let window = window_start.elapsed();
    assert_eq!(
        submitted.load(Ordering::SeqCst),
        20,
        "the caller blocks at the bound"
    );
    assert_eq!(
        d.outstanding(),
        20,
        "the queue does not grow past its bound"
    );
    // Breaker open: at most one probe per cool-down (20, 40, 40, … ms), so a window of
    // `w` ms holds at most w/20 + 1 requests (+1 for one that straddles its start),
    // instead of a retry per device per backoff (10 devices every ≤ 40 ms: w/4).
    let bound = window.as_millis() / 20 + 2;
    assert!(
        calls as u128 <= bound,
        "{calls} requests in {window:?} of outage, at most {bound} allowed"
    );
    t.down.store(false, Ordering::SeqCst);
    producer.join().expect("producer");
    assert!(
        d.flush_for(Duration::from_secs(10)),
        "drains after the outage"
    );
    assert_eq!(t.accepted.lock().expect("lock").len(), 50);
}
