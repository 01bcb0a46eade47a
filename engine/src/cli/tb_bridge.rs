//! `flowcast tb-bridge`: the reference pipeline's last step as a service. Consumes
//! `predicData` in a consumer group and delivers each prediction to ThingsBoard with the
//! same engine as the ThingsBoard sink ([`crate::sinks::thingsboard`]).
//!
//! At least once: a partition's offset is committed only up to its oldest prediction not
//! yet delivered (or dead-lettered), so a crash, a stop or a rebalance re-delivers at
//! most what was in flight; ThingsBoard overwrites the duplicates (same `ts`). While
//! ThingsBoard is down the engine's bounded queue fills and the bridge pauses its
//! partitions, polling on so the group keeps it; nothing is buffered without bound.
//!
//! ```text
//! FLOWCAST_TB_TOKENS_FILE=/etc/flowcast/tb-tokens \
//!   flowcast tb-bridge --brokers 127.0.0.1:9092 --url http://127.0.0.1:8080
//! ```

use crate::kafka::ClientSettings;
use crate::sinks::thingsboard::delivery::{Delivery, Item};
use crate::sinks::thingsboard::{ThingsBoardSinkConfig, start_delivery};
use crate::sinks::util::dead_letter::{DeadLetters, KafkaDeadLetters, Refusal, Refused};
use clap::Args;
use flowcast_operators::Prediction;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `flowcast tb-bridge`. Tokens never go here: they come from the tokens file
/// or `FLOWCAST_TB_TOKEN*` variables.
#[derive(Debug, Args)]
pub struct TbBridgeArgs {
    /// Bootstrap servers of the cluster holding the predictions.
    #[arg(long, env = "FLOWCAST_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic of predictions.
    #[arg(long, default_value = "predicData")]
    pub topic: String,
    /// Consumer group (its committed offsets are the bridge's progress).
    #[arg(long, default_value = "flowcast-tb-bridge")]
    pub group: String,
    /// ThingsBoard base URL; overrides `url` of `--config`.
    #[arg(long, env = "FLOWCAST_TB_URL")]
    pub url: Option<String>,
    /// A TOML file with the ThingsBoard settings: the keys of a `type = "thingsboard"`
    /// sink table (url, tokens-file, timeout, max-in-flight, …) without `type`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The tokens file (`device = token` lines); default `FLOWCAST_TB_TOKENS_FILE`.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// Topic for refused or malformed predictions.
    #[arg(long, default_value = "predicData-dead-letter")]
    pub dead_letter_topic: String,
    /// How often delivered offsets are committed.
    #[arg(long, default_value = "1s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub commit_interval: Duration,
    /// On stop, how long to wait for in-flight deliveries before committing and leaving.
    #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Serve Prometheus metrics here (e.g. 0.0.0.0:9251).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
}

/// Everything the bridge needs.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Kafka settings of the predictions' cluster (also used for dead letters).
    pub kafka: ClientSettings,
    /// Topic of predictions.
    pub topic: String,
    /// Consumer group.
    pub group: String,
    /// ThingsBoard delivery settings.
    pub thingsboard: ThingsBoardSinkConfig,
    /// Dead-letter topic.
    pub dead_letter_topic: String,
    /// Commit period.
    pub commit_interval: Duration,
    /// Grace period for in-flight deliveries on stop.
    pub drain_timeout: Duration,
}

/// What a bridge run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BridgeSummary {
    /// Messages consumed.
    pub consumed: u64,
    /// Predictions delivered or dead-lettered.
    pub completed: u64,
    /// Messages that were not predictions (dead-lettered).
    pub malformed: u64,
    /// Predictions left undelivered at stop (re-delivered by the next run).
    pub abandoned: u64,
    /// The last committed offset of each partition.
    pub committed: BTreeMap<i32, i64>,
}

/// Offsets of one partition: consumed and not yet done.
#[derive(Debug, Default)]
struct Tracker {
    pending: BTreeSet<i64>,
    next: Option<i64>,
    committed: Option<i64>,
}

impl Tracker {
    /// The offset a commit may name: the oldest not done, else one past the last consumed.
    fn committable(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }
}

