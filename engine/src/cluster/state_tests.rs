use super::*;
use crate::cluster::api::Heartbeat;

fn record(id: &str, workers: u32) -> JobRecord {
    JobRecord {
        id: id.into(),
        spec: String::new(),
        model: None,
        parallelism: Parallelism::Fixed(workers),
        workers,
        state: JobState::Created,
        reason: None,
        attempt: 0,
        threads: 1,
        placement: Vec::new(),
        restarts: 0,
        failures: 0,
        submitted_unix_ms: 0,
        control_token: "t".into(),
        topic: "DHT11".into(),
        partitions: Some(3),
        checkpoints: true,
        epoch_interval_ms: 200,
        last_rescale_pause_ms: None,
    }
}

fn beat(
    c: &mut Cluster,
    node: &str,
    port: u16,
    procs: Vec<ProcessStatus>,
    now: Instant,
) -> Vec<Launch> {
    c.heartbeat(
        Heartbeat {
            node: node.into(),
            host: "127.0.0.1".into(),
            slots: 2,
            ports: (port, port + 99),
            sent_unix_ms: 0,
            clock_offset_ms: Some(0.5),
            processes: procs,
            wait_ms: 0,
        },
        now,
    )
}

fn running(launches: &[Launch]) -> Vec<ProcessStatus> {
    launches
        .iter()
        .map(|l| ProcessStatus {
            job: l.job.clone(),
            attempt: l.attempt,
            index: l.index,
            pid: 1,
            exit: None,
        })
        .collect()
}

/// Three nodes heartbeat; job `j` of `workers` runs on them (every process ready).
fn cluster_running(workers: u32) -> (Cluster, Instant, Vec<Vec<Launch>>) {
    let t0 = Instant::now();
    let mut c = Cluster::new(Settings::default(), Vec::new(), t0);
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        beat(&mut c, n, 7000 + 100 * i as u16, Vec::new(), t0);
    }
    c.submit(record("j", workers), t0).expect("accepted");
    assert_eq!(c.job("j").map(|j| j.state), Some(JobState::Scheduling));
    let launches: Vec<Vec<Launch>> = ["a", "b", "c"].iter().map(|n| c.desired(n)).collect();
    assert_eq!(launches.iter().map(Vec::len).sum::<usize>() as u32, workers);
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        beat(&mut c, n, 7000 + 100 * i as u16, running(&launches[i]), t0);
    }
    for l in launches.iter().flatten() {
        c.process_ready("j", l.attempt, l.index, t0);
    }
    assert_eq!(c.job("j").map(|j| j.state), Some(JobState::Running));
    (c, t0, launches)
}

#[test]
fn a_job_is_placed_over_the_nodes_and_runs() {
    let (c, _, launches) = cluster_running(3);
    let j = c.job("j").expect("job");
    assert_eq!((j.threads, j.placement.len()), (1, 3));
    // Every process knows every peer's data port; ports differ per process on a node.
    let hosts = &launches[0][0].hosts;
    assert_eq!(hosts.len(), 3);
    assert!(launches.iter().flatten().all(|l| &l.hosts == hosts));
}

#[test]
fn a_dead_process_restarts_the_job_with_backoff_on_a_new_attempt() {
    let (mut c, t0, launches) = cluster_running(3);
    let mut dead = running(&launches[1]);
    dead[0].exit = Some(-9);
    let t1 = t0 + Duration::from_secs(1);
    beat(&mut c, "b", 7100, dead.clone(), t1);
    let j = c.job("j").expect("job");
    assert_eq!(j.state, JobState::Recovering);
    assert!(
        j.reason.as_deref().is_some_and(|r| r.contains("signal 9")),
        "{:?}",
        j.reason
    );
    assert_eq!(j.restarts, 1);
    // The others still run: nothing is placed until they are gone.
    let t2 = t1 + Duration::from_secs(1);
    beat(&mut c, "a", 7000, running(&launches[0]), t2);
    assert!(c.desired("a").is_empty(), "the old attempt is let go");
    beat(&mut c, "a", 7000, Vec::new(), t2);
    beat(&mut c, "b", 7100, Vec::new(), t2);
    beat(&mut c, "c", 7200, Vec::new(), t2);
    let j = c.job("j").expect("job");
    assert_eq!(j.state, JobState::Scheduling);
    assert_eq!(j.attempt, 1);
}

