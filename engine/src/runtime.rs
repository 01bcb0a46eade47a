//! Runs a job on timely workers: threads of one process, or several processes that find
//! each other through a static host list (timely's cluster communication).

use crate::checkpoint::coordinator::{CheckpointOutput, Coordinator, CoordinatorConfig, Msg};
use crate::checkpoint::{self, CheckpointStore, CheckpointWriter};
use crate::dataflow::Epoch;
use crate::dataflow::forecast::Persistence;
use crate::dataflow::inference::BoxedPredictor;
use crate::job::graph::{self, JobPlan, PredictorFactory};
use crate::job::{JobSpec, ModelSpec};
use crate::kafka::{ClientSettings, TopicAdmin};
use crate::lifecycle::snapshot::{self, RestorePlan};
use crate::lifecycle::state::WorkerStateConfig;
use crate::lifecycle::{JobControl, KeyGroups, WorkerState};
use crate::metrics;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where and how wide the job runs.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Worker threads per process.
    pub workers: usize,
    /// This process's index in `hosts` (0 for a single process).
    pub process_index: usize,
    /// `host:port` of every process, in index order; empty or one entry for one process.
    pub hosts: Vec<String>,
}

impl Execution {
    /// One process with `workers` threads.
    pub fn threads(workers: usize) -> Self {
        Execution {
            workers,
            process_index: 0,
            hosts: Vec::new(),
        }
    }

    fn timely_config(&self) -> timely::Config {
        let communication = if self.hosts.len() > 1 {
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process_index,
                addresses: self.hosts.clone(),
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            timely::CommunicationConfig::Thread
        };
        timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// The model loader for a spec.
pub fn predictor_factory(spec: &JobSpec) -> PredictorFactory {
    match &spec.model {
        ModelSpec::Torchscript { path, .. } => {
            let path = path.clone();
            Arc::new(move || crate::model::load(&path).map(|m| Box::new(m) as BoxedPredictor))
        }
        ModelSpec::Persistence | ModelSpec::Off => {
            Arc::new(|| Ok(Box::new(Persistence) as BoxedPredictor))
        }
    }
}

/// What a finished run did (this process's share).
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Wall time from start to the last sink flushed.
    pub elapsed: Duration,
    /// Records read from the source.
    pub records: u64,
    /// Records refused by validation.
    pub dead_letters: u64,
    /// Records past the allowed lateness.
    pub late: u64,
    /// Forecasts made.
    pub predictions: u64,
    /// Median window close → producer hand-off, µs (bucket upper bound).
    pub latency_p50_us: Option<u64>,
    /// 99th percentile of the same.
    pub latency_p99_us: Option<u64>,
    /// Time spent in the model, µs.
    pub inference_us: u64,
    /// Forward passes.
    pub inference_batches: u64,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "read {} records in {secs:.2}s ({:.0} records/s); {} dead letters, {} late, {} predictions",
            self.records,
            self.records as f64 / secs.max(1e-9),
            self.dead_letters,
            self.late,
            self.predictions
        )?;
        if let (Some(p50), Some(p99)) = (self.latency_p50_us, self.latency_p99_us) {
            write!(
                f,
                "; window close → producer p50 ≤ {:.1} ms, p99 ≤ {:.1} ms",
                p50 as f64 / 1e3,
                p99 as f64 / 1e3
            )?;
        }
        if self.inference_batches > 0 {
            write!(
                f,
                "; model {:.2} ms per batch ({} batches)",
                self.inference_us as f64 / 1e3 / self.inference_batches as f64,
                self.inference_batches
            )?;
        }
        Ok(())
    }
}

