//! The coordinator's HTTP API (axum): jobs, nodes, artifacts, Prometheus service discovery
//! and `/metrics`. Every route but `/metrics` needs `Authorization: Bearer <token>` when a
//! token is configured; every error is `{"error": "…"}`.

use super::api::{
    ApiError, ArtifactRef, Heartbeat, HeartbeatReply, JobView, Parallelism, RescaleRequest,
    SubmitRequest,
};
use super::coordinator::Shared;
use super::detail;
use super::state::Refusal;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest artifact accepted (a model): 512 MiB.
const MAX_ARTIFACT: usize = 512 << 20;

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_string_pretty(body) {
        Ok(s) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            s + "\n",
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A JSON error answer.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ApiError {
        error: message.into(),
    };
    let text = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        text + "\n",
    )
        .into_response()
}

fn refused(r: Refusal) -> Response {
    error(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
        r.message,
    )
}

/// `given` is the configured token (compared in constant time); `true` when none is set.
pub fn token_matches(shared: &Shared, given: &str) -> bool {
    let Some(token) = shared.token.as_deref() else {
        return true;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request carries `Authorization: Bearer <the token>` (or no token is configured).
pub fn bearer_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    token_matches(shared, given)
}

/// Like [`refused_token`] for a read: a session cookie of the web UI is enough.
fn refused_read(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if super::ui::read_allowed(shared, headers) {
        None
    } else {
        refused_token(shared, headers)
    }
}

/// `Some(401 answer)` unless the request carries the token (when one is configured).
fn refused_token(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if bearer_ok(shared, headers) {
        None
    } else {
        tracing::warn!("API request without a valid bearer token refused");
        Some(error(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer …; the CLI reads FLOWCAST_COORDINATOR_TOKEN or FLOWCAST_COORDINATOR_TOKEN_FILE)",
        ))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("the request body is not a valid {what}: {e}"))
}

/// The API's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/jobs", post(submit).get(list_jobs))
        .route("/v1/jobs/{id}", get(show_job))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/stop", post(stop))
        .route("/v1/jobs/{id}/savepoint", post(savepoint))
        .route("/v1/jobs/{id}/rescale", post(rescale))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/heartbeat", post(heartbeat))
        .route("/v1/artifacts", put(put_artifact))
        .route("/v1/artifacts/{sha}", get(get_artifact))
        .route("/v1/prometheus/sd", get(service_discovery))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; see /v1/jobs, /v1/nodes",
            )
        })
        .with_state(Arc::clone(&shared))
        .merge(super::ui::router(shared))
        .merge(crate::metrics::router())
}

