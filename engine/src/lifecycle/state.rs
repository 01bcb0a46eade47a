//! The three kinds of operator state, key groups, and each worker's state bookkeeping.
//!
//! - **Keyed** state is written per key group: `group = murmur2(device) mod G`, with G
//!   fixed per job (default 128, chosen at the first start and never changed). Group g
//!   lives on worker `g·W/G`, and keyed exchanges route by the same rule, so a restore at
//!   another worker count hands each worker whole groups.
//! - **Partition** state (source offsets and clocks) is written per Kafka partition and
//!   restored on the worker that reads the partition ([`partition_owner`]).
//! - **Replicated** state is the same on every instance (it is derived from broadcast
//!   input); each instance writes its copy, a restore checks the copies agree and gives
//!   every new instance that one copy, whatever the new parallelism.

use super::snapshot::{self, OperatorSnapshot, RestorePlan, WorkerSnapshot};
use crate::checkpoint::coordinator::CheckpointOutput;
use crate::dataflow::Epoch;
use crate::kafka::partitioner::murmur2;
use flowcast_operators::event_time::JobWatermark;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Why state could not be written, read or matched to the job. Every variant is the
/// user's or the snapshot's fault except `Io` (external: retrying may help) and `Encode`.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state could not be encoded (a bug).
    #[error("cannot encode the state of `{operator}`: {detail}")]
    Encode {
        /// Operator id.
        operator: String,
        /// What failed.
        detail: String,
    },
    /// Restored bytes do not decode as this operator's state.
    #[error("cannot decode the state of `{operator}`: {detail}")]
    Decode {
        /// Operator id.
        operator: String,
        /// What failed.
        detail: String,
    },
    /// The snapshot holds a state version this operator cannot read or migrate.
    #[error(
        "the snapshot holds version {found} of `{operator}`'s state; this build reads version {supported} and cannot migrate it"
    )]
    Version {
        /// Operator id.
        operator: String,
        /// Version in the snapshot.
        found: u32,
        /// Version this build writes.
        supported: u32,
    },
    /// The snapshot holds state of operators the job does not have.
    #[error(
        "the snapshot holds state of operator(s) {0} that this job does not have; start with --allow-non-restored-state to drop it"
    )]
    NotRestored(String),
    /// The snapshot does not fit the job (key groups, duplicate ids, incomplete files).
    #[error("{0}")]
    Mismatch(String),
    /// Reading or writing a snapshot file failed.
    #[error("snapshot storage: {0}")]
    Io(String),
}

/// The key groups of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroups {
    count: u32,
}

impl KeyGroups {
    /// The default number of key groups (as Flink's default max parallelism).
    pub const DEFAULT: u32 = 128;

    /// `count` key groups.
    ///
    /// # Errors
    /// If `count` is zero.
    pub fn new(count: u32) -> Result<Self, StateError> {
        if count == 0 {
            return Err(StateError::Mismatch("key-groups must be at least 1".into()));
        }
        Ok(KeyGroups { count })
    }

    /// Number of key groups.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The key group of a device: `murmur2(device) mod G` (positive murmur2, as Kafka's
    /// partitioner).
    pub fn of(&self, device: &str) -> u32 {
        (murmur2(device.as_bytes()) & 0x7fff_ffff) as u32 % self.count
    }

    /// The worker that holds key group `group` when the job runs on `workers` workers.
    pub fn worker_of(&self, group: u32, workers: usize) -> usize {
        (u64::from(group) * workers as u64 / u64::from(self.count)) as usize
    }

    /// The worker of a device: what keyed exchanges route by.
    pub fn route(&self, device: &str, workers: usize) -> u64 {
        self.worker_of(self.of(device), workers) as u64
    }

    /// Whether `worker` of `workers` holds key group `group`.
    pub fn owns(&self, worker: usize, workers: usize, group: u32) -> bool {
        self.worker_of(group, workers) == worker
    }
}

/// The worker that reads Kafka partition `partition` (and holds its state).
pub fn partition_owner(partition: i32, workers: usize) -> usize {
    (partition.max(0) as usize) % workers.max(1)
}

/// Collects one operator's state during [`super::Operator::snapshot`].
#[derive(Debug)]
pub struct StateWriter<'a> {
    snap: &'a mut OperatorSnapshot,
    snapshot: u64,
}

