//! `/metrics` of a running job (`flowcast run --metrics-addr` on the three-broker cluster)
//! is valid Prometheus exposition — `promtool check metrics` passes — and every series of
//! the README's table is there, under the `flowcast_job` label, and moves while the job runs.

use flowcast_tests::exposition::{free_port, promtool_check, scrape, value};
use flowcast_tests::job::TestJob;
use flowcast_tests::wait::poll_for;
use std::process::{Command, Stdio};
use std::time::Duration;

const BASE: f64 = 1_700_000_040.0 - 1_700_000_040.0 % 60.0;
const DEVICES: [&str; 3] = ["pi-a", "pi-b", "pi-c"];

/// Readings of every device every 10 s of event time in `[from, to)` seconds after BASE.
fn readings(from: u32, to: u32) -> Vec<(Option<String>, Vec<u8>)> {
    (from..to)
        .step_by(10)
        .flat_map(|s| {
            DEVICES.iter().map(move |d| {
                let v = serde_json::json!({
                    "time": BASE + f64::from(s),
                    "temperature": 20.0 + f64::from(s % 60) / 10.0,
                    "humidity": 45.0,
                    "device": d,
                });
                (Some((*d).to_owned()), v.to_string().into_bytes())
            })
        })
        .collect()
}

#[test]
fn job_metrics_pass_promtool_and_move() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("metrics-src");
    // One partition read by one worker: the job watermark needs no idle timeout.
    flowcast_tests::kafka::create_topic(&brokers, &topic, 1);
    let job = TestJob::new("metrics", &brokers, &topic);
    job.create_outputs();
    let dir = std::env::temp_dir().join(&job.name);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spec = dir.join("job.toml");
    std::fs::write(&spec, job.toml()).expect("write job");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .args(["run", spec.to_str().expect("utf-8 path"), "--workers", "1"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .spawn()
        .expect("start flowcast run");

    let of_job = |name: &str| format!("{name}{{flowcast_job=\"{}\"", job.name);
    let source = of_job("flowcast_source_records_total");
    flowcast_tests::kafka::produce(&brokers, &topic, &readings(0, 300));
    let first = poll_for(Duration::from_secs(60), || {
        let t = scrape(port)?;
        (value(&t, &of_job("flowcast_forecast_predictions_total"))? > 0.0).then_some(t)
    });
    // More on-time data, one record past the allowed lateness, one that is not JSON.
    let mut more = readings(300, 600);
    more.push((Some("pi-a".into()), readings(5, 6)[0].1.clone()));
    more.push((Some("pi-a".into()), b"not json".to_vec()));
    flowcast_tests::kafka::produce(&brokers, &topic, &more);
    let moving = [
        "flowcast_source_records_total",
        "flowcast_window_records_total",
        "flowcast_window_fired_windows_total",
        "flowcast_window_watermark_seconds",
        "flowcast_forecast_predictions_total",
        "flowcast_forecast_inference_batches_total",
        // Each device's forecast scored when the window it forecast closed.
        "flowcast_forecast_scored_total",
        "flowcast_sink_delivered_records_total",
        "flowcast_sink_window_to_send_seconds_count",
    ];
    // Counters move when their event happens (a delivery is counted when Kafka
    // acknowledges it): wait until every one has, then check them all below.
    let later = first.as_ref().and_then(|first| {
        poll_for(Duration::from_secs(60), || {
            let t = scrape(port)?;
            let late = of_job("flowcast_window_late_records_total");
            let moved = value(&t, &source)? > value(first, &source)?
                && value(&t, &late)? > 0.0
                && moving
                    .iter()
                    .all(|n| value(&t, &of_job(n)) > value(first, &of_job(n)));
            moved.then_some(t)
        })
        // Not all moved in time: the last scrape, for the checks below to name the laggard.
        .or_else(|| scrape(port))
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    if poll_for(Duration::from_secs(15), || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let first = first.expect("predictions made and scraped");
    let later = later.expect("the second batch read, its late record counted");

    let said = promtool_check(&later).unwrap_or_else(|e| panic!("promtool: {e}\n{later}"));
    eprintln!("promtool check metrics (job): ok {said}");
    assert!(
        !later.contains(" job=\"") && !later.contains("{job=\""),
        "the job label is flowcast_job"
    );
    // Every series of the README's table is there; those this input drives move.
    let present_only = [
        "flowcast_forecast_failed_batches_total",
        // The persistence model of this job can answer a batch in under a microsecond.
        "flowcast_forecast_inference_seconds_total",
        // One metric set for every sink: the Kafka sinks of this job expose it all.
        "flowcast_sink_failed_records_total",
        "flowcast_sink_backpressure_waits_total",
        "flowcast_sink_dead_letter_records_total",
        "flowcast_sink_queued_records",
        "flowcast_sink_requests_total",
        "flowcast_sink_request_seconds_count",
        "flowcast_sink_circuit_opened_total",
        "flowcast_sink_circuit_open",
        "flowcast_sink_connects_total",
        "flowcast_sink_connection_errors_total",
    ];
    for name in present_only.iter().chain(&moving) {
        assert!(
            value(&later, &of_job(name)).is_some(),
            "{name} missing:\n{later}"
        );
    }
    for name in moving {
        assert!(
            value(&later, &of_job(name)) > value(&first, &of_job(name)),
            "{name} did not move:\n{first}\n{later}"
        );
    }
    for (name, why) in [
        ("flowcast_window_late_records_total", "the late record"),
        (
            "flowcast_source_dead_letter_records_total",
            "the record that is not JSON",
        ),
        (
            "flowcast_sequence_keyed_devices",
            "three devices in keyed state",
        ),
    ] {
        assert!(
            value(&later, &of_job(name)) > Some(0.0),
            "{name} does not count {why}:\n{later}"
        );
    }
    assert!(
        later.contains("flowcast_sink_window_to_send_seconds_bucket{")
            && later.contains("le=\"+Inf\""),
        "the latency histogram has cumulative buckets"
    );
    // Online accuracy: how the devices stand against persistence, per feature.
    for name in [
        "flowcast_forecast_model_ahead_devices",
        "flowcast_forecast_model_behind_devices",
        "flowcast_forecast_guarded_devices",
        "flowcast_forecast_clamped_total",
        "flowcast_forecast_persistence_served_total",
    ] {
        for feature in ["temperature", "humidity"] {
            let series = format!(
                "{name}{{feature=\"{feature}\",flowcast_job=\"{}\"",
                job.name
            );
            assert!(
                value(&later, &series).is_some(),
                "{series} missing:\n{later}"
            );
        }
    }
    // The persistence model is persistence: every scored device's ratio is 1, in the
    // `at_most="1"` bucket and the ones above, in none below.
    let ratio = |feature: &str, le: &str| {
        let series = format!(
            "flowcast_forecast_error_ratio_devices{{at_most=\"{le}\",feature=\"{feature}\",flowcast_job=\"{}\"",
            job.name
        );
        value(&later, &series)
    };
    for feature in ["temperature", "humidity"] {
        assert_eq!(ratio(feature, "0.9"), Some(0.0), "{feature}:\n{later}");
        assert_eq!(
            ratio(feature, "1"),
            Some(DEVICES.len() as f64),
            "{feature}:\n{later}"
        );
        assert_eq!(
            ratio(feature, "+Inf"),
            Some(DEVICES.len() as f64),
            "{feature}"
        );
    }
}
