//! `GET /v1/jobs/{id}/graph`: the job graph with numbers on it, from its processes'
//! `/metrics` (summed over processes; rates between this scrape and the previous one).
//!
//! What the numbers mean (the metrics they come from):
//! - records in/out: the source reads `flowcast_source_records_total` and passes on all
//!   but its dead letters; the window takes `flowcast_window_records_total` and emits
//!   `flowcast_window_fired_windows_total`; the sequence passes fired windows on to the
//!   forecast once a device has its history, the forecast emits
//!   `flowcast_forecast_predictions_total`; a sink takes the predictions and its
//!   destination acknowledges `flowcast_sink_delivered_records_total`.
//! - busy: `rate(flowcast_operator_busy_seconds_total)` over the job's workers: the share of
//!   their wall time spent running the operator.
//! - blocked (backpressure): `rate(flowcast_sink_blocked_seconds_total)` over the workers:
//!   the share of their wall time spent waiting for room in a full sink queue. A waiting
//!   worker runs nothing else, so every operator upstream of a sink shows the sinks' sum.

use crate::dataflow::source_state::source_id;
use crate::job::{JobSpec, ModelSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One operator of the graph.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OperatorStats {
    /// Its state id (`source:DHT11`, `window`, `sink-0:kafka`, …).
    pub id: String,
    /// `source`, `window`, `sequence`, `forecast`, `sink`, `dead-letters`, `late-data`.
    pub kind: String,
    /// For people.
    pub label: String,
    /// Records it took in, since the processes started.
    pub records_in_total: f64,
    /// Records it passed on (a sink: delivered).
    pub records_out_total: f64,
    /// Records in per second since the previous sample.
    pub in_per_s: Option<f64>,
    /// Records out per second since the previous sample.
    pub out_per_s: Option<f64>,
    /// Share of the workers' wall time spent running it.
    pub busy_share: Option<f64>,
    /// Share of the workers' wall time spent waiting on a full sink queue.
    pub blocked_share: Option<f64>,
    /// Records it dead-lettered.
    pub dead_lettered_total: f64,
    /// Late records (the window).
    pub late_total: f64,
    /// Records queued in a sink, not yet acknowledged.
    pub queued: Option<f64>,
    #[serde(skip)]
    busy_seconds: f64,
    #[serde(skip)]
    blocked_seconds: f64,
}

/// The answer of `GET /v1/jobs/{id}/graph`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Graph {
    /// The job.
    pub job: String,
    /// When the processes were scraped, ms since the Unix epoch.
    pub sampled_unix_ms: u64,
    /// Seconds between the previous sample and this one (`None` on the first: no rates).
    pub interval_s: Option<f64>,
    /// The job's watermark (the lowest over its processes), ms since the Unix epoch.
    pub watermark_ms: Option<f64>,
    /// Wall clock minus watermark, seconds.
    pub watermark_lag_s: Option<f64>,
    /// Workers the shares are averaged over.
    pub workers: u32,
    /// The operators, upstream first.
    pub operators: Vec<OperatorStats>,
    /// `[from, to]` by operator id.
    pub edges: Vec<(String, String)>,
    /// The forecast-quality series, when the job forecasts.
    pub accuracy: Option<JobAccuracy>,
}

/// The job's forecast quality, from the forecast-quality series summed over its processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobAccuracy {
    /// Forecasts made.
    pub predictions_total: f64,
    /// Per feature.
    pub features: Vec<FeatureAccuracy>,
}

/// One feature's devices by how the model compares with persistence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureAccuracy {
    /// `temperature` or `humidity`.
    pub feature: String,
    /// Devices whose model's rolling error is below persistence's.
    pub ahead_devices: f64,
    /// Devices whose model's rolling error is above persistence's.
    pub behind_devices: f64,
    /// Devices the guard serves persistence.
    pub guarded_devices: f64,
    /// Forecasts whose feature persistence spoke for.
    pub persistence_served_total: f64,
}

