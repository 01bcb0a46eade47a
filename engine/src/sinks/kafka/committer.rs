//! The committer of one worker slot's exactly-once output: a thread that owns the
//! slot's transactional producer and does every blocking transaction call, so a worker
//! thread never waits on one.
//!
//! - **Ids.** The transactional id of slot `s` is `flowcast-{job}-{s}`: stable per job and
//!   slot. Starting (`init_transactions`) fences any earlier producer of the id and aborts
//!   its open transaction, so a crashed run never leaves a transaction open for longer
//!   than the restart takes.
//! - **One transaction per completed checkpoint.** Everything the worker's exactly-once
//!   outputs staged up to checkpoint c (predictions, dead letters, late records) goes into
//!   one transaction, with a **progress record** on the job's compacted progress topic:
//!   key `{run}/{slot}`, value c. The records and the progress commit together, so the
//!   progress topic says exactly which staged batches are in Kafka.
//! - **Recovery.** A restored worker is handed the batches the checkpoint staged for old
//!   slots (at any earlier parallelism: old slot s goes to new worker s mod W). It starts a
//!   producer for each old slot's id (fencing it: a slot that no longer exists after a
//!   rescale is fenced here), reads the progress topic with `read_committed` up to its
//!   high watermark (so it waits out other processes' fencing rather than stopping at an
//!   open transaction), and commits the batches the progress does not cover, each under
//!   its old slot's id and progress key.

use super::staged::{StagedBatch, StagedRecord};
use crate::kafka::ClientSettings;
use crate::kafka::admin::{AdminError, TopicAdmin, TopicSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// `transaction.timeout.ms`: above the longest commit phase plus a restart (a killed
/// process's open transaction blocks `read_committed` readers until a restart fences it
/// or this passes), below the brokers' `transaction.max.timeout.ms` (15 min by default).
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One output's staged records of one checkpoint interval, shared (never copied) between
/// the operator, its snapshots and the committer.
pub type Part = (Arc<str>, Arc<StagedBatch>);

/// Staged output of one slot and run: checkpoint id → each output's part.
pub type Batches = BTreeMap<u64, Vec<Part>>;

/// Work for the committer thread.
#[derive(Debug)]
pub enum Cmd {
    /// Restored batches of old slots, by (slot, run): commit what the progress lacks.
    Recover(BTreeMap<(u32, u64), Batches>),
    /// This slot's batches of completed checkpoints (or of the end of input).
    Commit {
        /// Run tag of the batches.
        run: u64,
        /// The batches.
        batches: Batches,
    },
}

/// What the committer thread reports to the worker.
#[derive(Debug)]
pub struct Shared {
    /// Highest batch id known committed, by (slot, run).
    pub committed: Mutex<BTreeMap<(u32, u64), u64>>,
    /// The job's first fatal error: a transaction call that failed for good.
    pub failure: Arc<Mutex<Option<String>>>,
    /// Set with a failure: the job stops.
    pub shutdown: Arc<std::sync::atomic::AtomicBool>,
    /// Notified when `committed` grows or the committer stops.
    pub changed: Condvar,
    /// Set once the committer thread has finished: `committed` grows no more.
    pub closed: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn confirm(&self, slot: u32, run: u64, upto: u64) {
        let mut c = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        let e = c.entry((slot, run)).or_insert(0);
        *e = (*e).max(upto);
        self.changed.notify_all();
    }

    /// Blocks until batch `upto` of `(slot, run)` is known committed. Never call it on a
    /// worker thread: the checkpoint writer's encoding does.
    ///
    /// # Errors
    /// If the job shuts down on a failure or the committer stops first.
    pub fn wait_committed(&self, slot: u32, run: u64, upto: u64) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        let mut c = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if c.get(&(slot, run)).is_some_and(|&done| done >= upto) {
                return Ok(());
            }
            if self.shutdown.load(SeqCst) {
                return Err(format!("slot {slot}: the job stopped before batch {upto} committed"));
            }
            if self.closed.load(SeqCst) {
                return Err(format!("slot {slot}: the committer stopped before batch {upto} committed"));
            }
            // A timeout too: `shutdown` is set by others without a notification.
            c = self
                .changed
                .wait_timeout(c, Duration::from_millis(100))
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
    }

    /// Marks the committer finished (its thread has ended).
    pub fn close(&self) {
        let _guard = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// The highest batch id of `(slot, run)` known committed.
    pub fn committed(&self, slot: u32, run: u64) -> Option<u64> {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(slot, run))
            .copied()
    }

    fn fail(&self, msg: String) {
        tracing::error!("{msg}");
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(msg);
        self.shutdown
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The committer's settings.
#[derive(Debug, Clone)]
pub struct CommitterConfig {
    /// Job name (transactional ids, progress topic).
    pub job: String,
    /// The cluster every exactly-once output of the job writes to.
    pub settings: ClientSettings,
    /// This worker's slot.
    pub slot: u32,
}

/// The job's progress topic.
pub fn progress_topic(job: &str) -> String {
    format!("_flowcast-{job}-progress")
}

/// Starts the committer thread of one slot.
///
/// # Errors
/// If the thread cannot be started.
pub fn spawn(
    cfg: CommitterConfig,
    shared: Arc<Shared>,
    rx: Receiver<Cmd>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("flowcast-commit-{}", cfg.slot))
        .spawn(move || {
            if let Err(e) = run(&cfg, &shared, &rx) {
                shared.fail(format!(
                    "exactly-once output of slot {} stopped: {e}",
                    cfg.slot
                ));
            }
        })
}

fn run(cfg: &CommitterConfig, shared: &Shared, rx: &Receiver<Cmd>) -> Result<(), String> {
    ensure_progress_topic(cfg)?;
    let own = producer(cfg, cfg.slot)?;
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Cmd::Recover(work) => recover(cfg, shared, &own, work)?,
            Cmd::Commit { run, batches } => {
                let Some(&upto) = batches.keys().next_back() else {
                    continue;
                };
                let records: Vec<Part> = batches.into_values().flatten().collect();
                if records.iter().any(|(_, r)| !r.is_empty()) {
                    // (Nothing staged: nothing to commit, nothing a recovery would need.)
                    crate::failpoint::hit("commit-before");
                    commit(cfg, &own, cfg.slot, run, &records, upto)?;
                    crate::failpoint::hit("commit-after");
                }
                shared.confirm(cfg.slot, run, upto);
            }
        }
    }
    Ok(())
}

