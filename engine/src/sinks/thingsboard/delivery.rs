//! The delivery engine behind the ThingsBoard sink and `flowcast tb-bridge`: a bounded
//! queue per device, a fixed pool of request threads, retries and a circuit breaker.
//!
//! - **Bounded.** [`Delivery::submit`] blocks while `max-buffered` predictions are queued
//!   or in flight: the caller (a timely worker, the bridge's consumer loop) stops, and
//!   the backpressure reaches Kafka. Nothing is ever dropped.
//! - **Bounded in flight.** `max-in-flight` threads, each with at most one request.
//! - **Per-device order.** A device has at most one request in flight; a batch that
//!   fails goes back to the front of its queue, so ThingsBoard sees a device's
//!   predictions in the order they were made.
//! - **Batches.** A request carries up to `max-batch` of one device's queued predictions
//!   (the array form): one per request while things flow, many while catching up.
//! - **Retries.** 5xx, 429, 408, timeouts and connection errors retry with exponential
//!   backoff and jitter, forever; the [`Breaker`] stops every request while ThingsBoard
//!   is down and lets one probe through per cool-down.
//! - **Dead letters.** Other 4xx (400, 401, 404, …) and devices without a token are not
//!   retried: the predictions go to the dead-letter topic with the status and body.
//!
//! Each prediction carries a tag; once it is delivered or dead-lettered its tag comes
//! back through [`Delivery::take_completed`] (the bridge commits offsets with it).

use super::breaker::{Backoff, Breaker, Jitter, Transition};
use super::dead_letter::{DeadLetters, Refusal, Refused};
use super::error::TbError;
use super::http::Transport;
use super::payload;
use super::tokens::{Token, TokenStore};
use crate::metrics::{self, Counter, Histogram};
use flowcast_operators::Prediction;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How deliveries are paced.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Concurrent requests (threads).
    pub max_in_flight: usize,
    /// Predictions per request, at most.
    pub max_batch: usize,
    /// Predictions queued or in flight, at most; `submit` blocks beyond.
    pub max_buffered: usize,
    /// Backoff between retries of one device's batch.
    pub backoff: Backoff,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open first (doubling up to `backoff.max`).
    pub breaker_cooldown: Duration,
}

/// A prediction to deliver.
#[derive(Debug, Clone)]
pub struct Item<T> {
    /// The prediction.
    pub prediction: Prediction,
    /// Its JSON as read or produced (a dead letter's value).
    pub raw: Vec<u8>,
    /// Returned by [`Delivery::take_completed`] once the prediction is done with.
    pub tag: T,
}

/// The metrics of one delivery engine (labels: job, worker).
#[derive(Debug, Clone)]
struct TbMetrics {
    delivered: Counter,
    requests_ok: Counter,
    requests_retry: Counter,
    requests_rejected: Counter,
    dead_letters: Counter,
    circuit_opened: Counter,
    circuit_open: Counter,
    queued: Counter,
    backpressure: Counter,
    latency: Histogram,
}

impl TbMetrics {
    fn new(job: &str, worker: &str) -> Self {
        let l = [("job", job), ("worker", worker)];
        let req = |outcome: &str| {
            metrics::counter(
                "flowcast_thingsboard_requests_total",
                "Telemetry requests to ThingsBoard by outcome (ok, retry, rejected)",
                &[("job", job), ("worker", worker), ("outcome", outcome)],
            )
        };
        TbMetrics {
            delivered: metrics::counter(
                "flowcast_thingsboard_delivered_records_total",
                "Predictions ThingsBoard accepted",
                &l,
            ),
            requests_ok: req("ok"),
            requests_retry: req("retry"),
            requests_rejected: req("rejected"),
            dead_letters: metrics::counter(
                "flowcast_thingsboard_dead_letter_records_total",
                "Predictions refused for good and written to the dead-letter topic",
                &l,
            ),
            circuit_opened: metrics::counter(
                "flowcast_thingsboard_circuit_opened_total",
                "Times the circuit breaker opened",
                &l,
            ),
            circuit_open: metrics::gauge(
                "flowcast_thingsboard_circuit_open",
                "1 while the circuit breaker is open or half-open",
                &l,
            ),
            queued: metrics::gauge(
                "flowcast_thingsboard_queued_records",
                "Predictions queued or in flight",
                &l,
            ),
            backpressure: metrics::counter(
                "flowcast_thingsboard_backpressure_waits_total",
                "Submissions that waited for room in the bounded queue",
                &l,
            ),
            latency: metrics::histogram(
                "flowcast_thingsboard_request_seconds",
                "Duration of telemetry requests",
                &l,
            ),
        }
    }
}

