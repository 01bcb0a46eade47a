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
//!
//! The queue, the backoff, the breaker, the dead letters, the metrics and the log lines
//! are the shared ones of [`crate::sinks::util`]; what is ThingsBoard's here is the pick
//! of a request (a device's batch, gated by its token and the breaker) and its outcome.

use super::breaker::{Backoff, Breaker, Jitter, Transition};
use super::dead_letter::{DeadLetters, Refusal, Refused};
use super::error::TbError;
use super::http::Transport;
use super::payload;
use super::tokens::TokenStore;
use crate::sinks::util::events::{
    CircuitClosed, CircuitOpened, DeadLetterFailed, DeadLettered, Delivered, RequestRejected,
    RequestRetried, SinkEvent,
};
use crate::sinks::util::metrics::SinkMetrics;
use crate::sinks::util::queue::{Admit, Completions, KeyedQueue};
use flowcast_operators::Prediction;
use std::sync::{Arc, Mutex, MutexGuard};
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

/// The breaker and what goes with it.
#[derive(Debug)]
struct Health {
    breaker: Breaker,
    opened_at: Option<Instant>,
    jitter: Jitter,
}

struct Shared<T> {
    queue: KeyedQueue<Item<T>>,
    health: Mutex<Health>,
    completed: Completions<T>,
    cfg: DeliveryConfig,
    transport: Arc<dyn Transport>,
    tokens: Arc<TokenStore>,
    dead: Arc<dyn DeadLetters>,
    metrics: SinkMetrics,
}

impl<T> Shared<T> {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn delay(&self, attempt: u32) -> Duration {
        self.cfg.backoff.delay(attempt, &mut self.health().jitter)
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
            .field("operator", &self.shared.metrics.operator)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Delivery<T> {
    /// Starts `cfg.max_in_flight` request threads; `metrics` names the sink instance.
    pub fn start(
        cfg: DeliveryConfig,
        transport: Arc<dyn Transport>,
        tokens: Arc<TokenStore>,
        dead: Arc<dyn DeadLetters>,
        metrics: SinkMetrics,
        worker: usize,
    ) -> Result<Self, TbError> {
        let breaker = Breaker::new(cfg.breaker_failures, cfg.breaker_cooldown, cfg.backoff.max);
        let shared = Arc::new(Shared {
            queue: KeyedQueue::new(cfg.max_buffered, metrics.clone()),
            health: Mutex::new(Health {
                breaker,
                opened_at: None,
                jitter: Jitter::new(worker as u64),
            }),
            completed: Completions::default(),
            metrics,
            cfg,
            transport,
            tokens,
            dead,
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
        let device = item.prediction.device.clone();
        self.shared.queue.submit(&device, item);
    }

    /// Predictions queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.shared.queue.bound().outstanding()
    }

    /// Tags of the predictions delivered or dead-lettered since the last call.
    pub fn take_completed(&self) -> Vec<T> {
        self.shared.completed.take()
    }

    /// Waits until every submitted prediction is delivered or dead-lettered, however
    /// long ThingsBoard takes to come back (the sink never drops).
    pub fn flush(&self) {
        self.shared.queue.bound().flush();
    }

    /// Like [`Delivery::flush`], but gives up after `within`; `true` when all is done.
    pub fn flush_for(&self, within: Duration) -> bool {
        self.shared.queue.bound().flush_for(within)
    }
}

impl<T: Send + 'static> Drop for Delivery<T> {
    fn drop(&mut self) {
        self.shared.queue.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn request_loop<T: Send + 'static>(s: &Shared<T>) {
    // A device without a token needs no request, so the breaker does not hold it.
    let admit = |device: &str, now: Instant| {
        let mut h = s.health();
        if s.tokens.get(device).is_none() || h.breaker.try_acquire(now) {
            Admit::Go
        } else {
            Admit::Wait(h.breaker.blocked_until())
        }
    };
    while let Some((device, batch)) = s.queue.next(s.cfg.max_batch, admit) {
        let started = Instant::now();
        let result = match s.tokens.get(&device) {
            Some(tok) => {
                let body = payload::device_batch(batch.iter().map(|i| &i.prediction));
                s.transport.post(tok, &body)
            }
            None => Err(TbError::NoToken {
                device: device.clone(),
            }),
        };
        settle(s, &device, batch, result, started.elapsed());
    }
}

/// Applies the result of one request.
fn settle<T: Send + 'static>(
    s: &Shared<T>,
    device: &str,
    batch: Vec<Item<T>>,
    result: Result<(), TbError>,
    took: Duration,
) {
    let m = &s.metrics;
    match result {
        Ok(()) => {
            Delivered {
                records: batch.len(),
                took: Some(took),
            }
            .emit(m);
            on_answer(s);
            complete(s, device, batch);
        }
        Err(e) if e.retryable() => {
            RequestRetried {
                error: &e,
                took: Some(took),
            }
            .emit(m);
            let now = Instant::now();
            {
                let mut h = s.health();
                if h.breaker.on_failure(now) == Transition::Opened {
                    h.opened_at.get_or_insert(now);
                    CircuitOpened {
                        error: &e,
                        queued: s.queue.bound().outstanding(),
                        retry_in: h
                            .breaker
                            .blocked_until()
                            .map(|t| t.saturating_duration_since(now)),
                    }
                    .emit(m);
                }
            }
            s.queue.retry(device, batch, |attempt| s.delay(attempt));
        }
        Err(e) => {
            if let Some(status) = e.status() {
                RequestRejected { status }.emit(m);
                on_answer(s);
            }
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
                    DeadLettered {
                        records: batch.len(),
                        reason: e.reason(),
                        error: &e,
                    }
                    .emit(m);
                    complete(s, device, batch);
                }
                Err(dl) => {
                    // Never drop: keep the batch and try the whole thing again later.
                    DeadLetterFailed { error: &dl }.emit(m);
                    s.queue.retry(device, batch, |attempt| s.delay(attempt));
                }
            }
        }
    }
}

/// ThingsBoard answered: close the breaker, and if it was open, let every device retry now.
fn on_answer<T>(s: &Shared<T>) {
    let mut h = s.health();
    if h.breaker.on_answer() == Transition::Closed {
        let down_for = h.opened_at.take().map(|t| t.elapsed());
        drop(h);
        CircuitClosed {
            down_for,
            queued: s.queue.bound().outstanding(),
        }
        .emit(&s.metrics);
        s.queue.reset_backoff();
    }
}

fn complete<T>(s: &Shared<T>, device: &str, batch: Vec<Item<T>>) {
    let n = batch.len();
    s.completed.extend(batch.into_iter().map(|i| i.tag));
    s.queue.complete(device, n);
}
