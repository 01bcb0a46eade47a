//! Internal events of the sinks, in Vector's manner: each is a small struct, and one call,
//! [`SinkEvent::emit`], writes its log line and moves its metrics together, so the two
//! never drift apart and a sink's code reads as what happened, not as bookkeeping.
//!
//! ```ignore
//! RequestRetried { error: &e }.emit(&metrics);
//! ```
//!
//! Log lines carry the job, the sink type and its operator id; never a token (callers pass
//! errors and bodies already redacted) and never a device id as a metric label.

use super::metrics::SinkMetrics;
use std::fmt::Display;
use std::time::Duration;

/// Something that happened in a sink: one log line (or none) and its metrics.
pub trait SinkEvent {
    /// Writes the log line and moves the metrics.
    fn emit(self, m: &SinkMetrics);
}

/// The destination acknowledged `records` records in one request.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    /// Records acknowledged.
    pub records: usize,
    /// How long the request took, where there was one to time.
    pub took: Option<Duration>,
}

impl SinkEvent for Delivered {
    fn emit(self, m: &SinkMetrics) {
        m.requests_ok.inc();
        m.delivered.add(self.records as u64);
        if let Some(t) = self.took {
            m.request_seconds.observe(t);
        }
    }
}

/// A request failed in a way that is worth retrying (5xx, timeout, connection lost).
#[derive(Debug)]
pub struct RequestRetried<'a, E: Display> {
    /// What went wrong (redacted).
    pub error: &'a E,
    /// How long the request took.
    pub took: Option<Duration>,
}

impl<E: Display> SinkEvent for RequestRetried<'_, E> {
    fn emit(self, m: &SinkMetrics) {
        m.requests_retry.inc();
        if let Some(t) = self.took {
            m.request_seconds.observe(t);
        }
        tracing::debug!(job = %m.job, sink = m.sink, operator = %m.operator, "request will be retried: {}", self.error);
    }
}

/// The destination refused a request for good (a 4xx other than 408/429); its records
/// go on to the dead-letter topic ([`DeadLettered`] logs them).
#[derive(Debug, Clone, Copy)]
pub struct RequestRejected {
    /// The HTTP status.
    pub status: u16,
}

impl SinkEvent for RequestRejected {
    fn emit(self, m: &SinkMetrics) {
        m.requests_rejected.inc();
        tracing::debug!(job = %m.job, sink = m.sink, operator = %m.operator, status = self.status, "request rejected");
    }
}

/// Records went to the dead-letter topic, refused for good.
#[derive(Debug)]
pub struct DeadLettered<'a, E: Display> {
    /// How many.
    pub records: usize,
    /// The `flowcast.reason` they carry.
    pub reason: &'a str,
    /// Why (redacted).
    pub error: &'a E,
}

impl<E: Display> SinkEvent for DeadLettered<'_, E> {
    fn emit(self, m: &SinkMetrics) {
        m.dead_letters.add(self.records as u64);
        tracing::warn!(
            job = %m.job, sink = m.sink, operator = %m.operator, records = self.records,
            reason = self.reason, "refused for good, written to the dead-letter topic: {}", self.error
        );
    }
}

/// The dead-letter topic could not take records; they stay queued and are tried again.
#[derive(Debug)]
pub struct DeadLetterFailed<'a, E: Display> {
    /// The producer's error.
    pub error: &'a E,
}

impl<E: Display> SinkEvent for DeadLetterFailed<'_, E> {
    fn emit(self, m: &SinkMetrics) {
        tracing::error!(job = %m.job, sink = m.sink, operator = %m.operator, "cannot write dead letters ({}); will retry", self.error);
    }
}

/// Records failed for good where no dead letter is possible: the job fails.
#[derive(Debug)]
pub struct DeliveryFailed<'a> {
    /// How many.
    pub records: usize,
    /// What failed.
    pub message: &'a str,
}