type Tag = (i32, i64);

/// A message consumed but not yet submitted: partition, offset, key, value.
type Held = (i32, i64, Option<Vec<u8>>, Vec<u8>);

/// State shared with the rebalance callback.
struct Shared {
    delivery: Delivery<Tag>,
    trackers: Mutex<BTreeMap<i32, Tracker>>,
    topic: String,
    drain_timeout: Duration,
    completed: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Marks completed deliveries done in their partitions' trackers.
    fn settle(&self) {
        let done = self.delivery.take_completed();
        self.completed
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        let mut t = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
        for (p, o) in done {
            if let Some(tr) = t.get_mut(&p) {
                tr.pending.remove(&o);
            }
        }
    }

    /// Commits every partition whose committable offset moved; `only` limits the partitions.
    fn commit(
        &self,
        consumer: &BaseConsumer<BridgeContext>,
        mode: CommitMode,
        only: Option<&[i32]>,
    ) {
        self.settle();
        let mut t = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
        let mut tpl = TopicPartitionList::new();
        for (p, tr) in t.iter_mut() {
            if only.is_some_and(|o| !o.contains(p)) {
                continue;
            }
            if let Some(off) = tr.committable()
                && tr.committed != Some(off)
                && tpl
                    .add_partition_offset(&self.topic, *p, Offset::Offset(off))
                    .is_ok()
            {
                tr.committed = Some(off);
            }
        }
        drop(t);
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, mode)
        {
            tracing::warn!("offset commit failed (the next one retries): {e}");
        }
    }
}

/// Commits the revoked partitions' delivered offsets before they move to another member.
struct BridgeContext {
    shared: Arc<Mutex<Option<Arc<Shared>>>>,
}

impl ClientContext for BridgeContext {}

impl ConsumerContext for BridgeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let Some(sh) = self
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        // Give in-flight deliveries a chance, commit what is done, forget the partitions:
        // what is still queued will be delivered again by their next owner.
        sh.delivery.flush_for(sh.drain_timeout);
        sh.commit(consumer, CommitMode::Sync, Some(&parts));
        let mut t = sh.trackers.lock().unwrap_or_else(|p| p.into_inner());
        for p in &parts {
            t.remove(p);
        }
        tracing::info!(partitions = ?parts, "partitions revoked; delivered offsets committed");
    }
}

