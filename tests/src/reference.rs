//! A reference implementation of the forecast pipeline in plain Rust: no timely, no
//! Kafka, and no code shared with the engine's operators, so that agreement between the
//! two means something. It computes, from the input records of a bounded run with no late
//! data, what the job must output: every dead letter with its reason, and one prediction
//! per device per window once `seq_len` windows exist.
//!
//! The forecast is supplied as a function of the sequence, so the same reference checks
//! the persistence baseline and the LSTM.

use serde_json::Value;
use std::collections::BTreeMap;

/// One input record as it sits in Kafka.
#[derive(Debug, Clone)]
pub struct InputRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// Pipeline parameters.
#[derive(Debug, Clone)]
pub struct Params {
    /// Window length, ms.
    pub window_ms: i64,
    /// Windows per sequence.
    pub seq_len: usize,
    /// Valid temperature range, inclusive.
    pub temperature: (f64, f64),
    /// Valid humidity range, inclusive.
    pub humidity: (f64, f64),
}

/// One expected prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// Observed means of the closed window.
    pub observed: [f64; 2],
    /// Forecast for the next window.
    pub predicted: [f64; 2],
    /// Window start, ms.
    pub window_start: i64,
}

/// What the job must produce.
#[derive(Debug, Default)]
pub struct Output {
    /// (device, window end ms) → prediction.
    pub predictions: BTreeMap<(String, i64), Expected>,
    /// (partition, offset) → dead-letter reason.
    pub dead: BTreeMap<(i32, i64), String>,
}

fn field(v: &Value, name: &str) -> Result<f64, &'static str> {
    match v.get(name) {
        None | Some(Value::Null) => Err("missing_field"),
        Some(Value::Number(n)) => n.as_f64().ok_or("malformed"),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "nan" | "inf" | "-inf" | "infinity" | "-infinity" | "+inf" => Err("not_finite"),
            _ => Err("malformed"),
        },
        Some(_) => Err("malformed"),
    }
}

fn validate(r: &InputRecord, p: &Params) -> Result<(String, i64, f64, f64), &'static str> {
    let v: Value = serde_json::from_slice(&r.value).map_err(|_| "malformed")?;
    if !v.is_object() {
        return Err("malformed");
    }
    let time = field(&v, "time")?;
    let t = field(&v, "temperature")?;
    let h = field(&v, "humidity")?;
    if time < 0.0
        || !(p.temperature.0..=p.temperature.1).contains(&t)
        || !(p.humidity.0..=p.humidity.1).contains(&h)
    {
        return Err("out_of_range");
    }
    let device = match v.get("device").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => d.to_owned(),
        _ => match r.key.as_deref().map(std::str::from_utf8) {
            Some(Ok(k)) if !k.is_empty() => k.to_owned(),
            _ => "default".to_owned(),
        },
    };
    Ok((device, (time * 1000.0).round() as i64, t, h))
}

/// A forecaster for the reference: all sequences (oldest window first) in, one forecast each out.
pub type BatchForecast<'a> = &'a dyn Fn(&[Vec<[f64; 2]>]) -> Vec<[f64; 2]>;

/// The persistence forecast: next window = last window.
pub fn persistence(seqs: &[Vec<[f64; 2]>]) -> Vec<[f64; 2]> {
    seqs.iter().map(|s| s[s.len() - 1]).collect()
}

/// Runs the reference pipeline.
pub fn run(input: &[InputRecord], p: &Params, forecast: BatchForecast<'_>) -> Output {
    let mut out = Output::default();
    // device → window start → (sum t, sum h, n)
    let mut windows: BTreeMap<String, BTreeMap<i64, (f64, f64, u64)>> = BTreeMap::new();
    for r in input {
        match validate(r, p) {
            Err(reason) => {
                out.dead.insert((r.partition, r.offset), reason.to_owned());
            }
            Ok((device, t, temp, hum)) => {
                let start = t.div_euclid(p.window_ms) * p.window_ms;
                let w = windows
                    .entry(device)
                    .or_default()
                    .entry(start)
                    .or_insert((0.0, 0.0, 0));
                w.0 += temp;
                w.1 += hum;
                w.2 += 1;
            }
        }
    }
    let mut keys = Vec::new();
    let mut seqs = Vec::new();
    for (device, ws) in windows {
        let means: Vec<(i64, [f64; 2])> = ws
            .into_iter()
            .map(|(s, (t, h, n))| (s, [t / n as f64, h / n as f64]))
            .collect();
        for i in (p.seq_len - 1)..means.len() {
            // The model sees single-precision values, as the engine's ring stores them.
            seqs.push(
                means[i + 1 - p.seq_len..=i]
                    .iter()
                    .map(|(_, m)| [f64::from(m[0] as f32), f64::from(m[1] as f32)])
                    .collect::<Vec<_>>(),
            );
            let (start, observed) = means[i];
            keys.push((device.clone(), start, observed));
        }
    }
    let forecasts = if seqs.is_empty() {
        Vec::new()
    } else {
        forecast(&seqs)
    };
    assert_eq!(forecasts.len(), keys.len(), "one forecast per sequence");
    for ((device, start, observed), predicted) in keys.into_iter().zip(forecasts) {
        out.predictions.insert(
            (device, start + p.window_ms),
            Expected {
                observed,
                predicted,
                window_start: start,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, v: &str) -> InputRecord {
        InputRecord {
            partition: 0,
            offset,
            key: Some(b"k".to_vec()),
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn hand_computed_case() {
        let p = Params {
            window_ms: 10_000,
            seq_len: 2,
            temperature: (0.0, 50.0),
            humidity: (20.0, 90.0),
        };
        let input = [
            rec(0, r#"{"time": 1, "temperature": 20, "humidity": 40}"#),
            rec(1, r#"{"time": 9, "temperature": 22, "humidity": 44}"#),
            rec(2, r#"{"time": 12, "temperature": 30, "humidity": 50}"#),
            rec(3, r#"{"time": 25, "temperature": 10, "humidity": 60}"#),
            rec(4, r#"oops"#),
            rec(5, r#"{"time": 25, "temperature": 99, "humidity": 60}"#),
            rec(6, r#"{"time": 25, "humidity": 60}"#),
            rec(7, r#"{"time": 25, "temperature": "NaN", "humidity": 60}"#),
        ];
        let out = run(&input, &p, &persistence);
        let got: Vec<(i64, [f64; 2])> = out
            .predictions
            .iter()
            .map(|((_, e), x)| (*e, x.observed))
            .collect();
        assert_eq!(got, vec![(20_000, [30.0, 50.0]), (30_000, [10.0, 60.0])]);
        let reasons: Vec<&str> = out.dead.values().map(String::as_str).collect();
        assert_eq!(
            reasons,
            vec!["malformed", "out_of_range", "missing_field", "not_finite"]
        );
    }
}
