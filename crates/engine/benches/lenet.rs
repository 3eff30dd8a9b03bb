//! LeNet forward at batch 100, the net of real Caffe's speed figure (golden/caffe_speed.json: pycaffe over the
//! 10,000 MNIST test images at batch 100, 2 cores, OpenBLAS: 7172 images/s for the primary build, 6760 for BVLC
//! 1.0). divan prints the throughput in items (= images) per second.
//!
//! The net is `lenet_deploy_b100.prototxt` built in code (so the bench needs no fixtures), with xavier-filled
//! weights and deterministic pseudo-random pixels in [0, 1); the arithmetic is the same as with the trained
//! weights and real digits (no layer's cost depends on the values).

use caffe_proto::pooling_parameter::PoolMethod;
use caffe_proto::{
    BlobShape, ConvolutionParameter, FillerParameter, InnerProductParameter, InputParameter, LayerParameter,
    NetParameter, PoolingParameter,
};
use divan::counter::ItemsCount;
use divan::Bencher;
use engine::{Net, NetOptions};

mod common;

fn main() {
    divan::main();
}

const BATCH: usize = 100;

fn layer(name: &str, kind: &str, bottom: &str, top: &str) -> LayerParameter {
    LayerParameter {
        name: Some(name.into()),
        r#type: Some(kind.into()),
        bottom: if bottom.is_empty() { vec![] } else { vec![bottom.into()] },
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

/// Caffe's MNIST LeNet deploy net: conv1(20, 5x5) pool1(max 2/2) conv2(50, 5x5) pool2 ip1(500) relu1 ip2(10).
fn lenet(batch: usize) -> NetParameter {
    let mut input = layer("data", "Input", "", "data");
    input.input_param = Some(InputParameter {
        shape: vec![BlobShape {
            dim: vec![batch as i64, 1, 28, 28],
        }],
    });
    let conv = |name: &str, bottom: &str, outputs: u32| {
        let mut l = layer(name, "Convolution", bottom, name);
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
        let mut l = layer(name, "Pooling", bottom, name);
        l.pooling_param = Some(PoolingParameter {
            pool: Some(PoolMethod::Max as i32),
            kernel_size: Some(2),
            stride: Some(2),
            ..Default::default()
        });
        l
    };
    let ip = |name: &str, bottom: &str, outputs: u32| {
        let mut l = layer(name, "InnerProduct", bottom, name);
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
            input,
            conv("conv1", "data", 20),
            pool("pool1", "conv1"),
            conv("conv2", "pool1", 50),
            pool("pool2", "conv2"),
            ip("ip1", "pool2", 500),
            layer("relu1", "ReLU", "ip1", "ip1"),
            ip("ip2", "ip1", 10),
        ],
        ..Default::default()
    }
}

/// Pixels in [0, 1) from a fixed linear congruential sequence.
fn pixels(count: usize) -> Vec<f32> {
    let mut state: u32 = 12345;
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1 << 24) as f32
        })
        .collect()
}

#[divan::bench]
fn lenet_forward_batch_100(bencher: Bencher) {
    let mut net = Net::new(&lenet(BATCH), &NetOptions::test()).unwrap();
    let images = pixels(BATCH * 28 * 28);
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        net.set_input("data", &[BATCH, 1, 28, 28], &images).unwrap();
        net.forward().unwrap();
        divan::black_box(net.blob("ip2").unwrap().data()[0])
    });
}

/// LeNet pruned at the tutorial's rates (conv1/conv2/ip1/ip2 keep 30/10/1/20% of their weights, by magnitude), as
/// the engine runs it (sparse products below the crossover density) and with every product dense, in the same run.
fn pruned_net() -> Net {
    let mut net = Net::new(&lenet(BATCH), &NetOptions::test()).unwrap();
    common::prune_at_tutorial_rates(&mut net);
    net
}

#[divan::bench(args = ["sparse", "dense"])]
fn lenet_pruned_forward_batch_100(bencher: Bencher, kernels: &str) {
    let mut net = pruned_net();
    let images = pixels(BATCH * 28 * 28);
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        engine::set_sparse_crossover(if kernels == "sparse" { None } else { Some(0.0) });
        net.set_input("data", &[BATCH, 1, 28, 28], &images).unwrap();
        net.forward().unwrap();
        divan::black_box(net.blob("ip2").unwrap().data()[0])
    });
    engine::set_sparse_crossover(None);
}
