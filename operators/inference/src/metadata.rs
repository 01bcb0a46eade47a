//! The metadata that travels with a TorchScript artifact (`models/dht11_lstm.json`): the
//! input/output contract, the normalisation constants, the artifact's sha256, and how the model
//! was evaluated (data, split, test metrics of the model and of its baselines).
//!
//! Only the contract part is needed to serve a model; the evaluation part is optional so that any
//! model honouring the contract can be served, and it is what the CI test that recomputes the
//! metrics from the real data reads.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use super::error::InferenceError;

/// The features of a sequence step and of a forecast, in this order.
pub const FEATURES: [&str; 2] = ["temperature", "humidity"];

/// Metadata of one model artifact, as written by `models/train.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Version of this file's layout; this code reads version 1.
    pub schema_version: u32,
    /// Identifies the artifact in predictions (`"model"` of a `predicData` message).
    pub model_id: String,
    /// File name of the TorchScript artifact, relative to the metadata file.
    pub artifact: String,
    /// Lower-case hex sha256 of the artifact file.
    pub sha256: String,
    /// Always `"torchscript"`.
    pub format: String,
    /// Tensor shapes, dtype and normalisation of the model's input and output.
    pub contract: TensorContract,
    /// Feature order of a sequence step and of a forecast; must equal [`FEATURES`].
    pub features: Vec<String>,
    /// Unit of each feature.
    #[serde(default)]
    pub units: Vec<String>,
    /// Number of windows in an input sequence, oldest first.
    pub sequence_length: usize,
    /// Length of one window in seconds.
    pub window_seconds: u64,
    /// Per-feature standardisation the model was trained with.
    pub normalisation: Normalisation,
    /// Where the training data came from, with its credit.
    #[serde(default)]
    pub data: Option<DataInfo>,
    /// Time bounds of train, validation and test.
    #[serde(default)]
    pub split: Option<Split>,
    /// Metrics of the model and of its baselines (`"test"`, `"validation"` → name → metrics).
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// Fitted linear baselines (`"ridge"`, `"linear_l1"`), so their metrics can be recomputed.
    #[serde(default)]
    pub baselines: Option<BTreeMap<String, serde_json::Value>>,
}

/// Shapes of the model's input and output tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorContract {
    /// Input: `["batch", sequence_length, features]`.
    pub input: TensorSpec,
    /// Output: `["batch", features]`.
    pub output: TensorSpec,
}

/// One tensor of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Dimensions; `"batch"` is the free batch dimension.
    pub shape: Vec<Dim>,
    /// Element type; only `"float32"` is served.
    pub dtype: String,
    /// Whether values are standardised with [`ModelMetadata::normalisation`].
    pub normalised: bool,
}

/// A dimension of a [`TensorSpec`]: a fixed size or a named free one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A free dimension, such as `"batch"`.
    Named(String),
}

/// `x_norm = (x - mean) / std` per feature, in `f32`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Per-feature mean of the train windows.
    pub mean: Vec<f64>,
    /// Per-feature standard deviation of the train windows.
    pub std: Vec<f64>,
}

/// The training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Who to credit, and how.
    pub credit: String,
    /// The data's licence.
    pub license: String,
    /// File name of the data (`minute_energy_appliance.csv.xz`).
    pub file: String,
    /// sha256 of that file.
    pub sha256: String,
    /// Seconds between two rows of the file.
    pub sample_seconds: u64,
    /// `[temperature column, humidity column]` of each series.
    pub columns: Vec<[String; 2]>,
}

/// Split bounds, Unix seconds of window starts; a sample belongs to the part its target window
/// starts in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// First window of the data.
    pub start: i64,
    /// First validation target window.
    pub val_start: i64,
    /// First test target window.
    pub test_start: i64,
    /// End of the last window (exclusive).
    pub end: i64,
    /// Number of samples (sequence, target) per part: `"train"`, `"val"`, `"test"`.
    #[serde(default)]
    pub samples: BTreeMap<String, usize>,
}

/// Metrics per evaluation part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// On the test samples: `"model"`, `"persistence"`, `"seasonal_naive"`, `"ridge"`, ...
    pub test: BTreeMap<String, TargetMetrics>,
    /// The same on the validation samples.
    #[serde(default)]
    pub validation: BTreeMap<String, TargetMetrics>,
}

/// Errors of one forecaster, per target feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetMetrics {
    /// Temperature errors, °C.
    pub temperature: ErrorMetrics,
    /// Humidity errors, %RH.
    pub humidity: ErrorMetrics,
}

/// Mean absolute and root-mean-square error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErrorMetrics {
    /// Mean absolute error.
    pub mae: f64,
    /// Root-mean-square error.
    pub rmse: f64,
}