async fn submit(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refused_token(&s, &headers) {
        return r;
    }
    let req: SubmitRequest = match parse(&body, "job submission") {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let s2 = Arc::clone(&s);
    // Validation reads the topic's partitions and the artifacts: blocking work.
    let out = off_runtime(move || s2.submit(req)).await;
    match out {
        Ok(Ok(view)) => json(StatusCode::CREATED, &view),
        Ok(Err(r)) => refused(r),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_jobs(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused_read(&s, &headers) {
        return r;
    }
    let views: Vec<JobView> = {
        let c = s.lock();
        c.jobs().filter_map(|j| c.job_view(&j.id)).collect()
    };
    json(StatusCode::OK, &views)
}

async fn show_job(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refused_read(&s, &headers) {
        return r;
    }
    let s2 = Arc::clone(&s);
    match off_runtime(move || detail::job_detail(&s2, &id)).await {
        Ok(Ok(view)) => json(StatusCode::OK, &view),
        Ok(Err(r)) => refused(r),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn act(
    s: &Shared,
    headers: &HeaderMap,
    id: &str,
    f: impl FnOnce(&mut super::state::Cluster, Instant) -> Result<(), Refusal>,
) -> Response {
    if let Some(r) = refused_token(s, headers) {
        return r;
    }
    let out = s.mutate(|c, now| f(c, now).map(|()| c.job_view(id)));
    match out {
        Ok(Some(view)) => json(StatusCode::ACCEPTED, &view),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job `{id}`")),
        Err(r) => refused(r),
    }
}

async fn cancel(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    act(&s, &headers, &id.clone(), |c, _| c.cancel(&id))
}

async fn stop(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    act(&s, &headers, &id.clone(), |c, now| c.stop(&id, now))
}

async fn savepoint(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    act(&s, &headers, &id.clone(), |c, _| c.savepoint(&id))
}

async fn rescale(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = refused_token(&s, &headers) {
        return r;
    }
    let req: RescaleRequest = match parse(&body, "rescale request") {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    if s.lock().job(&id).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no job `{id}`"));
    }
    let workers = match req.parallelism {
        Parallelism::Fixed(0) => {
            return error(StatusCode::BAD_REQUEST, "parallelism must be at least 1");
        }
        Parallelism::Fixed(n) => n,
        Parallelism::Auto(_) => {
            let s2 = Arc::clone(&s);
            let id2 = id.clone();
            match off_runtime(move || s2.partitions_of(&id2)).await {
                Ok(Ok(n)) => n,
                Ok(Err(r)) => return refused(r),
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
    };
    act(&s, &headers, &id.clone(), |c, now| {
        c.rescale(&id, req.parallelism, workers, now)
    })
}

async fn nodes(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused_read(&s, &headers) {
        return r;
    }
    let now = Instant::now();
    let c = s.lock();
    let views: Vec<_> = c
        .nodes()
        .keys()
        .filter_map(|id| c.node_view(id, now))
        .collect();
    drop(c);
    json(StatusCode::OK, &views)
}

async fn heartbeat(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refused_token(&s, &headers) {
        return r;
    }
    let hb: Heartbeat = match parse(&body, "heartbeat") {
        Ok(h) => h,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let received_unix_ms = crate::checkpoint::manifest::now_unix_ms();
    s.check_clock(&hb);
    let node = hb.node.clone();
    let wait = Duration::from_millis(hb.wait_ms.min(5_000));
    let key = |job: &str, attempt: u64, index: u32| (job.to_owned(), attempt, index);
    let has: BTreeSet<_> = hb
        .processes
        .iter()
        .map(|p| key(&p.job, p.attempt, p.index))
        .collect();
    // Registered before the heartbeat is applied, so no change after it is missed.
    let changed = s.changed.notified();
    tokio::pin!(changed);
    changed.as_mut().enable();
    // A process that exited is acted on now (a restart, or a rescale's next attempt placed),
    // not at the state machine's next tick.
    let exited = hb.processes.iter().any(|p| p.exit.is_some());
    let mut desired = s.mutate(|c, now| {
        let desired = c.heartbeat(hb, now);
        if !exited {
            return desired;
        }
        c.tick(now);
        c.desired(&node)
    });
    let same = desired
        .iter()
        .map(|l| key(&l.job, l.attempt, l.index))
        .collect::<BTreeSet<_>>()
        == has;
    // Nothing to do for the node: hold the answer until something changes (a long poll).
    if same && !wait.is_zero() && tokio::time::timeout(wait, changed).await.is_ok() {
        desired = s.lock().desired(&node);
    }
    let reply = HeartbeatReply {
        received_unix_ms,
        now_unix_ms: crate::checkpoint::manifest::now_unix_ms(),
        desired,
    };
    json(StatusCode::OK, &reply)
}

async fn put_artifact(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refused_token(&s, &headers) {
        return r;
    }
    if body.len() > MAX_ARTIFACT {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an artifact may have at most {MAX_ARTIFACT} bytes"),
        );
    }
    let s2 = Arc::clone(&s);
    match off_runtime(move || s2.put_artifact(body)).await {
        Ok(Ok(r)) => json(StatusCode::CREATED, &r),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_artifact(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sha): Path<String>,
) -> Response {
    if let Some(r) = refused_token(&s, &headers) {
        return r;
    }
    if !is_sha256(&sha) {
        return error(
            StatusCode::BAD_REQUEST,
            "an artifact is named by its sha256 (64 hex digits)",
        );
    }
    let s2 = Arc::clone(&s);
    match off_runtime(move || s2.get_artifact(&sha)).await {
        Ok(Ok(Some(bytes))) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no such artifact"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Runs blocking work (the checkpoint store, Kafka metadata, scrapes) on a thread of its
/// own, outside the runtime: the store refuses to block inside one, blocking-pool threads
/// included.
pub(crate) async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::sync::oneshot::error::RecvError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await
}

/// `sha` is 64 lowercase hex digits.
pub fn is_sha256(sha: &str) -> bool {
    sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One group of Prometheus HTTP service discovery.
#[derive(Debug, Serialize)]
struct SdGroup {
    targets: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
}

async fn service_discovery(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused_token(&s, &headers) {
        return r;
    }
    let mut groups = vec![SdGroup {
        targets: vec![s.advertise.clone()],
        labels: [("role".to_owned(), "coordinator".to_owned())]
            .into_iter()
            .collect(),
    }];
    let c = s.lock();
    for j in c.jobs() {
        if !matches!(
            j.state,
            super::api::JobState::Scheduling
                | super::api::JobState::Running
                | super::api::JobState::Rescaling
                | super::api::JobState::Stopping
        ) {
            continue;
        }
        for p in &j.placement {
            groups.push(SdGroup {
                targets: vec![format!("{}:{}", p.host, p.metrics_port)],
                labels: [
                    ("role", "job".to_owned()),
                    ("flowcast_job", j.id.clone()),
                    ("process", p.index.to_string()),
                    ("node", p.node.clone()),
                    ("attempt", j.attempt.to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            });
        }
    }
    drop(c);
    json(StatusCode::OK, &groups)
}

/// `ArtifactRef` for `bytes`.
pub fn artifact_ref(bytes: &[u8]) -> ArtifactRef {
    use sha2::Digest;
    ArtifactRef {
        sha256: hex(&sha2::Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
