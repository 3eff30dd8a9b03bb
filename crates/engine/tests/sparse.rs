//! Pruned layers take the sparse products, and give what the dense ones give. (Its own test binary: the crossover
//! is process-wide, and no other test may see it changed.)

use caffe_proto::{
    BlobShape, ConvolutionParameter, InnerProductParameter, InputParameter, LayerParameter, NetParameter,
};
use engine::{Net, NetOptions};

fn net(layer: LayerParameter, input: Vec<i64>) -> NetParameter {
    let data = LayerParameter {
        name: Some("x".into()),
        r#type: Some("Input".into()),
        top: vec!["x".into()],
        input_param: Some(InputParameter {
            shape: vec![BlobShape { dim: input }],
        }),
        ..Default::default()
    };
    NetParameter {
        layer: vec![data, layer],
        // The bottom gradient too (the input needs none otherwise).
        force_backward: Some(true),
        ..Default::default()
    }
}

fn layer(kind: &str) -> LayerParameter {
    LayerParameter {
        name: Some("L".into()),
        r#type: Some(kind.into()),
        bottom: vec!["x".into()],
        top: vec!["y".into()],
        ..Default::default()
    }
}

/// Forward and backward with the sparse products and with the dense ones: the largest differences of the output and
/// of the input's gradient, relative to their scales.
fn sparse_against_dense(param: &NetParameter, keep_every: usize) -> (f32, f32) {
    // A fresh net for each run: the gradient given to y adds to its diff, which nothing else overwrites.
    let build = || {
        let mut net = Net::new(param, &NetOptions::test()).unwrap();
        for (i, w) in net.params_mut("L").unwrap()[0].data_mut().iter_mut().enumerate() {
            *w = if i % keep_every == 0 {
                ((i * 37) % 101) as f32 / 50.0 - 1.0
            } else {
                0.0
            };
        }
        if let Some(bias) = net.params_mut("L").unwrap().get_mut(1) {
            bias.data_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = i as f32 * 0.1);
        }
        let shape = net.blob("x").unwrap().shape().to_vec();
        let input: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| ((i * 13) % 29) as f32 / 29.0 - 0.4)
            .collect();
        net.set_input("x", &shape, &input).unwrap();
        net
    };
    let top_len = build().blob("y").unwrap().len();
    let top_diff: Vec<f32> = (0..top_len).map(|i| ((i * 7) % 23) as f32 / 23.0 - 0.5).collect();
    let run = |crossover: f64| {
        engine::set_sparse_crossover(Some(crossover));
        let mut net = build();
        net.forward().unwrap();
        net.backward_with(&[("y", &top_diff)]).unwrap();
        (
            net.blob("y").unwrap().data().to_vec(),
            net.blob_diff("x").unwrap().data().to_vec(),
        )
    };
    let ((sparse, sparse_diff), (dense, dense_diff)) = (run(2.0), run(0.0));
    engine::set_sparse_crossover(None);
    let relative = |a: &[f32], b: &[f32]| {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    };
    (relative(&sparse, &dense), relative(&sparse_diff, &dense_diff))
}

#[test]
fn pruned_convolutions_and_inner_products_match_the_dense_products_forward_and_backward() {
    for (kernel, stride, pad, dilation, group) in [
        (vec![5], vec![1], vec![0], vec![], 1),
        (vec![3], vec![2], vec![1], vec![], 2),
        (vec![3], vec![1], vec![2], vec![2], 1),
        (vec![1], vec![1], vec![0], vec![], 1),
        (vec![2], vec![3], vec![1], vec![1], 4),
    ] {
        let mut conv = layer("Convolution");
        conv.convolution_param = Some(ConvolutionParameter {
            num_output: Some(8),
            kernel_size: kernel.clone(),
            stride: stride.clone(),
            pad: pad.clone(),
            dilation: dilation.clone(),
            group: Some(group),
            ..Default::default()
        });
        let (error, diff_error) = sparse_against_dense(&net(conv, vec![3, 4, 11, 9]), 7);
        assert!(
            error < 1e-6 && diff_error < 1e-6,
            "kernel {kernel:?} stride {stride:?} pad {pad:?} group {group}: forward {error:e}, backward {diff_error:e}"
        );
    }
    let mut ip = layer("InnerProduct");
    ip.inner_product_param = Some(InnerProductParameter {
        num_output: Some(37),
        ..Default::default()
    });
    let (error, diff_error) = sparse_against_dense(&net(ip, vec![45, 3, 5, 7]), 9);
    assert!(
        error < 1e-6 && diff_error < 1e-6,
        "inner product: forward {error:e}, backward {diff_error:e}"
    );
}
