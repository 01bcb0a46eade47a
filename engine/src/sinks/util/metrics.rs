//! One metric set for every sink: the same names for Kafka, ThingsBoard, MQTT and stdout,
//! told apart by labels — `sink` (its type), `operator` (its stable id, e.g. `sink-1:mqtt`,
//! `dead-letters`), `worker` and the job. A series a sink never moves stays at zero.
//!
//! | name | type | extra label | meaning |
//! | --- | --- | --- | --- |
//! | `flowcast_sink_delivered_records_total` | counter | | records the destination acknowledged |
//! | `flowcast_sink_dead_letter_records_total` | counter | | records refused for good, written to the dead-letter topic |
//! | `flowcast_sink_failed_records_total` | counter | | records that failed for good and failed the job |
//! | `flowcast_sink_queued_records` | gauge | | records handed to the sink and not yet done with |
//! | `flowcast_sink_backpressure_waits_total` | counter | | submissions that waited for room |
//! | `flowcast_sink_requests_total` | counter | outcome | requests or publishes by outcome (`ok`, `retry`, `rejected`) |
//! | `flowcast_sink_request_seconds` | histogram | | duration of a request |
//! | `flowcast_sink_circuit_opened_total` | counter | | times the circuit breaker opened |
//! | `flowcast_sink_circuit_open` | gauge | | 1 while the breaker is open or half-open |
//! | `flowcast_sink_connects_total` | counter | | connections established |
//! | `flowcast_sink_connection_errors_total` | counter | | connection attempts or connections that failed |
//! | `flowcast_sink_tls_errors_total` | counter | | connection attempts whose TLS handshake failed |
//! | `flowcast_sink_window_to_send_seconds` | histogram | | window close to hand-off (prediction sinks that measure it) |

use crate::metrics::{self, Counter, Histogram};

/// The metric series of one sink instance (one operator on one worker).
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// Records the destination acknowledged.
    pub delivered: Counter,
    /// Records written to the dead-letter topic.
    pub dead_letters: Counter,
    /// Records that failed for good (the job fails).
    pub failed: Counter,
    /// Records queued or in flight (gauge).
    pub queued: Counter,
    /// Submissions that waited for room.
    pub backpressure: Counter,
    /// Seconds a worker waited for room: backpressure as a share of time.
    pub blocked: Counter,
    /// Requests answered with success.
    pub requests_ok: Counter,
    /// Requests that will be retried.
    pub requests_retry: Counter,
    /// Requests refused for good.
    pub requests_rejected: Counter,
    /// Request durations.
    pub request_seconds: Histogram,
    /// Times the breaker opened.
    pub circuit_opened: Counter,
    /// 1 while the breaker is open (gauge).
    pub circuit_open: Counter,
    /// Connections established.
    pub connects: Counter,
    /// Connection failures.
    pub connection_errors: Counter,
    /// Failed TLS handshakes.
    pub tls_errors: Counter,
    /// Window close to hand-off.
    pub window_to_send: Histogram,
    /// The sink type (`kafka`, `thingsboard`, `mqtt`, `stdout`), for log lines.
    pub sink: &'static str,
    /// The operator id, for log lines.
    pub operator: String,
    /// The job, for log lines.
    pub job: String,
}

impl SinkMetrics {
    /// The series of sink `operator` (of type `sink`) of `job` on `worker`.
    pub fn new(job: &str, sink: &'static str, operator: &str, worker: usize) -> Self {
        let w = worker.to_string();
        let l = [
            ("job", job),
            ("sink", sink),
            ("operator", operator),
            ("worker", w.as_str()),
        ];
        let req = |outcome: &str| {
            metrics::counter(
                "flowcast_sink_requests_total",
                "Requests or publishes of a sink by outcome (ok, retry, rejected)",
                &[
                    ("job", job),
                    ("sink", sink),
                    ("operator", operator),
                    ("worker", w.as_str()),
                    ("outcome", outcome),
                ],
            )
        };
        SinkMetrics {
            delivered: metrics::counter(
                "flowcast_sink_delivered_records_total",
                "Records the sink's destination acknowledged",
                &l,
            ),
            dead_letters: metrics::counter(
                "flowcast_sink_dead_letter_records_total",
                "Records refused for good and written to the dead-letter topic",
                &l,
            ),
            failed: metrics::counter(
                "flowcast_sink_failed_records_total",
                "Records that failed for good (the job fails)",
                &l,
            ),
            queued: metrics::gauge(
                "flowcast_sink_queued_records",
                "Records handed to the sink and not yet acknowledged or dead-lettered",
                &l,
            ),
            backpressure: metrics::counter(
                "flowcast_sink_backpressure_waits_total",
                "Submissions that waited for room in the sink's bounded queue",
                &l,
            ),
            blocked: metrics::counter(
                "flowcast_sink_blocked_seconds_total",
                "Seconds the worker waited for room in the sink's full bounded queue (or the \
                 Kafka producer's): backpressure; while it waits the worker runs no operator",
                &l,
            ),
            requests_ok: req("ok"),
            requests_retry: req("retry"),
            requests_rejected: req("rejected"),
            request_seconds: metrics::histogram(
                "flowcast_sink_request_seconds",
                "Duration of a sink's requests",
                &l,
            ),
            circuit_opened: metrics::counter(
                "flowcast_sink_circuit_opened_total",
                "Times the sink's circuit breaker opened",
                &l,
            ),
            circuit_open: metrics::gauge(
                "flowcast_sink_circuit_open",
                "1 while the sink's circuit breaker is open or half-open",
                &l,
            ),
            connects: metrics::counter(
                "flowcast_sink_connects_total",
                "Connections the sink established",
                &l,
            ),
            connection_errors: metrics::counter(
                "flowcast_sink_connection_errors_total",
                "Connection attempts or connections of the sink that failed",
                &l,
            ),
            tls_errors: metrics::counter(
                "flowcast_sink_tls_errors_total",
                "Connection attempts of a sink whose TLS handshake failed",
                &l,
            ),
            window_to_send: metrics::histogram(
                "flowcast_sink_window_to_send_seconds",
                "Window close to hand-off to the sink's destination",
                &l,
            ),
            sink,
            operator: operator.to_owned(),
            job: job.to_owned(),
        }
    }
}
