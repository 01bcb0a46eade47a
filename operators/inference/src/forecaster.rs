//! [`Forecaster`]: a verified TorchScript model behind a batched, de-normalising `forecast`.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use tch::{CModule, Kind, Tensor};

use super::error::InferenceError;
use super::metadata::{FEATURES, ModelMetadata};

const N_FEATURES: usize = FEATURES.len();
/// Batch size of the probe forward pass at load time: 2, so that a model that drops or
/// hard-codes the batch dimension is caught.
const PROBE_BATCH: usize = 2;

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The TorchScript file; `None` = the metadata's `artifact` next to the metadata file.
    pub model_path: Option<PathBuf>,
    /// LibTorch's intra-op thread count, set at load time; `None` leaves it as it is.
    ///
    /// This is process-wide (`at::set_num_threads`). The default, 1, is what Flowcast wants:
    /// parallelism comes from the timely workers, each running its own forward passes, and the
    /// small LSTM's per-step matrix products are too small to gain from more threads, which would
    /// only oversubscribe the cores the workers already use.
    pub intra_op_threads: Option<i32>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            model_path: None,
            intra_op_threads: Some(1),
        }
    }
}

/// A loaded, verified model: forecasts the next window of many sequences in one forward pass.
///
/// Loading checks that the artifact's sha256 is the metadata's, that the metadata's contract is
/// one this code serves, and — with a probe forward pass — that the model returns
/// `[batch, 2]` `float32` for `[batch, sequence_length, 2]`. A `Forecaster` is `Send + Sync`;
/// forward passes do not track gradients.
pub struct Forecaster {
    module: CModule,
    meta: ModelMetadata,
    mean: [f32; N_FEATURES],
    std: [f32; N_FEATURES],
}

impl fmt::Debug for Forecaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forecaster")
            .field("model_id", &self.meta.model_id)
            .field("sequence_length", &self.meta.sequence_length)
            .field("mean", &self.mean)
            .field("std", &self.std)
            .finish_non_exhaustive()
    }
}

impl Forecaster {
    /// Loads the model described by a metadata file (`models/dht11_lstm.json`), with the
    /// artifact next to it and [`LoadOptions::default`].
    pub fn open(metadata_path: impl AsRef<Path>) -> Result<Self, InferenceError> {
        Self::open_with(metadata_path, &LoadOptions::default())
    }

