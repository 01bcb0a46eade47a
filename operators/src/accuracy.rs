//! Online forecast accuracy, the guard and the physical clamp, per device — keyed state
//! of a few dozen bytes a device.
//!
//! When a device's window w+1 closes, the forecast made at w is scored per feature: the
//! absolute error of the model's (clamped) forecast and of persistence's (w's observed
//! mean) against w+1's observed mean, each folded into an exponentially weighted mean
//! with a half-life in windows (the first score starts it). A forecast whose next window
//! never came (the device was silent for a window) is not scored. A revision of the
//! newest window (late data) replaces the forecast waiting for the next window but does
//! not score again: the window was scored as it first closed. Errors and the waiting
//! forecast are kept in `f32`, 48 bytes a device.
//!
//! The guard, per device and feature: once `warm_up` forecasts are scored, the model
//! speaks while its rolling error is at most `1 + margin` times persistence's; above that,
//! persistence speaks until the model's error falls to `1 + margin − hysteresis` times
//! persistence's. Before, the `warm_up_serves` forecaster speaks.
//!
//! # Examples
//!
//! ```
//! use flowcast_operators::accuracy::{Accuracies, AccuracySettings, GuardSettings};
//! use flowcast_operators::{ForecasterKind, SensorKind};
//!
//! let mut settings = AccuracySettings::new(SensorKind::Dht11);
//! settings.guard = Some(GuardSettings { warm_up: 2, ..GuardSettings::default() });
//! let mut acc = Accuracies::new(settings, 10);
//! // The model always says 30 °C; the room stays at 20 °C.
//! for w in 0..4 {
//!     let end = (w + 1) * 10;
//!     let out = acc.step("pi", end, [20.0, 50.0], [30.0, 50.0]);
//!     if w == 3 {
//!         assert_eq!(out.served.temperature.by, ForecasterKind::Persistence);
//!         assert_eq!(out.predicted, [20.0, 50.0]);
//!         assert_eq!(out.accuracy.temperature.unwrap().model, 10.0);
//!     }
//! }
//! ```

use crate::event_time::EventTime;
use crate::record::SensorKind;
use crate::record::quality::{
    Accuracy, FeatureAccuracy, FeatureServed, ForecasterKind, Served, ServedReason,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The guard's settings. The defaults are the best of a grid on the validation windows of
/// the model's data — indoor rooms, the same rounded as a DHT11 reports them, and the
/// outdoor sensor — by the worst served-to-persistence MAE ratio
/// (`operators/tests/guard_validation.rs`; models/README.md, "Guard").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardSettings {
    /// The model is switched off for a feature when its rolling error exceeds
    /// persistence's by more than this fraction.
    pub margin: f64,
    /// It is switched on again when its error falls below `1 + margin − hysteresis` times
    /// persistence's.
    pub hysteresis: f64,
    /// Forecasts scored before the guard decides.
    pub warm_up: u32,
    /// Who speaks before that.
    pub warm_up_serves: ForecasterKind,
}

impl GuardSettings {
    /// Default [`margin`](Self::margin): persistence speaks once the model's rolling error
    /// is 20 % above its (chosen on validation data, models/README.md, "Guard").
    pub const DEFAULT_MARGIN: f64 = 0.2;
    /// Default [`hysteresis`](Self::hysteresis): none; the model speaks again once its
    /// rolling error is back under 1.2 × persistence's.
    pub const DEFAULT_HYSTERESIS: f64 = 0.0;
    /// Default [`warm_up`](Self::warm_up): a day of 30-minute windows.
    pub const DEFAULT_WARM_UP: u32 = 48;
    /// Default [`warm_up_serves`](Self::warm_up_serves): the model, which was trained for
    /// indoor and outdoor sensors and for a DHT11's whole units.
    pub const DEFAULT_WARM_UP_SERVES: ForecasterKind = ForecasterKind::Model;
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            margin: Self::DEFAULT_MARGIN,
            hysteresis: Self::DEFAULT_HYSTERESIS,
            warm_up: Self::DEFAULT_WARM_UP,
            warm_up_serves: Self::DEFAULT_WARM_UP_SERVES,
        }
    }
}

/// How a job scores and serves forecasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccuracySettings {
    /// Half-life of the rolling errors, in windows.
    pub half_life: f64,
    /// The guard; `None` = off (the model always speaks).
    pub guard: Option<GuardSettings>,
    /// Physical `[temperature, humidity]` ranges a served forecast is clamped to.
    pub ranges: [(f64, f64); 2],
}

impl AccuracySettings {
    /// Default [`half_life`](Self::half_life): 6 hours of 30-minute windows (chosen with the
    /// guard's defaults).
    pub const DEFAULT_HALF_LIFE: f64 = 12.0;

