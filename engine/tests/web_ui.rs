//! The web UI in a real browser (Debian's headless chromium driven over WebDriver by
//! chromedriver), served by a real coordinator running a job on its nodes against Kafka:
//! the page is refused without the token and loads with it, shows the running job with its
//! graph, and a device's chart gains points as windows close. The numbers the page shows
//! agree with the processes' `/metrics` and with `predicData` read `read_committed`.
//! Screenshots of the job page and a device chart go to `$CARGO_TARGET_TMPDIR/ui` (and to
//! `$FLOWCAST_UI_SCREENSHOTS` when set: the README's come from there).

#[path = "common/cluster.rs"]
mod test_cluster;
#[path = "common/webdriver.rs"]
mod webdriver;

use flowcast_engine::cluster::api::{Parallelism, SubmitRequest};
use flowcast_tests::data::{ROOMS, room_readings};
use flowcast_tests::forecast::{PERSISTENCE, exactly_once_spec, spec_with_model};
use flowcast_tests::{kafka, wait};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use test_cluster::{TestCluster, free_port, running};
use webdriver::Browser;

/// A Kafka record: key and value.
type Message = (Option<String>, Vec<u8>);

/// Three days of the eight rooms (every partition gets data), in two parts: the first ends 40 hours in (60 windows of history
/// and about 20 forecasts per device), the second brings each device past 61 windows.
fn input() -> (Vec<Message>, Vec<Message>) {
    let readings = room_readings(&ROOMS, 3.0);
    let t0 = readings.iter().map(|r| r.time).fold(f64::MAX, f64::min);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for r in readings {
        let v = serde_json::json!({"time": r.time, "temperature": r.temperature,
                                   "humidity": r.humidity, "device": r.device});
        let rec = (
            Some(r.device.clone()),
            serde_json::to_vec(&v).expect("json"),
        );
        if r.time < t0 + 40.0 * 3600.0 {
            first.push(rec);
        } else {
            second.push(rec);
        }
    }
    // One malformed reading: the page's dead-letter count must show it.
    first.push((Some("room-1".into()), b"not json at all".to_vec()));
    (first, second)
}