#[test]
fn a_peer_that_lost_its_connection_waits_for_the_cause_of_the_failure() {
    let (mut c, t0, launches) = cluster_running(3);
    // Node a reports its process exited because it lost a peer before node b reports
    // that its process was killed: the restart names the kill, not the echo.
    let mut echo = running(&launches[0]);
    echo[0].exit = Some(crate::cli::run::PEER_LOST);
    let t1 = t0 + Duration::from_secs(1);
    beat(&mut c, "a", 7000, echo.clone(), t1);
    assert_eq!(c.job("j").map(|j| j.state), Some(JobState::Running));
    let mut killed = running(&launches[1]);
    killed[0].exit = Some(-9);
    beat(&mut c, "b", 7100, killed, t1 + Duration::from_millis(300));
    let j = c.job("j").expect("job");
    assert_eq!((j.state, j.restarts), (JobState::Recovering, 1));
    assert!(
        j.reason.as_deref().is_some_and(|r| r.contains("signal 9")),
        "{:?}",
        j.reason
    );

    // With no cause reported, the echo restarts the job after the heartbeat timeout.
    let (mut c, t0, launches) = cluster_running(3);
    beat(&mut c, "a", 7000, echo, t0);
    for n in ["b", "c"] {
        let port = if n == "b" { 7100 } else { 7200 };
        let i = if n == "b" { 1 } else { 2 };
        beat(
            &mut c,
            n,
            port,
            running(&launches[i]),
            t0 + Duration::from_secs(2),
        );
    }
    assert_eq!(c.job("j").map(|j| j.state), Some(JobState::Running));
    let t = t0 + Duration::from_millis(2500);
    beat(&mut c, "b", 7100, running(&launches[1]), t);
    beat(&mut c, "c", 7200, running(&launches[2]), t);
    let mut echo = running(&launches[0]);
    echo[0].exit = Some(crate::cli::run::PEER_LOST);
    beat(&mut c, "a", 7000, echo, t);
    c.tick(t0 + Duration::from_millis(3100));
    let j = c.job("j").expect("job");
    assert_eq!(j.state, JobState::Recovering);
    assert!(
        j.reason
            .as_deref()
            .is_some_and(|r| r.contains("lost a peer")),
        "{:?}",
        j.reason
    );
}

#[test]
fn a_silent_node_counts_as_dead_and_the_job_moves() {
    let (mut c, t0, launches) = cluster_running(2);
    let on_c = launches[2].is_empty();
    let (dead, alive) = if on_c {
        ("a", ["b", "c"])
    } else {
        ("c", ["a", "b"])
    };
    let later = t0 + Duration::from_secs(4);
    for n in alive {
        let port = if n == "a" {
            7000
        } else if n == "b" {
            7100
        } else {
            7200
        };
        beat(&mut c, n, port, Vec::new(), later);
    }
    c.tick(later + Duration::from_secs(1));
    let j = c.job("j").expect("job");
    assert!(j.restarts >= 1);
    assert!(
        j.placement.iter().all(|p| p.node != dead),
        "placed on live nodes only: {:?}",
        j.placement
    );
}