/// How a run starts, stops and keeps state, beside its spec.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Set to cancel the job.
    pub shutdown: Arc<AtomicBool>,
    /// Feeds the control stream (snapshots, stop) on worker 0 of process 0.
    pub control: Option<JobControl>,
    /// Where snapshots are written (`{dir}/snapshot-{id}/`).
    pub state_dir: Option<PathBuf>,
    /// A snapshot directory (`.../snapshot-{id}`) to start from.
    pub restore_from: Option<PathBuf>,
    /// Start even when the snapshot holds state of operators the job no longer has
    /// (that state is dropped), as Flink's `--allowNonRestoredState`.
    pub allow_non_restored_state: bool,
    /// Ignore the checkpoints in the spec's location: start from the spec's positions.
    pub fresh: bool,
    /// Start from this savepoint directory instead of the latest checkpoint.
    pub from_savepoint: Option<String>,
}

/// Where a run starts: a savepoint, the latest complete checkpoint of the spec's location,
/// a `--restore-from` snapshot directory, or nothing.
fn restore_plan(spec: &JobSpec, opts: &RunOptions) -> anyhow::Result<Option<RestorePlan>> {
    if let Some(sp) = &opts.from_savepoint {
        let (m, plan) = checkpoint::load_savepoint(sp)
            .map_err(|e| anyhow::anyhow!("cannot restore from savepoint {sp}: {e}"))?;
        tracing::info!(job = %spec.name, savepoint = %sp, checkpoint = m.checkpoint_id, epoch = m.epoch, "restoring from a savepoint");
        return Ok(Some(plan));
    }
    if let Some(dir) = &opts.restore_from {
        let plan = snapshot::load(dir)
            .map_err(|e| anyhow::anyhow!("cannot restore from {}: {e}", dir.display()))?;
        tracing::info!(job = %spec.name, snapshot = plan.id, "restoring from {}", dir.display());
        return Ok(Some(plan));
    }
    let Some(location) = &spec.checkpoint.location else {
        return Ok(None);
    };
    if opts.fresh {
        tracing::info!(job = %spec.name, "--fresh: not restoring from the checkpoints in {location}");
        return Ok(None);
    }
    let store = CheckpointStore::open(location)?;
    let found = checkpoint::latest_complete(&store, &spec.name)?;
    for s in &found.skipped {
        tracing::warn!(job = %spec.name, checkpoint = s.id, "checkpoint unusable, falling back to an older one: {}", s.reason);
    }
    Ok(found.latest.map(|(m, plan)| {
        tracing::info!(
            job = %spec.name, checkpoint = m.checkpoint_id, epoch = m.epoch, from_workers = m.workers,
            "restoring from the latest complete checkpoint"
        );
        plan
    }))
}

/// The checkpoint side of a run: the store, this process's writer, the run attempt and
/// the coordinator's channel.
struct Checkpointing {
    store: CheckpointStore,
    writer: Arc<CheckpointWriter>,
    attempt: u64,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
}

fn checkpointing(spec: &JobSpec) -> anyhow::Result<Option<Checkpointing>> {
    let Some(location) = &spec.checkpoint.location else {
        return Ok(None);
    };
    let store = CheckpointStore::open(location)?;
    let attempt = checkpoint::next_attempt(&store)?;
    let writer = Arc::new(CheckpointWriter::spawn(&store)?);
    let (tx, rx) = Coordinator::channel();
    Ok(Some(Checkpointing {
        store,
        writer,
        attempt,
        tx,
        rx,
    }))
}