fn recover(
    cfg: &CommitterConfig,
    shared: &Shared,
    own: &ThreadedProducer<DefaultProducerContext>,
    work: BTreeMap<(u32, u64), Batches>,
) -> Result<(), String> {
    // Fence every old slot first: an open transaction of any of them would hold back what
    // a read_committed reader of the progress topic sees.
    let mut producers = BTreeMap::new();
    for &(slot, _) in work.keys() {
        if slot != cfg.slot && !producers.contains_key(&slot) {
            producers.insert(slot, producer(cfg, slot)?);
        }
    }
    let progress = read_progress(cfg)?;
    crate::failpoint::hit("recovery");
    for ((slot, run), batches) in work {
        let done = progress.get(&(slot, run)).copied().unwrap_or(0);
        let Some(&upto) = batches.keys().next_back() else {
            continue;
        };
        let missing: Vec<Part> = batches
            .into_iter()
            .filter(|(id, _)| *id > done)
            .flat_map(|(_, records)| records)
            .collect();
        if upto > done {
            let p = producers.get(&slot).unwrap_or(own);
            tracing::info!(job = %cfg.job, slot, run = format_args!("{run:016x}"), committed = done, upto,
                records = missing.iter().map(|(_, r)| r.len()).sum::<usize>(), "committing what the crashed run staged and had not committed");
            commit(cfg, p, slot, run, &missing, upto)?;
        }
        shared.confirm(slot, run, upto);
    }
    Ok(())
}

/// A transactional producer for `slot`, started (which fences earlier ones).
fn producer(
    cfg: &CommitterConfig,
    slot: u32,
) -> Result<ThreadedProducer<DefaultProducerContext>, String> {
    let mut c = cfg.settings.client_config();
    let p: ThreadedProducer<DefaultProducerContext> = c
        .set("transactional.id", format!("flowcast-{}-{slot}", cfg.job))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "transaction.timeout.ms",
            TRANSACTION_TIMEOUT.as_millis().to_string(),
        )
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("client.id", format!("flowcast-{}-txn-{slot}", cfg.job))
        .create()
        .map_err(|e| format!("cannot create the transactional producer of slot {slot}: {e}"))?;
    retry("init_transactions", || {
        p.init_transactions(Timeout::After(CALL_TIMEOUT))
    })?;
    Ok(p)
}

/// Retries a transaction call while its error is retriable.
fn retry(what: &str, mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), String> {
    let deadline = Instant::now() + TRANSACTION_TIMEOUT * 2;
    let mut backoff = Duration::from_millis(50);
    loop {
        match call() {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                tracing::warn!("{what}: {e}; retrying");
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One transaction: `records` and the progress record `(run, slot) → upto`. An abortable
/// failure aborts and starts the transaction again; a fatal one (fenced) is an error.
fn commit(
    cfg: &CommitterConfig,
    p: &ThreadedProducer<DefaultProducerContext>,
    slot: u32,
    run: u64,
    records: &[Part],
    upto: u64,
) -> Result<(), String> {
    let progress = progress_topic(&cfg.job);
    let key = format!("{run:016x}/{slot}");
    let value = upto.to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        p.begin_transaction()
            .map_err(|e| format!("begin_transaction: {e}"))?;
        for (topic, part) in records {
            for r in part.iter() {
                send(p, topic, r.key, r.value, headers(&r))?;
            }
        }
        send(p, &progress, Some(key.as_bytes()), value.as_bytes(), None)?;
        crate::failpoint::hit("commit-inside");
        match p.commit_transaction(Timeout::After(CALL_TIMEOUT)) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() && attempt < 5 => {
                tracing::warn!(slot, upto, "commit_transaction: {e}; aborting and trying again");
                retry("abort_transaction", || {
                    p.abort_transaction(Timeout::After(CALL_TIMEOUT))
                })?;
            }
            Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                retry("commit_transaction", || {
                    p.commit_transaction(Timeout::After(CALL_TIMEOUT))
                })?;
                return Ok(());
            }
            Err(e) => return Err(format!("commit_transaction of checkpoint {upto}: {e}")),
        }
    }
}

