//! The TorchScript LSTM as a [`Predictor`], through the operators crate's inference
//! module (which checks the artifact's sha256 and its input/output contract on load).

use crate::dataflow::forecast::Predictor;
use flowcast_operators::inference::{Forecaster, LoadOptions};
use flowcast_operators::sequence::Sequence;
use std::path::Path;

/// A loaded TorchScript forecaster.
#[derive(Debug)]
pub struct TorchPredictor {
    forecaster: Forecaster,
    id: String,
}

/// Loads the model at `path` (`x.pt`) with its metadata (`x.json`) beside it. LibTorch runs
/// one intra-op thread: parallelism comes from the timely workers.
pub fn load(path: &Path) -> Result<TorchPredictor, String> {
    let meta = path.with_extension("json");
    let options = LoadOptions {
        model_path: Some(path.to_owned()),
        intra_op_threads: Some(1),
    };
    let forecaster = Forecaster::open_with(&meta, &options).map_err(|e| e.to_string())?;
    let id = forecaster.model_id().to_owned();
    Ok(TorchPredictor { forecaster, id })
}

impl TorchPredictor {
    /// The sequence length the model reads.
    pub fn sequence_length(&self) -> usize {
        self.forecaster.sequence_length()
    }
}

impl Predictor for TorchPredictor {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn predict(&mut self, batch: &[Sequence]) -> Result<Vec<[f64; 2]>, String> {
        let inputs: Vec<&[[f32; 2]]> = batch.iter().map(|s| s.values.as_slice()).collect();
        let out = self
            .forecaster
            .forecast(&inputs)
            .map_err(|e| e.to_string())?;
        Ok(out
            .into_iter()
            .map(|[t, h]| [f64::from(t), f64::from(h)])
            .collect())
    }
}
