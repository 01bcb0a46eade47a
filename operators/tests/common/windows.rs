//! The real data as 30-minute window means, shared by the tests that recompute the model
//! card's numbers (`inference_metrics.rs`, `guard_validation.rs`), with the resampling of
//! `models/train.py`: window start = Unix time floored to the window, dates read as UTC, a
//! window missing any of its readings is dropped.
#![allow(dead_code)] // each test file uses a part

use flowcast_inference::{LinearBaseline, ModelMetadata};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The data file: `FLOWCAST_DATA`, else `$FLOWCAST_CACHE/data/` or `~/.cache/flowcast/data/`.
pub fn data_path() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOWCAST_DATA") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("FLOWCAST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/flowcast")
        });
    cache.join("data/minute_energy_appliance.csv.xz")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2016-01-11 17:00:00`, read as UTC, in Unix seconds.
pub fn parse_time(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 { s[r].parse().expect("date digits") };
    days_from_civil(n(0..4), n(5..7), n(8..10)) * 86_400
        + n(11..13) * 3600
        + n(14..16) * 60
        + n(17..19)
}

/// Window start times and `[series][window] = [temperature, humidity]` window means.
pub struct Windows {
    /// Window starts, Unix seconds.
    pub times: Vec<i64>,
    /// Per series, per window.
    pub values: Vec<Vec<[f64; 2]>>,
}

pub fn load_windows(path: &Path, meta: &ModelMetadata) -> Windows {
    let data = meta.data.as_ref().expect("metadata describes its data");
    load_columns(path, meta, &data.columns, false)
}

/// The window means of the `[temperature, humidity]` column pairs `columns`; with `whole`,
/// every reading is first rounded to a whole degree and percent, as a DHT11 reports it.
pub fn load_columns(
    path: &Path,
    meta: &ModelMetadata,
    columns: &[[String; 2]],
    whole: bool,
) -> Windows {
    let data = meta.data.as_ref().expect("metadata describes its data");
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "cannot read the data {} ({e}): run deploy/data/fetch.sh",
            path.display()
        )
    });
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        sha,
        data.sha256,
        "{} is not the data the model was evaluated on",
        path.display()
    );

    let mut lines = BufReader::new(xz2::read::XzDecoder::new(&bytes[..])).lines();
    let split = |line: &str| -> Vec<String> {
        line.split(',')
            .map(|f| f.trim().trim_matches('"').trim().to_owned())
            .collect()
    };
    let header = split(&lines.next().expect("header").expect("utf-8"));
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .expect("column exists")
    };
    let cols: Vec<[usize; 2]> = columns.iter().map(|[t, h]| [col(t), col(h)]).collect();
    let read = |x: &str| -> f64 {
        let v: f64 = x.parse().expect("a number");
        if whole { v.round() } else { v }
    };
    let window = meta.window_seconds as i64;
    let per_window = meta.window_seconds / data.sample_seconds;
    let mut acc: BTreeMap<i64, (Vec<[f64; 2]>, u64)> = BTreeMap::new();
    for line in lines {
        let fields = split(&line.expect("utf-8"));
        let ts = parse_time(&fields[0]);
        let entry = acc
            .entry(ts - ts.rem_euclid(window))
            .or_insert_with(|| (vec![[0.0; 2]; cols.len()], 0));
        for (sum, [t, h]) in entry.0.iter_mut().zip(&cols) {
            sum[0] += read(&fields[*t]);
            sum[1] += read(&fields[*h]);
        }
        entry.1 += 1;
    }
    let full: Vec<_> = acc
        .into_iter()
        .filter(|(_, (_, c))| *c == per_window)
        .collect();
    let times = full.iter().map(|(w, _)| *w).collect();
    let values = (0..cols.len())
        .map(|s| {
            full.iter()
                .map(|(_, (sums, c))| [sums[s][0] / *c as f64, sums[s][1] / *c as f64])
                .collect()
        })
        .collect();
    Windows { times, values }
}

/// The float32 normalisation of `train.py`'s `Norm`.
pub struct Norm {
    /// Means.
    pub mean: [f32; 2],
    /// Standard deviations.
    pub std: [f32; 2],
}

impl Norm {
    pub fn fwd(&self, x: [f64; 2]) -> [f64; 2] {
        [0, 1].map(|i| ((x[i] as f32 - self.mean[i]) / self.std[i]) as f64)
    }

    pub fn inv(&self, y: [f64; 2]) -> [f64; 2] {
        [0, 1].map(|i| (y[i] as f32 * self.std[i] + self.mean[i]) as f64)
    }
}

/// A linear baseline of the metadata on the sequence `seq`.
pub fn linear_predict(b: &LinearBaseline, norm: &Norm, seq: &[[f64; 2]]) -> [f64; 2] {
    let xn: Vec<[f64; 2]> = seq[seq.len() - b.lags..]
        .iter()
        .map(|&x| norm.fwd(x))
        .collect();
    let last = xn[xn.len() - 1];
    let mut yn = [last[0] + b.intercept[0], last[1] + b.intercept[1]];
    for (feature, weights) in xn.iter().flatten().zip(&b.coef) {
        yn[0] += feature * weights[0];
        yn[1] += feature * weights[1];
    }
    norm.inv(yn)
}

impl Norm {
    /// The metadata's normalisation.
    pub fn of(meta: &ModelMetadata) -> Self {
        let n = &meta.normalisation;
        Norm {
            mean: [n.mean[0] as f32, n.mean[1] as f32],
            std: [n.std[0] as f32, n.std[1] as f32],
        }
    }
}