fn headers(r: &StagedRecord<'_>) -> Option<OwnedHeaders> {
    (r.header_count() > 0).then(|| {
        r.headers()
            .fold(OwnedHeaders::new_with_capacity(r.header_count()), |acc, (k, v)| {
                acc.insert(Header {
                    key: k,
                    value: Some(v),
                })
            })
    })
}

fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
    headers: Option<OwnedHeaders>,
) -> Result<(), String> {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(value);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(format!("cannot produce to {topic}: {e}")),
        }
    }
}

fn ensure_progress_topic(cfg: &CommitterConfig) -> Result<(), String> {
    let admin = TopicAdmin::new(&cfg.settings, CALL_TIMEOUT).map_err(|e| e.to_string())?;
    let name = progress_topic(&cfg.job);
    if admin.describe(&name).is_ok() {
        return Ok(());
    }
    let brokers = admin.broker_count().map_err(|e| e.to_string())?;
    let spec = TopicSpec {
        name: name.clone(),
        partitions: 1,
        replication_factor: brokers.clamp(1, 3) as i32,
        configs: vec![
            ("cleanup.policy".into(), "compact".into()),
            ("min.insync.replicas".into(), brokers.clamp(1, 2).to_string()),
        ],
    };
    match admin.create(&spec) {
        Ok(()) | Err(AdminError::TopicExists(_)) => Ok(()),
        Err(e) => Err(format!("cannot create the progress topic {name}: {e}")),
    }
}

/// Every committed progress record: (slot, run) → the highest batch id committed. Reads
/// with `read_committed` until its position reaches the high watermark taken now.
fn read_progress(cfg: &CommitterConfig) -> Result<BTreeMap<(u32, u64), u64>, String> {
    let topic = progress_topic(&cfg.job);
    let c: BaseConsumer = cfg
        .settings
        .client_config()
        .set("group.id", format!("flowcast-{}-progress-reader", cfg.job))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("progress reader: {e}"))?;
    let (_, high) = c
        .fetch_watermarks(&topic, 0, CALL_TIMEOUT)
        .map_err(|e| format!("progress topic {topic}: {e}"))?;
    let mut out = BTreeMap::new();
    if high == 0 {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + TRANSACTION_TIMEOUT * 2;
    loop {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.map_err(|e| format!("progress topic {topic}: {e}"))?;
            if let (Some(k), Some(v)) = (m.key(), m.payload())
                && let Some((run, slot)) = std::str::from_utf8(k).ok().and_then(|k| k.split_once('/'))
                && let (Ok(run), Ok(slot), Some(id)) = (
                    u64::from_str_radix(run, 16),
                    slot.parse::<u32>(),
                    std::str::from_utf8(v).ok().and_then(|v| v.parse::<u64>().ok()),
                )
            {
                let e = out.entry((slot, run)).or_insert(0);
                *e = (*e).max(id);
            }
        }
        let at = c
            .position()
            .ok()
            .and_then(|p| match p.find_partition(&topic, 0)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0);
        if at >= high {
            return Ok(out);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "progress topic {topic}: still at offset {at} of {high} after {:?} (an open transaction nobody fences?)",
                TRANSACTION_TIMEOUT * 2
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            committed: Default::default(),
            failure: Default::default(),
            shutdown: Arc::new(AtomicBool::new(false)),
            changed: Default::default(),
            closed: Default::default(),
        })
    }

    #[test]
    fn a_snapshot_waits_until_its_batches_are_committed() {
        let s = shared();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let s = Arc::clone(&s);
            std::thread::spawn(move || tx.send(s.wait_committed(3, 7, 5)));
        }
        s.confirm(3, 7, 4);
        s.confirm(2, 7, 9); // another slot's progress does not count
        s.confirm(3, 8, 9); // nor another run's
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(300)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout),
            "returned before batch 5 was committed"
        );
        s.confirm(3, 7, 6);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Ok(())));
        assert_eq!(s.wait_committed(3, 7, 6), Ok(()));
    }

    #[test]
    fn a_waiting_snapshot_fails_when_the_job_or_its_committer_stops() {
        let s = shared();
        let waiter = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || s.wait_committed(0, 1, 1))
        };
        s.shutdown.store(true, Ordering::SeqCst);
        let err = waiter.join().expect("no panic").expect_err("the job stopped");
        assert!(err.contains("stopped before batch 1"), "{err}");

        let s = shared();
        let waiter = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || s.wait_committed(0, 1, 1))
        };
        s.close();
        let err = waiter.join().expect("no panic").expect_err("the committer stopped");
        assert!(err.contains("committer stopped"), "{err}");
    }
}
