//! The TorchScript LSTM as a [`Predictor`], through the operators crate's inference module.

use crate::dataflow::forecast::Predictor;
use std::path::Path;

/// A loaded TorchScript forecaster.
#[derive(Debug)]
pub struct TorchPredictor {
    id: String,
}

/// Loads the model at `path` (with its metadata JSON beside it).
pub fn load(path: &Path) -> Result<TorchPredictor, String> {
    Err(format!(
        "TorchScript models are not wired in yet ({})",
        path.display()
    ))
}

impl Predictor for TorchPredictor {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn predict(
        &mut self,
        _batch: &[flowcast_operators::sequence::Sequence],
    ) -> Result<Vec<[f64; 2]>, String> {
        Err("not wired in yet".into())
    }
}
