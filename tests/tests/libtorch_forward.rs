//! tch links against the slim LibTorch that `deploy/libtorch/setup.sh` builds, and a forward
//! pass computes what the arithmetic says.

use tch::{Device, Kind, Tensor, nn, nn::Module, nn::RNN};

#[test]
fn linear_forward_matches_hand_computation() {
    tch::set_num_threads(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut linear = nn::linear(vs.root(), 3, 2, Default::default());
    tch::no_grad(|| {
        linear
            .ws
            .copy_(&Tensor::from_slice(&[1.0f32, 2.0, 3.0, -1.0, 0.5, 0.25]).view([2, 3]));
        if let Some(bs) = &mut linear.bs {
            bs.copy_(&Tensor::from_slice(&[0.5f32, -0.5]));
        }
    });
    let x = Tensor::from_slice(&[1.0f32, 1.0, 2.0, 4.0, 0.0, -2.0]).view([2, 3]);
    let y = linear.forward(&x);
    assert_eq!(y.size(), vec![2, 2]);
    let got: Vec<f32> = Vec::<f32>::try_from(y.flatten(0, -1)).expect("to vec");
    // [1,1,2]·[1,2,3]+0.5 = 9.5; [1,1,2]·[-1,.5,.25]-0.5 = -0.5;
    // [4,0,-2]·[1,2,3]+0.5 = -1.5; [4,0,-2]·[-1,.5,.25]-0.5 = -5.0
    assert_eq!(got, vec![9.5, -0.5, -1.5, -5.0]);
}

#[test]
fn lstm_runs_on_a_batch_of_sequences() {
    tch::set_num_threads(1);
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let lstm = nn::lstm(
        vs.root(),
        2,
        8,
        nn::RNNConfig {
            batch_first: true,
            ..Default::default()
        },
    );
    let x = Tensor::randn([4, 60, 2], (Kind::Float, Device::Cpu));
    let (out, _) = lstm.seq(&x);
    assert_eq!(out.size(), vec![4, 60, 8]);
    // Each sequence is computed on its own: batch row 1 alone gives the same output.
    let (alone, _) = lstm.seq(&x.narrow(0, 1, 1));
    let diff = (out.narrow(0, 1, 1) - alone).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "batched and single forward differ by {diff}");
}
