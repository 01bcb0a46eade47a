#![allow(unsafe_code)] // librdkafka's batch consume API: each unsafe block says what holds
//! Reads a consumer's messages many at a time with librdkafka's batch API
//! (`rd_kafka_consume_batch_queue`).
//!
//! `BaseConsumer::poll` hands over one message per call, and each call wraps it in an
//! event, allocates a shared handle for it and reads the clock: in a 10 M-reading drain that
//! per-message bookkeeping was about a tenth of the process's CPU (`perf`, BENCHMARKS.md).
//! One batch call takes every message the queue holds under one lock, and each message is
//! copied out and freed before the next call.
//!
//! The batch API serves librdkafka's other operations itself, and the client's log lines
//! (which the `rdkafka` crate routes to the main queue, forwarded to this one) would be
//! dropped there: a [`BatchConsumer`] gives them a queue of their own and emits them as
//! `tracing` events after each batch, as `BaseConsumer::poll` does.

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::marker::PhantomData;
use std::time::Duration;

/// One message of a batch, borrowed until the callback returns.
#[derive(Debug)]
pub struct Polled<'a> {
    /// The message's partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The Kafka record's timestamp (create or log-append time), ms.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value (empty for a null value).
    pub payload: &'a [u8],
}

/// The consumer queue of one [`BaseConsumer`], read in batches.
pub struct BatchConsumer<'c> {
    client: *mut rdsys::rd_kafka_t,
    queue: *mut rdsys::rd_kafka_queue_t,
    logs: *mut rdsys::rd_kafka_queue_t,
    slots: Vec<*mut rdsys::rd_kafka_message_t>,
    _consumer: PhantomData<&'c BaseConsumer>,
}

