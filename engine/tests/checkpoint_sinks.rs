//! Sinks in checkpoints, end to end, with the real `flowcast` binary, the real Kafka
//! cluster and the ThingsBoard test server: while ThingsBoard is down, the job's
//! checkpoints keep completing (the ThingsBoard sink's undelivered predictions are part
//! of them); the job is then killed with `kill -9`, ThingsBoard comes back, and the job is
//! restarted at another worker count. ThingsBoard must end up with every prediction the
//! job made, and each exactly once: what was delivered before the restored checkpoint is
//! not sent again, what was not is sent once (the checkpoint's undelivered predictions,
//! then the predictions recomputed after it).

use flowcast_engine::kafka::partitioner::partition_for_key;
use flowcast_tests::checkpoint::{self, kill_9, manifests, restored_from};
use flowcast_tests::job::TestJob;
use flowcast_tests::kafka;
use flowcast_tests::thingsboard::{TbServer, readings, write_tokens_file};
use flowcast_tests::wait;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flowcast");
const WITHIN: Duration = Duration::from_secs(120);

/// One device name per partition `0..3` of a 3-partition topic, so that every partition
/// carries readings and the job watermark moves.
fn device_on(partition: i32) -> String {
    (0..)
        .map(|i| format!("tbc-{i}"))
        .find(|d| partition_for_key(d.as_bytes(), 3) == partition)
        .expect("some key hashes to each partition")
}

#[test]
fn checkpoints_go_on_while_thingsboard_is_down_and_a_restart_resends_only_the_undelivered() {
    let brokers = flowcast_tests::brokers();
    let topic = flowcast_tests::unique_topic("DHT11-tbckpt");
    kafka::create_topic(&brokers, &topic, 3);
    let devices: Vec<String> = (0..3).map(device_on).collect();
    let tb = TbServer::start();
    let tokens: Vec<String> = devices
        .iter()
        .map(|d| format!("tok{}x{d}", std::process::id()))
        .collect();
    for (d, t) in devices.iter().zip(&tokens) {
        tb.add_device(d, t);
    }
    let entries: Vec<(&str, &str)> = devices
        .iter()
        .map(String::as_str)
        .zip(tokens.iter().map(String::as_str))
        .collect();
    let tokens_file = write_tokens_file(&entries);

    let tmp = tempfile::tempdir().expect("temp dir");
    let ckpt = tmp.path().join("checkpoints");
    let mut job = TestJob::new("tbckpt", &brokers, &topic);
    job.extra_sinks = format!(
        "[[sinks]]\ntype = \"thingsboard\"\nurl = \"{}\"\ntokens-file = \"{}\"\ntimeout = \"2s\"\n\
         initial-backoff = \"50ms\"\nmax-backoff = \"500ms\"\nbreaker-cooldown = \"200ms\"\n",
        tb.url(),
        tokens_file.display()
    );
    job.create_outputs();
    let spec = tmp.path().join("job.toml");
    std::fs::write(
        &spec,
        job.toml()
            + &format!(
                "\n[checkpoint]\nlocation = \"{}\"\ninterval = \"500ms\"\n",
                ckpt.display()
            ),
    )
    .expect("job spec");
    let made = || -> BTreeSet<(String, i64)> {
        kafka::read_all(&brokers, &job.predictions_topic())
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
                let ts = v["predicted"]["for_window_end"].as_f64().expect("ts") * 1000.0;
                (
                    v["device"].as_str().expect("device").to_owned(),
                    ts.round() as i64,
                )
            })
            .collect()
    };
    let log = |k: usize| tmp.path().join(format!("run-{k}.log"));
    let newest = || manifests(&ckpt).last().copied().unwrap_or(0);

    // Run 1, 2 workers: ten minutes of readings, 8 predictions per device delivered, then
    // two checkpoints taken after that.
    kafka::produce(&brokers, &topic, &readings(&devices, 0, 600));
    let run = checkpoint::spawn(BIN, &spec, 2, &log(1), None, &[]);
    assert_eq!(
        tb.wait_for_latest(24, WITHIN).len(),
        24,
        "phase 1 delivered"
    );
    let delivered: BTreeSet<(String, i64)> = tb.latest().into_keys().collect();
    let after_delivery = newest();
    wait::until("two checkpoints after the deliveries", WITHIN, || {
        newest() >= after_delivery + 2
    });

    // ThingsBoard goes down; twenty more minutes of readings: 20 more predictions per
    // device, none deliverable. Checkpoints go on completing with them undelivered.
    tb.outage();
    kafka::produce(&brokers, &topic, &readings(&devices, 600, 1800));
    wait::until("every prediction made (in Kafka)", WITHIN, || {
        made().len() == 84
    });
    let down_at = newest();
    wait::until("two checkpoints while ThingsBoard is down", WITHIN, || {
        newest() >= down_at + 2
    });
    assert_eq!(tb.latest().len(), 24, "nothing arrives while down");
    kill_9(run);

    // ThingsBoard back; run 2, 3 workers, restores the newest checkpoint and delivers.
    tb.restore();
    let run = checkpoint::spawn(BIN, &spec, 3, &log(2), None, &[]);
    let all = made();
    wait::until("ThingsBoard to hold every prediction", WITHIN, || {
        tb.latest().len() == all.len()
    });
    checkpoint::terminate(&run);
    let mut run = run;
    let status = wait::poll_for(WITHIN, || run.try_wait().ok().flatten()).expect("run 2 stops");
    assert!(status.success(), "SIGTERM stops cleanly: {status}");

    let restored = restored_from(&log(2));
    assert!(
        restored.is_some_and(|id| id >= down_at + 2),
        "run 2 restored {restored:?}, a checkpoint taken while ThingsBoard was down (≥ {})",
        down_at + 2
    );
    let text = std::fs::read_to_string(log(2)).unwrap_or_default();
    assert!(
        text.contains("delivering again what the snapshot had not delivered"),
        "run 2 resends the checkpoint's undelivered predictions"
    );
    let stored: BTreeSet<(String, i64)> = tb.latest().into_keys().collect();
    assert_eq!(
        stored, all,
        "ThingsBoard holds exactly the job's predictions"
    );
    let mut times: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for t in tb.accepted() {
        *times.entry((t.device, t.ts)).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "each prediction is delivered once ({} of {} delivered before the restored checkpoint); \
         delivered more than once: {twice:?}",
        delivered.len(),
        all.len()
    );
    let _ = std::fs::remove_file(tokens_file);
}
