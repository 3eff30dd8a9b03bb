//! NetOptions::fuse_pooling: a pruned convolution computes the MAX pooling that alone reads its top, with the bits
//! of the two layers run apart. (Its own test binary: tests that change the process-wide sparse crossover would
//! switch the direct sparse path off under it.)

use caffe_proto::{BlobShape, ConvolutionParameter, InputParameter, LayerParameter, NetParameter};
use engine::{Net, NetOptions};

/// x (3 x 2 x 12 x 12) -> convolution "L" (4 outputs, 3x3, pad 1, bias) -> y -> MAX pooling 2x2 stride 2 -> p, and,
/// when `also_read`, y read by a second layer as well.
fn conv_pool_net(also_read: bool) -> NetParameter {
    let mut conv = LayerParameter {
        name: Some("L".into()),
        r#type: Some("Convolution".into()),
        bottom: vec!["x".into()],
        top: vec!["y".into()],
        ..Default::default()
    };
    conv.convolution_param = Some(ConvolutionParameter {
        num_output: Some(4),
        kernel_size: vec![3],
        pad: vec![1],
        ..Default::default()
    });
    let input = LayerParameter {
        name: Some("x".into()),
        r#type: Some("Input".into()),
        top: vec!["x".into()],
        input_param: Some(InputParameter {
            shape: vec![BlobShape {
                dim: vec![3, 2, 12, 12],
            }],
        }),
        ..Default::default()
    };
    let mut param = NetParameter {
        layer: vec![input, conv],
        ..Default::default()
    };
    param.layer.push(LayerParameter {
        name: Some("P".into()),
        r#type: Some("Pooling".into()),
        bottom: vec!["y".into()],
        top: vec!["p".into()],
        pooling_param: Some(caffe_proto::PoolingParameter {
            pool: Some(caffe_proto::pooling_parameter::PoolMethod::Max as i32),
            kernel_size: Some(2),
            stride: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    });
    if also_read {
        param.layer.push(LayerParameter {
            name: Some("R".into()),
            r#type: Some("ReLU".into()),
            bottom: vec!["y".into()],
            top: vec!["r".into()],
            ..Default::default()
        });
    }
    param
}

/// Runs `param` with weights keeping every `keep_every`-th tap (ties, -0.0 sums and a NaN tap among them) and gives
/// the net after one forward.
fn conv_pool_forward(param: &NetParameter, keep_every: usize, fuse: bool) -> Net {
    let options = NetOptions {
        fuse_pooling: fuse,
        ..NetOptions::test()
    };
    let mut net = Net::new(param, &options).unwrap();
    for (i, w) in net.params_mut("L").unwrap()[0].data_mut().iter_mut().enumerate() {
        *w = match i {
            _ if i % keep_every != 0 => 0.0,
            0 => f32::NAN,
            _ if i % 3 == 0 => 0.5,
            _ => ((i * 37) % 101) as f32 / 50.0 - 1.0,
        };
    }
    net.params_mut("L").unwrap()[1]
        .data_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = if i == 1 { -0.0 } else { i as f32 * 0.1 });
    let input: Vec<f32> = (0..3 * 2 * 12 * 12)
        .map(|i| {
            if i % 11 == 0 {
                -0.0
            } else {
                ((i * 13) % 29) as f32 / 29.0 - 0.4
            }
        })
        .collect();
    net.set_input("x", &[3, 2, 12, 12], &input).unwrap();
    net.forward().unwrap();
    net
}

#[test]
fn a_pruned_convolution_computes_its_max_pooling_itself_with_the_same_bits() {
    let bits = |net: &Net| -> Vec<u32> { net.blob("p").unwrap().data().iter().map(|v| v.to_bits()).collect() };
    let alone = conv_pool_net(false);
    let separate = conv_pool_forward(&alone, 5, false);
    let mut fused = conv_pool_forward(&alone, 5, true);
    assert_eq!(bits(&fused), bits(&separate));
    assert!(
        separate.blob("p").unwrap().data().iter().any(|v| v.is_nan())
            || bits(&separate).contains(&(-f32::MAX).to_bits())
    );
    // The convolution's own top was not written, so it is not offered, and no gradient can be taken.
    assert!(fused.blob("y").is_none());
    assert!(separate.blob("y").is_some());
    let err = fused.backward().unwrap_err().to_string();
    assert!(err.contains("'y' unwritten"), "{err}");

    // Dense weights (above the crossover) take no direct path: computed as two layers, y kept.
    let dense = conv_pool_forward(&alone, 1, true);
    assert!(dense.blob("y").is_some());
    assert_eq!(bits(&dense), bits(&conv_pool_forward(&alone, 1, false)));

    // y read by another layer as well: not fused.
    let shared = conv_pool_net(true);
    let both = conv_pool_forward(&shared, 5, true);
    assert!(both.blob("y").is_some());
    assert_eq!(bits(&both), bits(&separate));
}
