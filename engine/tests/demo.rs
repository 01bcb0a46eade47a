//! `flowcast demo` end to end on librdkafka's in-memory cluster: real data replayed by
//! the ingest, the job with the LSTM, forecasts printed from `predicData`.

use std::process::Command;
use std::time::Instant;

#[test]
fn demo_prints_forecasts() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .current_dir(&repo)
        .args(["demo", "--days", "3", "--max-predictions", "40"])
        .env_remove("FLOWCAST_BROKERS")
        .output()
        .expect("run flowcast demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let forecasts: Vec<&str> = stdout.lines().filter(|l| l.starts_with("room-")).collect();
    assert!(
        forecasts.len() >= 40,
        "{} forecasts:\n{stdout}\n{stderr}",
        forecasts.len()
    );
    for line in &forecasts {
        // device, date, time, observed t / h, forecast t / h, model id
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 10, "{line}");
        let t: f64 = fields[6].parse().expect("forecast temperature");
        assert!(
            (10.0..35.0).contains(&t),
            "implausible indoor forecast: {line}"
        );
        assert!(fields[9].starts_with("dht11_lstm-"), "{line}");
    }
    eprintln!(
        "demo printed {} forecasts in {:?}",
        forecasts.len(),
        started.elapsed()
    );
}
