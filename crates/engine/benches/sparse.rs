//! Where sparse products start to pay: one pruned layer of LeNet's shapes (conv1: 1 -> 20 channels, 5x5, on 28x28
//! images; conv2: 20 -> 50 channels, 5x5, on 12x12 maps; ip1: 800 -> 500) at batch 100, forward with the sparse product and with the dense GEMM, over a range of
//! weight densities (the fraction of nonzero weights, spread evenly). The crossover is the density where the two
//! medians meet; `engine::CONV_CROSSOVER` and `engine::INNER_PRODUCT_CROSSOVER` are set below them.

use caffe_proto::{
    BlobShape, ConvolutionParameter, InnerProductParameter, InputParameter, LayerParameter, NetParameter,
};
use divan::Bencher;
use engine::{Net, NetOptions};

fn main() {
    divan::main();
}

const DENSITIES: [f64; 8] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6];

fn layer_net(kind: &str) -> NetParameter {
    let conv = |outputs: u32| LayerParameter {
        r#type: Some("Convolution".into()),
        convolution_param: Some(ConvolutionParameter {
            num_output: Some(outputs),
            kernel_size: vec![5],
            ..Default::default()
        }),
        ..Default::default()
    };
    let (shape, mut layer) = match kind {
        "conv1" => (vec![100, 1, 28, 28], conv(20)),
        "conv2" => (vec![100, 20, 12, 12], conv(50)),
        _ => (
            vec![100, 800],
            LayerParameter {
                r#type: Some("InnerProduct".into()),
                inner_product_param: Some(InnerProductParameter {
                    num_output: Some(500),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    };
    layer.name = Some("L".into());
    layer.bottom = vec!["x".into()];
    layer.top = vec!["y".into()];
    let input = LayerParameter {
        name: Some("x".into()),
        r#type: Some("Input".into()),
        top: vec!["x".into()],
        input_param: Some(InputParameter {
            shape: vec![BlobShape { dim: shape }],
        }),
        ..Default::default()
    };
    NetParameter {
        layer: vec![input, layer],
        ..Default::default()
    }
}

fn run(bencher: Bencher, kind: &str, density: f64, crossover: f64) {
    let mut net = Net::new(&layer_net(kind), &NetOptions::test()).unwrap();
    let weights = net.params_mut("L").unwrap()[0].data_mut();
    let every = (1.0 / density).round() as usize;
    for (i, w) in weights.iter_mut().enumerate() {
        *w = if i % every == 0 {
            0.01 * (i % 97) as f32 - 0.48
        } else {
            0.0
        };
    }
    let shape = net.blob("x").unwrap().shape().to_vec();
    let input: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|i| (i % 251) as f32 / 251.0)
        .collect();
    net.set_input("x", &shape, &input).unwrap();
    bencher.bench_local(|| {
        engine::set_sparse_crossover(Some(crossover));
        net.forward().unwrap();
        divan::black_box(net.blob("y").unwrap().data()[0])
    });
    engine::set_sparse_crossover(None);
}

#[divan::bench(args = DENSITIES)]
fn conv1_sparse(bencher: Bencher, density: f64) {
    run(bencher, "conv1", density, 2.0);
}

#[divan::bench(args = DENSITIES)]
fn conv1_dense(bencher: Bencher, density: f64) {
    run(bencher, "conv1", density, 0.0);
}

#[divan::bench(args = DENSITIES)]
fn conv2_sparse(bencher: Bencher, density: f64) {
    run(bencher, "conv2", density, 2.0);
}

#[divan::bench(args = DENSITIES)]
fn conv2_dense(bencher: Bencher, density: f64) {
    run(bencher, "conv2", density, 0.0);
}

#[divan::bench(args = DENSITIES)]
fn ip1_sparse(bencher: Bencher, density: f64) {
    run(bencher, "ip1", density, 2.0);
}

#[divan::bench(args = DENSITIES)]
fn ip1_dense(bencher: Bencher, density: f64) {
    run(bencher, "ip1", density, 0.0);
}
