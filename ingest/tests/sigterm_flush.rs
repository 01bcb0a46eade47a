//! The `flowcast-ingest` binary as systemd runs it: simulated sensors into the three-broker
//! cluster, scraped on `/metrics`, stopped with SIGTERM. It must exit 0 with every reading
//! it accepted acknowledged by Kafka (the spool's cursor = readings in the topic), none twice.

mod common;

use flowcast_ingest::{Reading, SensorKind};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // HTTP/1.1 keeps the connection open unless asked not to; the body ends at EOF here.
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn metric(text: &str, line_start: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn sigterm_flushes_everything_and_exits_cleanly() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("ingest-sigterm");
    flowcast_tests::kafka::create_topic(&brokers, &topic, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.path().join("ingest.toml");
    let spool = dir.path().join("spool");
    std::fs::write(
        &config,
        format!(
            r#"
            [sensor]
            backend = "simulate"
            kind = "dht11"
            interval = "1s"
            [simulate]
            devices = 20
            fault-rate = 0.05
            [kafka]
            brokers = "{brokers}"
            topic = "{topic}"
            [spool]
            dir = "{}"
            [metrics]
            listen = "127.0.0.1:{port}"
            "#,
            spool.display()
        ),
    )
    .expect("write config");
    let log = dir.path().join("ingest.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowcast-ingest"))
        .arg("--config")
        .arg(&config)
        .env("FLOWCAST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start flowcast-ingest");
    // Kill the child if an assertion fails before the SIGTERM.
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let reap = Reap(child.id());

    let mut last = String::new();
    common::wait_until(Duration::from_secs(60), "40 readings produced", || {
        last = scrape(port).unwrap_or_default();
        metric(&last, "flowcast_ingest_produced_readings_total").is_some_and(|n| n >= 40)
    });
    assert!(
        metric(
            &last,
            "flowcast_ingest_sensor_ok_reads_total{backend=\"simulate\"}"
        )
        .is_some_and(|n| n >= 40),
        "{last}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::mem::forget(reap);
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(exit.success(), "exit {exit:?}\n{log}");
    assert!(log.contains("everything delivered"), "{log}");

    // Every accepted reading was acknowledged: the cursor is past all of them.
    let cursor: u64 = std::fs::read_to_string(spool.join("cursor"))
        .expect("cursor")
        .trim()
        .parse()
        .expect("number");
    let records = flowcast_tests::kafka::read_all(&brokers, &topic);
    assert_eq!(
        records.len() as u64,
        cursor,
        "topic holds exactly the accepted readings"
    );
    let mut seen = HashSet::new();
    let mut by_device: BTreeMap<String, Vec<(i32, i64, f64)>> = BTreeMap::new();
    for r in &records {
        let reading = Reading::parse(r.key.as_deref(), &r.value, SensorKind::Dht11)
            .expect("valid DHT11 reading (faults are never published)");
        assert!(
            seen.insert((reading.device.clone(), reading.time.to_bits())),
            "twice: {reading:?}"
        );
        by_device
            .entry(reading.device)
            .or_default()
            .push((r.partition, r.offset, reading.time));
    }
    assert_eq!(by_device.len(), 20);
    for (device, mut v) in by_device {
        v.sort_by_key(|x| x.1);
        assert!(v.iter().all(|x| x.0 == v[0].0), "{device} on one partition");
        assert!(v.windows(2).all(|w| w[0].2 < w[1].2), "{device} in order");
    }
}
