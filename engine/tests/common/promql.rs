//! The Grafana dashboard and the Prometheus alert rules of `deploy/`, checked against a real
//! Prometheus that scrapes a running job: every dashboard target and every alert (its
//! threshold stripped) must answer an instant query with at least one series.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs every `expr` of `deploy/grafana/flowcast.json` (the dashboard's variables replaced:
/// `$flowcast_job` by `job`, `$__rate_interval` by `30s`, `$__interval` by `5s`, `$__range`
/// by `5m`) and of every alert in `deploy/prometheus/rules.yml` (its thresholds stripped, so
/// that a healthy job answers too) as an instant query against `prometheus`
/// (`http://127.0.0.1:9090`). Returns `"expr: why"` for each one that failed or returned no
/// series; empty when all of them answered.
pub fn check_dashboard_and_rules(prometheus: &str, job: &str, repo: &Path) -> Vec<String> {
    let mut exprs: Vec<String> = dashboard_exprs(repo)
        .iter()
        .map(|e| substitute(e, job))
        .collect();
    exprs.extend(rule_exprs(repo).iter().map(|e| strip_thresholds(e)));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let base = prometheus.trim_end_matches('/');
    exprs
        .iter()
        .filter_map(|expr| {
            let url = format!("{base}/api/v1/query?query={}", urlencode(expr));
            let why = match agent.get(&url).call() {
                Err(e) => format!("request failed: {e}"),
                Ok(mut r) => match r.body_mut().read_to_string() {
                    Err(e) => format!("cannot read the answer: {e}"),
                    Ok(body) => match serde_json::from_str::<serde_json::Value>(&body) {
                        Err(e) => format!("not JSON ({e}): {body}"),
                        Ok(v) if v["status"] != "success" => format!(
                            "{}: {}",
                            v["errorType"].as_str().unwrap_or("error"),
                            v["error"].as_str().unwrap_or(&body)
                        ),
                        Ok(v) => match v["data"]["result"].as_array() {
                            Some(series) if !series.is_empty() => return None,
                            Some(_) => "empty result".to_owned(),
                            None => format!("no result list: {body}"),
                        },
                    },
                },
            };
            Some(format!("{expr}: {why}"))
        })
        .collect()
}

/// Runs `promtool check rules` on `deploy/prometheus/rules.yml`; panics with its output when
/// the rules do not pass (or promtool cannot be run).
pub fn promtool_check(repo: &Path) {
    let rules = repo.join("deploy/prometheus/rules.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool (Debian package prometheus; deploy/setup.sh installs it)");
    assert!(
        out.status.success(),
        "promtool check rules {}:\n{}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every target `expr` of the dashboard, panels inside rows included.
fn dashboard_exprs(repo: &Path) -> Vec<String> {
    let path = repo.join("deploy/grafana/flowcast.json");
    let text = std::fs::read_to_string(&path).expect("read deploy/grafana/flowcast.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).expect("deploy/grafana/flowcast.json is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard["panels"], &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has no targets");
    exprs
}

fn collect_exprs(panels: &serde_json::Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(e) = target["expr"].as_str() {
                out.push(e.to_owned());
            }
        }
        collect_exprs(&panel["panels"], out);
    }
}

/// The dashboard's variables replaced as Grafana would for `job` (ids are `[a-z0-9-]`: no
/// regex escaping needed).
fn substitute(expr: &str, job: &str) -> String {
    expr.replace("${flowcast_job}", job)
        .replace("$flowcast_job", job)
        .replace("$__rate_interval", "30s")
        .replace("$__interval", "5s")
        .replace("$__range", "5m")
}

/// The single-line `expr:` values of the alert rules (no YAML parser among the test's
/// dependencies; rules.yml keeps every expression on one line).
fn rule_exprs(repo: &Path) -> Vec<String> {
    let path = repo.join("deploy/prometheus/rules.yml");
    let text = std::fs::read_to_string(&path).expect("read deploy/prometheus/rules.yml");
    let exprs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .map(|e| {
            let e = e.trim();
            let unquoted = e
                .strip_prefix('"')
                .and_then(|e| e.strip_suffix('"'))
                .or_else(|| e.strip_prefix('\'').and_then(|e| e.strip_suffix('\'')));
            unquoted.unwrap_or(e).to_owned()
        })
        .collect();
    assert!(!exprs.is_empty(), "rules.yml has no expr lines");
    exprs
}

/// `A > 1 and B == 0` → `A and B`: the trailing `<op> <number>` of each side of `and`.
fn strip_thresholds(expr: &str) -> String {
    expr.split(" and ")
        .map(strip_threshold)
        .collect::<Vec<_>>()
        .join(" and ")
}

fn strip_threshold(side: &str) -> &str {
    let side = side.trim();
    let number = side.trim_end_matches(|c: char| c.is_ascii_digit() || ".eE+-".contains(c));
    if number.len() == side.len() {
        return side;
    }
    let before = number.trim_end();
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some(base) = before.strip_suffix(op) {
            return base.trim_end();
        }
    }
    side
}

/// Percent-encodes a query parameter (everything but the unreserved characters).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