impl SinkEvent for DeliveryFailed<'_> {
    fn emit(self, m: &SinkMetrics) {
        m.failed.add(self.records as u64);
        tracing::error!(job = %m.job, sink = m.sink, operator = %m.operator, "{}", self.message);
    }
}

/// A submission found the bounded queue full and waits (backpressure).
#[derive(Debug, Clone, Copy)]
pub struct BackpressureWait;

impl SinkEvent for BackpressureWait {
    fn emit(self, m: &SinkMetrics) {
        m.backpressure.inc();
    }
}

/// The waiting submission got room after this long: the worker was blocked meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Blocked(pub std::time::Duration);

impl SinkEvent for Blocked {
    fn emit(self, m: &SinkMetrics) {
        m.blocked.add_duration(self.0);
    }
}

/// The number of records queued or in flight changed.
#[derive(Debug, Clone, Copy)]
pub struct Queued(pub usize);

impl SinkEvent for Queued {
    fn emit(self, m: &SinkMetrics) {
        m.queued.set(self.0 as u64);
    }
}

/// The circuit breaker opened: nothing leaves the queue until it lets a probe through.
#[derive(Debug)]
pub struct CircuitOpened<'a, E: Display> {
    /// The failure that opened it (redacted).
    pub error: &'a E,
    /// Records waiting.
    pub queued: usize,
    /// When the first probe goes out.
    pub retry_in: Option<Duration>,
}

impl<E: Display> SinkEvent for CircuitOpened<'_, E> {
    fn emit(self, m: &SinkMetrics) {
        m.circuit_opened.inc();
        m.circuit_open.set(1);
        tracing::warn!(
            job = %m.job, sink = m.sink, operator = %m.operator, queued = self.queued, retry_in = ?self.retry_in,
            "destination unavailable, circuit open: {}", self.error
        );
    }
}

/// The destination answers again: the breaker closed.
#[derive(Debug, Clone, Copy)]
pub struct CircuitClosed {
    /// How long it was open.
    pub down_for: Option<Duration>,
    /// Records waiting.
    pub queued: usize,
}

impl SinkEvent for CircuitClosed {
    fn emit(self, m: &SinkMetrics) {
        m.circuit_open.set(0);
        tracing::info!(
            job = %m.job, sink = m.sink, operator = %m.operator, down_for = ?self.down_for, queued = self.queued,
            "destination answers again, circuit closed"
        );
    }
}

/// A connection was established (`after_failures` > 0: it is back after failing).
#[derive(Debug)]
pub struct Connected<'a> {
    /// The connection's name (a device id, `gateway`) — a log field, never a label.
    pub connection: &'a str,
    /// Failed attempts before this one.
    pub after_failures: u32,
}

impl SinkEvent for Connected<'_> {
    fn emit(self, m: &SinkMetrics) {
        m.connects.inc();
        if self.after_failures > 0 {
            tracing::info!(job = %m.job, sink = m.sink, operator = %m.operator, connection = self.connection, "connection is back");
        }
    }
}

/// A connection failed or could not be made; the sink reconnects with backoff.
#[derive(Debug)]
pub struct ConnectionFailed<'a, E: Display> {
    /// The connection's name.
    pub connection: &'a str,
    /// Consecutive failures so far, this one included.
    pub failures: u32,
    /// Records waiting on the connection.
    pub queued: usize,
    /// What went wrong (redacted).
    pub error: &'a E,
}

impl<E: Display> SinkEvent for ConnectionFailed<'_, E> {
    fn emit(self, m: &SinkMetrics) {
        m.connection_errors.inc();
        if self.failures == 1 {
            tracing::warn!(
                job = %m.job, sink = m.sink, operator = %m.operator, connection = self.connection, queued = self.queued,
                "connection failed, reconnecting with backoff: {}", self.error
            );
        } else {
            tracing::debug!(job = %m.job, sink = m.sink, operator = %m.operator, connection = self.connection, "reconnect failed: {}", self.error);
        }
    }
}
