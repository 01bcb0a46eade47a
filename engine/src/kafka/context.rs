//! The client context of the engine's Kafka admin client: librdkafka's logs and errors
//! reach the logs, and a refused login (SASL) or TLS handshake is remembered, so a caller
//! waiting for the cluster fails at once with librdkafka's own reason ("SASL
//! authentication error: … invalid credentials", "SSL handshake failed: … certificate
//! verify failed") instead of a timeout that blames the network. librdkafka's messages
//! never carry a password.
//!
//! The admin client does not serve librdkafka's main queue, so its error callback does
//! not fire; its log lines, delivered from librdkafka's own threads, do. The broker
//! thread's `FAIL` line is where both failures are named.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::{Arc, Mutex};

/// Remembers the last security failure librdkafka reported.
#[derive(Debug, Default, Clone)]
pub struct SecurityContext {
    refused: Arc<Mutex<Option<String>>>,
}

impl SecurityContext {
    fn remember(&self, reason: &str) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }

    /// The last authentication or TLS failure, if any.
    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Whether a librdkafka log line reports a refused login or a failed TLS handshake.
pub fn names_security_failure(facility: &str, message: &str) -> bool {
    facility == "FAIL"
        && [
            "SASL authentication error",
            "SSL handshake failed",
            "certificate verify failed",
        ]
        .iter()
        .any(|m| message.contains(m))
}

/// Whether `error` is a refused login or a failed TLS handshake: waiting does not fix
/// either.
pub fn is_security_failure(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
    )
}

impl ClientContext for SecurityContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if names_security_failure(fac, log_message) {
            self.remember(log_message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "{fac}: {log_message}")
            }
            _ => tracing::debug!(target: "librdkafka", "{fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if is_security_failure(&error) {
            tracing::error!(target: "librdkafka", "{error}: {reason}");
            self.remember(reason);
        } else {
            tracing::warn!(target: "librdkafka", "{error}: {reason}");
        }
    }
}

/// Only the admin's metadata probe produces nothing: no delivery reports to handle.
impl rdkafka::producer::ProducerContext for SecurityContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_authentication_and_tls_failures_are_remembered() {
        let c = SecurityContext::default();
        c.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(c.refused(), None);
        c.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid credentials",
        );
        assert_eq!(
            c.refused().as_deref(),
            Some("SASL authentication error: invalid credentials")
        );
        assert!(is_security_failure(&KafkaError::Global(
            RDKafkaErrorCode::SSL
        )));
    }

    #[test]
    fn the_broker_threads_fail_lines_are_recognised() {
        let sasl = "sasl_ssl://127.0.0.1:9096/bootstrap: SASL authentication error: \
                    Authentication failed during authentication due to invalid credentials";
        let tls = "ssl://127.0.0.1:9096/bootstrap: SSL handshake failed: error:0A000086:SSL \
                   routines::certificate verify failed: broker certificate could not be verified";
        assert!(names_security_failure("FAIL", sasl));
        assert!(names_security_failure("FAIL", tls));
        assert!(!names_security_failure(
            "FAIL",
            "Connect to ipv4#127.0.0.1:9 failed"
        ));
        assert!(!names_security_failure("CONFWARN", sasl));
        let c = SecurityContext::default();
        c.log(RDKafkaLogLevel::Error, "FAIL", sasl);
        assert_eq!(c.refused().as_deref(), Some(sasl));
    }
}