    /// Defaults for `sensor`: its temperature range, 0–100 %RH (any sensor's humidity is
    /// physically bounded there, whatever range it is specified for), the guard on.
    pub fn new(sensor: SensorKind) -> Self {
        AccuracySettings {
            half_life: Self::DEFAULT_HALF_LIFE,
            guard: Some(GuardSettings::default()),
            ranges: [sensor.temperature_range(), (0.0, 100.0)],
        }
    }

    fn alpha(&self) -> f64 {
        1.0 - 0.5f64.powf(1.0 / self.half_life.max(f64::MIN_POSITIVE))
    }
}

/// Rolling errors and guard flags: what a score changes. `f32`, as the model computes:
/// the state must stay small (`operators/tests/state_size.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Scores {
    /// Per feature `[model, persistence]` rolling absolute errors.
    ewm: [[f32; 2]; 2],
    scored: u32,
    /// Per feature: persistence speaks.
    guarded: [bool; 2],
}

/// A forecast waiting for its window: made when the window ending at `made_at` closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Pending {
    made_at: EventTime,
    model: [f32; 2],
    persistence: [f32; 2],
}

/// One device's state: 48 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Device {
    pending: Pending,
    scores: Scores,
}

/// What [`Accuracies::step`] serves for one forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The served `[temperature, humidity]`.
    pub predicted: [f64; 2],
    /// How each feature came about.
    pub served: Served,
    /// The device's rolling errors after this window's score.
    pub accuracy: Accuracy,
    /// Whether this window scored a forecast.
    pub scored: bool,
}

/// The accuracy state of every device on one worker. A snapshot's freeze copies it, some
/// 100 bytes a device. (Boxed: a map slot of 24 bytes instead of 64, which matters at the
/// map's load factor.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accuracies {
    #[serde(skip, default = "default_settings")]
    settings: AccuracySettings,
    window_ms: EventTime,
    devices: HashMap<Arc<str>, Box<Device>>,
}

fn default_settings() -> AccuracySettings {
    AccuracySettings::new(SensorKind::default())
}

/// Per feature, how the devices of one worker stand (devices with at least one score).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    /// Per feature, the model-to-persistence error ratio of each scored device.
    pub ratios: [Vec<f64>; 2],
    /// Per feature, devices whose model's rolling error is below persistence's.
    pub ahead: [u64; 2],
    /// Per feature, devices whose model's rolling error is above persistence's.
    pub behind: [u64; 2],
    /// Per feature, devices served persistence by the guard.
    pub guarded: [u64; 2],
}

impl Accuracies {
    /// No devices yet; windows are `window_ms` long.
    pub fn new(settings: AccuracySettings, window_ms: EventTime) -> Self {
        Accuracies {
            settings,
            window_ms: window_ms.max(1),
            devices: HashMap::new(),
        }
    }

    /// Number of devices tracked.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// The forecast the model made when `device`'s window ending at `window_end` closed
    /// with means `observed`: scores the forecast made for this window, then decides,
    /// per feature, what is served.
    pub fn step(
        &mut self,
        device: &str,
        window_end: EventTime,
        observed: [f64; 2],
        model: [f64; 2],
    ) -> Outcome {
        let settings = self.settings;
        let window_ms = self.window_ms;
        let d = match self.devices.get_mut(device) {
            Some(d) => d,
            None => self.devices.entry(device.into()).or_insert_with(|| {
                Box::new(Device {
                    pending: Pending {
                        made_at: EventTime::MIN,
                        ..Pending::default()
                    },
                    ..Device::default()
                })
            }),
        };
        let mut clamped = [false; 2];
        let mut clamped_model = model;
        for f in 0..2 {
            let (lo, hi) = settings.ranges[f];
            clamped_model[f] = model[f].clamp(lo, hi);
            clamped[f] = clamped_model[f] != model[f];
        }
        let this = Pending {
            made_at: window_end,
            model: clamped_model.map(|v| v as f32),
            persistence: observed.map(|v| v as f32),
        };
        if window_end < d.pending.made_at {
            // An older window (the sequence stage emits none): serve, change nothing.
            return outcome(
                &settings,
                &d.scores,
                clamped_model,
                observed,
                clamped,
                false,
            );
        }
        // A revision of the newest window (`window_end == made_at`) replaces the waiting
        // forecast; the score made when the window first closed stays.
        let scored = d.pending.made_at != EventTime::MIN
            && window_end == d.pending.made_at.saturating_add(window_ms);
        if scored {
            score(&settings, &mut d.scores, &d.pending, observed);
        }
        d.pending = this;
        outcome(
            &settings,
            &d.scores,
            clamped_model,
            observed,
            clamped,
            scored,
        )
    }

    /// Drops the state of devices whose newest forecast was made before `cutoff`; returns
    /// how many.
    pub fn expire(&mut self, cutoff: EventTime) -> usize {
        let before = self.devices.len();
        self.devices.retain(|_, d| d.pending.made_at >= cutoff);
        before - self.devices.len()
    }

