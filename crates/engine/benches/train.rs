//! LeNet training step cost: `forward_backward` of the TRAIN net (lenet_train_test.prototxt's TRAIN half: conv1,
//! pool1, conv2, pool2, ip1, relu1, ip2, SoftmaxWithLoss) at batch 64. divan's items/s is iterations per second.
//! For scale: real Caffe (OpenBLAS, this machine class) does about 46.4 iterations/s for forward + backward + SGD
//! update, about 21 ms per forward-backward.
//!
//! The net is built in code (no fixtures needed) with xavier weights, pseudo-random pixels and labels.

use caffe_proto::pooling_parameter::PoolMethod;
use caffe_proto::{
    BlobShape, ConvolutionParameter, FillerParameter, InnerProductParameter, InputParameter, LayerParameter,
    NetParameter, ParamSpec, PoolingParameter,
};
use divan::counter::ItemsCount;
use divan::Bencher;
use engine::{Net, NetOptions};

mod common;

fn main() {
    divan::main();
}

const BATCH: usize = 64;

fn layer(name: &str, kind: &str, bottoms: &[&str], top: &str) -> LayerParameter {
    LayerParameter {
        name: Some(name.into()),
        r#type: Some(kind.into()),
        bottom: bottoms.iter().map(|b| b.to_string()).collect(),
        top: vec![top.into()],
        ..Default::default()
    }
}

fn xavier() -> Option<FillerParameter> {
    Some(FillerParameter {
        r#type: Some("xavier".into()),
        ..Default::default()
    })
}

fn lr(mults: &[f32]) -> Vec<ParamSpec> {
    mults
        .iter()
        .map(|&m| ParamSpec {
            lr_mult: Some(m),
            ..Default::default()
        })
        .collect()
}

/// The TRAIN LeNet with Input layers in place of the Data layer.
fn lenet_train(batch: usize) -> NetParameter {
    let mut data = layer("data", "Input", &[], "data");
    data.top.push("label".into());
    data.input_param = Some(InputParameter {
        shape: vec![
            BlobShape {
                dim: vec![batch as i64, 1, 28, 28],
            },
            BlobShape {
                dim: vec![batch as i64],
            },
        ],
    });
    let conv = |name: &str, bottom: &str, outputs: u32| {
        let mut l = layer(name, "Convolution", &[bottom], name);
        l.param = lr(&[1.0, 2.0]);
        l.convolution_param = Some(ConvolutionParameter {
            num_output: Some(outputs),
            kernel_size: vec![5],
            stride: vec![1],
            weight_filler: xavier(),
            ..Default::default()
        });
        l
    };
    let pool = |name: &str, bottom: &str| {
        let mut l = layer(name, "Pooling", &[bottom], name);
        l.pooling_param = Some(PoolingParameter {
            pool: Some(PoolMethod::Max as i32),
            kernel_size: Some(2),
            stride: Some(2),
            ..Default::default()
        });
        l
    };
    let ip = |name: &str, bottom: &str, outputs: u32| {
        let mut l = layer(name, "InnerProduct", &[bottom], name);
        l.param = lr(&[1.0, 2.0]);
        l.inner_product_param = Some(InnerProductParameter {
            num_output: Some(outputs),
            weight_filler: xavier(),
            ..Default::default()
        });
        l
    };
    NetParameter {
        name: Some("LeNet".into()),
        layer: vec![
            data,
            conv("conv1", "data", 20),
            pool("pool1", "conv1"),
            conv("conv2", "pool1", 50),
            pool("pool2", "conv2"),
            ip("ip1", "pool2", 500),
            layer("relu1", "ReLU", &["ip1"], "ip1"),
            ip("ip2", "ip1", 10),
            layer("loss", "SoftmaxWithLoss", &["ip2", "label"], "loss"),
        ],
        ..Default::default()
    }
}

/// Values from a fixed linear congruential sequence: pixels in [0, 1), labels in 0..10.
fn sequence(count: usize, seed: u32) -> Vec<u32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state >> 8
        })
        .collect()
}

fn net() -> Net {
    let mut net = Net::new(&lenet_train(BATCH), &NetOptions::train()).unwrap();
    let pixels: Vec<f32> = sequence(BATCH * 28 * 28, 12345)
        .iter()
        .map(|&v| v as f32 / (1 << 24) as f32)
        .collect();
    let labels: Vec<f32> = sequence(BATCH, 678).iter().map(|&v| (v % 10) as f32).collect();
    net.set_input("data", &[BATCH, 1, 28, 28], &pixels).unwrap();
    net.set_input("label", &[BATCH], &labels).unwrap();
    net
}

#[divan::bench]
fn lenet_train_forward_backward_batch_64(bencher: Bencher) {
    let mut net = net();
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        net.clear_param_diffs();
        divan::black_box(net.forward_backward().unwrap())
    });
}

/// The same step with LeNet pruned at the tutorial's rates, as retraining with a held mask runs it: the pruned
/// layers' forward products and bottom gradients take the sparse kernels, or every product stays dense.
#[divan::bench(args = ["sparse", "dense"])]
fn lenet_pruned_train_forward_backward_batch_64(bencher: Bencher, kernels: &str) {
    let mut net = net();
    common::prune_at_tutorial_rates(&mut net);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        engine::set_sparse_crossover(if kernels == "sparse" { None } else { Some(0.0) });
        net.clear_param_diffs();
        divan::black_box(net.forward_backward().unwrap())
    });
    engine::set_sparse_crossover(None);
}

#[divan::bench]
fn lenet_train_forward_batch_64(bencher: Bencher) {
    let mut net = net();
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| divan::black_box(net.forward().unwrap()));
}
