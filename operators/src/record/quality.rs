//! What a [`super::Prediction`] says about its own quality: per feature, which forecaster
//! spoke and why, and whether the model's value was clamped to the sensor's range
//! ([`Served`]); and the device's rolling errors of the model and of persistence
//! ([`Accuracy`]). `crate::accuracy` computes both.
//!
//! Records written before these fields existed read back with their defaults.

use serde::{Deserialize, Serialize};

/// A forecaster that can speak for a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForecasterKind {
    /// The job's model (`[model] kind`).
    #[default]
    Model,
    /// Next window = last window.
    Persistence,
}

/// Why a forecaster spoke for a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServedReason {
    /// The guard is off (`[model] guard = "off"`): the model always speaks.
    #[default]
    GuardOff,
    /// Fewer windows scored than `guard-warm-up`: the `guard-warm-up-serves` forecaster speaks.
    WarmUp,
    /// The model's rolling error is at most persistence's: the model speaks.
    ModelAhead,
    /// The model's rolling error is above persistence's but within the guard's margin (or,
    /// after a switch, back under the hysteresis threshold): the model speaks.
    WithinMargin,
    /// The model's rolling error exceeded persistence's by more than the margin and has not
    /// come back under the hysteresis threshold: persistence speaks.
    ModelBehind,
}

/// How one feature of the served forecast came about.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FeatureServed {
    /// Who spoke: `predicted` holds this forecaster's value.
    pub by: ForecasterKind,
    /// Why.
    pub why: ServedReason,
    /// The model's forecast (after the clamp), whoever spoke: what the model is scored on.
    pub model: f64,
    /// The model's forecast lay outside the physical range and was clamped to it.
    pub clamped: bool,
}

/// Per feature, how the served forecast came about.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Served {
    /// Temperature.
    pub temperature: FeatureServed,
    /// Humidity.
    pub humidity: FeatureServed,
}

/// A device's rolling mean absolute errors of one feature.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FeatureAccuracy {
    /// The model's (its clamped forecast against the next window's observed mean).
    pub model: f64,
    /// Persistence's (this window's observed mean against the next one's).
    pub persistence: f64,
}

/// A device's online accuracy: exponentially weighted means of the absolute error of
/// every forecast scored so far (a forecast made at window w is scored when w+1 closes).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Accuracy {
    /// Forecasts of this device scored so far (saturating).
    pub scored: u32,
    /// The weights' half-life, in windows.
    pub half_life: f64,
    /// Temperature (°C); `null` before the first score.
    pub temperature: Option<FeatureAccuracy>,
    /// Humidity (%RH); `null` before the first score.
    pub humidity: Option<FeatureAccuracy>,
}