/// A linear baseline of the metadata (`baselines.ridge`, `baselines.linear_l1`): the normalised
/// last `lags` windows (oldest first, features interleaved) → the normalised change from the last
/// window, `Δ = intercept + features · coef`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearBaseline {
    /// How many of the latest windows it reads.
    pub lags: usize,
    /// `[2 * lags][2]` weights.
    pub coef: Vec<[f64; 2]>,
    /// Per-feature intercept.
    pub intercept: [f64; 2],
}

impl ModelMetadata {
    /// Reads and validates a metadata file.
    pub fn from_file(path: &Path) -> Result<Self, InferenceError> {
        let text = std::fs::read_to_string(path).map_err(|source| InferenceError::MissingFile {
            what: "model metadata",
            path: path.to_owned(),
            source,
        })?;
        let meta: ModelMetadata =
            serde_json::from_str(&text).map_err(|e| InferenceError::InvalidMetadata {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        meta.validate()
            .map_err(|reason| InferenceError::InvalidMetadata {
                path: path.to_owned(),
                reason,
            })?;
        Ok(meta)
    }

    /// Checks that this metadata describes a contract [`super::Forecaster`] can serve.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema_version != 1 {
            return Err(format!(
                "schema_version {} (this code reads 1)",
                self.schema_version
            ));
        }
        if self.format != "torchscript" {
            return Err(format!(
                "format {:?} (only \"torchscript\" is served)",
                self.format
            ));
        }
        if self.features != FEATURES {
            return Err(format!(
                "features {:?} (must be {FEATURES:?})",
                self.features
            ));
        }
        if self.sequence_length == 0 {
            return Err("sequence_length 0".into());
        }
        let (mean, std) = (&self.normalisation.mean, &self.normalisation.std);
        if mean.len() != FEATURES.len() || std.len() != FEATURES.len() {
            return Err(format!(
                "normalisation needs {} means and stds",
                FEATURES.len()
            ));
        }
        if !mean.iter().all(|m| m.is_finite()) || !std.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err("normalisation mean must be finite and std finite and positive".into());
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha256 {:?} is not 64 hex digits", self.sha256));
        }
        let n = FEATURES.len() as i64;
        let batch = || Dim::Named("batch".into());
        let input = [
            batch(),
            Dim::Fixed(self.sequence_length as i64),
            Dim::Fixed(n),
        ];
        for (name, spec, want) in [
            ("input", &self.contract.input, &input[..]),
            (
                "output",
                &self.contract.output,
                &[batch(), Dim::Fixed(n)][..],
            ),
        ] {
            if spec.shape != want || spec.dtype != "float32" || !spec.normalised {
                return Err(format!(
                    "contract.{name} is {:?} {} normalised={}, served is {want:?} float32 \
                     normalised=true",
                    spec.shape, spec.dtype, spec.normalised
                ));
            }
        }
        Ok(())
    }

    /// A linear baseline by name (`"ridge"`, `"linear_l1"`), if the metadata has it.
    pub fn linear_baseline(&self, name: &str) -> Option<Result<LinearBaseline, String>> {
        let value = self.baselines.as_ref()?.get(name)?;
        Some(LinearBaseline::deserialize(value).map_err(|e| format!("baselines.{name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModelMetadata {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1,
            "model_id": "m",
            "artifact": "m.pt",
            "sha256": "ab".repeat(32),
            "format": "torchscript",
            "contract": {
                "input": {"shape": ["batch", 60, 2], "dtype": "float32", "normalised": true},
                "output": {"shape": ["batch", 2], "dtype": "float32", "normalised": true},
            },
            "features": ["temperature", "humidity"],
            "sequence_length": 60,
            "window_seconds": 1800,
            "normalisation": {"mean": [20.0, 40.0], "std": [2.0, 5.0]},
        }))
        .expect("sample metadata parses")
    }

    #[test]
    fn minimal_metadata_is_valid_and_round_trips() {
        let meta = sample();
        assert_eq!(meta.validate(), Ok(()));
        let back: ModelMetadata =
            serde_json::from_str(&serde_json::to_string(&meta).expect("serialises"))
                .expect("parses back");
        assert_eq!(back, meta);
    }

    #[test]
    fn contract_violations_are_named() {
        let mut m = sample();
        m.features.reverse();
        assert!(m.validate().expect_err("order").contains("features"));
        let mut m = sample();
        m.contract.input.shape[1] = Dim::Fixed(59);
        assert!(m.validate().expect_err("shape").contains("contract.input"));
        let mut m = sample();
        m.normalisation.std[1] = 0.0;
        assert!(m.validate().expect_err("std").contains("std"));
        let mut m = sample();
        m.sha256 = "xyz".into();
        assert!(m.validate().expect_err("sha").contains("sha256"));
    }
}