#[derive(Debug)]
struct DeviceQueue<T> {
    items: VecDeque<Item<T>>,
    busy: bool,
    attempt: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct State<T> {
    devices: HashMap<String, DeviceQueue<T>>,
    /// Devices with queued items and no request in flight, in turn order.
    ready: VecDeque<String>,
    outstanding: usize,
    breaker: Breaker,
    opened_at: Option<Instant>,
    completed: Vec<T>,
    stop: bool,
    jitter: Jitter,
}

enum Pick<T> {
    Wait(Option<Instant>),
    Go(String, Vec<Item<T>>, Option<Token>),
}

impl<T> State<T> {
    fn pick(&mut self, now: Instant, tokens: &TokenStore, max_batch: usize) -> Pick<T> {
        let mut wake: Option<Instant> = None;
        let mut found = None;
        for (i, d) in self.ready.iter().enumerate() {
            match self.devices.get(d).and_then(|q| q.retry_at) {
                Some(t) if t > now => wake = Some(wake.map_or(t, |w| w.min(t))),
                _ => {
                    found = Some(i);
                    break;
                }
            }
        }
        let Some(i) = found else {
            return Pick::Wait(wake);
        };
        let token = self.ready.get(i).and_then(|d| tokens.get(d)).cloned();
        // A device without a token needs no request, so the breaker does not hold it.
        if token.is_some() && !self.breaker.try_acquire(now) {
            let until = self.breaker.blocked_until();
            return Pick::Wait(match (wake, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
        }
        let Some(device) = self.ready.remove(i) else {
            return Pick::Wait(wake);
        };
        let Some(q) = self.devices.get_mut(&device) else {
            return Pick::Wait(wake);
        };
        q.busy = true;
        let n = q.items.len().min(max_batch.max(1));
        let batch = q.items.drain(..n).collect();
        Pick::Go(device, batch, token)
    }

    /// Puts a device that finished a request back in turn, or forgets it when idle.
    fn release(&mut self, device: &str) {
        let idle = match self.devices.get_mut(device) {
            Some(q) => {
                q.busy = false;
                q.items.is_empty()
            }
            None => return,
        };
        if idle {
            self.devices.remove(device);
        } else {
            self.ready.push_back(device.to_owned());
        }
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when there is something for a request thread to do.
    work: Condvar,
    /// Signalled when predictions complete (room in the queue, flushes).
    room: Condvar,
    cfg: DeliveryConfig,
    transport: Arc<dyn Transport>,
    tokens: Arc<TokenStore>,
    dead: Arc<dyn DeadLetters>,
    metrics: TbMetrics,
    job: String,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running delivery engine; dropping it stops its threads (what is still queued is
/// abandoned: call [`Delivery::flush`] first to deliver it).
pub struct Delivery<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("job", &self.shared.job)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Delivery<T> {
    /// Starts `cfg.max_in_flight` request threads.
    pub fn start(
        cfg: DeliveryConfig,
        transport: Arc<dyn Transport>,
        tokens: Arc<TokenStore>,
        dead: Arc<dyn DeadLetters>,
        job: &str,
        worker: usize,
    ) -> Result<Self, TbError> {
        let breaker = Breaker::new(cfg.breaker_failures, cfg.breaker_cooldown, cfg.backoff.max);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                devices: HashMap::new(),
                ready: VecDeque::new(),
                outstanding: 0,
                breaker,
                opened_at: None,
                completed: Vec::new(),
                stop: false,
                jitter: Jitter::new(worker as u64),
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            metrics: TbMetrics::new(job, &worker.to_string()),
            cfg,
            transport,
            tokens,
            dead,
            job: job.to_owned(),
        });
        let mut threads = Vec::new();
        for i in 0..shared.cfg.max_in_flight.max(1) {
            let s = Arc::clone(&shared);
            let t = std::thread::Builder::new()
                .name(format!("tb-{worker}-{i}"))
                .spawn(move || request_loop(&s))
                .map_err(|e| TbError::Internal(format!("cannot start a request thread: {e}")))?;
            threads.push(t);
        }
        Ok(Delivery { shared, threads })
    }

    /// Queues a prediction; blocks while the queue is full.
    pub fn submit(&self, item: Item<T>) {
        let s = &self.shared;
        let mut st = s.lock();
        if st.outstanding >= s.cfg.max_buffered && !st.stop {
            s.metrics.backpressure.inc();
            while st.outstanding >= s.cfg.max_buffered && !st.stop {
                st = s.room.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
        st.outstanding += 1;
        s.metrics.queued.set(st.outstanding as u64);
        let device = item.prediction.device.clone();
        let q = st
            .devices
            .entry(device.clone())
            .or_insert_with(|| DeviceQueue {
                items: VecDeque::new(),
                busy: false,
                attempt: 0,
                retry_at: None,
            });
        q.items.push_back(item);
        if !q.busy && q.items.len() == 1 {
            st.ready.push_back(device);
        }
        drop(st);
        s.work.notify_one();
    }

    /// Predictions queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.shared.lock().outstanding
    }

    /// Tags of the predictions delivered or dead-lettered since the last call.
    pub fn take_completed(&self) -> Vec<T> {
        std::mem::take(&mut self.shared.lock().completed)
    }

    /// Waits until every submitted prediction is delivered or dead-lettered, however
    /// long ThingsBoard takes to come back (the sink never drops).
    pub fn flush(&self) {
        while !self.flush_for(Duration::from_secs(30)) {
            tracing::info!(
                job = %self.shared.job,
                outstanding = self.outstanding(),
                "waiting for ThingsBoard to take the remaining predictions"
            );
        }
    }

    /// Like [`Delivery::flush`], but gives up after `within`; `true` when all is done.
    pub fn flush_for(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let s = &self.shared;
        let mut st = s.lock();
        while st.outstanding > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = s
                .room
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl<T: Send + 'static> Drop for Delivery<T> {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        self.shared.room.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn request_loop<T: Send + 'static>(s: &Shared<T>) {
    let mut st = s.lock();
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        match st.pick(now, &s.tokens, s.cfg.max_batch) {
            Pick::Wait(None) => st = s.work.wait(st).unwrap_or_else(|p| p.into_inner()),
            Pick::Wait(Some(t)) => {
                st = s
                    .work
                    .wait_timeout(st, t.saturating_duration_since(now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            Pick::Go(device, batch, token) => {
                drop(st);
                let result = match &token {
                    Some(tok) => {
                        let body = payload::device_batch(batch.iter().map(|i| &i.prediction));
                        let started = Instant::now();
                        let r = s.transport.post(tok, &body);
                        s.metrics
                            .latency
                            .observe_us(started.elapsed().as_micros() as u64);
                        r
                    }
                    None => Err(TbError::NoToken {
                        device: device.clone(),
                    }),
                };
                st = settle(s, &device, batch, result);
                s.room.notify_all();
                s.work.notify_all();
            }
        }
    }
}

/// Applies the result of one request; returns with the lock held.
fn settle<'a, T: Send + 'static>(
    s: &'a Shared<T>,
    device: &str,
    batch: Vec<Item<T>>,
    result: Result<(), TbError>,
) -> MutexGuard<'a, State<T>> {
    let m = &s.metrics;
    match result {
        Ok(()) => {
            m.requests_ok.inc();
            m.delivered.add(batch.len() as u64);
            let mut st = s.lock();
            on_answer(s, &mut st);
            if let Some(q) = st.devices.get_mut(device) {
                q.attempt = 0;
                q.retry_at = None;
            }
            complete(s, &mut st, device, batch);
            st
        }
        Err(e) if e.retryable() => {
            m.requests_retry.inc();
            let now = Instant::now();
            let mut st = s.lock();
            let st_ref = &mut *st;
            if st_ref.breaker.on_failure(now) == Transition::Opened {
                m.circuit_opened.inc();
                m.circuit_open.set(1);
                st_ref.opened_at.get_or_insert(now);
                tracing::warn!(
                    job = %s.job,
                    queued = st_ref.outstanding,
                    retry_in = ?st_ref.breaker.blocked_until().map(|t| t.saturating_duration_since(now)),
                    "ThingsBoard unavailable, circuit open: {e}"
                );
            } else {
                tracing::debug!(job = %s.job, "ThingsBoard request will be retried: {e}");
            }
            if let Some(q) = st_ref.devices.get_mut(device) {
                q.attempt += 1;
                q.retry_at = Some(now + s.cfg.backoff.delay(q.attempt, &mut st_ref.jitter));
                for item in batch.into_iter().rev() {
                    q.items.push_front(item);
                }
            }
            st_ref.release(device);
            st
        }
        Err(e) => {
            if e.status().is_some() {
                m.requests_rejected.inc();
                on_answer(s, &mut s.lock());
            }
            tracing::warn!(
                job = %s.job, device, records = batch.len(), status = e.status(),
                "refused for good, writing to the dead-letter topic: {e}"
            );
            let detail = match &e {
                TbError::Rejected { body, .. } => s.tokens.redact(body),
                other => other.to_string(),
            };
            let refused: Vec<Refused<'_>> = batch
                .iter()
                .map(|i| Refused {
                    device,
                    payload: &i.raw,
                })
                .collect();
            let why = Refusal {
                reason: e.reason(),
                sink: "thingsboard",
                status: e.status(),
                detail: &detail,
            };
            match s.dead.write(&refused, why) {
                Ok(()) => {
                    m.dead_letters.add(batch.len() as u64);
                    let mut st = s.lock();
                    complete(s, &mut st, device, batch);
                    st
                }
                Err(dl) => {
                    // Never drop: keep the batch and try the whole thing again later.
                    tracing::error!(job = %s.job, "cannot write dead letters ({dl}); will retry");
                    let mut st = s.lock();
                    let st_ref = &mut *st;
                    if let Some(q) = st_ref.devices.get_mut(device) {
                        q.attempt += 1;
                        q.retry_at = Some(
                            Instant::now() + s.cfg.backoff.delay(q.attempt, &mut st_ref.jitter),
                        );
                        for item in batch.into_iter().rev() {
                            q.items.push_front(item);
                        }
                    }
                    st_ref.release(device);
                    st
                }
            }
        }
    }
}

/// ThingsBoard answered: close the breaker, and if it was open, let every device retry now.
fn on_answer<T>(s: &Shared<T>, st: &mut State<T>) {
    if st.breaker.on_answer() == Transition::Closed {
        s.metrics.circuit_open.set(0);
        let down = st.opened_at.take().map(|t| t.elapsed());
        tracing::info!(job = %s.job, down_for = ?down, queued = st.outstanding, "ThingsBoard answers again, circuit closed");
        for q in st.devices.values_mut() {
            q.attempt = 0;
            q.retry_at = None;
        }
    }
}

fn complete<T>(s: &Shared<T>, st: &mut State<T>, device: &str, batch: Vec<Item<T>>) {
    st.outstanding -= batch.len();
    s.metrics.queued.set(st.outstanding as u64);
    st.completed.extend(batch.into_iter().map(|i| i.tag));
    st.release(device);
}
