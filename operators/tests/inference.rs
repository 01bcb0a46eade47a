//! The committed model artifact through [`Forecaster`]: its output equals PyTorch's on the
//! committed fixtures, and every way loading or forecasting can fail is a typed error with the
//! right [`Fault`].

use flowcast_inference::{Fault, Forecaster, InferenceError, LoadOptions};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{CModule, Tensor};

/// Largest difference allowed between LibTorch-through-Rust and PyTorch.
const TOLERANCE: f32 = 1e-5;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn metadata_path() -> PathBuf {
    models_dir().join("dht11_lstm.json")
}

/// `models/fixtures/dht11_lstm_fixtures.json`, written by `models/train.py`.
#[derive(Debug, Deserialize)]
struct Fixtures {
    model_sha256: String,
    inputs: Vec<Vec<[f32; 2]>>,
    inputs_normalised: Vec<Vec<[f32; 2]>>,
    outputs_normalised: Vec<[f32; 2]>,
    forecasts: Vec<[f32; 2]>,
}

fn fixtures() -> Fixtures {
    let path = models_dir().join("fixtures/dht11_lstm_fixtures.json");
    let text = std::fs::read_to_string(&path).expect("fixtures are committed");
    serde_json::from_str(&text).expect("fixtures parse")
}

fn max_abs_diff(a: &[[f32; 2]], b: &[[f32; 2]]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| [(x[0] - y[0]).abs(), (x[1] - y[1]).abs()])
        .fold(0.0, f32::max)
}

/// A scratch folder of its own for each test.
fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("flowcast-inference-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `model` and a copy of the real metadata pointing at it (with its true sha256 unless
/// `sha256` is given) into `dir`; returns the metadata path.
fn install(dir: &Path, model: &[u8], sha256: Option<&str>) -> PathBuf {
    let mut meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(metadata_path()).expect("metadata is committed"),
    )
    .expect("metadata parses");
    meta["artifact"] = "model.pt".into();
    meta["sha256"] = sha256
        .map_or_else(|| sha256_hex(model), str::to_owned)
        .into();
    std::fs::write(dir.join("model.pt"), model).expect("write model");
    let path = dir.join("model.json");
    std::fs::write(&path, serde_json::to_string(&meta).expect("serialise")).expect("write meta");
    path
}

fn broken_model(name: &str) -> Vec<u8> {
    std::fs::read(models_dir().join("fixtures").join(name)).expect("broken fixture is committed")
}

#[test]
fn rust_output_equals_pytorch_fixture_outputs() {
    let fx = fixtures();
    let forecaster = Forecaster::open(metadata_path()).expect("committed model loads");
    assert_eq!(
        fx.model_sha256,
        forecaster.metadata().sha256,
        "fixtures belong to the model"
    );
    assert_eq!(fx.inputs.len(), fx.forecasts.len());

    // The bare TorchScript module on PyTorch's normalised inputs.
    let module = CModule::load(models_dir().join("dht11_lstm.pt")).expect("bare load");
    let flat: Vec<f32> = fx
        .inputs_normalised
        .iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let shape = [
        fx.inputs.len() as i64,
        forecaster.sequence_length() as i64,
        2,
    ];
    let input = Tensor::from_slice(&flat).view(shape);
    let output = tch::no_grad(|| module.forward_ts(&[input])).expect("bare forward");
    let mut raw = vec![0f32; fx.inputs.len() * 2];
    let numel = raw.len();
    output.copy_data(&mut raw, numel);
    let raw: Vec<[f32; 2]> = raw.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let bare_diff = max_abs_diff(&raw, &fx.outputs_normalised);
    assert!(
        bare_diff <= TOLERANCE,
        "bare module differs from PyTorch by {bare_diff}"
    );

    // Our module on the raw inputs: normalise, forward, de-normalise.
    let forecasts = forecaster.forecast(&fx.inputs).expect("forecast");
    let diff = max_abs_diff(&forecasts, &fx.forecasts);
    println!("max |Rust - PyTorch|: bare module {bare_diff:e}, Forecaster {diff:e}");
    assert!(
        diff <= TOLERANCE,
        "Forecaster differs from PyTorch by {diff}"
    );
}