impl std::fmt::Debug for BatchConsumer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchConsumer")
            .field("max_batch", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<'c> BatchConsumer<'c> {
    /// Reads `consumer`'s queue, at most `max_batch` messages per call. The consumer must
    /// have a `group.id` (its main queue is then forwarded to this one, so errors arrive
    /// here too) and be used with `assign`, not `subscribe` (no rebalance to serve).
    pub fn new(consumer: &'c BaseConsumer, max_batch: usize) -> Self {
        let client = consumer.client().native_ptr();
        // SAFETY: the client pointer is valid while `consumer` lives, which the lifetime
        // 'c ties this value to; the queue references taken here are released, and the log
        // queue handed back to the main queue, in `drop`.
        let (queue, logs) = unsafe {
            let logs = rdsys::rd_kafka_queue_new(client);
            rdsys::rd_kafka_set_log_queue(client, logs);
            (rdsys::rd_kafka_queue_get_consumer(client), logs)
        };
        assert!(
            !queue.is_null(),
            "a BatchConsumer needs a consumer with a group.id"
        );
        BatchConsumer {
            client,
            queue,
            logs,
            slots: vec![std::ptr::null_mut(); max_batch.max(1)],
            _consumer: PhantomData,
        }
    }

    /// Takes what the queue holds now, up to `max` messages (at most the `max_batch` of
    /// [`Self::new`]); when it holds nothing, waits up to `wait` for one and takes what has
    /// come with it.
    ///
    /// Each message goes to `on_message`, each consumer error to `on_error`, in queue order.
    /// Returns how many messages and errors there were (0: nothing came within `wait`).
    pub fn poll_batch(
        &mut self,
        wait: Duration,
        max: usize,
        mut on_message: impl FnMut(Polled<'_>),
        mut on_error: impl FnMut(RDKafkaErrorCode),
    ) -> usize {
        let n = self.poll(Duration::ZERO, max, &mut on_message, &mut on_error);
        if n > 0 || wait.is_zero() {
            return n;
        }
        // With a timeout, librdkafka waits until all of a call's `max` messages have come:
        // wait for one, then take the rest without waiting.
        let first = self.poll(wait, 1, &mut on_message, &mut on_error);
        if first == 0 || max <= 1 {
            return first;
        }
        first + self.poll(Duration::ZERO, max - 1, on_message, on_error)
    }

    /// One batch call: up to `max` messages, waiting up to `timeout` for all of them (zero:
    /// what the queue holds now).
    fn poll(
        &mut self,
        timeout: Duration,
        max: usize,
        mut on_message: impl FnMut(Polled<'_>),
        mut on_error: impl FnMut(RDKafkaErrorCode),
    ) -> usize {
        let max = max.clamp(1, self.slots.len());
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `queue` is a live queue reference; `slots` has room for `max` pointers.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(self.queue, ms, self.slots.as_mut_ptr(), max)
        };
        let Ok(n) = usize::try_from(n) else {
            // -1: the queue is not a consumer queue (not the case here) or a fatal error,
            // which the next call reports again as a consumer error.
            on_error(RDKafkaErrorCode::Fail);
            return 0;
        };
        for &m in &self.slots[..n] {
            // SAFETY: librdkafka wrote `n` valid message pointers, each owned by us until
            // `rd_kafka_message_destroy`; payload and key live as long as the message, and
            // the borrowed slices given to the callbacks do not outlive this iteration.
            unsafe {
                let msg = &*m;
                if msg.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    let mut kind =
                        rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                    let ts = rdsys::rd_kafka_message_timestamp(m, &mut kind);
                    on_message(Polled {
                        partition: msg.partition,
                        offset: msg.offset,
                        timestamp: (kind
                            != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
                            && ts >= 0)
                            .then_some(ts),
                        key: bytes(msg.key, msg.key_len),
                        payload: bytes(msg.payload, msg.len).unwrap_or_default(),
                    });
                } else {
                    on_error(RDKafkaErrorCode::from(msg.err));
                }
                rdsys::rd_kafka_message_destroy(m);
            }
        }
        self.emit_logs();
        n
    }

    /// Emits the client's queued log lines as `tracing` events (target `librdkafka`).
    fn emit_logs(&mut self) {
        loop {
            // SAFETY: `logs` is a live queue; a non-null event is ours until destroyed, and
            // the strings it lends are read before that.
            unsafe {
                let ev = rdsys::rd_kafka_queue_poll(self.logs, 0);
                if ev.is_null() {
                    return;
                }
                let (mut fac, mut text, mut level) = (std::ptr::null(), std::ptr::null(), 0);
                if rdsys::rd_kafka_event_type(ev) == rdsys::RD_KAFKA_EVENT_LOG
                    && rdsys::rd_kafka_event_log(ev, &mut fac, &mut text, &mut level) == 0
                {
                    let fac = c_str(fac);
                    let text = c_str(text);
                    match level {
                        ..=3 => tracing::error!(target: "librdkafka", "{fac}: {text}"),
                        4 => tracing::warn!(target: "librdkafka", "{fac}: {text}"),
                        5 | 6 => tracing::info!(target: "librdkafka", "{fac}: {text}"),
                        _ => tracing::debug!(target: "librdkafka", "{fac}: {text}"),
                    }
                }
                rdsys::rd_kafka_event_destroy(ev);
            }
        }
    }
}

/// A C string librdkafka lends, as text (empty for null).
///
/// # Safety
/// A non-null `p` must point at a NUL-terminated string.
unsafe fn c_str(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    }
}

/// `len` bytes at `ptr`, or `None` for a null pointer.
///
/// # Safety
/// A non-null `ptr` must point at `len` readable bytes that outlive `'a`.
unsafe fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: the caller's contract.
        Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
    }
}

impl Drop for BatchConsumer<'_> {
    fn drop(&mut self) {
        self.emit_logs();
        // SAFETY: the client outlives this value ('c); the log lines go back to the main
        // queue, and each queue reference taken in `new` is released once.
        unsafe {
            let main = rdsys::rd_kafka_queue_get_main(self.client);
            rdsys::rd_kafka_set_log_queue(self.client, main);
            rdsys::rd_kafka_queue_destroy(main);
            rdsys::rd_kafka_queue_destroy(self.logs);
            rdsys::rd_kafka_queue_destroy(self.queue);
        }
    }
}