/// The job's accuracy from `samples`, `None` for a job without a model.
pub fn accuracy(spec: &JobSpec, samples: &[Sample]) -> Option<JobAccuracy> {
    if matches!(spec.model, ModelSpec::Off) {
        return None;
    }
    let by = |name: &str, feature: &str| {
        sum(samples, name, |s: &Sample| {
            label(s, "feature") == Some(feature)
        })
    };
    Some(JobAccuracy {
        predictions_total: sum(samples, "flowcast_forecast_predictions_total", |_| true),
        features: ["temperature", "humidity"]
            .iter()
            .map(|f| FeatureAccuracy {
                feature: (*f).to_owned(),
                ahead_devices: by("flowcast_forecast_model_ahead_devices", f),
                behind_devices: by("flowcast_forecast_model_behind_devices", f),
                guarded_devices: by("flowcast_forecast_guarded_devices", f),
                persistence_served_total: by("flowcast_forecast_persistence_served_total", f),
            })
            .collect(),
    })
}

/// One sample of a `/metrics` text: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Parses the Prometheus text format's samples (comments and malformed lines skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, labels(rest.strip_suffix('}')?)?),
                None => (series, Vec::new()),
            };
            Some((name.to_owned(), labels, value))
        })
        .collect()
}

fn labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.push((k.trim_start_matches(',').to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(out)
}

/// Matches the samples of operator `op`.
fn of(op: &str) -> impl Fn(&Sample) -> bool + '_ {
    move |s: &Sample| label(s, "operator") == Some(op)
}

fn label<'a>(s: &'a Sample, key: &str) -> Option<&'a str> {
    s.1.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The job's watermark in `samples` (ms since the Unix epoch): the lowest of its window
/// operators'. A worker that has seen no watermark yet reports 0, which is not one.
pub fn watermark_ms(samples: &[Sample]) -> Option<f64> {
    samples
        .iter()
        .filter(|x| x.0 == "flowcast_window_watermark_seconds" && x.2 > 0.0)
        .map(|x| x.2 * 1e3)
        .reduce(f64::min)
}

/// Sums `name` over every sample whose labels match `filter`.
fn sum(samples: &[Sample], name: &str, filter: impl Fn(&Sample) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.0 == name && filter(s))
        .map(|s| s.2)
        .sum()
}

/// The graph of `spec` with the totals of `samples` (every process's, concatenated).
pub fn totals(spec: &JobSpec, samples: &[Sample]) -> (Vec<OperatorStats>, Vec<(String, String)>) {
    let busy = |op: &str| sum(samples, "flowcast_operator_busy_seconds_total", of(op));
    let source = source_id(&spec.source.topic);
    let read = sum(samples, "flowcast_source_records_total", |_| true);
    let rejected = sum(samples, "flowcast_source_dead_letter_records_total", |_| {
        true
    });
    let fired = sum(samples, "flowcast_window_fired_windows_total", |_| true);
    let predictions = sum(samples, "flowcast_forecast_predictions_total", |_| true);
    let forecasting = !matches!(spec.model, ModelSpec::Off);
    let op = |id: &str, kind: &str, label: String, inn: f64, out: f64| OperatorStats {
        id: id.to_owned(),
        kind: kind.to_owned(),
        label,
        records_in_total: inn,
        records_out_total: out,
        busy_seconds: busy(id),
        ..OperatorStats::default()
    };
    let mut ops = vec![
        OperatorStats {
            dead_lettered_total: rejected,
            ..op(
                &source,
                "source",
                format!("Kafka {}", spec.source.topic),
                read,
                (read - rejected).max(0.0),
            )
        },
        OperatorStats {
            late_total: sum(samples, "flowcast_window_late_records_total", |_| true),
            ..op(
                "window",
                "window",
                "tumbling window".into(),
                sum(samples, "flowcast_window_records_total", |_| true),
                fired,
            )
        },
        op(
            "sequence",
            "sequence",
            "last windows per device".into(),
            fired,
            if forecasting { predictions } else { fired },
        ),
    ];
    let mut edges = vec![
        (source.clone(), "window".to_owned()),
        ("window".to_owned(), "sequence".to_owned()),
    ];
    let mut upstream = "sequence".to_owned();
    if forecasting {
        ops.push(op(
            "forecast",
            "forecast",
            "forecast".into(),
            predictions,
            predictions,
        ));
        edges.push(("sequence".into(), "forecast".into()));
        upstream = "forecast".into();
    }
    let sink = |id: &str, kind: &str, label: String, inn: f64| {
        let delivered = sum(samples, "flowcast_sink_delivered_records_total", of(id));
        OperatorStats {
            dead_lettered_total: sum(samples, "flowcast_sink_dead_letter_records_total", of(id)),
            queued: Some(sum(samples, "flowcast_sink_queued_records", of(id))),
            blocked_seconds: sum(samples, "flowcast_sink_blocked_seconds_total", of(id)),
            ..op(id, kind, label, inn, delivered)
        }
    };
    for (i, s) in spec.sinks.iter().enumerate() {
        let id = s.operator_id(i);
        ops.push(sink(&id, "sink", s.kind().to_owned(), predictions));
        edges.push((upstream.clone(), id));
    }
    ops.push(sink(
        "dead-letters",
        "dead-letters",
        "dead letters".into(),
        rejected,
    ));
    edges.push((source, "dead-letters".into()));
    let late = ops[1].late_total;
    ops.push(sink("late-data", "late-data", "late data".into(), late));
    edges.push(("window".into(), "late-data".into()));
    (ops, edges)
}

