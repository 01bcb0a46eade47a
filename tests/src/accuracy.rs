//! The online accuracy and the guard of a job's predictions, recomputed from the output
//! alone: per device, each record's observed means and the model's forecast
//! (`served.<feature>.model`) give the errors of the forecast made one window earlier, for
//! the model and for persistence; their exponentially weighted means must be what the
//! next record's `accuracy` says, and the guard's decision (who spoke) must follow from
//! them. Shares no code with the engine (`flowcast_operators::accuracy`).

use serde_json::Value;
use std::collections::BTreeMap;

/// The default `accuracy-half-life`, windows.
pub const HALF_LIFE: f64 = 12.0;

/// The guard's settings as a job spec states them.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// `guard-margin`.
    pub margin: f64,
    /// `guard-hysteresis`.
    pub hysteresis: f64,
    /// `guard-warm-up`.
    pub warm_up: u64,
    /// `guard-warm-up-serves = "persistence"`.
    pub warm_up_persistence: bool,
}

impl Default for Guard {
    /// The defaults of `jobs/dht11-forecast.toml`.
    fn default() -> Self {
        Guard {
            margin: 0.2,
            hysteresis: 0.0,
            warm_up: 48,
            warm_up_persistence: false,
        }
    }
}

/// What the check saw for one device and feature.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureSummary {
    /// Forecasts scored.
    pub scored: u64,
    /// The final rolling errors `[model, persistence]`.
    pub errors: [f64; 2],
    /// Records, after the warm-up, where persistence spoke.
    pub persistence_spoke: u64,
    /// Records after the warm-up.
    pub after_warm_up: u64,
    /// Records, after the warm-up, where the model was clearly ahead — its rolling error at
    /// most `1 + margin − hysteresis` times persistence's, where the guard must let it
    /// speak — and it spoke.
    pub ahead_and_model_spoke: u64,
    /// Records, after the warm-up, where the model was clearly ahead.
    pub ahead: u64,
    /// Records whose model forecast was clamped.
    pub clamped: u64,
}

const FEATURES: [&str; 2] = ["temperature", "humidity"];

/// Both within `tol` of each other, relative to the larger magnitude (at least 1).
fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0)
}