    /// The state of every device grouped by `group(device)`, sharing it (copy-on-write).
    pub fn split_by(&self, group: impl Fn(&str) -> u32) -> BTreeMap<u32, Accuracies> {
        let mut parts: BTreeMap<u32, Accuracies> = BTreeMap::new();
        for (device, d) in &self.devices {
            parts
                .entry(group(device))
                .or_insert_with(|| Accuracies::new(self.settings, self.window_ms))
                .devices
                .insert(Arc::clone(device), d.clone());
        }
        parts
    }

    /// Takes over the devices of `other` (a restored key group).
    ///
    /// # Errors
    /// If `other` was scored on windows of another length.
    pub fn merge(&mut self, other: Accuracies) -> Result<(), String> {
        if other.window_ms != self.window_ms {
            return Err(format!(
                "the state scored windows of {} ms but the job's windows are {} ms",
                other.window_ms, self.window_ms
            ));
        }
        self.devices.extend(other.devices);
        Ok(())
    }

    /// How the devices stand, for the job's metrics.
    pub fn standing(&self) -> Standing {
        let mut s = Standing::default();
        for d in self.devices.values() {
            if d.scores.scored == 0 {
                continue;
            }
            for f in 0..2 {
                let [m, p] = d.scores.ewm[f].map(f64::from);
                s.ratios[f].push(ratio(m, p));
                s.ahead[f] += u64::from(m < p);
                s.behind[f] += u64::from(m > p);
                s.guarded[f] += u64::from(d.scores.guarded[f] && self.settings.guard.is_some());
            }
        }
        s
    }
}

/// The model's error over persistence's: 1 when both are 0, +∞ when only persistence's is.
pub fn ratio(model: f64, persistence: f64) -> f64 {
    if persistence > 0.0 {
        model / persistence
    } else if model > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

/// Folds the errors of `pending` against `observed` into `scores` and moves the guard.
fn score(settings: &AccuracySettings, scores: &mut Scores, pending: &Pending, observed: [f64; 2]) {
    let alpha = settings.alpha() as f32;
    for (f, &actual) in observed.iter().enumerate() {
        let actual = actual as f32;
        let errors = [
            (pending.model[f] - actual).abs(),
            (pending.persistence[f] - actual).abs(),
        ];
        for (k, e) in errors.into_iter().enumerate() {
            let ewm = &mut scores.ewm[f][k];
            *ewm = if scores.scored == 0 {
                e
            } else {
                *ewm + alpha * (e - *ewm)
            };
        }
    }
    let before = scores.scored;
    scores.scored = scores.scored.saturating_add(1);
    let Some(guard) = settings.guard else {
        return;
    };
    let (margin, hysteresis) = (guard.margin as f32, guard.hysteresis as f32);
    let warm_up_persistence = guard.warm_up_serves == ForecasterKind::Persistence;
    for f in 0..2 {
        let [m, p] = scores.ewm[f];
        // Who spoke until now: the warm-up's forecaster, or the guard's last decision.
        let guarded = if before < guard.warm_up {
            warm_up_persistence
        } else {
            scores.guarded[f]
        };
        scores.guarded[f] = if scores.scored < guard.warm_up {
            warm_up_persistence
        } else if guarded {
            m > p * (1.0 + margin - hysteresis)
        } else {
            m > p * (1.0 + margin)
        };
    }
}

fn outcome(
    settings: &AccuracySettings,
    scores: &Scores,
    model: [f64; 2],
    observed: [f64; 2],
    clamped: [bool; 2],
    scored: bool,
) -> Outcome {
    let mut served = [FeatureServed::default(); 2];
    let mut predicted = model;
    for f in 0..2 {
        let [m, p] = scores.ewm[f];
        let (by, why) = match settings.guard {
            None => (ForecasterKind::Model, ServedReason::GuardOff),
            Some(g) if scores.scored < g.warm_up => (g.warm_up_serves, ServedReason::WarmUp),
            Some(_) if scores.guarded[f] => {
                (ForecasterKind::Persistence, ServedReason::ModelBehind)
            }
            Some(_) if m <= p => (ForecasterKind::Model, ServedReason::ModelAhead),
            Some(_) => (ForecasterKind::Model, ServedReason::WithinMargin),
        };
        if by == ForecasterKind::Persistence {
            predicted[f] = observed[f];
        }
        served[f] = FeatureServed {
            by,
            why,
            model: model[f],
            clamped: clamped[f],
        };
    }
    let feature = |f: usize| {
        (scores.scored > 0).then(|| FeatureAccuracy {
            model: f64::from(scores.ewm[f][0]),
            persistence: f64::from(scores.ewm[f][1]),
        })
    };
    Outcome {
        predicted,
        served: Served {
            temperature: served[0],
            humidity: served[1],
        },
        accuracy: Accuracy {
            scored: scores.scored,
            half_life: settings.half_life,
            temperature: feature(0),
            humidity: feature(1),
        },
        scored,
    }
}

#[cfg(test)]
mod tests;