#[test]
fn a_sequence_forecasts_the_same_alone_and_in_a_batch() {
    let fx = fixtures();
    let forecaster = Forecaster::open(metadata_path()).expect("loads");
    let batched = forecaster.forecast(&fx.inputs).expect("batch");
    let mut alone = Vec::new();
    for input in &fx.inputs {
        forecaster
            .forecast_into(std::slice::from_ref(input), &mut alone)
            .expect("alone");
    }
    assert!(max_abs_diff(&batched, &alone) <= TOLERANCE);
    assert!(
        forecaster
            .forecast::<Vec<[f32; 2]>>(&[])
            .expect("empty")
            .is_empty()
    );
}

#[test]
fn forecasts_follow_the_input_level() {
    // Not a hard-coded value: a flat history at two levels must forecast near each level.
    let forecaster = Forecaster::open(metadata_path()).expect("loads");
    let n = forecaster.sequence_length();
    let flat = |t: f32, h: f32| vec![[t, h]; n];
    let out = forecaster
        .forecast(&[flat(19.0, 35.0), flat(24.0, 50.0)])
        .expect("forecast");
    for (got, want) in out.iter().zip([[19.0, 35.0], [24.0, 50.0]]) {
        assert!(
            (got[0] - want[0]).abs() < 0.5,
            "temperature {got:?} vs {want:?}"
        );
        assert!(
            (got[1] - want[1]).abs() < 2.0,
            "humidity {got:?} vs {want:?}"
        );
    }
}

