//! The `[model]` table's settings of online accuracy, the guard and the physical clamp.
//!
//! ```toml
//! [model]
//! kind = "torchscript"
//! path = "../models/dht11_lstm.pt"
//! guard = "persistence"          # persistence | off
//! guard-margin = 0.2             # persistence speaks once the model's error is 20 % above its
//! guard-hysteresis = 0.0         # ... until it is back at 1 + margin − hysteresis × persistence's
//! guard-warm-up = 48             # windows scored before the guard decides
//! guard-warm-up-serves = "model" # or "persistence": who speaks before
//! accuracy-half-life = 12        # windows: the rolling errors' half-life
//! ```
//!
//! The defaults live in [`flowcast_operators::accuracy`] and were chosen on the
//! validation windows of the model's data (models/README.md, "Guard").

use flowcast_operators::ForecasterKind;
use flowcast_operators::SensorKind;
use flowcast_operators::accuracy::{AccuracySettings, GuardSettings};
use serde::{Deserialize, Serialize};

/// Whether the guard may serve persistence in the model's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuardMode {
    /// Per device and feature, persistence speaks while the model is behind it.
    #[default]
    Persistence,
    /// The model always speaks (its accuracy is still measured and reported).
    Off,
}

/// Online accuracy and guard settings of a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuardSpec {
    /// `persistence` (default) or `off`.
    #[serde(default)]
    pub guard: GuardMode,
    /// Persistence speaks for a feature once the model's rolling error exceeds
    /// persistence's by more than this fraction.
    #[serde(default = "default_margin")]
    pub guard_margin: f64,
    /// ... and until the model's error is back at `1 + margin − hysteresis` times persistence's.
    #[serde(default = "default_hysteresis")]
    pub guard_hysteresis: f64,
    /// Windows scored per device before the guard decides.
    #[serde(default = "default_warm_up")]
    pub guard_warm_up: u32,
    /// Who speaks during the warm-up: `model` or `persistence`.
    #[serde(default = "default_warm_up_serves")]
    pub guard_warm_up_serves: ForecasterKind,
    /// Half-life of the rolling errors, in windows.
    #[serde(default = "default_half_life")]
    pub accuracy_half_life: f64,
}

impl Default for GuardSpec {
    fn default() -> Self {
        GuardSpec {
            guard: GuardMode::default(),
            guard_margin: default_margin(),
            guard_hysteresis: default_hysteresis(),
            guard_warm_up: default_warm_up(),
            guard_warm_up_serves: default_warm_up_serves(),
            accuracy_half_life: default_half_life(),
        }
    }
}

fn default_margin() -> f64 {
    GuardSettings::DEFAULT_MARGIN
}
fn default_hysteresis() -> f64 {
    GuardSettings::DEFAULT_HYSTERESIS
}
fn default_warm_up() -> u32 {
    GuardSettings::DEFAULT_WARM_UP
}
fn default_warm_up_serves() -> ForecasterKind {
    GuardSettings::DEFAULT_WARM_UP_SERVES
}
fn default_half_life() -> f64 {
    AccuracySettings::DEFAULT_HALF_LIFE
}

impl GuardSpec {
    /// The key and the problem of the first invalid value.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let finite = |v: f64| v.is_finite();
        if !(finite(self.accuracy_half_life) && self.accuracy_half_life > 0.0) {
            return Err(("model.accuracy-half-life", "must be a positive number"));
        }
        if !(finite(self.guard_margin) && self.guard_margin >= 0.0) {
            return Err(("model.guard-margin", "must be a number ≥ 0"));
        }
        if !(finite(self.guard_hysteresis)
            && (0.0..=1.0 + self.guard_margin).contains(&self.guard_hysteresis))
        {
            return Err((
                "model.guard-hysteresis",
                "must be a number from 0 to 1 + guard-margin",
            ));
        }
        Ok(())
    }

    /// The operator settings for readings of `sensor`.
    pub fn settings(&self, sensor: SensorKind) -> AccuracySettings {
        let mut s = AccuracySettings::new(sensor);
        s.half_life = self.accuracy_half_life;
        s.guard = match self.guard {
            GuardMode::Off => None,
            GuardMode::Persistence => Some(GuardSettings {
                margin: self.guard_margin,
                hysteresis: self.guard_hysteresis,
                warm_up: self.guard_warm_up,
                warm_up_serves: self.guard_warm_up_serves,
            }),
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::{JobSpec, ModelSpec};
    use super::*;
    use std::path::Path;

    const REFERENCE: &str = include_str!("../../../../jobs/dht11-forecast.toml");

    fn guard_of(text: &str) -> GuardSpec {
        match JobSpec::parse(text, Path::new("j.toml"))
            .expect("valid")
            .model
        {
            ModelSpec::Torchscript { guard, .. } => guard,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_reference_job_spells_out_the_defaults() {
        assert_eq!(guard_of(REFERENCE), GuardSpec::default());
        let bare: String = REFERENCE
            .lines()
            .filter(|l| !l.starts_with("guard") && !l.starts_with("accuracy"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(guard_of(&bare), GuardSpec::default());
        let s = GuardSpec::default().settings(SensorKind::Dht22);
        assert_eq!(s.ranges, [(-40.0, 80.0), (0.0, 100.0)]);
        assert!(s.guard.is_some());
    }

    #[test]
    fn settings_round_trip_and_bad_values_are_named() {
        let text = REFERENCE
            .replace("guard = \"persistence\"", "guard = \"off\"")
            .replace("guard-margin = 0.2", "guard-margin = 0.1")
            .replace(
                "guard-warm-up-serves = \"model\"",
                "guard-warm-up-serves = \"persistence\"",
            );
        let g = guard_of(&text);
        assert_eq!(g.guard, GuardMode::Off);
        assert_eq!(g.guard_margin, 0.1);
        assert_eq!(g.guard_warm_up_serves, ForecasterKind::Persistence);
        assert!(g.settings(SensorKind::Dht11).guard.is_none());
        let spec = JobSpec::parse(&text, Path::new("j.toml")).expect("valid");
        let again = toml::to_string(&spec).expect("serialise");
        assert_eq!(
            JobSpec::parse(&again, Path::new("x")).expect("reparse"),
            spec
        );
        for (from, to, key) in [
            (
                "accuracy-half-life = 12.0",
                "accuracy-half-life = 0.0",
                "accuracy-half-life",
            ),
            ("guard-margin = 0.2", "guard-margin = nan", "guard-margin"),
            (
                "guard-hysteresis = 0.0",
                "guard-hysteresis = 2.0",
                "guard-hysteresis",
            ),
        ] {
            let err =
                JobSpec::parse(&REFERENCE.replace(from, to), Path::new("j.toml")).expect_err(to);
            assert!(err.to_string().contains(key), "{err}");
        }
        let err = JobSpec::parse(
            &REFERENCE.replace("guard-margin", "guard-margn"),
            Path::new("j.toml"),
        )
        .expect_err("typo");
        assert!(err.to_string().contains("guard-margn"), "{err}");
    }
}