    /// Loads the model described by a metadata file.
    pub fn open_with(
        metadata_path: impl AsRef<Path>,
        options: &LoadOptions,
    ) -> Result<Self, InferenceError> {
        let metadata_path = metadata_path.as_ref();
        let meta = ModelMetadata::from_file(metadata_path)?;
        let model_path = match &options.model_path {
            Some(p) => p.clone(),
            None => metadata_path
                .parent()
                .unwrap_or(Path::new("."))
                .join(&meta.artifact),
        };
        let bytes = std::fs::read(&model_path).map_err(|source| InferenceError::MissingFile {
            what: "model artifact",
            path: model_path.clone(),
            source,
        })?;
        let actual = hex(&Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(&meta.sha256) {
            return Err(InferenceError::Sha256Mismatch {
                path: model_path,
                expected: meta.sha256.clone(),
                actual,
            });
        }
        if let Some(n) = options.intra_op_threads {
            tch::set_num_threads(n);
        }
        // Loaded from the bytes that were hashed, so the file cannot change in between.
        let load_err = |source| InferenceError::Load {
            path: model_path.clone(),
            source,
        };
        let mut module = CModule::load_data(&mut Cursor::new(&bytes)).map_err(load_err)?;
        module.f_set_eval().map_err(load_err)?;
        let narrow = |v: &[f64]| [v[0] as f32, v[1] as f32];
        let forecaster = Forecaster {
            module,
            mean: narrow(&meta.normalisation.mean),
            std: narrow(&meta.normalisation.std),
            meta,
        };
        forecaster.probe()?;
        Ok(forecaster)
    }

    /// The metadata the model was loaded with.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    /// The artifact id, for the `"model"` field of a prediction.
    pub fn model_id(&self) -> &str {
        &self.meta.model_id
    }

    /// Number of windows an input sequence must have.
    pub fn sequence_length(&self) -> usize {
        self.meta.sequence_length
    }

    /// Forecasts the window after each sequence: `[temperature, humidity]` in °C and %RH.
    ///
    /// Each sequence holds [`Self::sequence_length`] `[temperature, humidity]` window means,
    /// oldest first. All sequences go through the model in one forward pass.
    pub fn forecast<S: AsRef<[[f32; 2]]>>(
        &self,
        sequences: &[S],
    ) -> Result<Vec<[f32; 2]>, InferenceError> {
        let mut out = Vec::with_capacity(sequences.len());
        self.forecast_into(sequences, &mut out)?;
        Ok(out)
    }

    /// [`Self::forecast`], appending to `out`; on error `out` is left as it was.
    pub fn forecast_into<S: AsRef<[[f32; 2]]>>(
        &self,
        sequences: &[S],
        out: &mut Vec<[f32; 2]>,
    ) -> Result<(), InferenceError> {
        let batch = sequences.len();
        if batch == 0 {
            return Ok(());
        }
        let seq_len = self.meta.sequence_length;
        // The one buffer of the call: normalised input, then (its head) the model's output.
        let mut flat = Vec::with_capacity(batch * seq_len * N_FEATURES);
        for (index, sequence) in sequences.iter().enumerate() {
            let sequence = sequence.as_ref();
            if sequence.len() != seq_len {
                return Err(InferenceError::InputLength {
                    index,
                    len: sequence.len(),
                    expected: seq_len,
                });
            }
            for &[t, h] in sequence {
                if !(t.is_finite() && h.is_finite()) {
                    return Err(InferenceError::NonFiniteInput { index });
                }
                // Division, not multiplication by 1/std: bit-identical to the training code.
                flat.push((t - self.mean[0]) / self.std[0]);
                flat.push((h - self.mean[1]) / self.std[1]);
            }
        }
        self.forward(&mut flat, batch)?;
        let start = out.len();
        out.reserve(batch);
        for (index, y) in flat[..batch * N_FEATURES]
            .chunks_exact(N_FEATURES)
            .enumerate()
        {
            let forecast = [
                y[0] * self.std[0] + self.mean[0],
                y[1] * self.std[1] + self.mean[1],
            ];
            if !(forecast[0].is_finite() && forecast[1].is_finite()) {
                out.truncate(start);
                return Err(InferenceError::NonFiniteOutput {
                    model_id: self.meta.model_id.clone(),
                    index,
                });
            }
            out.push(forecast);
        }
        Ok(())
    }

    /// Runs the model on `batch` normalised sequences in `flat` and writes its normalised
    /// `[batch, 2]` output into the head of `flat`.
    fn forward(&self, flat: &mut [f32], batch: usize) -> Result<(), InferenceError> {
        let input_shape = [
            batch as i64,
            self.meta.sequence_length as i64,
            N_FEATURES as i64,
        ];
        let input = Tensor::f_from_slice(flat)?.f_view(input_shape)?;
        let output = tch::no_grad(|| self.module.forward_ts(&[input]))?;
        let (size, kind) = (output.size(), output.f_kind()?);
        if size != [batch as i64, N_FEATURES as i64] || kind != Kind::Float {
            return Err(InferenceError::WrongShape {
                model_id: self.meta.model_id.clone(),
                input: input_shape.to_vec(),
                expected: format!("[{batch}, {N_FEATURES}] Float"),
                actual: format!("{size:?} {kind:?}"),
            });
        }
        let output = if output.is_contiguous() {
            output
        } else {
            output.f_contiguous()?
        };
        output.f_copy_data(&mut flat[..batch * N_FEATURES], batch * N_FEATURES)?;
        Ok(())
    }

    /// One forward pass on the normalisation means (all-zero normalised input): checks the
    /// output's shape, dtype and finiteness, and warms up TorchScript's executor.
    fn probe(&self) -> Result<(), InferenceError> {
        let mean = self.mean;
        let sequences = vec![vec![mean; self.meta.sequence_length]; PROBE_BATCH];
        match self.forecast(&sequences) {
            Ok(_) => Ok(()),
            Err(InferenceError::Torch(e)) => Err(InferenceError::WrongShape {
                model_id: self.meta.model_id.clone(),
                input: vec![
                    PROBE_BATCH as i64,
                    self.meta.sequence_length as i64,
                    N_FEATURES as i64,
                ],
                expected: format!("[{PROBE_BATCH}, {N_FEATURES}] Float"),
                actual: format!("an error: {e}"),
            }),
            Err(e) => Err(e),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