impl StateWriter<'_> {
    /// The id of the snapshot (checkpoint or savepoint) being written: an operator that
    /// acts when it is committed ([`super::Operator::on_checkpoint_committed`]) keys by it.
    pub fn snapshot_id(&self) -> u64 {
        self.snapshot
    }

    fn encode<S: Serialize + ?Sized>(&self, value: &S) -> Result<Vec<u8>, StateError> {
        bincode::serialize(value).map_err(|e| StateError::Encode {
            operator: self.snap.id.clone(),
            detail: e.to_string(),
        })
    }

    /// Writes the state of key group `group`.
    ///
    /// # Errors
    /// If the value cannot be encoded.
    pub fn keyed<S: Serialize + ?Sized>(
        &mut self,
        group: u32,
        value: &S,
    ) -> Result<(), StateError> {
        let bytes = self.encode(value)?;
        self.snap.keyed.insert(group, bytes);
        Ok(())
    }

    /// Writes keyed state later, off the worker thread: `encode` runs on the checkpoint
    /// writer's blocking pool and returns each key group's bytes (see [`encode_groups`]).
    /// Give it a frozen copy of the state, cheap to take (copy-on-write), so the worker
    /// pauses for the copy and not for the encoding.
    pub fn keyed_later(
        &mut self,
        encode: impl FnOnce() -> Result<BTreeMap<u32, Vec<u8>>, String> + Send + 'static,
    ) {
        self.snap.deferred.push(Box::new(encode));
    }

    /// Writes per-partition state later, off the worker thread, as
    /// [`StateWriter::keyed_later`] does for keyed state.
    pub fn partitions_later(
        &mut self,
        encode: impl FnOnce() -> Result<BTreeMap<i32, Vec<u8>>, String> + Send + 'static,
    ) {
        self.snap.deferred.push_partitions(Box::new(encode));
    }

    /// Writes the state of Kafka partition `partition`.
    ///
    /// # Errors
    /// If the value cannot be encoded.
    pub fn partition<S: Serialize + ?Sized>(
        &mut self,
        partition: i32,
        value: &S,
    ) -> Result<(), StateError> {
        let bytes = self.encode(value)?;
        self.snap.partitions.insert(partition, bytes);
        Ok(())
    }

    /// Writes this instance's copy of the operator's replicated state.
    ///
    /// # Errors
    /// If the value cannot be encoded.
    pub fn replicated<S: Serialize + ?Sized>(&mut self, value: &S) -> Result<(), StateError> {
        let bytes = self.encode(value)?;
        self.snap.replicated = Some(bytes);
        Ok(())
    }
}

