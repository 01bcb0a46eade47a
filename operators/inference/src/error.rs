//! The one error type of inference, and whose fault each case is.

use std::path::PathBuf;

/// Who has to act when inference fails. No inference error goes away by retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller or its configuration: a wrong path, a malformed input sequence.
    User,
    /// The model artifact or its metadata: they disagree, or the model breaks its contract.
    /// Retrain or re-export with `models/train.py`.
    Model,
    /// LibTorch failed where it should not have: a bug.
    Internal,
}

/// Why a model could not be loaded or a forecast could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// A file of the model cannot be read.
    #[error(
        "cannot read {what} {}: {source} (check the configured path; models/train.py writes \
         the model and its metadata)",
        path.display()
    )]
    MissingFile {
        /// `"model metadata"` or `"model artifact"`.
        what: &'static str,
        /// The path that was tried.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata does not parse or describes a contract that cannot be served.
    #[error("model metadata {} is invalid: {reason}", path.display())]
    InvalidMetadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The artifact is not the one its metadata describes.
    #[error(
        "sha256 of {} is {actual} but its metadata says {expected}: the model and its metadata \
         do not belong together",
        path.display()
    )]
    Sha256Mismatch {
        /// The artifact.
        path: PathBuf,
        /// From the metadata.
        expected: String,
        /// Of the file.
        actual: String,
    },
    /// LibTorch cannot load the artifact as TorchScript.
    #[error("LibTorch cannot load {} as TorchScript: {source}", path.display())]
    Load {
        /// The artifact.
        path: PathBuf,
        /// LibTorch's error.
        #[source]
        source: tch::TchError,
    },
    /// The model's output does not have the shape or dtype its contract promises.
    #[error(
        "model {model_id} breaks its contract: for input {input:?} it returned {actual} where \
         {expected} was promised"
    )]
    WrongShape {
        /// The model.
        model_id: String,
        /// Shape of the input it was given.
        input: Vec<i64>,
        /// What the contract promises.
        expected: String,
        /// What came back.
        actual: String,
    },
    /// An input sequence does not have the model's sequence length.
    #[error("input sequence {index} has {len} windows, the model needs {expected}")]
    InputLength {
        /// Position of the sequence in the batch.
        index: usize,
        /// Its length.
        len: usize,
        /// The model's sequence length.
        expected: usize,
    },
    /// An input sequence holds NaN or an infinity.
    #[error("input sequence {index} holds a NaN or infinite value")]
    NonFiniteInput {
        /// Position of the sequence in the batch.
        index: usize,
    },
    /// The model returned NaN or an infinity for finite input.
    #[error("model {model_id} returned a NaN or infinite forecast for input sequence {index}")]
    NonFiniteOutput {
        /// The model.
        model_id: String,
        /// Position of the sequence in the batch.
        index: usize,
    },
    /// LibTorch failed while running a model that loaded and passed its probe.
    #[error("LibTorch failed: {0}")]
    Torch(#[from] tch::TchError),
}

impl InferenceError {
    /// Who has to act.
    pub fn fault(&self) -> Fault {
        match self {
            InferenceError::MissingFile { .. }
            | InferenceError::InputLength { .. }
            | InferenceError::NonFiniteInput { .. } => Fault::User,
            InferenceError::InvalidMetadata { .. }
            | InferenceError::Sha256Mismatch { .. }
            | InferenceError::Load { .. }
            | InferenceError::WrongShape { .. }
            | InferenceError::NonFiniteOutput { .. } => Fault::Model,
            InferenceError::Torch(_) => Fault::Internal,
        }
    }
}
