//! How predictions are encoded: [`prediction_json`], the one JSON form of a prediction
//! (Kafka's `predicData`, stdout, a dead letter's value), and ThingsBoard's telemetry
//! payloads.
//!
//! Each prediction is one `{"ts": <ms>, "values": {...}}` entry whose `ts` is the end of
//! the window it forecasts, set by the client: a replay of the same prediction writes the
//! same `(ts, key)` pairs, which ThingsBoard overwrites instead of storing twice. The
//! values are the forecast, the observed means of the window that closed, and the model.
//!
//! - device API (HTTP and MQTT): the array form `[{"ts":..,"values":{..}}, ...]`;
//! - gateway API (MQTT): `{"<device>": [{"ts":..,"values":{..}}, ...], ...}`.

use flowcast_operators::Prediction;
use serde_json::{Map, Value, json};

/// A prediction as JSON, the form every sink writes it in (`predicData`, stdout, the value
/// of a sink's dead letter); `flowcast tb-bridge` reads it back.
pub fn prediction_json(p: &Prediction) -> Vec<u8> {
    serde_json::to_vec(p).unwrap_or_default()
}

/// The ThingsBoard timestamp of a prediction: the forecast window's end, in ms.
pub fn ts_ms(p: &Prediction) -> i64 {
    (p.predicted.for_window_end * 1000.0).round() as i64
}

/// One telemetry entry.
pub fn entry(p: &Prediction) -> Value {
    json!({
        "ts": ts_ms(p),
        "values": {
            "predicted_temperature": p.predicted.temperature,
            "predicted_humidity": p.predicted.humidity,
            "observed_temperature": p.observed.temperature,
            "observed_humidity": p.observed.humidity,
            "model": p.model,
        }
    })
}

/// The device API body of a batch of one device's predictions (oldest first).
pub fn device_batch<'a>(batch: impl IntoIterator<Item = &'a Prediction>) -> Vec<u8> {
    let entries: Vec<Value> = batch.into_iter().map(entry).collect();
    serde_json::to_vec(&entries).unwrap_or_default()
}

/// The gateway API body of predictions of several devices (each device's oldest first).
pub fn gateway_batch<'a>(batch: impl IntoIterator<Item = &'a Prediction>) -> Vec<u8> {
    let mut by_device: Map<String, Value> = Map::new();
    for p in batch {
        let list = by_device
            .entry(p.device.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = list {
            a.push(entry(p));
        }
    }
    serde_json::to_vec(&Value::Object(by_device)).unwrap_or_default()
}

#[cfg(test)]
pub(crate) fn sample(device: &str, i: u32) -> Prediction {
    use flowcast_operators::{ObservedValues, PredictedValues};
    let end = 1_700_000_000.0 + f64::from(i) * 1800.0;
    Prediction {
        device: device.to_owned(),
        window_start: end - 1800.0,
        window_end: end,
        observed: ObservedValues {
            temperature: 20.0 + f64::from(i) / 10.0,
            humidity: 40.0,
        },
        predicted: PredictedValues {
            temperature: 21.0 + f64::from(i) / 10.0,
            humidity: 41.0,
            for_window_end: end + 1800.0,
        },
        model: "persistence".to_owned(),
        served: Default::default(),
        accuracy: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_stamped_with_the_forecast_window_end() {
        let p = sample("pi-01", 1);
        let e = entry(&p);
        assert_eq!(e["ts"], json!(1_700_003_600_000_i64));
        assert_eq!(e["values"]["predicted_temperature"], json!(21.1));
        assert_eq!(e["values"]["observed_temperature"], json!(20.1));
        assert_eq!(e["values"]["observed_humidity"], json!(40.0));
        assert_eq!(e["values"]["model"], json!("persistence"));
    }

    #[test]
    fn batches_keep_order_and_group_by_device() {
        let ps = [sample("a", 1), sample("b", 1), sample("a", 2)];
        let body: Value = serde_json::from_slice(&device_batch(&ps[..1])).expect("json");
        assert_eq!(body.as_array().map(Vec::len), Some(1));
        let gw: Value = serde_json::from_slice(&gateway_batch(&ps)).expect("json");
        assert_eq!(gw["a"][0]["ts"], json!(ts_ms(&ps[0])));
        assert_eq!(gw["a"][1]["ts"], json!(ts_ms(&ps[2])));
        assert_eq!(gw["b"].as_array().map(Vec::len), Some(1));
    }
}
