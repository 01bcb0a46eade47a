//! The cluster end to end on loopback, with the real binary, Kafka and Prometheus: a
//! coordinator and three nodes started by `deploy/cluster/start.sh`; the DHT11 forecast job
//! (the committed LSTM, every Kafka output exactly-once) submitted over REST with its model;
//! rescaled 1 → 3 → 2 → `auto`; a job process killed with `kill -9`, then a whole node, then
//! the coordinator restarted while the job runs. A real Prometheus finds every process
//! through the coordinator's service discovery and reads the job's record rate. Resubmitted
//! bounded at the end, the job finishes from its latest checkpoint, and `predicData`, its
//! dead letters and late records, read `read_committed`, equal the reference: nothing lost,
//! nothing twice. The API's refusals (401, 400, 404, 409) are checked on the way.

#[path = "common/lstm.rs"]
mod lstm;
#[path = "common/promql.rs"]
mod promql;
#[path = "common/cluster.rs"]
mod test_cluster;

use flowcast_engine::cluster::api::{JobState, JobView, Parallelism, SubmitRequest};
use flowcast_engine::cluster::client::Client;
use flowcast_tests::forecast::{
    as_input, check_exactly_once, exactly_once_spec, params, recorded_input, spec_with_model,
};
use flowcast_tests::{kafka, reference, wait};
use promql::urlencode;
use std::process::Command;
use std::time::Duration;
use test_cluster::{BIN, TestCluster, free_port, kill_9, repo, running};

/// Waits until the job has been restarted `restarts` times and runs again.
fn recovered(c: &Client, id: &str, restarts: u64, what: &str) -> JobView {
    wait::poll_for(Duration::from_secs(90), || {
        c.job(id)
            .ok()
            .filter(|j| j.state == JobState::Running && j.restarts >= restarts)
    })
    .unwrap_or_else(|| panic!("{what}: the job runs again: {:?}", c.job(id)))
}

fn status_of(e: flowcast_engine::cluster::client::ApiFailure) -> (u16, String) {
    (e.status, e.message)
}

fn refusals(cluster: &TestCluster, spec: &str) {
    let c = cluster.client();
    let wrong = Client::new(&cluster.url(), Some("not-the-token".into()));
    let (status, msg) = status_of(wrong.jobs().expect_err("wrong token"));
    assert_eq!(status, 401, "{msg}");
    let bad = spec.replace(
        "[window]\nlength = \"30m\"",
        "[window]\nlength = \"thirty minutes\"",
    );
    assert_ne!(bad, spec, "the malformed spec differs");
    let req = |spec: String, p: u32| SubmitRequest {
        spec,
        model: None,
        parallelism: Some(Parallelism::Fixed(p)),
    };
    let (status, msg) = status_of(c.submit(&req(bad, 1)).expect_err("malformed spec"));
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("length"), "the message names the key: {msg}");
    let (status, msg) = status_of(
        c.submit(&req(spec.into(), 1))
            .expect_err("relative model path"),
    );
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("relative path"), "{msg}");
    let (status, msg) = status_of(
        c.rescale("no-such-job", Parallelism::Fixed(2))
            .expect_err("unknown job"),
    );
    assert_eq!(status, 404, "{msg}");
    let model = c
        .upload_model(&repo().join("models/dht11_lstm.pt"))
        .expect("upload the model");
    let mut too_many = req(spec.into(), 7);
    too_many.model = Some(model);
    let (status, msg) = status_of(c.submit(&too_many).expect_err("more than the free slots"));
    assert_eq!(status, 409, "{msg}");
    assert!(msg.contains("6 are free"), "says how many are free: {msg}");
    assert!(c.jobs().expect("jobs").is_empty(), "nothing changed");
}

