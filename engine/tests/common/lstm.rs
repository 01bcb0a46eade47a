//! The reference's LSTM, shared by the job tests that run the committed model.

use std::path::Path;

/// The reference's LSTM: the committed TorchScript artifact called through tch directly,
/// with the normalisation read from its metadata — not through the engine's inference code.
pub fn reference_lstm(seqs: &[Vec<[f64; 2]>]) -> Vec<[f64; 2]> {
    tch::set_num_threads(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("dht11_lstm.json")).expect("metadata"))
            .expect("json");
    let stat =
        |k: &str, i: usize| meta["normalisation"][k][i].as_f64().expect("normalisation") as f32;
    let (mean, std) = (
        [stat("mean", 0), stat("mean", 1)],
        [stat("std", 0), stat("std", 1)],
    );
    let model = tch::CModule::load(dir.join("dht11_lstm.pt")).expect("load model");
    let n = seqs.len();
    let len = seqs[0].len();
    let flat: Vec<f32> = seqs
        .iter()
        .flat_map(|s| {
            s.iter().flat_map(|v| {
                [
                    (v[0] as f32 - mean[0]) / std[0],
                    (v[1] as f32 - mean[1]) / std[1],
                ]
            })
        })
        .collect();
    let x = tch::Tensor::from_slice(&flat).view([n as i64, len as i64, 2]);
    let y = tch::no_grad(|| model.forward_ts(&[x])).expect("forward");
    let y: Vec<f32> = Vec::<f32>::try_from(y.flatten(0, -1)).expect("output");
    y.chunks(2)
        .map(|c| {
            [
                f64::from(c[0] * std[0] + mean[0]),
                f64::from(c[1] * std[1] + mean[1]),
            ]
        })
        .collect()
}