/// Runs `spec` until its input ends (bounded) or `shutdown` is set; returns the first
/// fatal error of any worker.
pub fn run(
    spec: &JobSpec,
    exec: &Execution,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<RunSummary> {
    run_with(
        spec,
        exec,
        RunOptions {
            shutdown,
            ..RunOptions::default()
        },
    )
}

/// The key groups of a run: the snapshot's when restoring (a different `key-groups` in
/// the spec is refused), else the spec's or the default.
fn key_groups(spec: &JobSpec, plan: Option<&RestorePlan>) -> anyhow::Result<KeyGroups> {
    match (plan, spec.state.key_groups) {
        (Some(p), Some(n)) if n != p.key_groups.count() => anyhow::bail!(
            "the snapshot was taken with {} key groups but the spec sets `state.key-groups = {n}`; a job's key groups never change (remove the setting or set it to {})",
            p.key_groups.count(),
            p.key_groups.count()
        ),
        (Some(p), _) => Ok(p.key_groups),
        (None, n) => Ok(KeyGroups::new(n.unwrap_or(KeyGroups::DEFAULT))?),
    }
}

/// How long the processes of a job may take to connect to each other.
const PEERS_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts the timely workers: in one process by timely's configuration, across processes
/// on the sockets [`crate::cluster::connect`] made.
fn execute<T, F>(
    exec: &Execution,
    peers: Option<crate::cluster::connect::Peers>,
    func: F,
) -> Result<timely::communication::WorkerGuards<T>, String>
where
    T: Send + 'static,
    F: Fn(&mut timely::worker::Worker) -> T + Send + Sync + 'static,
{
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
    let Some(peers) = peers else {
        return timely::execute(exec.timely_config(), func);
    };
    let sockets = peers
        .join()
        .map_err(|e| format!("cannot connect to the job's other processes: {e}"))?;
    let hooks = timely::communication::Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(exec.workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, exec.process_index, exec.workers, hooks)
            .map_err(|e| format!("failed to initialize networking: {e}"))?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    timely::execute::execute_from(
        builders,
        Box::new(guard),
        timely::WorkerConfig::default(),
        func,
    )
}

/// Runs `spec` with `opts`: optionally from a snapshot, with a control handle.
pub fn run_with(spec: &JobSpec, exec: &Execution, opts: RunOptions) -> anyhow::Result<RunSummary> {
    // The data port first, before the slow preparations: the job's other processes
    // connect while this one loads its model and reads its checkpoint.
    let peers = if exec.hosts.len() > 1 {
        let me = &exec.hosts[exec.process_index];
        Some(
            crate::cluster::connect::start(&exec.hosts, exec.process_index, PEERS_TIMEOUT)
                .map_err(|e| anyhow::anyhow!("cannot bind this process's data port {me}: {e}"))?,
        )
    } else {
        None
    };
    let predictor = predictor_factory(spec);
    // Fail fast, before any worker starts, when the model cannot be loaded or does not
    // read the job's sequence length.
    if let ModelSpec::Torchscript { path, .. } = &spec.model {
        let model =
            crate::model::load(path).map_err(|e| anyhow::anyhow!("cannot load the model: {e}"))?;
        anyhow::ensure!(
            model.sequence_length() == spec.sequence.length,
            "the model reads sequences of {} windows but the job's `sequence.length` is {}",
            model.sequence_length(),
            spec.sequence.length
        );
    }
    let restore = restore_plan(spec, &opts)?.map(Arc::new);
    let groups = key_groups(spec, restore.as_deref())?;
    let ckpt = checkpointing(spec)?;
    let mut opts = opts;
    if ckpt.is_some() && opts.control.is_none() {
        opts.control = Some(JobControl::new());
    }
    if let (Some(control), Some(dir)) = (&opts.control, &opts.state_dir) {
        control.number_after(snapshot::latest_id(dir));
    }
    if let (Some(control), Some(c)) = (&opts.control, &ckpt) {
        let next = checkpoint::next_checkpoint_id(&c.store)?;
        control.number_after(
            next.saturating_sub(1)
                .max(restore.as_ref().map_or(0, |p| p.id)),
        );
    }
    let settings = ClientSettings::new(&spec.source.brokers);
    let admin = TopicAdmin::new(&settings, Duration::from_secs(30))?;
    let partitions = admin.describe(&spec.source.topic)?.partitions.len() as i32;
    anyhow::ensure!(
        partitions > 0,
        "topic `{}` has no partitions",
        spec.source.topic
    );
    tracing::info!(
        job = %spec.name, topic = %spec.source.topic, partitions,
        workers = exec.workers, processes = exec.hosts.len().max(1),
        key_groups = groups.count(), "starting job"
    );
    let started = std::time::Instant::now();
    let failure = Arc::new(Mutex::new(None));
    let plan = JobPlan {
        spec: spec.clone(),
        partitions,
        shutdown: Arc::clone(&opts.shutdown),
        failure: Arc::clone(&failure),
    };
    let first_process = exec.process_index == 0;
    let output = ckpt.as_ref().map(|c| CheckpointOutput {
        writer: Arc::clone(&c.writer),
        attempt: c.attempt,
        events: c.tx.clone(),
    });
    let coordinator = match (ckpt, &opts.control) {
        (Some(c), Some(control)) if first_process => Some(Coordinator::start(
            CoordinatorConfig {
                job: spec.name.clone(),
                store: c.store,
                writer: c.writer,
                attempt: c.attempt,
                workers: exec.workers * exec.hosts.len().max(1),
                local_workers: exec.workers,
                key_groups: groups.count(),
                spec: spec.checkpoint.clone(),
                control: control.clone(),
                failure: Arc::clone(&failure),
                shutdown: Arc::clone(&opts.shutdown),
            },
            c.tx,
            c.rx,
        )?),
        _ => None,
    };
    let guards = execute(exec, peers, move |worker| {
        let state = Rc::new(WorkerState::new(WorkerStateConfig {
            job: plan.spec.name.clone(),
            index: worker.index(),
            workers: worker.peers(),
            partitions: plan.partitions,
            key_groups: groups,
            restore: restore.clone(),
            state_dir: opts.state_dir.clone(),
            checkpoints: output.clone(),
            failure: Arc::clone(&plan.failure),
        }));
        let control = (first_process && worker.index() == 0)
            .then(|| opts.control.clone())
            .flatten();
        let built = Rc::clone(&state);
        worker.dataflow::<Epoch, _, _>(|scope| {
            graph::build(scope, &plan, &predictor, built, control);
        });
        let running = metrics::gauge(
            "flowcast_job_running_workers",
            "Workers of this process whose dataflow is built and restored and runs",
            &[("job", &plan.spec.name)],
        );
        if let Err(e) = state.check_restored(opts.allow_non_restored_state) {
            state.fail(format!("cannot restore: {e}"));
            state.stop_sources();
        } else {
            running.add_base(1.0);
        }
        while worker.step_or_park(Some(Duration::from_millis(100))) {}
        running.add_base(-1.0);
    })
    .map_err(|e| anyhow::anyhow!("cannot start the timely workers: {e}"))?;
    let joined: Vec<_> = guards.join();
    tracing::info!(job = %spec.name, "every worker of this process has finished");
    // Every snapshot the workers took is handed over: the coordinator completes the last
    // checkpoint (a stop's) before the run returns.
    if let Some(c) = coordinator {
        c.finish();
    }
    for r in joined {
        r.map_err(|e| anyhow::anyhow!("a worker failed: {e}"))?;
    }
    if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        anyhow::bail!("job {} failed: {e}", spec.name);
    }
    let job = spec.name.as_str();
    let hist = "flowcast_window_to_sink_seconds";
    Ok(RunSummary {
        elapsed: started.elapsed(),
        records: metrics::total("flowcast_source_records_total", job),
        dead_letters: metrics::total("flowcast_source_dead_letter_records_total", job),
        late: metrics::total("flowcast_window_late_records_total", job),
        predictions: metrics::total("flowcast_forecast_predictions_total", job),
        latency_p50_us: metrics::quantile_us(hist, job, 0.5),
        latency_p99_us: metrics::quantile_us(hist, job, 0.99),
        inference_us: metrics::total("flowcast_inference_micros_total", job),
        inference_batches: metrics::total("flowcast_forecast_inference_batches_total", job),
    })
}
