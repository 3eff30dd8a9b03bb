//! LeNet's backward pass against real Caffe: one `forward_backward` on the first 64 records of the MNIST training
//! LMDB must give the loss Caffe's solver reported for iteration 1 and the gradients implied by the weights after
//! Caffe's first SGD step (golden/train, see its README).
//!
//! At iteration 0 the momentum history is zero and the `inv` policy gives lr = base_lr = 0.01, so Caffe's first
//! step is `W1 = W0 - 0.01 * lr_mult * (grad + 0.0005 * decay_mult * W0)`, from which `grad` is recovered (to within
//! W1's f32 rounding over the rate, which matters for the trained model's tiny gradients; the pruned start has large
//! gradients and is checked to 1e-3 of the largest magnitude with almost no rounding allowance).

mod common;

use std::path::Path;

use common::{read_prototxt, weights};
use datasets::{Batch, Batcher, Dataset, LmdbDataset, Transformer};
use engine::{Net, NetOptions};

const BATCH: usize = 64;
const BASE_LR: f32 = 0.01;
const WEIGHT_DECAY: f32 = 0.0005;

/// The TRAIN net with the weights of `start`, and the training LMDB's batches in Caffe's order.
fn train_net_and_data(dir: &Path, start: &Path) -> (Net, Batcher) {
    let param = read_prototxt(&dir.join("golden/train/lenet_train_b64.prototxt"));
    let data_layer = param.layer.iter().find(|l| l.r#type() == "Data").unwrap();
    let options = NetOptions::train()
        .with_input_shape("data", &[BATCH, 1, 28, 28])
        .with_input_shape("label", &[BATCH]);
    let mut net = Net::new(&param, &options).unwrap();
    net.copy_from(&weights(start)).unwrap();
    let dataset = LmdbDataset::open_unlocked(dir.join("golden/data/mnist_train10k_lmdb")).unwrap();
    let transform = data_layer.transform_param.clone().unwrap_or_default();
    let transformer = Transformer::new(&transform, caffe_proto::Phase::Train, None).unwrap();
    let batcher = Batcher::new(dataset.reader().unwrap(), BATCH, transformer).unwrap();
    (net, batcher)
}

/// Feeds the next batch into the net's data and label blobs (Caffe's Data layer).
fn feed(net: &mut Net, batcher: &mut Batcher) {
    let mut batch = Batch::default();
    batcher.next_batch(&mut batch).unwrap();
    assert_eq!(batch.shape, [BATCH, 1, 28, 28]);
    net.set_input("data", &batch.shape, &batch.data).unwrap();
    net.set_input("label", &[BATCH], &batch.labels).unwrap();
}

/// The TRAIN net with the weights of `start` and the first batch of the training LMDB fed in.
fn train_net(dir: &Path, start: &Path) -> Net {
    let (mut net, mut batcher) = train_net_and_data(dir, start);
    feed(&mut net, &mut batcher);
    net
}

fn check_first_step(case: &str, start: &Path, tolerance: f32) {
    let Some(dir) = testkit::fixtures() else { return };
    let golden_dir = dir.join("golden/train").join(case);
    let mut net = train_net(&dir, &dir.join(start));
    net.clear_param_diffs();
    let loss = net.forward_backward().unwrap();
    // Caffe's planning: conv1 runs backward for its parameters but sends nothing into the data; the loss layer
    // does not propagate into the labels.
    assert_eq!(net.layer_needs_backward("conv1"), Some((true, &[false][..])));
    assert_eq!(net.layer_needs_backward("loss"), Some((true, &[true, false][..])));
    assert!(net.blob_diff("data").unwrap().data().iter().all(|&v| v == 0.0));
    assert!(net.blob_diff("pool1").unwrap().data().iter().any(|&v| v != 0.0));
    let golden_loss = sparse::read_npy::<f32>(golden_dir.join("sgd_loss.npy")).unwrap().data[0];
    let loss_error = ((loss - golden_loss) / golden_loss).abs();
    eprintln!("{case}: loss {loss} vs Caffe {golden_loss} (relative error {loss_error:.2e})");
    assert!(loss_error <= 1e-4, "{case}: loss {loss} vs Caffe {golden_loss}");

    let mut after = sparse::NpzReader::open(golden_dir.join("sgd_iter1.npz")).unwrap();
    let mut checked = 0;
    for p in net.learnable_params_mut() {
        let key = format!("{}_{}", p.layer, p.index);
        let w1 = after.read::<f32>(&key).unwrap();
        assert_eq!(w1.shape, p.data.shape(), "{key}");
        let rate = BASE_LR * p.lr_mult;
        let decay = WEIGHT_DECAY * p.decay_mult;
        let expected: Vec<f32> = p
            .data
            .data()
            .iter()
            .zip(&w1.data)
            .map(|(&w0, &w1)| (w0 - w1) / rate - decay * w0)
            .collect();
        let largest = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // The recovered gradient is only as exact as W1's f32 rounding allows: up to one ulp of W, over the rate.
        let recovery = |w0: f32, w1: f32| f32::EPSILON * w0.abs().max(w1.abs()) / rate;
        let mut worst = 0.0f32;
        for (((&found, &wanted), &w0), &w1) in p.diff.data().iter().zip(&expected).zip(p.data.data()).zip(&w1.data) {
            let difference = (found - wanted).abs();
            worst = worst.max(difference);
            assert!(
                difference <= tolerance * largest + recovery(w0, w1),
                "{case}: {key}: gradient {found} vs Caffe's {wanted} (largest magnitude {largest}, W0 {w0})"
            );
        }
        eprintln!("{case}: {key}: largest gradient {largest:.3e}, worst difference {worst:.3e}");
        assert!(largest > 0.0, "{key}: Caffe's gradient is all zero");
        checked += 1;
    }
    assert_eq!(checked, 8, "conv1, conv2, ip1, ip2 weights and biases");
}

#[test]
fn lenet_gradients_from_trained_weights_match_caffe() {
    check_first_step(
        "from_trained",
        Path::new("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"),
        1e-3,
    );
}

#[test]
fn lenet_gradients_from_pruned_weights_match_caffe() {
    check_first_step("from_pruned", Path::new("golden/train/round_start.caffemodel"), 1e-3);
}

/// Ten steps of Caffe's SGD (momentum 0.9, L2 weight decay 0.0005, `inv` learning rate) written out here on top of
/// the engine's gradients: each iteration's loss and the weights after ten steps must match real Caffe's. This runs
/// backward on ten different batches in a row, so stale state between iterations would show.
fn check_ten_steps(case: &str, start: &Path) {
    let Some(dir) = testkit::fixtures() else { return };
    let golden_dir = dir.join("golden/train").join(case);
    let (mut net, mut batcher) = train_net_and_data(&dir, &dir.join(start));
    let golden_losses = sparse::read_npy::<f32>(golden_dir.join("sgd_loss.npy")).unwrap().data;
    let start_weights: Vec<Vec<f32>> = net
        .learnable_params_mut()
        .iter()
        .map(|p| p.data.data().to_vec())
        .collect();
    let mut history: Vec<Vec<f32>> = start_weights.iter().map(|w| vec![0.0; w.len()]).collect();
    for (iteration, &golden) in golden_losses[..10].iter().enumerate() {
        feed(&mut net, &mut batcher);
        net.clear_param_diffs();
        let loss = net.forward_backward().unwrap();
        assert!(
            ((loss - golden) / golden).abs() <= 1e-3,
            "{case}: iteration {}: loss {loss} vs Caffe {golden}",
            iteration + 1
        );
        let rate = BASE_LR * (1.0 + 1e-4 * iteration as f32).powf(-0.75);
        for (p, h) in net.learnable_params_mut().into_iter().zip(&mut history) {
            let (local_rate, local_decay) = (rate * p.lr_mult, WEIGHT_DECAY * p.decay_mult);
            for ((w, g), h) in p.data.data_mut().iter_mut().zip(p.diff.data_mut()).zip(h.iter_mut()) {
                *g += local_decay * *w;
                *h = local_rate * *g + 0.9 * *h;
                *w -= *h;
            }
        }
    }
    let mut after = sparse::NpzReader::open(golden_dir.join("sgd_iter10.npz")).unwrap();
    for (p, w0) in net.learnable_params_mut().iter().zip(&start_weights) {
        let key = format!("{}_{}", p.layer, p.index);
        let golden = after.read::<f32>(&key).unwrap().data;
        let change = golden.iter().zip(w0).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let worst = p
            .data
            .data()
            .iter()
            .zip(&golden)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{case}: {key}: largest change {change:.3e}, worst difference after 10 steps {worst:.3e}");
        assert!(change > 0.0);
        assert!(
            worst <= 1e-3 * change + 1e-7,
            "{case}: {key}: {worst} off after 10 steps (largest change {change})"
        );
    }
}

#[test]
fn ten_sgd_steps_from_trained_weights_match_caffe() {
    check_ten_steps(
        "from_trained",
        Path::new("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"),
    );
}

#[test]
fn ten_sgd_steps_from_pruned_weights_match_caffe() {
    check_ten_steps("from_pruned", Path::new("golden/train/round_start.caffemodel"));
}
