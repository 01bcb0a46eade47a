//! What can go wrong delivering to ThingsBoard: whose fault it is and whether a retry helps.
//!
//! No variant holds a token: URLs are redacted (`/api/v1/***/telemetry`) and response
//! bodies pass through [`super::tokens::Token::redact`] before they get here.

use std::time::Duration;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The job's configuration or data (a bad token, a wrong URL, a payload refused).
    User,
    /// ThingsBoard or the network between.
    External,
    /// A bug in Flowcast.
    Internal,
}

/// A failed delivery or an unusable configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TbError {
    /// ThingsBoard refused the request for good (400 bad payload, 401 unknown token, 404
    /// wrong path, other 4xx): the data goes to the dead-letter topic.
    #[error("ThingsBoard refused the telemetry with HTTP {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Response body (redacted, truncated).
        body: String,
    },
    /// ThingsBoard answered but cannot take the request now (5xx, 429, 408).
    #[error("ThingsBoard is unavailable: HTTP {status}: {body}")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// Response body (redacted, truncated).
        body: String,
    },
    /// No answer within the timeout.
    #[error("no answer from ThingsBoard at {url} within {timeout:?}")]
    Timeout {
        /// The redacted URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Connection refused, reset, DNS failure, TLS failure.
    #[error("cannot reach ThingsBoard at {url}: {detail}")]
    Connect {
        /// The redacted URL.
        url: String,
        /// What failed (redacted).
        detail: String,
    },
    /// The device has no access token.
    #[error("no ThingsBoard access token for device {device}")]
    NoToken {
        /// The device id.
        device: String,
    },
    /// The sink's configuration cannot be used (tokens file, URL).
    #[error("ThingsBoard sink configuration: {0}")]
    Config(String),
    /// A bug.
    #[error("internal error in the ThingsBoard sink: {0}")]
    Internal(String),
}

impl TbError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            TbError::Rejected { .. } | TbError::NoToken { .. } | TbError::Config(_) => Fault::User,
            TbError::Unavailable { .. } | TbError::Timeout { .. } | TbError::Connect { .. } => {
                Fault::External
            }
            TbError::Internal(_) => Fault::Internal,
        }
    }

    /// Whether sending the same request again may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            TbError::Unavailable { .. } | TbError::Timeout { .. } | TbError::Connect { .. }
        )
    }

    /// The HTTP status, when ThingsBoard answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            TbError::Rejected { status, .. } | TbError::Unavailable { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The dead-letter reason (`flowcast.reason` header).
    pub fn reason(&self) -> &'static str {
        match self {
            TbError::Rejected { .. } => "thingsboard_rejected",
            TbError::NoToken { .. } => "no_token",
            _ => "thingsboard_failed",
        }
    }

    /// Classifies a non-2xx answer: 408, 429 and 5xx are worth retrying; any other status
    /// (400, 401, 403, 404, 413, a redirect) will not change by itself.
    pub fn from_status(status: u16, body: String) -> TbError {
        if status == 408 || status == 429 || (500..600).contains(&status) {
            TbError::Unavailable { status, body }
        } else {
            TbError::Rejected { status, body }
        }
    }
}

impl From<crate::sinks::util::tokens::TokenError> for TbError {
    fn from(e: crate::sinks::util::tokens::TokenError) -> Self {
        TbError::Config(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for s in [500, 502, 503, 504, 429, 408] {
            let e = TbError::from_status(s, String::new());
            assert!(e.retryable(), "{s}");
            assert_eq!(e.fault(), Fault::External);
        }
        for s in [400, 401, 403, 404, 413, 301] {
            let e = TbError::from_status(s, String::new());
            assert!(!e.retryable(), "{s}");
            assert_eq!(e.fault(), Fault::User);
            assert_eq!(e.status(), Some(s));
        }
    }
}