/// Fills the rates and shares of `now` from the previous totals `before`, `dt` seconds
/// earlier; a total that went down (a process restarted) gives no rate.
pub fn rates(
    now: &mut [OperatorStats],
    before: &BTreeMap<String, OperatorStats>,
    dt: f64,
    workers: u32,
) {
    let w = f64::from(workers.max(1));
    let rate = |a: f64, b: f64| (a >= b && dt > 0.0).then(|| (a - b) / dt);
    let blocked_all: Option<f64> = now
        .iter()
        .filter(|o| o.queued.is_some())
        .map(|o| {
            before
                .get(&o.id)
                .and_then(|b| rate(o.blocked_seconds, b.blocked_seconds))
        })
        .sum();
    for o in now.iter_mut() {
        let Some(b) = before.get(&o.id) else {
            continue;
        };
        o.in_per_s = rate(o.records_in_total, b.records_in_total);
        o.out_per_s = rate(o.records_out_total, b.records_out_total);
        o.busy_share = rate(o.busy_seconds, b.busy_seconds).map(|r| (r / w).min(1.0));
        o.blocked_share = if o.queued.is_some() {
            rate(o.blocked_seconds, b.blocked_seconds)
        } else {
            blocked_all
        }
        .map(|r| (r / w).min(1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_escapes() {
        let text = "# HELP x y\nflowcast_a_total{flowcast_job=\"j\",operator=\"sink-0:kafka\",detail=\"a \\\"b\\\"\"} 3\nup 1\n";
        let s = parse(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, "flowcast_a_total");
        assert_eq!(label(&s[0], "operator"), Some("sink-0:kafka"));
        assert_eq!(label(&s[0], "detail"), Some("a \"b\""));
        assert_eq!(s[0].2, 3.0);
        assert_eq!((s[1].0.as_str(), s[1].2), ("up", 1.0));
    }

    #[test]
    fn rates_are_per_second_and_shares_per_worker() {
        let a = OperatorStats {
            id: "window".into(),
            records_in_total: 100.0,
            busy_seconds: 1.0,
            ..OperatorStats::default()
        };
        let b = OperatorStats {
            records_in_total: 300.0,
            busy_seconds: 2.0,
            ..a.clone()
        };
        let before = BTreeMap::from([("window".to_owned(), a)]);
        let mut now = vec![b];
        rates(&mut now, &before, 2.0, 2);
        assert_eq!(now[0].in_per_s, Some(100.0));
        assert_eq!(now[0].busy_share, Some(0.25));
        // A restarted process resets its counters: no rate rather than a negative one.
        let mut reset = vec![OperatorStats {
            records_in_total: 5.0,
            ..now[0].clone()
        }];
        let before = BTreeMap::from([("window".to_owned(), now[0].clone())]);
        rates(&mut reset, &before, 2.0, 2);
        assert_eq!(reset[0].in_per_s, None);
    }
}
