//! One type per thing that happens; `emit` writes the log line and bumps the metric, so
//! the two never disagree. Hot-path events (produced, spooled) are emitted per batch and
//! log nothing.

use super::Metrics;
use crate::sensor::ReadFailure;

/// One read attempt failed (or one recorded reading was refused by validation).
#[derive(Debug)]
pub struct ReadFailed<'a> {
    /// Device id.
    pub device: &'a str,
    /// What went wrong.
    pub failure: &'a ReadFailure,
    /// 1 for the first attempt of a sample.
    pub attempt: u32,
    /// Whether another attempt follows.
    pub will_retry: bool,
}

impl ReadFailed<'_> {
    /// Counts and logs the failure.
    pub fn emit(&self, m: &Metrics) {
        Metrics::add(&m.reads_failed[self.failure.reason.index()], 1);
        tracing::info!(
            device = self.device,
            reason = %self.failure.reason,
            attempt = self.attempt,
            retry = self.will_retry,
            "read failed: {}",
            self.failure.detail
        );
    }
}

/// Every attempt of a sample failed: no reading for this device at this time.
#[derive(Debug)]
pub struct SampleSkipped<'a> {
    /// Device id.
    pub device: &'a str,
    /// Attempts made.
    pub attempts: u32,
}

impl SampleSkipped<'_> {
    /// Counts and logs the gap.
    pub fn emit(&self, m: &Metrics) {
        Metrics::add(&m.samples_skipped, 1);
        tracing::warn!(
            device = self.device,
            attempts = self.attempts,
            "sample skipped: every attempt failed (see the read failures above)"
        );
    }
}

/// A valid reading was taken.
#[derive(Debug)]
pub struct ReadOk;

impl ReadOk {
    /// Counts it.
    pub fn emit(&self, m: &Metrics) {
        Metrics::add(&m.reads_ok, 1);
    }
}

/// Readings were written to the spool.
#[derive(Debug)]
pub struct Spooled {
    /// How many.
    pub count: u64,
}

impl Spooled {
    /// Counts them.
    pub fn emit(&self, m: &Metrics) {
        Metrics::add(&m.spooled, self.count);
    }
}

/// Kafka acknowledged readings.
#[derive(Debug)]
pub struct Produced {
    /// How many.
    pub count: u64,
}

impl Produced {
    /// Counts them.
    pub fn emit(&self, m: &Metrics) {
        Metrics::add(&m.produced, self.count);
    }
}

/// The spool's bound forced unsent readings out.
#[derive(Debug)]
pub struct Evicted {
    /// Readings lost.
    pub readings: u64,
    /// Bytes freed.
    pub bytes: u64,
    /// Sequence numbers of the first and last reading lost.
    pub seqs: (u64, u64),
}

impl Evicted {
    /// Counts and logs the loss.
    pub fn emit(&self, m: &Metrics) {
        Metrics::add(&m.evicted, self.readings);
        tracing::warn!(
            readings = self.readings,
            bytes = self.bytes,
            first_seq = self.seqs.0,
            last_seq = self.seqs.1,
            "spool full (spool.max-bytes): evicted the oldest unsent readings"
        );
    }
}

/// The broker refused a reading for good.
#[derive(Debug)]
pub struct Undeliverable<'a> {
    /// Spool sequence number.
    pub seq: u64,
    /// The broker's answer.
    pub error: &'a str,
}

impl Undeliverable<'_> {
    /// Counts and logs the loss.
    pub fn emit(&self, m: &Metrics) {
        Metrics::add(&m.undeliverable, 1);
        tracing::error!(
            seq = self.seq,
            "reading refused by Kafka for good: {}",
            self.error
        );
    }
}

/// A delivery failed in a way that another attempt may fix.
#[derive(Debug)]
pub struct DeliveryRetry<'a> {
    /// Spool sequence number.
    pub seq: u64,
    /// The producer's error.
    pub error: &'a str,
}

impl DeliveryRetry<'_> {
    /// Counts and logs the retry.
    pub fn emit(&self, m: &Metrics) {
        Metrics::add(&m.retried, 1);
        tracing::warn!(
            seq = self.seq,
            "delivery failed, will produce again: {}",
            self.error
        );
    }
}
