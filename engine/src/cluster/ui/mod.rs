//! The web UI, served by the coordinator on the API's port: a page (`/ui/`) built from
//! `engine/ui/` (uPlot charts; the bundle is committed, checksummed in
//! `engine/ui/dist/SHA256SUMS` and rebuilt by `engine/ui/build.sh`, so a plain `cargo build`
//! needs no Node and the binary serves the page offline) and the JSON it reads: the jobs,
//! nodes and job detail of the API, plus
//!
//! - `GET /v1/jobs/{id}/graph`: the job graph with rates, busy and blocked shares
//!   ([`graph`]);
//! - `GET /v1/jobs/{id}/devices?q=&limit=` and `GET /v1/jobs/{id}/devices/{device}`: the
//!   devices and their observed and predicted windows, from the job's Kafka output
//!   ([`follow`]).
//!
//! A browser cannot send a bearer header with a page load, so `POST /ui/login` trades the
//! API token for a session cookie (random, HttpOnly, SameSite=Strict, 12 hours); the cookie
//! is good for `GET` requests only, so a page elsewhere cannot submit or cancel jobs.

pub mod follow;
pub mod graph;

use super::coordinator::Shared;
use super::server::error;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The bundle's files: name, content type, bytes.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../ui/dist/index.html"),
    ),
    (
        "login.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../ui/dist/login.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/dist/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../ui/dist/app.css"),
    ),
];

/// `engine/ui/dist/SHA256SUMS` as committed.
pub const SHA256SUMS: &str = include_str!("../../../ui/dist/SHA256SUMS");

const COOKIE: &str = "flowcast_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 1024;

/// A job's previous graph sample: when, and the totals by operator.
type Sample = (Instant, BTreeMap<String, graph::OperatorStats>);

/// The UI's state in the coordinator.
#[derive(Debug)]
pub struct UiState {
    sessions: Mutex<HashMap<String, Instant>>,
    /// Per job: the previous sample's time and totals (for rates).
    samples: Mutex<HashMap<String, Sample>>,
    followers: Mutex<HashMap<String, Arc<follow::Follower>>>,
    max_devices: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UiState {
    /// Keeps at most `max_devices` devices per job.
    pub fn new(max_devices: usize) -> Self {
        UiState {
            sessions: Mutex::new(HashMap::new()),
            samples: Mutex::new(HashMap::new()),
            followers: Mutex::new(HashMap::new()),
            max_devices,
        }
    }

    fn new_session(&self) -> String {
        let id = super::coordinator::random_token();
        let mut s = lock(&self.sessions);
        let now = Instant::now();
        s.retain(|_, t| now.duration_since(*t) < SESSION_TTL);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(id.clone(), now);
        id
    }

    fn has_session(&self, headers: &HeaderMap) -> bool {
        let Some(id) = session_cookie(headers) else {
            return false;
        };
        lock(&self.sessions)
            .get(id)
            .is_some_and(|t| t.elapsed() < SESSION_TTL)
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// A `GET` is allowed with the bearer token or a session cookie.
pub fn read_allowed(s: &Shared, headers: &HeaderMap) -> bool {
    s.token.is_none() || s.ui.has_session(headers) || super::server::bearer_ok(s, headers)
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "a valid bearer token or a session of the web UI (/ui/login) is required",
    )
}

/// The UI's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { redirect("/ui/") }))
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/", get(page))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/{file}", get(asset))
        .route("/v1/jobs/{id}/graph", get(job_graph))
        .route("/v1/jobs/{id}/devices", get(devices))
        .route("/v1/jobs/{id}/devices/{device}", get(device))
        .with_state(shared)
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

fn file(name: &str, status: StatusCode) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, bytes)) => (
            status,
            [
                (header::CONTENT_TYPE, *ty),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no file `{name}` in the UI")),
    }
}

/// `/ui/`: the page, or the login form with 401.
async fn page(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if read_allowed(&s, &headers) {
        file("index.html", StatusCode::OK)
    } else {
        file("login.html", StatusCode::UNAUTHORIZED)
    }
}

async fn login_page() -> Response {
    file("login.html", StatusCode::OK)
}

