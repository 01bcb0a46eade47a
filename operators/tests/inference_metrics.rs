//! Recomputes the test metrics of the committed model and of its baselines from the real data
//! (UCI Appliances Energy, Candanedo et al. 2017, CC BY 4.0) with the resampling and split of
//! `models/train.py`, and checks the acceptance criteria of the model card: test MAE at most
//! 0.9 × persistence and no worse than the tuned ridge, for temperature and for humidity.
//!
//! The data file is found through `FLOWCAST_DATA`, else `$FLOWCAST_CACHE/data/` or
//! `~/.cache/flowcast/data/` (`deploy/data/fetch.sh` puts it there).

mod common;

use common::windows::{Norm, data_path, linear_predict, load_windows, parse_time};
use flowcast_inference::{ErrorMetrics, Forecaster, LinearBaseline, TargetMetrics};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Windows in 24 h: the seasonal-naive baseline's lag.
const SEASON: usize = 48;
/// The model runs in float32 and LibTorch may order a batch's sums differently from PyTorch.
const MODEL_TOLERANCE: f64 = 1e-5;
/// Baselines are float64 except for the float32 (de)normalisation.
const BASELINE_TOLERANCE: f64 = 1e-7;

fn metadata_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/dht11_lstm.json")
}

/// Running MAE / RMSE of one forecaster.
#[derive(Default)]
struct Errors {
    abs: [f64; 2],
    sq: [f64; 2],
    n: usize,
}

impl Errors {
    fn add(&mut self, pred: [f64; 2], target: [f64; 2]) {
        for i in 0..2 {
            let e = pred[i] - target[i];
            self.abs[i] += e.abs();
            self.sq[i] += e * e;
        }
        self.n += 1;
    }

    fn metrics(&self) -> TargetMetrics {
        let m = |i: usize| ErrorMetrics {
            mae: self.abs[i] / self.n as f64,
            rmse: (self.sq[i] / self.n as f64).sqrt(),
        };
        TargetMetrics {
            temperature: m(0),
            humidity: m(1),
        }
    }
}

fn assert_close(what: &str, got: &TargetMetrics, want: &TargetMetrics, tolerance: f64) {
    for (feature, g, w) in [
        ("temperature", got.temperature, want.temperature),
        ("humidity", got.humidity, want.humidity),
    ] {
        for (name, a, b) in [("MAE", g.mae, w.mae), ("RMSE", g.rmse, w.rmse)] {
            assert!(
                (a - b).abs() <= tolerance,
                "{what} {feature} {name}: recomputed {a} but the metadata says {b}"
            );
        }
    }
}

#[test]
fn test_metrics_reproduce_from_the_artifact_and_the_real_data_and_meet_acceptance() {
    let forecaster = Forecaster::open(metadata_path()).expect("committed model loads");
    let meta = forecaster.metadata().clone();
    let split = meta.split.clone().expect("metadata has the split");
    let recorded = &meta.metrics.as_ref().expect("metadata has metrics").test;
    let windows = load_windows(&data_path(), &meta);
    let norm = Norm {
        mean: [
            meta.normalisation.mean[0] as f32,
            meta.normalisation.mean[1] as f32,
        ],
        std: [
            meta.normalisation.std[0] as f32,
            meta.normalisation.std[1] as f32,
        ],
    };
    let linear: BTreeMap<&str, LinearBaseline> = ["ridge", "linear_l1"]
        .into_iter()
        .filter_map(|name| Some((name, meta.linear_baseline(name)?.expect("baseline parses"))))
        .collect();
    assert!(
        linear.contains_key("ridge"),
        "the ridge baseline is in the metadata"
    );

    let seq_len = forecaster.sequence_length();
    let span = seq_len as i64 * meta.window_seconds as i64;
    let targets: Vec<usize> = (seq_len..windows.times.len())
        .filter(|&t| {
            let start = windows.times[t];
            (split.test_start..split.end).contains(&start)
                && start - windows.times[t - seq_len] == span
        })
        .collect();

    let mut errors: BTreeMap<&str, Errors> = BTreeMap::new();
    for series in &windows.values {
        let inputs: Vec<Vec<[f32; 2]>> = targets
            .iter()
            .map(|&t| {
                series[t - seq_len..t]
                    .iter()
                    .map(|v| v.map(|x| x as f32))
                    .collect()
            })
            .collect();
        let mut forecasts = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(1024) {
            forecaster
                .forecast_into(chunk, &mut forecasts)
                .expect("forecast");
        }
        for (&t, forecast) in targets.iter().zip(&forecasts) {
            let (seq, target) = (&series[t - seq_len..t], series[t]);
            errors
                .entry("model")
                .or_default()
                .add(forecast.map(f64::from), target);
            errors
                .entry("persistence")
                .or_default()
                .add(seq[seq_len - 1], target);
            errors
                .entry("seasonal_naive")
                .or_default()
                .add(seq[seq_len - SEASON], target);
            for (name, b) in &linear {
                errors
                    .entry(name)
                    .or_default()
                    .add(linear_predict(b, &norm, seq), target);
            }
        }
    }

    let n = errors["model"].n;
    if let Some(&want) = split.samples.get("test") {
        assert_eq!(n, want, "test samples");
    }
    println!("test metrics recomputed on {n} samples (MAE / RMSE):");
    let got: BTreeMap<&str, TargetMetrics> = errors
        .iter()
        .map(|(name, e)| (*name, e.metrics()))
        .collect();
    for (name, m) in &got {
        println!(
            "  {name:15} temperature {:.4} / {:.4} °C   humidity {:.4} / {:.4} %RH",
            m.temperature.mae, m.temperature.rmse, m.humidity.mae, m.humidity.rmse
        );
        let tolerance = if *name == "model" {
            MODEL_TOLERANCE
        } else {
            BASELINE_TOLERANCE
        };
        assert_close(name, m, &recorded[*name], tolerance);
    }

    let (model, persistence, ridge) = (got["model"], got["persistence"], got["ridge"]);
    for (feature, m, p, r) in [
        (
            "temperature",
            model.temperature,
            persistence.temperature,
            ridge.temperature,
        ),
        (
            "humidity",
            model.humidity,
            persistence.humidity,
            ridge.humidity,
        ),
    ] {
        assert!(
            m.mae <= 0.9 * p.mae,
            "{feature}: model MAE {} > 0.9 × persistence {}",
            m.mae,
            p.mae
        );
        assert!(
            m.mae <= r.mae,
            "{feature}: model MAE {} > ridge {}",
            m.mae,
            r.mae
        );
    }
    // No regression against the rooms-only artifact issue 17 started from
    // (`dht11_lstm-h32-faf2f497acc1`: 0.748 / 0.719 × persistence on these samples).
    for (feature, m, p, bound) in [
        (
            "temperature",
            model.temperature,
            persistence.temperature,
            0.748,
        ),
        ("humidity", model.humidity, persistence.humidity, 0.719),
    ] {
        let ratio = m.mae / p.mae;
        assert!(
            ratio <= bound,
            "{feature}: {ratio:.4} × persistence, the previous artifact had {bound}"
        );
    }
}

#[test]
fn dates_convert_to_unix_seconds() {
    assert_eq!(parse_time("1970-01-01 00:00:00"), 0);
    assert_eq!(parse_time("2016-01-11 17:00:00"), 1_452_531_600);
    assert_eq!(parse_time("2016-02-29 23:59:59"), 1_456_790_399);
}