/// Checks every record of `preds` (keyed by device and window end in ms, values as written
/// to `predicData`) against the errors recomputed from the records themselves with
/// half-life `half_life` windows of `window_ms`, and the guard's decisions (`None`: the
/// guard is off). `ranges` are the clamp's `[temperature, humidity]` bounds. Returns a
/// summary per device and feature.
///
/// # Panics
/// When a record disagrees, naming it.
pub fn check(
    preds: &BTreeMap<(String, i64), Value>,
    window_ms: i64,
    half_life: f64,
    guard: Option<Guard>,
    ranges: [(f64, f64); 2],
    what: &str,
) -> BTreeMap<(String, &'static str), FeatureSummary> {
    let alpha = 1.0 - 0.5f64.powf(1.0 / half_life);
    let num = |v: &Value, path: &[&str]| -> f64 {
        path.iter()
            .fold(v, |v, k| &v[*k])
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: no {path:?} in {v}"))
    };
    let mut out = BTreeMap::new();
    let mut prev: Option<(&String, i64, &Value)> = None;
    // Per feature: rolling [model, persistence], scored, guarded.
    let mut state = [([0.0f64; 2], 0u64, false); 2];
    for ((device, end), v) in preds {
        if prev.is_none_or(|(d, _, _)| d != device) {
            state = [([0.0; 2], 0, false); 2];
        }
        let scored_now = prev.is_some_and(|(d, e, _)| d == device && *end == e + window_ms);
        for (f, feature) in FEATURES.iter().enumerate() {
            let observed = num(v, &["observed", feature]);
            let model = num(v, &["served", feature, "model"]);
            let (lo, hi) = ranges[f];
            assert!(
                (lo..=hi).contains(&model),
                "{what}: {device}@{end}: {feature} forecast {model} outside {lo}..={hi}"
            );
            let clamped = v["served"][feature]["clamped"] == true;
            if clamped {
                assert!(
                    model == lo || model == hi,
                    "{what}: clamped to a bound: {v}"
                );
            }
            let (ewm, scored, guarded) = &mut state[f];
            if scored_now && let Some((_, _, p)) = prev {
                let errors = [
                    (num(p, &["served", feature, "model"]) - observed).abs(),
                    (num(p, &["observed", feature]) - observed).abs(),
                ];
                for k in 0..2 {
                    ewm[k] = if *scored == 0 {
                        errors[k]
                    } else {
                        ewm[k] + alpha * (errors[k] - ewm[k])
                    };
                }
                *scored += 1;
            }
            let acc = &v["accuracy"];
            assert_eq!(
                acc["scored"].as_u64(),
                Some(*scored),
                "{what}: {device}@{end}: forecasts scored: {v}"
            );
            if *scored > 0 {
                let got = [
                    num(acc, &[feature, "model"]),
                    num(acc, &[feature, "persistence"]),
                ];
                for k in 0..2 {
                    // The job keeps its state in f32.
                    assert!(
                        close(got[k], ewm[k], 1e-4),
                        "{what}: {device}@{end}: {feature} rolling errors {got:?}, recomputed {ewm:?}"
                    );
                }
            } else {
                assert!(acc[feature].is_null(), "{what}: not scored yet: {v}");
            }
            let by_persistence = v["served"][feature]["by"] == "persistence";
            let served = num(v, &["predicted", feature]);
            assert_eq!(
                served,
                if by_persistence { observed } else { model },
                "{what}: {device}@{end}: {feature}: predicted is who spoke's: {v}"
            );
            let [m, p] = *ewm;
            let s: &mut FeatureSummary = out.entry((device.clone(), *feature)).or_default();
            s.scored = *scored;
            s.errors = *ewm;
            s.clamped += u64::from(clamped);
            let Some(g) = guard else {
                assert!(!by_persistence, "{what}: the guard is off: {v}");
                continue;
            };
            if *scored < g.warm_up {
                *guarded = g.warm_up_persistence;
                assert_eq!(by_persistence, *guarded, "{what}: warm-up: {v}");
                continue;
            }
            let threshold = if *guarded {
                1.0 + g.margin - g.hysteresis
            } else {
                1.0 + g.margin
            };
            if close(m, p * threshold, 1e-4) {
                // On the threshold: f32 in the job may decide either way; follow it.
                *guarded = by_persistence;
            } else {
                *guarded = m > p * threshold;
                assert_eq!(
                    by_persistence, *guarded,
                    "{what}: {device}@{end}: {feature}: rolling errors model {m}, persistence {p}: {v}"
                );
            }
            s.after_warm_up += 1;
            s.persistence_spoke += u64::from(by_persistence);
            if m <= p * (1.0 + g.margin - g.hysteresis) {
                s.ahead += 1;
                s.ahead_and_model_spoke += u64::from(!by_persistence);
            }
        }
        prev = Some((device, *end, v));
    }
    out
}

/// The predictions on `topic`, keyed by device and window end (ms), each once.
///
/// # Panics
/// If a record is not a prediction or appears twice.
pub fn read(brokers: &str, topic: &str) -> BTreeMap<(String, i64), Value> {
    let mut out = BTreeMap::new();
    for r in crate::kafka::read_all(brokers, topic) {
        let v: Value = serde_json::from_slice(&r.value).expect("prediction json");
        let device = v["device"].as_str().expect("device").to_owned();
        let end = (v["window_end"].as_f64().expect("window_end") * 1000.0).round() as i64;
        assert!(
            out.insert((device, end), v).is_none(),
            "{topic}: a duplicate"
        );
    }
    out
}
