//! The adapter in-process, without Kafka: a keyed counting operator is stopped with a
//! snapshot and restored at another worker count, and its output compared with an
//! uninterrupted single-worker run; state versions are migrated or refused.

use super::snapshot::{self, RestorePlan};
use super::state::WorkerStateConfig;
use super::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Inspect};

/// Counts each device's records (keyed state); state version `version`, migrating from
/// `version - 1` by counting the migration.
struct Count {
    version: u32,
    groups: KeyGroups,
    counts: HashMap<String, u64>,
    migrated: Arc<Mutex<u32>>,
}

impl Operator for Count {
    type In = String;
    type Out = (String, u64);

    fn id(&self) -> &str {
        "count"
    }
    fn state_version(&self) -> u32 {
        self.version
    }
    fn migrate(&self, state: RestoredState) -> Result<RestoredState, StateError> {
        if state.version() + 1 == self.version {
            *self.migrated.lock().expect("lock") += 1;
            Ok(state.with_version(self.version))
        } else {
            Err(StateError::Version {
                operator: "count".into(),
                found: state.version(),
                supported: self.version,
            })
        }
    }
    fn on_records(&mut self, _: &EpochContext, records: Vec<String>, out: &mut Vec<(String, u64)>) {
        for d in records {
            let n = self.counts.entry(d.clone()).or_default();
            *n += 1;
            out.push((d, *n));
        }
    }
    fn snapshot(&mut self, _: &EpochContext, w: &mut StateWriter<'_>) -> Result<(), StateError> {
        let mut groups: BTreeMap<u32, Vec<(&String, &u64)>> = BTreeMap::new();
        for (d, n) in &self.counts {
            groups.entry(self.groups.of(d)).or_default().push((d, n));
        }
        groups.iter().try_for_each(|(g, e)| w.keyed(*g, e))
    }
    fn restore(&mut self, state: RestoredState) -> Result<(), StateError> {
        for g in state.keyed::<Vec<(String, u64)>>() {
            self.counts.extend(g?.1);
        }
        Ok(())
    }
}

struct Run {
    output: Vec<(String, u64)>,
    failure: Option<String>,
    migrated: u32,
}

/// Feeds `records` (epoch, device) on worker 0 with `workers` workers; `stop_at` sends a
/// stop-with-snapshot at that epoch.
fn run(
    workers: usize,
    version: u32,
    records: Vec<(u64, String)>,
    stop_at: Option<u64>,
    restore: Option<Arc<RestorePlan>>,
    dir: &Path,
) -> Run {
    let output = Arc::new(Mutex::new(Vec::new()));
    let failure = Arc::new(Mutex::new(None));
    let migrated = Arc::new(Mutex::new(0));
    let (out, fail, mig, dir) = (
        Arc::clone(&output),
        Arc::clone(&failure),
        Arc::clone(&migrated),
        dir.to_owned(),
    );
    timely::execute(timely::Config::process(workers), move |worker| {
        let state = Rc::new(WorkerState::new(WorkerStateConfig {
            job: "test".into(),
            index: worker.index(),
            workers: worker.peers(),
            partitions: 0,
            key_groups: restore
                .as_ref()
                .map_or_else(|| KeyGroups::new(16).expect("groups"), |p| p.key_groups),
            restore: restore.clone(),
            state_dir: Some(dir.clone()),
            checkpoints: None,
            failure: Arc::clone(&fail),
        }));
        let (out, mig) = (Arc::clone(&out), Arc::clone(&mig));
        let (mut data, mut signals) = worker.dataflow::<Epoch, _, _>(|scope| {
            let (data_in, data) = scope.new_input::<Vec<String>>();
            let (signals_in, signals) = scope.new_input::<Vec<Signal>>();
            let ctx = JobContext {
                signals: signals.broadcast(),
                state: Rc::clone(&state),
            };
            let op = Count {
                version,
                groups: state.key_groups(),
                counts: HashMap::new(),
                migrated: mig,
            };
            lifecycle(data, ctx.keyed(|d: &String| d.as_str()), &ctx, op).inspect(move |r| {
                out.lock().expect("lock").push(r.clone());
            });
            (data_in, signals_in)
        });
        if worker.index() == 0 {
            let mut sent = false;
            for (epoch, device) in &records {
                if let Some(s) = stop_at {
                    // Records of the epoch after the stop are fed, and must be discarded.
                    if *epoch > s + 1 {
                        break;
                    }
                    if !sent && *epoch >= s {
                        signals.advance_to(s);
                        signals.send(Signal::Command(Command::StopWithSnapshot { id: 1 }));
                        sent = true;
                    }
                }
                data.advance_to(*epoch);
                signals.advance_to(*epoch);
                data.send(device.clone());
            }
        }
        drop((data, signals));
        while worker.step() {}
    })
    .expect("timely runs")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker"));
    let mut output = output.lock().expect("lock").clone();
    output.sort();
    let failure = failure.lock().expect("lock").clone();
    let migrated = *migrated.lock().expect("lock");
    Run {
        output,
        failure,
        migrated,
    }
}

fn records() -> Vec<(u64, String)> {
    (0..300u64)
        .map(|i| (1 + i / 30, format!("dev-{}", (i * 7) % 23)))
        .collect()
}

#[test]
fn a_stopped_and_restored_operator_continues_exactly_at_another_parallelism() {
    let dir = tempfile::tempdir().expect("dir");
    let all = records();
    let whole = run(1, 1, all.clone(), None, None, dir.path()).output;
    assert_eq!(whole.len(), all.len());

    // Stop at epoch 4 on 2 workers: the snapshot holds epochs ≤ 4; the epoch-5 records
    // the first run was fed are discarded and belong to the restored run.
    let first = run(2, 1, all.clone(), Some(4), None, dir.path());
    assert!(first.failure.is_none(), "{:?}", first.failure);
    let plan = Arc::new(snapshot::load(&snapshot::snapshot_dir(dir.path(), 1)).expect("snapshot"));
    assert_eq!(plan.workers, 2);
    let rest: Vec<_> = all.iter().filter(|(e, _)| *e > 4).cloned().collect();
    for workers in [1, 3] {
        let second = run(
            workers,
            1,
            rest.clone(),
            None,
            Some(Arc::clone(&plan)),
            dir.path(),
        );
        assert!(second.failure.is_none(), "{:?}", second.failure);
        let mut union = first.output.clone();
        union.extend(second.output);
        union.sort();
        assert_eq!(union, whole, "restored at {workers} workers");
    }
}

#[test]
fn state_versions_are_migrated_or_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let all = records();
    let first = run(2, 1, all.clone(), Some(2), None, dir.path());
    assert!(first.failure.is_none());
    let plan = Arc::new(snapshot::load(&snapshot::snapshot_dir(dir.path(), 1)).expect("snapshot"));
    let rest: Vec<_> = all.iter().filter(|(e, _)| *e > 2).cloned().collect();

    // Version 2 reads version 1 through its migration.
    let newer = run(
        2,
        2,
        rest.clone(),
        None,
        Some(Arc::clone(&plan)),
        dir.path(),
    );
    assert!(newer.failure.is_none(), "{:?}", newer.failure);
    assert_eq!(newer.migrated, 2, "each worker migrated its share once");

    // Version 3 cannot migrate from 1; a build that reads version 0 refuses version 1.
    for version in [3, 0] {
        let r = run(
            1,
            version,
            rest.clone(),
            None,
            Some(Arc::clone(&plan)),
            dir.path(),
        );
        let msg = r.failure.expect("refused");
        assert!(
            msg.contains("version 1 of `count`"),
            "version {version}: {msg}"
        );
    }
}