/// The bundle's script and stylesheet: public (the login form uses the stylesheet too);
/// everything they show comes from the API, which needs the session.
async fn asset(Path(name): Path<String>) -> Response {
    if name.ends_with(".html") {
        return redirect("/ui/");
    }
    file(&name, StatusCode::OK)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<Arc<Shared>>, Form(f): Form<LoginForm>) -> Response {
    if !super::server::token_matches(&s, &f.token) {
        tracing::warn!("web UI login with a wrong token refused");
        return redirect("/ui/login?failed=1");
    }
    let id = s.ui.new_session();
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut r = redirect("/ui/");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn json<T: serde::Serialize>(body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(s) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            s,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn job_graph(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !read_allowed(&s, &headers) {
        return unauthorized();
    }
    let s2 = Arc::clone(&s);
    match super::server::off_runtime(move || sample_graph(&s2, &id)).await {
        Ok(Ok(g)) => json(&g),
        Ok(Err((status, m))) => error(status, m),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

type Failure = (StatusCode, String);

fn job_spec(
    s: &Shared,
    id: &str,
) -> Result<(super::state::JobRecord, crate::job::JobSpec), Failure> {
    let record = s
        .lock()
        .job(id)
        .cloned()
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no job `{id}`")))?;
    let spec = crate::job::JobSpec::parse(&record.spec, std::path::Path::new("the job's spec"))
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((record, spec))
}

/// Scrapes the job's processes and answers its graph with rates since the last sample.
fn sample_graph(s: &Shared, id: &str) -> Result<graph::Graph, Failure> {
    let (record, spec) = job_spec(s, id)?;
    let agent = super::loops::agent(Duration::from_millis(800));
    let mut samples = Vec::new();
    for p in &record.placement {
        if let Some(text) = super::loops::scrape(&agent, &p.host, p.metrics_port) {
            samples.extend(graph::parse(&text));
        }
    }
    let watermark_ms = graph::watermark_ms(&samples);
    let (mut operators, edges) = graph::totals(&spec, &samples);
    let accuracy = graph::accuracy(&spec, &samples);
    let now = Instant::now();
    let workers = record.placement.len() as u32 * record.threads;
    let interval_s = {
        let mut all = lock(&s.ui.samples);
        let prev = all.get(id);
        let dt = prev.map(|(t, _)| now.duration_since(*t).as_secs_f64());
        if let (Some((_, before)), Some(dt)) = (prev, dt) {
            graph::rates(&mut operators, before, dt, workers);
        }
        // Keep the older sample while it is younger than a second: rates over a longer span.
        if dt.is_none_or(|d| d >= 1.0) {
            let by_id = operators
                .iter()
                .map(|o| (o.id.clone(), o.clone()))
                .collect();
            all.insert(id.to_owned(), (now, by_id));
        }
        dt
    };
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Ok(graph::Graph {
        job: id.to_owned(),
        sampled_unix_ms: wall_ms,
        interval_s,
        watermark_ms,
        watermark_lag_s: watermark_ms.map(|w| (wall_ms as f64 - w) / 1e3),
        workers,
        operators,
        edges,
        accuracy,
    })
}

/// The follower of the job's first Kafka sink, started on first use.
fn follower(s: &Shared, id: &str) -> Result<Arc<follow::Follower>, Failure> {
    if let Some(f) = lock(&s.ui.followers).get(id) {
        return Ok(Arc::clone(f));
    }
    let (_, spec) = job_spec(s, id)?;
    let source = crate::kafka::ClientSettings::new(&spec.source.brokers);
    let Some(kafka) = spec.sinks.iter().find_map(|k| match k {
        crate::sinks::SinkSpec::Kafka(c) => Some(c),
        _ => None,
    }) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("job `{id}` has no Kafka sink: the UI charts a job's Kafka output"),
        ));
    };
    let f = follow::follow(id, &kafka.settings(&source), &kafka.topic, s.ui.max_devices)
        .map_err(|e| (StatusCode::BAD_GATEWAY, e))?;
    lock(&s.ui.followers).insert(id.to_owned(), Arc::clone(&f));
    Ok(f)
}

#[derive(serde::Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

async fn devices(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Search>,
) -> Response {
    if !read_allowed(&s, &headers) {
        return unauthorized();
    }
    let s2 = Arc::clone(&s);
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let answer = super::server::off_runtime(move || {
        let f = follower(&s2, &id)?;
        let list = f.devices().search(&q.q, limit, f.source());
        Ok::<_, Failure>(list)
    })
    .await;
    match answer {
        Ok(Ok(list)) => json(&list),
        Ok(Err((status, m))) => error(status, m),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn device(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, device)): Path<(String, String)>,
) -> Response {
    if !read_allowed(&s, &headers) {
        return unauthorized();
    }
    let s2 = Arc::clone(&s);
    let answer = super::server::off_runtime(move || {
        let f = follower(&s2, &id)?;
        let series = f.devices().series(&device);
        series.ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("no forecasts of device `{device}` in `{}` yet", f.topic),
            )
        })
    })
    .await;
    match answer {
        Ok(Ok(series)) => json(&series),
        Ok(Err((status, m))) => error(status, m),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_served_bundle_matches_its_checksums() {
        let sums: BTreeMap<&str, &str> = SHA256SUMS
            .lines()
            .filter_map(|l| {
                let (sum, name) = l.split_once("  ")?;
                Some((name.trim(), sum))
            })
            .collect();
        for (name, _, bytes) in ASSETS {
            let got = super::super::server::hex(&Sha256::digest(bytes));
            assert_eq!(
                sums.get(name).copied(),
                Some(got.as_str()),
                "{name} differs from engine/ui/dist/SHA256SUMS: run engine/ui/build.sh"
            );
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; flowcast_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
    }
}