/// Encodes each key group's part (bincode, as [`StateWriter::keyed`] does), for
/// [`StateWriter::keyed_later`].
///
/// # Errors
/// If a part cannot be encoded.
pub fn encode_groups<S: Serialize>(
    parts: impl IntoIterator<Item = (u32, S)>,
) -> Result<BTreeMap<u32, Vec<u8>>, String> {
    parts
        .into_iter()
        .map(|(g, part)| {
            bincode::serialize(&part)
                .map(|b| (g, b))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// One operator's restored state on one worker: its key groups, its partitions and the
/// replicated copy.
#[derive(Debug, Clone)]
pub struct RestoredState {
    pub(super) operator: String,
    pub(super) version: u32,
    pub(super) keyed: BTreeMap<u32, Vec<u8>>,
    pub(super) partitions: BTreeMap<i32, Vec<u8>>,
    pub(super) replicated: Option<Vec<u8>>,
}

impl RestoredState {
    /// The state format version it was written with.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The same state marked as `version` (after a migration).
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The same state with every partition's bytes rewritten by `f` (a migration of
    /// per-partition state).
    ///
    /// # Errors
    /// [`StateError::Decode`] with `f`'s message when it refuses a partition's bytes.
    pub fn map_partitions(
        mut self,
        f: impl Fn(&[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<Self, StateError> {
        for (p, bytes) in &mut self.partitions {
            *bytes = f(bytes).map_err(|detail| StateError::Decode {
                operator: self.operator.clone(),
                detail: format!("partition {p}: {detail}"),
            })?;
        }
        Ok(self)
    }

    fn decode<S: DeserializeOwned>(&self, bytes: &[u8]) -> Result<S, StateError> {
        bincode::deserialize(bytes).map_err(|e| StateError::Decode {
            operator: self.operator.clone(),
            detail: e.to_string(),
        })
    }

    /// This worker's key groups, decoded.
    pub fn keyed<S: DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<(u32, S), StateError>> + '_ {
        self.keyed
            .iter()
            .map(|(g, b)| self.decode(b).map(|s| (*g, s)))
    }

    /// The partitions this worker reads, decoded.
    pub fn partitions<S: DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<(i32, S), StateError>> + '_ {
        self.partitions
            .iter()
            .map(|(p, b)| self.decode(b).map(|s| (*p, s)))
    }

    /// The replicated state, if the operator wrote one.
    ///
    /// # Errors
    /// If it does not decode as `S`.
    pub fn replicated<S: DeserializeOwned>(&self) -> Result<Option<S>, StateError> {
        self.replicated
            .as_deref()
            .map(|b| self.decode(b))
            .transpose()
    }
}

/// Snapshots of one id being collected on a worker.
#[derive(Debug)]
struct Pending {
    epoch: Epoch,
    operators: Vec<OperatorSnapshot>,
}

/// One worker's state bookkeeping: what it restores, which operators it runs, the
/// snapshots it collects and writes, and the flag that stops its sources.
#[derive(Debug)]
pub struct WorkerState {
    job: String,
    index: usize,
    workers: usize,
    partitions: i32,
    key_groups: KeyGroups,
    restore: Option<Arc<RestorePlan>>,
    state_dir: Option<PathBuf>,
    checkpoints: Option<CheckpointOutput>,
    registered: RefCell<BTreeSet<String>>,
    pending: RefCell<BTreeMap<u64, Pending>>,
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
}

/// How a worker's state is set up.
#[derive(Debug, Clone)]
pub struct WorkerStateConfig {
    /// Job name.
    pub job: String,
    /// This worker's index.
    pub index: usize,
    /// Number of workers.
    pub workers: usize,
    /// Partitions of the source topic.
    pub partitions: i32,
    /// The job's key groups.
    pub key_groups: KeyGroups,
    /// The snapshot the job starts from.
    pub restore: Option<Arc<RestorePlan>>,
    /// Where snapshots are written (`--state-dir`; without checkpoints).
    pub state_dir: Option<PathBuf>,
    /// Where checkpoint files go (the process's background writer), when the job
    /// checkpoints; it takes precedence over `state_dir`.
    pub checkpoints: Option<CheckpointOutput>,
    /// The job's first fatal error.
    pub failure: Arc<Mutex<Option<String>>>,
}

impl WorkerState {
    /// A worker's state bookkeeping.
    pub fn new(cfg: WorkerStateConfig) -> Self {
        WorkerState {
            job: cfg.job,
            index: cfg.index,
            workers: cfg.workers,
            partitions: cfg.partitions,
            key_groups: cfg.key_groups,
            restore: cfg.restore,
            state_dir: cfg.state_dir,
            checkpoints: cfg.checkpoints,
            registered: RefCell::new(BTreeSet::new()),
            pending: RefCell::new(BTreeMap::new()),
            stop: Arc::new(AtomicBool::new(false)),
            failure: cfg.failure,
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// This worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The job's key groups.
    pub fn key_groups(&self) -> KeyGroups {
        self.key_groups
    }

    /// Set once the job stopped at a snapshot: the sources stop reading.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The job watermark every operator starts from: the snapshot's, or nothing known.
    pub fn initial_watermark(&self) -> JobWatermark {
        self.restore.as_ref().map_or_else(
            || JobWatermark::new(self.partitions),
            |p| p.watermark.clone(),
        )
    }

    /// Records the job's first fatal error.
    pub fn fail(&self, message: String) {
        tracing::error!(job = %self.job, worker = self.index, "{message}");
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(message);
    }

    /// Registers operator `id` (ids are unique in a job) and returns its restored state
    /// on this worker, if the job starts from a snapshot that has it.
    ///
    /// # Errors
    /// If the id is already taken.
    pub fn register(&self, id: &str) -> Result<Option<RestoredState>, StateError> {
        if !self.registered.borrow_mut().insert(id.to_owned()) {
            return Err(StateError::Mismatch(format!(
                "two operators of the job have the id `{id}`"
            )));
        }
        Ok(self.peek(id))
    }

    /// The restored state of operator `id` on this worker, without registering it (the
    /// source reads its partitions' positions before its state operator registers).
    pub fn peek(&self, id: &str) -> Option<RestoredState> {
        let plan = self.restore.as_ref()?;
        let Some(op) = plan.operators.get(id) else {
            tracing::info!(job = %self.job, operator = id, "no state in the snapshot: starts empty");
            return None;
        };
        Some(RestoredState {
            operator: id.to_owned(),
            version: op.version,
            keyed: op
                .keyed
                .iter()
                .filter(|(g, _)| self.key_groups.owns(self.index, self.workers, **g))
                .map(|(g, b)| (*g, b.clone()))
                .collect(),
            partitions: op
                .partitions
                .iter()
                .filter(|(p, _)| partition_owner(**p, self.workers) == self.index)
                .map(|(p, b)| (*p, b.clone()))
                .collect(),
            replicated: op.replicated.clone(),
        })
    }

    /// Checks, once the dataflow is built, that every operator of the snapshot found its
    /// operator in the job (unless dropping such state is allowed).
    ///
    /// # Errors
    /// [`StateError::NotRestored`] naming the operators without a home.
    pub fn check_restored(&self, allow_non_restored: bool) -> Result<(), StateError> {
        let Some(plan) = &self.restore else {
            return Ok(());
        };
        let registered = self.registered.borrow();
        // Only state matters: a stateless operator that is gone loses nothing.
        let orphans: Vec<&str> = plan
            .operators
            .iter()
            .filter(|(id, op)| {
                let has_state =
                    !op.keyed.is_empty() || !op.partitions.is_empty() || op.replicated.is_some();
                has_state && !registered.contains(*id)
            })
            .map(|(id, _)| id.as_str())
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        let list = orphans
            .iter()
            .map(|o| format!("`{o}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if allow_non_restored {
            tracing::warn!(job = %self.job, "dropping the snapshot's state of {list}: no such operator in the job");
            Ok(())
        } else {
            Err(StateError::NotRestored(list))
        }
    }

    /// Takes one operator's snapshot for snapshot `id` at `epoch`; once every operator of
    /// this worker has reported, writes the worker's snapshot file.
    pub fn report(&self, id: u64, epoch: Epoch, snap: OperatorSnapshot) {
        let complete = {
            let mut pending = self.pending.borrow_mut();
            let p = pending.entry(id).or_insert_with(|| Pending {
                epoch,
                operators: Vec::new(),
            });
            p.operators.push(snap);
            p.operators.len() == self.registered.borrow().len()
        };
        if !complete {
            return;
        }
        let Some(p) = self.pending.borrow_mut().remove(&id) else {
            return;
        };
        let mut file = WorkerSnapshot {
            format: snapshot::FORMAT_VERSION,
            job: self.job.clone(),
            id,
            epoch: p.epoch,
            worker: self.index,
            workers: self.workers,
            key_groups: self.key_groups.count(),
            operators: p.operators,
        };
        if let Some(out) = &self.checkpoints {
            // Encoding, compression and the write happen on the writer's threads.
            if let Err(e) = out.submit(file) {
                self.fail(format!("cannot write checkpoint {id}: {e}"));
            }
            return;
        }
        let Some(dir) = &self.state_dir else {
            self.fail(format!(
                "snapshot {id} requested but the job has no checkpoint location nor state directory"
            ));
            return;
        };
        match snapshot::write(dir, &mut file) {
            Ok(path) => tracing::info!(
                job = %self.job, worker = self.index, snapshot = id, epoch = p.epoch,
                path = %path.display(), "snapshot written"
            ),
            Err(e) => self.fail(format!("cannot write snapshot {id}: {e}")),
        }
    }

    /// Stops this worker's sources (after a stop-with-snapshot).
    pub fn stop_sources(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A fresh, empty operator snapshot with `writer` filling it.
pub(super) fn write_snapshot(
    id: &str,
    snapshot: u64,
    version: u32,
    watermark: &JobWatermark,
    fill: impl FnOnce(&mut StateWriter<'_>) -> Result<(), StateError>,
) -> Result<OperatorSnapshot, StateError> {
    let mut snap = OperatorSnapshot {
        id: id.to_owned(),
        version,
        watermark: watermark.clone(),
        keyed: BTreeMap::new(),
        partitions: BTreeMap::new(),
        replicated: None,
        deferred: snapshot::Deferred::default(),
    };
    fill(&mut StateWriter {
        snap: &mut snap,
        snapshot,
    })?;
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_split_evenly_and_route_by_group() {
        let g = KeyGroups::new(128).expect("groups");
        for workers in [1usize, 2, 3, 4, 7] {
            let mut per_worker = vec![0u32; workers];
            for group in 0..128 {
                per_worker[g.worker_of(group, workers)] += 1;
            }
            let (min, max) = (
                per_worker.iter().min().copied().unwrap_or(0),
                per_worker.iter().max().copied().unwrap_or(0),
            );
            assert!(max - min <= 1, "{workers} workers: {per_worker:?}");
            // Groups of a worker are contiguous: a rescale moves whole ranges.
            let owners: Vec<usize> = (0..128).map(|k| g.worker_of(k, workers)).collect();
            assert!(owners.windows(2).all(|w| w[0] <= w[1]));
        }
        let d = "pi-01";
        assert_eq!(
            g.route(d, 3),
            g.worker_of(g.of(d), 3) as u64,
            "exchange routes by the group's worker"
        );
        assert!(KeyGroups::new(0).is_err());
    }
}