#[test]
fn missing_metadata_is_the_users_fault() {
    let err = Forecaster::open(scratch("no-meta").join("absent.json")).expect_err("no file");
    assert!(
        matches!(
            err,
            InferenceError::MissingFile {
                what: "model metadata",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::User);
    assert!(err.to_string().contains("absent.json"), "{err}");
}

#[test]
fn missing_artifact_is_the_users_fault() {
    let dir = scratch("no-model");
    let meta = install(&dir, b"irrelevant", None);
    std::fs::remove_file(dir.join("model.pt")).expect("remove");
    let err = Forecaster::open(&meta).expect_err("no model");
    assert!(
        matches!(
            err,
            InferenceError::MissingFile {
                what: "model artifact",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::User);

    let options = LoadOptions {
        model_path: Some(dir.join("elsewhere.pt")),
        ..LoadOptions::default()
    };
    let err = Forecaster::open_with(metadata_path(), &options).expect_err("no model");
    assert!(err.to_string().contains("elsewhere.pt"), "{err}");
}

#[test]
fn an_artifact_that_is_not_the_metadatas_is_refused() {
    let mut model = std::fs::read(models_dir().join("dht11_lstm.pt")).expect("model");
    let dir = scratch("sha");
    let real_sha = sha256_hex(&model);
    model.push(0);
    let meta = install(&dir, &model, Some(&real_sha));
    let err = Forecaster::open(&meta).expect_err("sha mismatch");
    match &err {
        InferenceError::Sha256Mismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &real_sha);
            assert_eq!(actual, &sha256_hex(&model));
        }
        other => panic!("expected Sha256Mismatch, got {other}"),
    }
    assert_eq!(err.fault(), Fault::Model);
}

#[test]
fn invalid_metadata_is_refused() {
    let dir = scratch("bad-meta");
    let path = dir.join("m.json");
    std::fs::write(&path, "{\"schema_version\": 1}").expect("write");
    let err = Forecaster::open(&path).expect_err("invalid");
    assert!(
        matches!(err, InferenceError::InvalidMetadata { .. }),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::Model);
}

#[test]
fn a_file_that_is_not_torchscript_is_refused() {
    let dir = scratch("not-ts");
    let err = Forecaster::open(install(&dir, b"not a zip archive", None)).expect_err("garbage");
    assert!(matches!(err, InferenceError::Load { .. }), "{err}");
    assert_eq!(err.fault(), Fault::Model);
}

#[test]
fn a_model_with_the_wrong_output_shape_is_refused_at_load() {
    let dir = scratch("shape");
    let err = Forecaster::open(install(&dir, &broken_model("wrong_shape.pt"), None))
        .expect_err("wrong shape");
    match &err {
        InferenceError::WrongShape { input, actual, .. } => {
            assert_eq!(input, &[2, 60, 2]);
            assert!(actual.contains("[2, 3]"), "{actual}");
        }
        other => panic!("expected WrongShape, got {other}"),
    }
    assert_eq!(err.fault(), Fault::Model);
}

#[test]
fn a_nan_forecast_is_an_error_and_leaves_the_output_as_it_was() {
    let dir = scratch("nan");
    let forecaster = Forecaster::open(install(&dir, &broken_model("nan_when_cold.pt"), None))
        .expect("finite on the probe, so it loads");
    let meta = forecaster.metadata();
    let (mean, std) = (
        meta.normalisation.mean[0] as f32,
        meta.normalisation.std[0] as f32,
    );
    let n = forecaster.sequence_length();
    let mild = vec![[mean, 40.0]; n];
    let cold = vec![[mean - 11.0 * std, 40.0]; n];
    let mut out = vec![[1.0, 2.0]];
    let err = forecaster
        .forecast_into(&[&mild, &cold], &mut out)
        .expect_err("NaN");
    assert!(
        matches!(err, InferenceError::NonFiniteOutput { index: 1, .. }),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::Model);
    assert_eq!(out, vec![[1.0, 2.0]]);
    forecaster
        .forecast_into(&[&mild], &mut out)
        .expect("mild is fine");
    assert_eq!(out.len(), 2);
}

#[test]
fn malformed_input_sequences_are_the_callers_fault() {
    let forecaster = Forecaster::open(metadata_path()).expect("loads");
    let n = forecaster.sequence_length();
    let good = vec![[21.0, 40.0]; n];
    let short = vec![[21.0, 40.0]; n - 1];
    let err = forecaster.forecast(&[&good, &short]).expect_err("short");
    assert!(
        matches!(err, InferenceError::InputLength { index: 1, len, expected } if len == n - 1 && expected == n),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::User);

    let mut nan = good.clone();
    nan[7][1] = f32::NAN;
    let err = forecaster.forecast(&[&nan]).expect_err("nan");
    assert!(
        matches!(err, InferenceError::NonFiniteInput { index: 0 }),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::User);
}

/// The guard test's bad model (`models/fixtures/humidity_biased.*`, made by
/// `models/fixtures/make_biased_model.py`) is the committed LSTM with humidity 4 %RH
/// higher, at any batch size.
#[test]
fn the_humidity_biased_fixture_is_the_lstm_plus_4_percent_at_any_batch_size() {
    let lstm = Forecaster::open(metadata_path()).expect("the LSTM");
    let biased = Forecaster::open(models_dir().join("fixtures/humidity_biased.json"))
        .expect("the fixture loads and passes the contract checks");
    let fx = fixtures();
    for n in [1, 3, fx.inputs.len()] {
        let inputs = &fx.inputs[..n];
        let want = lstm.forecast(inputs).expect("lstm");
        let got = biased.forecast(inputs).expect("biased");
        for (w, g) in want.iter().zip(&got) {
            assert!(
                (w[0] - g[0]).abs() < 1e-4,
                "temperature unchanged: {w:?} {g:?}"
            );
            assert!((g[1] - w[1] - 4.0).abs() < 1e-3, "humidity +4: {w:?} {g:?}");
        }
    }
}
