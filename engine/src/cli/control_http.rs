//! The job's control endpoint, next to `/metrics`: `POST /savepoint` (a savepoint, the job
//! goes on), `POST /stop` (a final checkpoint, then stop), `POST /stop-with-savepoint` (a
//! savepoint, then stop). Every request needs `Authorization: Bearer <token>`, the token
//! from `FLOWCAST_CONTROL_TOKEN` or the file named by `FLOWCAST_CONTROL_TOKEN_FILE` (never
//! argv); without a token the endpoint is not started. It binds to loopback unless
//! `--control-addr` says otherwise. Answers `202 Accepted` with the request as JSON; the
//! coordinator's log and `flowcast_checkpoint_*` metrics say when it is done.

use crate::lifecycle::JobControl;
use crate::lifecycle::control::Request;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;

/// The control token from the environment, if one is configured.
///
/// # Errors
/// If `FLOWCAST_CONTROL_TOKEN_FILE` names a file that cannot be read or is empty.
pub fn token_from_env() -> anyhow::Result<Option<String>> {
    token_from("FLOWCAST_CONTROL_TOKEN", "FLOWCAST_CONTROL_TOKEN_FILE")
}

/// A secret from the environment variable `var`, or from the file the variable `file_var`
/// names (trimmed); `None` when neither is set.
///
/// # Errors
/// If the file cannot be read or holds only whitespace.
pub fn token_from(var: &str, file_var: &str) -> anyhow::Result<Option<String>> {
    if let Ok(t) = std::env::var(var)
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_owned()));
    }
    match std::env::var(file_var) {
        Ok(path) => {
            let t = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {file_var} {path}: {e}"))?;
            anyhow::ensure!(!t.trim().is_empty(), "the token file {path} is empty");
            Ok(Some(t.trim().to_owned()))
        }
        Err(_) => Ok(None),
    }
}

#[derive(Clone)]
struct Ctl {
    control: JobControl,
    token: Arc<str>,
}

fn authorized(ctl: &Ctl, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compare in constant time for equal lengths.
    let (a, b) = (given.as_bytes(), ctl.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer(ctl: &Ctl, headers: &HeaderMap, r: Request) -> (StatusCode, String) {
    if !authorized(ctl, headers) {
        tracing::warn!("control endpoint: request without a valid token refused");
        return (
            StatusCode::UNAUTHORIZED,
            "{\"error\":\"unauthorized\"}\n".into(),
        );
    }
    ctl.control.request(r);
    tracing::info!(request = ?r, "control endpoint: request accepted");
    (
        StatusCode::ACCEPTED,
        format!("{{\"accepted\":\"{r:?}\"}}\n"),
    )
}

async fn savepoint(State(ctl): State<Ctl>, headers: HeaderMap) -> (StatusCode, String) {
    answer(&ctl, &headers, Request::Savepoint)
}

async fn stop(State(ctl): State<Ctl>, headers: HeaderMap) -> (StatusCode, String) {
    answer(&ctl, &headers, Request::StopWithCheckpoint)
}

async fn stop_with_savepoint(State(ctl): State<Ctl>, headers: HeaderMap) -> (StatusCode, String) {
    answer(&ctl, &headers, Request::StopWithSavepoint)
}

/// Serves the control endpoint on `addr`; returns the bound address.
///
/// # Errors
/// If the address cannot be bound.
pub fn serve(addr: SocketAddr, control: JobControl, token: String) -> std::io::Result<SocketAddr> {
    let app = axum::Router::new()
        .route("/savepoint", post(savepoint))
        .route("/stop", post(stop))
        .route("/stop-with-savepoint", post(stop_with_savepoint))
        .with_state(Ctl {
            control,
            token: Arc::from(token),
        });
    crate::metrics::serve_router(addr, app, "control")
}
