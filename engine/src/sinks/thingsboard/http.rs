//! The ThingsBoard device HTTP API: `POST {url}/api/v1/{token}/telemetry`.
//!
//! A blocking [`ureq`] agent with a connection pool, a per-request timeout and no
//! redirects (a redirect means a wrong URL: it is a rejection, not something to follow
//! with the token in the path). Every error leaves here redacted: the URL in it reads
//! `/api/v1/***/telemetry`, and any echo of the token in a body or a message is `***`.

use super::error::TbError;
use super::tokens::Token;
use std::io::Read;
use std::time::Duration;

/// Most bytes of a response body kept for a dead letter or a log line.
pub const MAX_BODY: usize = 1024;

/// Sends one telemetry body with one device's token.
pub trait Transport: Send + Sync + 'static {
    /// Posts `body` (a JSON telemetry array) for the device whose token is `token`;
    /// `Ok` on 2xx.
    fn post(&self, token: &Token, body: &[u8]) -> Result<(), TbError>;
}

/// The real thing: HTTP(S) to a ThingsBoard server.
#[derive(Debug)]
pub struct HttpTransport {
    agent: ureq::Agent,
    base: String,
    timeout: Duration,
}

impl HttpTransport {
    /// A client for the server at `url` (`http://host:8080`, `https://tb.example.com`).
    pub fn new(url: &str, timeout: Duration, pool: usize) -> Result<HttpTransport, TbError> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(TbError::Config(format!(
                "url {base:?} must start with http:// or https://"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .max_idle_connections_per_host(pool.max(1))
            .user_agent(concat!("flowcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(HttpTransport {
            agent,
            base,
            timeout,
        })
    }

    /// The telemetry URL with the token hidden, for messages.
    pub fn redacted_url(&self) -> String {
        format!("{}/api/v1/***/telemetry", self.base)
    }
}

impl Transport for HttpTransport {
    fn post(&self, token: &Token, body: &[u8]) -> Result<(), TbError> {
        let url = format!("{}/api/v1/{}/telemetry", self.base, token.path_segment());
        let result = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body);
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                // Read (a bounded part of) the body either way, so the connection can be reused.
                let mut text = Vec::new();
                let _ = resp
                    .body_mut()
                    .as_reader()
                    .take(MAX_BODY as u64)
                    .read_to_end(&mut text);
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    let body = token.redact(&String::from_utf8_lossy(&text));
                    Err(TbError::from_status(status, body))
                }
            }
            Err(ureq::Error::Timeout(_)) => Err(TbError::Timeout {
                url: self.redacted_url(),
                timeout: self.timeout,
            }),
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(TbError::Timeout {
                    url: self.redacted_url(),
                    timeout: self.timeout,
                })
            }
            Err(e) => Err(TbError::Connect {
                url: self.redacted_url(),
                detail: token.redact(&e.to_string()),
            }),
        }
    }
}
