//! LeNet's layers one at a time at batch 100, to see where a forward pass spends its time (see `lenet.rs` for the
//! whole net). Each bench is a two-layer net: an Input of the layer's bottom shape, then the layer. The `*_backward`
//! benches time the layer's backward pass alone (bottom diff forced, parameter gradients, after one forward).

use caffe_proto::pooling_parameter::PoolMethod;
use caffe_proto::{
    BlobShape, ConvolutionParameter, FillerParameter, InnerProductParameter, InputParameter, LayerParameter,
    NetParameter, PoolingParameter,
};
use divan::counter::ItemsCount;
use divan::Bencher;
use engine::{Net, NetOptions};

fn main() {
    divan::main();
}

const BATCH: usize = 100;

fn single_layer(input: &[usize], layer: LayerParameter) -> (Net, Vec<f32>) {
    single_layer_for(input, layer, false)
}

fn single_layer_for(input: &[usize], mut layer: LayerParameter, backward: bool) -> (Net, Vec<f32>) {
    let data = LayerParameter {
        name: Some("data".into()),
        r#type: Some("Input".into()),
        top: vec!["data".into()],
        input_param: Some(InputParameter {
            shape: vec![BlobShape {
                dim: input.iter().map(|&d| d as i64).collect(),
            }],
        }),
        ..Default::default()
    };
    layer.name = Some("layer".into());
    layer.bottom = vec!["data".into()];
    layer.top = vec!["out".into()];
    let param = NetParameter {
        layer: vec![data, layer],
        force_backward: Some(backward),
        ..Default::default()
    };
    let options = if backward {
        NetOptions::train()
    } else {
        NetOptions::test()
    };
    let net = Net::new(&param, &options).unwrap();
    let count: usize = input.iter().product();
    let values = (0..count).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    (net, values)
}

/// Backward of `layer` alone: its top carries loss weight 1 (the seed diff) and `force_backward` asks for the bottom
/// diff too, as a layer inside a net would compute it.
fn run_backward(bencher: Bencher, input: &[usize], mut layer: LayerParameter) {
    layer.loss_weight = vec![1.0];
    let (mut net, values) = single_layer_for(input, layer, true);
    net.set_input("data", input, &values).unwrap();
    net.forward().unwrap();
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        net.clear_param_diffs();
        net.backward().unwrap();
    });
}

fn run(bencher: Bencher, input: &[usize], layer: LayerParameter) {
    let (mut net, values) = single_layer(input, layer);
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        net.set_input("data", input, &values).unwrap();
        net.forward().unwrap();
    });
}

fn xavier() -> Option<FillerParameter> {
    Some(FillerParameter {
        r#type: Some("xavier".into()),
        ..Default::default()
    })
}

fn conv(outputs: u32) -> LayerParameter {
    LayerParameter {
        r#type: Some("Convolution".into()),
        convolution_param: Some(ConvolutionParameter {
            num_output: Some(outputs),
            kernel_size: vec![5],
            weight_filler: xavier(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn max_pool() -> LayerParameter {
    LayerParameter {
        r#type: Some("Pooling".into()),
        pooling_param: Some(PoolingParameter {
            pool: Some(PoolMethod::Max as i32),
            kernel_size: Some(2),
            stride: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn inner_product(outputs: u32) -> LayerParameter {
    LayerParameter {
        r#type: Some("InnerProduct".into()),
        inner_product_param: Some(InnerProductParameter {
            num_output: Some(outputs),
            weight_filler: xavier(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[divan::bench]
fn conv1(bencher: Bencher) {
    run(bencher, &[BATCH, 1, 28, 28], conv(20));
}

#[divan::bench]
fn pool1(bencher: Bencher) {
    run(bencher, &[BATCH, 20, 24, 24], max_pool());
}

#[divan::bench]
fn conv2(bencher: Bencher) {
    run(bencher, &[BATCH, 20, 12, 12], conv(50));
}

#[divan::bench]
fn pool2(bencher: Bencher) {
    run(bencher, &[BATCH, 50, 8, 8], max_pool());
}

#[divan::bench]
fn ip1(bencher: Bencher) {
    run(bencher, &[BATCH, 50, 4, 4], inner_product(500));
}

#[divan::bench]
fn relu1(bencher: Bencher) {
    run(
        bencher,
        &[BATCH, 500],
        LayerParameter {
            r#type: Some("ReLU".into()),
            ..Default::default()
        },
    );
}

#[divan::bench]
fn ip2(bencher: Bencher) {
    run(bencher, &[BATCH, 500], inner_product(10));
}

#[divan::bench]
fn conv1_backward(bencher: Bencher) {
    run_backward(bencher, &[BATCH, 1, 28, 28], conv(20));
}

#[divan::bench]
fn pool1_backward(bencher: Bencher) {
    run_backward(bencher, &[BATCH, 20, 24, 24], max_pool());
}

#[divan::bench]
fn conv2_backward(bencher: Bencher) {
    run_backward(bencher, &[BATCH, 20, 12, 12], conv(50));
}

#[divan::bench]
fn ip1_backward(bencher: Bencher) {
    run_backward(bencher, &[BATCH, 50, 4, 4], inner_product(500));
}