/// Runs the bridge until `shutdown` is set.
pub fn run_bridge(cfg: &BridgeConfig, shutdown: Arc<AtomicBool>) -> anyhow::Result<BridgeSummary> {
    let job = format!("tb-bridge-{}", cfg.group);
    let delivery = start_delivery::<Tag>(
        &cfg.thingsboard,
        &cfg.kafka,
        &cfg.dead_letter_topic,
        &job,
        "tb-bridge",
        0,
    )?;
    let malformed_dl = KafkaDeadLetters::new(
        &cfg.kafka,
        &cfg.dead_letter_topic,
        &format!("{job}-malformed"),
    )
    .map_err(anyhow::Error::msg)?;
    let shared = Arc::new(Shared {
        delivery,
        trackers: Mutex::new(BTreeMap::new()),
        topic: cfg.topic.clone(),
        drain_timeout: cfg.drain_timeout,
        completed: std::sync::atomic::AtomicU64::new(0),
    });
    let slot = Arc::new(Mutex::new(Some(Arc::clone(&shared))));
    let consumer: BaseConsumer<BridgeContext> = cfg
        .kafka
        .client_config()
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("client.id", &job)
        .create_with_context(BridgeContext {
            shared: Arc::clone(&slot),
        })?;
    consumer.subscribe(&[&cfg.topic])?;
    tracing::info!(topic = %cfg.topic, group = %cfg.group, "tb-bridge consuming");
    let max = cfg.thingsboard.max_buffered;
    let mut summary = BridgeSummary::default();
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut paused = false;
    let mut last_commit = Instant::now();
    while !shutdown.load(Ordering::SeqCst) {
        // Submit what waits, as long as there is room; pause the partitions when there is not.
        while shared.delivery.outstanding() < max
            && let Some((p, o, key, value)) = held.pop_front()
        {
            submit(
                &shared,
                &malformed_dl,
                p,
                o,
                key.as_deref(),
                value,
                &mut summary,
            );
        }
        let full = shared.delivery.outstanding() >= max || !held.is_empty();
        if full != paused
            && let Ok(a) = consumer.assignment()
        {
            let r = if full {
                consumer.pause(&a)
            } else {
                consumer.resume(&a)
            };
            if r.is_ok() {
                paused = full;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                summary.consumed += 1;
                {
                    let mut t = shared.trackers.lock().unwrap_or_else(|p| p.into_inner());
                    let tr = t.entry(m.partition()).or_default();
                    tr.pending.insert(m.offset());
                    tr.next = Some(m.offset() + 1);
                }
                held.push_back((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
            Some(Err(e)) => tracing::warn!("consumer error: {e}"),
            None => {}
        }
        if last_commit.elapsed() >= cfg.commit_interval {
            shared.commit(&consumer, CommitMode::Async, None);
            last_commit = Instant::now();
        }
    }
    // Stop: what was consumed but never submitted is simply not committed.
    let drained = shared.delivery.flush_for(cfg.drain_timeout);
    shared.commit(&consumer, CommitMode::Sync, None);
    summary.abandoned = shared.delivery.outstanding() as u64 + held.len() as u64;
    if !drained {
        tracing::warn!(
            abandoned = summary.abandoned,
            "stopping with predictions undelivered; their offsets are not committed"
        );
    }
    summary.completed = shared.completed.load(Ordering::Relaxed);
    summary.committed = shared
        .trackers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|(p, t)| t.committed.map(|c| (*p, c)))
        .collect();
    slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    consumer.unsubscribe();
    Ok(summary)
}

fn submit(
    shared: &Shared,
    malformed: &KafkaDeadLetters,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Vec<u8>,
    summary: &mut BridgeSummary,
) {
    match serde_json::from_slice::<Prediction>(&value) {
        Ok(prediction) => shared.delivery.submit(Item {
            prediction,
            raw: value,
            tag: (partition, offset),
        }),
        Err(e) => {
            summary.malformed += 1;
            let device = key.map(String::from_utf8_lossy).unwrap_or_default();
            let detail = format!("not a prediction: {e}");
            let r = malformed.write(
                &[Refused {
                    device: &device,
                    payload: &value,
                }],
                Refusal {
                    reason: "malformed",
                    sink: "thingsboard",
                    status: None,
                    detail: &detail,
                },
            );
            match r {
                Ok(()) => {
                    let mut t = shared.trackers.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(tr) = t.get_mut(&partition) {
                        tr.pending.remove(&offset);
                    }
                }
                // Not committed past it: the next run sees it again.
                Err(dl) => tracing::error!("cannot dead-letter a malformed message: {dl}"),
            }
        }
    }
}

/// Runs `flowcast tb-bridge`.
pub fn run(args: TbBridgeArgs) -> anyhow::Result<()> {
    let mut tb = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            toml::from_str::<ThingsBoardSinkConfig>(&text)
                .map_err(|e| anyhow::anyhow!("invalid {}: {e}", path.display()))?
        }
        None => ThingsBoardSinkConfig::new(args.url.as_deref().unwrap_or("http://127.0.0.1:8080")),
    };
    if let Some(url) = args.url {
        tb.url = url;
    }
    if args.tokens_file.is_some() {
        tb.tokens_file = args.tokens_file;
    }
    if let Some(addr) = args.metrics_addr {
        let bound = crate::metrics::serve(addr)?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let cfg = BridgeConfig {
        kafka: ClientSettings::new(&args.brokers),
        topic: args.topic,
        group: args.group,
        thingsboard: tb,
        dead_letter_topic: args.dead_letter_topic,
        commit_interval: args.commit_interval,
        drain_timeout: args.drain_timeout,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&shutdown))?;
    }
    let s = run_bridge(&cfg, shutdown)?;
    println!(
        "flowcast tb-bridge: consumed {}, delivered or dead-lettered {}, malformed {}, left for the next run {}",
        s.consumed, s.completed, s.malformed, s.abandoned
    );
    Ok(())
}