/// Prometheus finds the coordinator and every job process and reads a record rate > 0.
fn prometheus_scrapes_the_cluster(
    cluster: &mut TestCluster,
    job: &str,
    processes: usize,
    feed: &mut dyn FnMut() -> bool,
) {
    let port = free_port();
    cluster.script(
        "deploy/prometheus/start.sh",
        &[
            "--port",
            &port.to_string(),
            "--coordinator",
            &cluster.url(),
            "--interval",
            "1s",
            "--token-file",
            &cluster.token_file().display().to_string(),
        ],
    );
    cluster.prometheus = Some(port);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let get = |path: &str| -> Option<serde_json::Value> {
        let mut r = agent
            .get(&format!("http://127.0.0.1:{port}{path}"))
            .call()
            .ok()?;
        serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
    };
    let targets = wait::poll_for(Duration::from_secs(60), || {
        let t = get("/api/v1/targets")?;
        let active = t["data"]["activeTargets"].as_array()?.clone();
        let up = active.iter().filter(|a| a["health"] == "up").count();
        (active.len() == processes + 1 && up == active.len()).then_some(active)
    })
    .unwrap_or_else(|| {
        panic!(
            "prometheus scrapes the coordinator and {processes} job processes: {:?}",
            get("/api/v1/targets")
        )
    });
    assert!(targets.iter().any(|t| t["labels"]["role"] == "coordinator"));
    let running_jobs = wait::poll_for(Duration::from_secs(30), || {
        let v = get(&format!(
            "/api/v1/query?query={}",
            urlencode("flowcast_coordinator_jobs{state=\"running\"}")
        ))?;
        v["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
    });
    assert_eq!(
        running_jobs,
        Some(1.0),
        "the coordinator's series are scraped"
    );
    feed();
    let query = format!("sum(rate(flowcast_source_records_total{{flowcast_job=\"{job}\"}}[30s]))");
    let rate = wait::poll_for(Duration::from_secs(60), || {
        let v = get(&format!("/api/v1/query?query={}", urlencode(&query)))?;
        let x: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (x > 0.0).then_some(x)
    })
    .unwrap_or_else(|| {
        panic!(
            "PromQL `{query}` returns a rate > 0; the series: {:?}",
            get(&format!(
                "/api/v1/query?query={}",
                urlencode("flowcast_source_records_total[1m]")
            ))
        )
    });
    eprintln!(
        "prometheus: {} targets up; {query} = {rate:.1}",
        targets.len()
    );
}

/// Every PromQL expression of the Grafana dashboard and of the alert rules returns series
/// from the running job (the restart counter exists once a process was killed).
fn dashboard_and_rules_answer(cluster: &TestCluster, job: &str) {
    promql::promtool_check(&repo());
    let prometheus = format!(
        "http://127.0.0.1:{}",
        cluster.prometheus.expect("prometheus runs")
    );
    let mut failing = Vec::new();
    let answered = wait::poll_for(Duration::from_secs(60), || {
        failing = promql::check_dashboard_and_rules(&prometheus, job, &repo());
        failing.is_empty().then_some(())
    });
    assert!(
        answered.is_some(),
        "dashboard and rule expressions without series:\n{}",
        failing.join("\n")
    );
}

#[test]
fn cluster_submits_rescales_survives_kills_and_a_coordinator_restart() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-cluster");
    kafka::create_topic(&brokers, &topic, 3);
    let out = flowcast_tests::unique_topic("cluster");
    for suffix in ["pred", "dead", "late"] {
        kafka::create_topic(&brokers, &format!("{out}-{suffix}"), 3);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut cluster = TestCluster {
        dir,
        port,
        prometheus: None,
        restarted: None,
    };
    std::fs::write(
        cluster.token_file(),
        format!("cluster-test-{}\n", std::process::id()),
    )
    .expect("token");
    // Node port ranges below the kernel's ephemeral range (32768 on), where no outgoing
    // connection can be holding one of them.
    let first = 20_000 + (std::process::id() % 40) * 300;
    cluster.script(
        "deploy/cluster/start.sh",
        &[
            "--port",
            &port.to_string(),
            "--first-node-port",
            &first.to_string(),
        ],
    );
    let c = cluster.client();
    assert_eq!(c.nodes().expect("nodes").len(), 3);

    let location = cluster.dir.path().join("checkpoints").display().to_string();
    // The guard off: every forecast is the model's, as the reference computes it.
    let model = "kind = \"torchscript\"\nguard = \"off\"\npath = \"dht11_lstm.pt\"";
    let spec = exactly_once_spec(
        &spec_with_model(&brokers, &topic, &out, model),
        &out,
        &location,
        "1s",
    );
    refusals(&cluster, &spec);

    let input = recorded_input(false);
    let mut parts = input.chunks(input.len().div_ceil(8));
    let mut feed = || {
        if let Some(p) = parts.next() {
            kafka::produce(&brokers, &topic, p);
        }
        parts.len() > 0
    };
    feed();
    let model = c
        .upload_model(&repo().join("models/dht11_lstm.pt"))
        .expect("upload the model");
    let submitted = c
        .submit(&SubmitRequest {
            spec: spec.clone(),
            model: Some(model.clone()),
            parallelism: Some(Parallelism::Fixed(1)),
        })
        .expect("submit");
    assert_eq!(submitted.id, out);
    running(&c, &out, 1, "submitted");
    for (to, workers) in [
        (Parallelism::Fixed(3), 3),
        (Parallelism::Fixed(2), 2),
        (Parallelism::AUTO, 3),
    ] {
        feed();
        c.rescale(&out, to).expect("rescale");
        let j = running(&c, &out, workers, &format!("rescaled to {to}"));
        eprintln!("rescaled to {to}: paused {:?} ms", j.last_rescale_pause_ms);
    }
    // A partition added to the topic: `auto` follows it.
    let grow = Command::new(BIN)
        .args([
            "topics",
            "add-partitions",
            &topic,
            "--partitions",
            "4",
            "--brokers",
            &brokers,
        ])
        .output()
        .expect("add a partition");
    assert!(
        grow.status.success(),
        "{}",
        String::from_utf8_lossy(&grow.stderr)
    );
    feed();
    running(&c, &out, 4, "auto after a partition was added");
    let detail = c.job(&out).expect("detail");
    assert_eq!(detail.placement.len(), 4);
    let partitions: Vec<i32> = detail
        .placement
        .iter()
        .flat_map(|p| p.partitions.clone())
        .collect();
    assert_eq!(
        partitions.len(),
        4,
        "every partition has one process: {:?}",
        detail.placement
    );
    prometheus_scrapes_the_cluster(&mut cluster, &out, 4, &mut feed);

    // kill -9 one job process: the job restarts from its latest checkpoint.
    let attempt = detail.attempt;
    let pattern = format!("jobs/{out}/attempt-{attempt}-process-1/");
    let pgrep = Command::new("pgrep")
        .args(["-f", &pattern])
        .output()
        .expect("pgrep");
    let pid = String::from_utf8_lossy(&pgrep.stdout)
        .lines()
        .next()
        .map(str::to_owned)
        .expect("the process runs");
    feed();
    kill_9(&pid);
    let j = recovered(&c, &out, detail.restarts + 1, "after a process was killed");
    assert!(
        j.reason.as_deref().is_some_and(|r| r.contains("signal 9")),
        "{:?}",
        j.reason
    );
    dashboard_and_rules_answer(&cluster, &out);

    // kill -9 a whole node: its processes go with it; the job moves to the others.
    let node = j.placement[1].placement.node.clone();
    feed();
    kill_9(&cluster.pid(&node));
    let j = recovered(&c, &out, j.restarts + 1, "after a node was killed");
    assert!(
        j.placement.iter().all(|p| p.placement.node != node),
        "{:?}",
        j.placement
    );
    let nodes = c.nodes().expect("nodes");
    assert!(nodes.iter().any(|n| n.id == node && !n.alive), "{nodes:?}");

    // Restart the coordinator: it re-attaches to the running processes.
    let before = c.job(&out).expect("job");
    kill_9(&cluster.pid("coordinator"));
    let run = cluster.run_dir();
    let log = std::fs::File::create(run.join("coordinator-2.log")).expect("log");
    let restarted = Command::new(BIN)
        .args(["coordinator", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--state")
        .arg(run.join("state"))
        .env("FLOWCAST_COORDINATOR_TOKEN_FILE", cluster.token_file())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("restart the coordinator");
    std::fs::write(run.join("coordinator.pid"), restarted.id().to_string()).expect("pid");
    cluster.restarted = Some(restarted);
    feed();
    let after = wait::poll_for(Duration::from_secs(30), || {
        c.job(&out).ok().filter(|j| j.state == JobState::Running)
    })
    .expect("the restarted coordinator knows the running job");
    let still = wait::poll_for(Duration::from_secs(10), || {
        c.nodes()
            .ok()
            .filter(|n| n.iter().filter(|n| n.alive).count() == 2)
    });
    assert!(still.is_some(), "the two live nodes re-registered");
    let after2 = c.job(&out).expect("job");
    assert_eq!(
        (after.attempt, after2.attempt, after2.restarts),
        (before.attempt, before.attempt, before.restarts),
        "re-attached, not restarted"
    );

    // The rest of the input, then finish bounded from the latest checkpoint.
    while feed() {}
    c.action(&out, "cancel").expect("cancel");
    wait::poll_for(Duration::from_secs(30), || {
        let p = Command::new("pgrep")
            .args(["-f", &format!("jobs/{out}/")])
            .output()
            .ok()?;
        p.stdout.is_empty().then_some(())
    })
    .expect("the cancelled job's processes are gone");
    let bounded = spec.replace("stop = \"never\"", "stop = \"latest\"");
    c.submit(&SubmitRequest {
        spec: bounded,
        model: Some(model),
        parallelism: Some(Parallelism::Fixed(2)),
    })
    .expect("resubmit bounded");
    let done = wait::poll_for(Duration::from_secs(120), || {
        c.job(&out).ok().filter(|j| j.state.is_terminal())
    })
    .expect("the bounded job ends");
    assert_eq!(done.state, JobState::Finished, "{done:?}");
    let all = as_input(&kafka::read_all(&brokers, &topic));
    let expected = reference::run(&all, &params(), &lstm::reference_lstm);
    check_exactly_once(&brokers, &out, &expected, "cluster");
}