fn http_status(url: &str, cookie: Option<&str>) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    req.call().map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Sums a counter over the job's processes' `/metrics`.
fn metrics_sum(ports: &[u16], name: &str) -> f64 {
    ports
        .iter()
        .map(|p| {
            let text = ureq::get(&format!("http://127.0.0.1:{p}/metrics"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .unwrap_or_default();
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

fn save(name: &str, png: &[u8]) {
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui")];
    dirs.extend(std::env::var_os("FLOWCAST_UI_SCREENSHOTS").map(PathBuf::from));
    for d in dirs {
        std::fs::create_dir_all(&d).expect("screenshot dir");
        std::fs::write(d.join(name), png).expect("screenshot");
        eprintln!("saved {}", d.join(name).display());
    }
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
}

fn number(text: &str) -> f64 {
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number in `{text}`"))
}

#[test]
fn the_web_ui_shows_the_job_and_a_device_chart_that_grows() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-ui");
    kafka::create_topic(&brokers, &topic, 3);
    let out = flowcast_tests::unique_topic("ui");
    for suffix in ["pred", "dead", "late"] {
        kafka::create_topic(&brokers, &format!("{out}-{suffix}"), 3);
    }
    let cluster = TestCluster {
        dir: tempfile::tempdir().expect("temp dir"),
        port: free_port(),
        prometheus: None,
        restarted: None,
    };
    let token = format!("ui-test-{}", std::process::id());
    std::fs::write(cluster.token_file(), &token).expect("token");
    let first_port = 26_000 + (std::process::id() % 20) * 300;
    let port = cluster.port.to_string();
    cluster.script(
        "deploy/cluster/start.sh",
        &[
            "--port",
            &port,
            "--first-node-port",
            &first_port.to_string(),
        ],
    );
    let c = cluster.client();
    let location = cluster.dir.path().join("checkpoints").display().to_string();
    let spec = exactly_once_spec(
        &spec_with_model(&brokers, &topic, &out, PERSISTENCE),
        &out,
        &location,
        "1s",
    );
    let (first, second) = input();
    kafka::produce(&brokers, &topic, &first);
    c.submit(&SubmitRequest {
        spec,
        model: None,
        parallelism: Some(Parallelism::Fixed(2)),
    })
    .expect("submit");
    let job = running(&c, &out, 2, "submitted");
    let ports: Vec<u16> = c
        .job(&out)
        .expect("detail")
        .placement
        .iter()
        .map(|p| p.placement.metrics_port)
        .collect();
    assert_eq!(job.processes, 2);

    // Without the token: the page is the login form (401), the API refuses.
    let base = cluster.url();
    let api = |path: &str| -> serde_json::Value {
        let mut r = ureq::get(&format!("{base}{path}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json")
    };
    assert_eq!(http_status(&format!("{base}/ui/"), None), 401);
    // The login form's stylesheet is public; the data is not.
    assert_eq!(http_status(&format!("{base}/ui/app.css"), None), 200);
    assert_eq!(http_status(&format!("{base}/v1/jobs"), None), 401);
    assert_eq!(
        http_status(&format!("{base}/v1/jobs"), Some("flowcast_session=guessed")),
        401
    );
    let mut b = Browser::start();
    b.goto(&format!("{base}/ui/"));
    if b.find("#token").is_none() {
        panic!("the login form at {}: {}", b.url(), b.source());
    }
    assert!(b.find("tr.job-row").is_none(), "no job without the token");
    b.type_into("#token", "not-the-token");
    b.click("#login");
    wait::poll_for(Duration::from_secs(10), || {
        b.url().contains("failed=1").then_some(())
    })
    .expect("a wrong token is refused");
    assert!(b.text("#login-error").is_some_and(|t| !t.is_empty()));
    b.type_into("#token", &token);
    b.click("#login");

    // The jobs table shows the running job.
    let row = format!("tr.job-row[data-job=\"{out}\"] td.job-state");
    let state = wait::poll_for(Duration::from_secs(20), || {
        b.text(&row).filter(|s| s.contains("running"))
    });
    assert!(state.is_some(), "the job is listed as running");
    assert!(b.find_all("tr.node-row").len() == 3, "three nodes");

    // The job page: its graph, every operator with its numbers.
    b.goto(&format!("{base}/ui/#/jobs/{out}"));
    for op in [
        format!("source:{topic}"),
        "window".into(),
        "sequence".into(),
        "sink-0:kafka".into(),
    ] {
        let sel = format!("div.op[data-op=\"{op}\"] span.in-rate");
        wait::poll_for(Duration::from_secs(20), || b.find(&sel))
            .unwrap_or_else(|| panic!("the graph shows `{op}`"));
    }
    // Once the first part is read: the dead-lettered count on the page is /metrics' count,
    // and the graph's totals are the processes' totals.
    let read = wait::poll_for(Duration::from_secs(60), || {
        let n = metrics_sum(&ports, "flowcast_source_records_total");
        (n as usize == first.len()).then_some(n)
    })
    .expect("the job reads the first part");
    let dead_sel = format!("div.op[data-op=\"source:{topic}\"] span.dead-lettered");
    let shown = wait::poll_for(Duration::from_secs(20), || {
        b.text(&dead_sel)
            .filter(|t| t.chars().any(|c| c.is_ascii_digit()))
    })
    .expect("the source's dead-lettered count is shown");
    let in_metrics = metrics_sum(&ports, "flowcast_source_dead_letter_records_total");
    assert_eq!(number(&shown), in_metrics, "dead letters: page `{shown}`");
    assert_eq!(in_metrics, 1.0);
    let graph = api(&format!("/v1/jobs/{out}/graph"));
    let source = graph["operators"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["kind"] == "source"))
        .expect("the source in the graph");
    assert_eq!(source["records_in_total"].as_f64(), Some(read));
    let lag = b.text("#watermark-lag").unwrap_or_default();
    assert!(!lag.is_empty(), "the watermark lag is shown");

    // A device's chart: its points are predicData's committed forecasts of the device.
    let committed = |device: &str| -> BTreeMap<i64, f64> {
        kafka::read_committed(&brokers, &format!("{out}-pred"))
            .iter()
            .filter(|r| r.key.as_deref() == Some(device.as_bytes()))
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
                (
                    (v["window_end"].as_f64().expect("end") * 1e3) as i64,
                    v["observed"]["temperature"].as_f64().expect("t"),
                )
            })
            .collect()
    };
    b.click("#device-search");
    b.type_into("#device-search", "room-1");
    if wait::poll_for(Duration::from_secs(60), || b.find("a.device-link")).is_none() {
        panic!(
            "the search finds room-1: {}; committed forecasts of room-1: {}",
            api(&format!("/v1/jobs/{out}/devices?q=room")),
            committed("room-1").len()
        );
    }
    b.click("a.device-link");
    let count = |b: &mut Browser| -> Option<usize> {
        let t = b.text("#point-count")?;
        t.split_whitespace().next()?.parse().ok()
    };
    // Everything of the first part is committed (the job idles at its end).
    let before = wait::poll_for(Duration::from_secs(60), || {
        let n = count(&mut b)?;
        let c = committed("room-1");
        (n > 0 && n == c.len().min(61)).then_some(n)
    })
    .unwrap_or_else(|| {
        panic!(
            "the chart shows predicData's forecasts: page {:?}, committed {}",
            count(&mut b),
            committed("room-1").len()
        )
    });
    assert!(before < 61, "the first part leaves room to grow: {before}");
    save("device.png", &b.screenshot());
    kafka::produce(&brokers, &topic, &second);
    let after = wait::poll_for(Duration::from_secs(90), || {
        count(&mut b).filter(|n| *n > before)
    })
    .expect("the chart gains points as windows close");
    // The newest point on the page is predicData's newest committed forecast of room-1.
    let series = api(&format!("/v1/jobs/{out}/devices/room-1"));
    let points = series["points"].as_array().expect("points");
    let last = points.last().expect("a point");
    let end = last["window_end_ms"].as_i64().expect("end");
    let c = committed("room-1");
    let t = c
        .get(&end)
        .copied()
        .expect("the page's newest window is committed");
    assert!(
        (last["observed"]["temperature"].as_f64().expect("t") - t).abs() < 1e-3,
        "observed {last} vs predicData {t}"
    );
    eprintln!("room-1: {before} → {after} windows on the chart");
    save("device.png", &b.screenshot());

    // Back on the job page, the graph shows rates once it has two samples.
    b.goto(&format!("{base}/ui/#/jobs/{out}"));
    let rate = format!("div.op[data-op=\"source:{topic}\"] span.in-rate");
    wait::poll_for(Duration::from_secs(20), || {
        b.text(&rate)
            .filter(|t| t.chars().any(|c| c.is_ascii_digit()))
    })
    .expect("the source's rate is shown");
    // The accuracy table: the forecast-quality series, summed as /metrics has them.
    assert_eq!(
        b.find_all("tr.accuracy-row").len(),
        2,
        "one row per feature"
    );
    let agree = wait::poll_for(Duration::from_secs(30), || {
        let shown =
            api(&format!("/v1/jobs/{out}/graph"))["accuracy"]["predictions_total"].as_f64()?;
        let metrics = metrics_sum(&ports, "flowcast_forecast_predictions_total");
        (shown == metrics && metrics > 0.0).then_some(metrics)
    });
    assert!(agree.is_some(), "the graph's forecast count is /metrics'");
    save("job.png", &b.screenshot());
}