#[test]
fn rescale_stops_with_a_savepoint_then_places_the_new_parallelism() {
    let (mut c, t0, launches) = cluster_running(3);
    c.rescale("j", Parallelism::Fixed(2), 2, t0)
        .expect("accepted");
    let effects = c.take_effects();
    assert!(effects.iter().any(
        |e| matches!(e, Effect::Control { url, .. } if url.ends_with("/stop-with-savepoint"))
    ));
    assert_eq!(c.job("j").map(|j| j.state), Some(JobState::Rescaling));
    let t1 = t0 + Duration::from_millis(1500);
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        let mut p = running(&launches[i]);
        p.iter_mut().for_each(|s| s.exit = Some(0));
        beat(&mut c, n, 7000 + 100 * i as u16, p, t1);
    }
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        beat(&mut c, n, 7000 + 100 * i as u16, Vec::new(), t1);
    }
    let j = c.job("j").expect("job").clone();
    assert_eq!(
        (j.state, j.workers, j.placement.len()),
        (JobState::Scheduling, 2, 2)
    );
    for p in &j.placement {
        c.process_ready("j", j.attempt, p.index, t1 + Duration::from_millis(500));
    }
    let j = c.job("j").expect("job");
    assert_eq!(j.state, JobState::Running);
    assert_eq!(j.last_rescale_pause_ms, Some(2000));
}

#[test]
fn refusals_say_why_and_change_nothing() {
    let (mut c, t0, _) = cluster_running(3);
    let r = c
        .rescale("nope", Parallelism::Fixed(2), 2, t0)
        .expect_err("unknown");
    assert_eq!(r.status, 404);
    let r = c
        .rescale("nope", Parallelism::Fixed(9), 9, t0)
        .expect_err("unknown, too many");
    assert_eq!(r.status, 404, "an unknown job is 404 whatever it asks");
    let r = c
        .rescale("j", Parallelism::Fixed(9), 9, t0)
        .expect_err("too many");
    assert_eq!(r.status, 409);
    assert!(r.message.contains("6 are free"), "{}", r.message);
    let r = c.submit(record("j", 1), t0).expect_err("name in use");
    assert_eq!(r.status, 409);
    assert_eq!(c.job("j").map(|j| j.state), Some(JobState::Running));
    c.cancel("j").expect("cancelled");
    assert_eq!(c.cancel("j").expect_err("over").status, 409);
}

#[test]
fn a_restarted_coordinator_reattaches_to_running_processes() {
    let (c, t0, launches) = cluster_running(3);
    let persisted: Vec<JobRecord> = c.jobs().cloned().collect();
    let t1 = t0 + Duration::from_secs(10);
    let mut c2 = Cluster::new(Settings::default(), persisted, t1);
    c2.tick(t1);
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        let desired = beat(&mut c2, n, 7000 + 100 * i as u16, running(&launches[i]), t1);
        assert_eq!(desired, launches[i], "the node keeps what it runs");
    }
    let j = c2.job("j").expect("job");
    assert_eq!((j.state, j.attempt, j.restarts), (JobState::Running, 0, 0));
}

#[test]
fn a_job_that_keeps_failing_ends_failed_with_the_reason() {
    let (mut c, t0, _) = cluster_running(1);
    let mut now = t0;
    for round in 0..=c.settings().restart_budget {
        let j = c.job("j").expect("job").clone();
        assert_eq!(j.state, JobState::Running, "round {round}");
        let p = &j.placement[0];
        let port = 7000
            + 100
                * (["a", "b", "c"]
                    .iter()
                    .position(|n| *n == p.node)
                    .expect("node") as u16);
        let crashed = vec![ProcessStatus {
            job: "j".into(),
            attempt: j.attempt,
            index: 0,
            pid: 1,
            exit: Some(3),
        }];
        now += Duration::from_secs(1);
        beat(&mut c, &p.node, port, crashed, now);
        // Past the backoff, with nothing left running: the next attempt is placed.
        now += Duration::from_secs(31);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            beat(&mut c, n, 7000 + 100 * i as u16, Vec::new(), now);
        }
        if let Some(j) = c.job("j").filter(|j| j.state == JobState::Scheduling) {
            c.process_ready("j", j.attempt, 0, now);
        }
    }
    let j = c.job("j").expect("job");
    assert_eq!(j.state, JobState::Failed);
    let reason = j.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("code 3") && reason.contains("gave up after 10"),
        "{reason}"
    );
}
