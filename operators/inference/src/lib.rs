//! LSTM inference through LibTorch: turns the 60 latest 30-minute windows of a device into a
//! forecast of its next window.
//!
//! A model is two files written by `models/train.py`: a TorchScript artifact (`*.pt`) and its
//! [`ModelMetadata`] (`*.json`), which states the contract the artifact honours — input
//! `[batch, sequence_length, 2]` of normalised (temperature, humidity), output `[batch, 2]`
//! normalised, the normalisation constants and the artifact's sha256. [`Forecaster`] loads any
//! artifact that honours that contract, checks it (sha256, a probe forward pass for the shapes),
//! and then normalises, runs one batched forward pass per call, and de-normalises.
//!
//! Everything that can go wrong is an [`InferenceError`] whose [`Fault`] says who has to act.
//!
//! # Examples
//!
//! ```no_run
//! use flowcast_inference::Forecaster;
//!
//! let forecaster = Forecaster::open("models/dht11_lstm.json")?;
//! let history = vec![[21.0_f32, 45.0_f32]; forecaster.sequence_length()];
//! let [temperature, humidity] = forecaster.forecast(&[&history])?[0];
//! println!("next window: {temperature:.2} °C, {humidity:.1} %RH");
//! # Ok::<(), flowcast_inference::InferenceError>(())
//! ```

mod error;
mod forecaster;
mod metadata;

pub use error::{Fault, InferenceError};
pub use forecaster::{Forecaster, LoadOptions};
pub use metadata::{
    DataInfo, Dim, ErrorMetrics, FEATURES, LinearBaseline, Metrics, ModelMetadata, Normalisation,
    Split, TargetMetrics, TensorContract, TensorSpec,
};
