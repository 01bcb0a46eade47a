//! A job's detail: its operators, which process holds which partitions and key groups,
//! its latest checkpoints (from its checkpoint store) and its watermark (from its
//! processes' `/metrics`).

use super::api::{CheckpointView, JobView, ProcessView};
use super::coordinator::Shared;
use super::placement::{ranges, workers_of};
use super::state::Refusal;
use crate::checkpoint::manifest::{Kind, read_manifest};
use crate::checkpoint::{CheckpointStore, MANIFEST};
use crate::dataflow::source_state::source_id;
use crate::job::{JobSpec, ModelSpec};
use crate::lifecycle::KeyGroups;
use crate::lifecycle::state::partition_owner;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The operators of a job's graph, by their state ids.
pub fn operators(spec: &JobSpec) -> Vec<String> {
    let mut ops = vec![
        source_id(&spec.source.topic),
        "window".into(),
        "sequence".into(),
    ];
    if !matches!(spec.model, ModelSpec::Off) {
        ops.push("forecast".into());
    }
    ops.extend(spec.sinks.iter().enumerate().map(|(i, s)| s.operator_id(i)));
    ops.push("dead-letters".into());
    ops.push("late-data".into());
    ops
}

/// The newest `n` manifests (checkpoints and savepoints) of `job` in `store`, newest first;
/// `epoch_ms` is the job's epoch interval.
pub fn checkpoints(
    store: &CheckpointStore,
    job: &str,
    n: usize,
    epoch_ms: u64,
) -> Vec<CheckpointView> {
    let Ok(list) = store.list("") else {
        return Vec::new();
    };
    let mut out: Vec<CheckpointView> = list
        .iter()
        .map(|m| m.location.as_ref().to_owned())
        .filter(|p| p.ends_with(&format!("/{MANIFEST}")))
        .filter_map(|p| read_manifest(store, &p).ok().flatten())
        .filter(|m| m.job == job)
        .map(|m| CheckpointView {
            id: m.checkpoint_id,
            kind: match m.kind {
                Kind::Checkpoint => "checkpoint".into(),
                Kind::Savepoint => "savepoint".into(),
            },
            created_unix_ms: m.created_unix_ms,
            bytes: m.files.iter().map(|f| f.size).sum(),
            duration_ms: (m.kind == Kind::Checkpoint && epoch_ms > 0).then(|| {
                m.created_unix_ms
                    .saturating_sub(m.epoch.saturating_mul(epoch_ms))
            }),
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.created_unix_ms));
    out.truncate(n);
    out
}

/// `GET /v1/jobs/{id}` (blocking: reads the store and scrapes the processes).
///
/// # Errors
/// 404 for an unknown job.
pub fn job_detail(s: &Shared, id: &str) -> Result<JobView, Refusal> {
    let not_found = || Refusal {
        status: 404,
        message: format!("no job `{id}`"),
    };
    let (mut view, record, statuses) = {
        let c = s.lock();
        let record = c.job(id).cloned().ok_or_else(not_found)?;
        let view = c.job_view(id).ok_or_else(not_found)?;
        let statuses: Vec<String> = record
            .placement
            .iter()
            .map(|p| c.process_status(&record, p))
            .collect();
        (view, record, statuses)
    };
    let spec = JobSpec::parse(&record.spec, Path::new("the job's spec")).map_err(|e| Refusal {
        status: 500,
        message: e.to_string(),
    })?;
    view.operators = operators(&spec);
    let workers = record.placement.len() as u32 * record.threads;
    let groups = KeyGroups::new(spec.state.key_groups.unwrap_or(KeyGroups::DEFAULT)).ok();
    let agent = super::loops::agent(Duration::from_millis(800));
    let mut watermark: Option<f64> = None;
    for (p, status) in record.placement.iter().zip(statuses) {
        let ws = workers_of(p.index, record.threads);
        let partitions = (0..record.partitions.unwrap_or(0) as i32)
            .filter(|part| ws.contains(&(partition_owner(*part, workers as usize) as u32)))
            .collect();
        let key_groups: BTreeSet<u32> = groups
            .map(|g| {
                (0..g.count())
                    .filter(|kg| {
                        ws.iter()
                            .any(|w| g.owns(*w as usize, workers as usize, *kg))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(text) = super::loops::scrape(&agent, &p.host, p.metrics_port)
            && let Some(w) = super::ui::graph::watermark_ms(&super::ui::graph::parse(&text))
        {
            watermark = Some(watermark.map_or(w, |m: f64| m.min(w)));
        }
        view.placement.push(ProcessView {
            placement: p.clone(),
            workers: ws,
            partitions,
            key_groups: ranges(&key_groups),
            status,
        });
    }
    view.watermark_ms = watermark;
    if let Some(loc) = &spec.checkpoint.location
        && let Ok(store) = CheckpointStore::open_existing(loc)
    {
        view.checkpoints = checkpoints(&store, id, 5, record.epoch_interval_ms);
        if let Some(sp) = spec.checkpoint.savepoint_root()
            && let Ok(store) = CheckpointStore::open_existing(&sp)
        {
            view.checkpoints
                .extend(checkpoints(&store, id, 5, record.epoch_interval_ms));
            view.checkpoints
                .sort_by_key(|c| std::cmp::Reverse(c.created_unix_ms));
            view.checkpoints.truncate(5);
        }
    }
    Ok(view)
}
