//! Deterministic model generation: the README's default model in testdata/ and the VGG16-sized benchmark model.
//!
//! Weights come from a fixed-seed generator with Caffe's xavier filler rule (uniform in +-sqrt(3 / fan_in)), biases
//! are constant, so the same seed gives the same bytes on every machine.

use caffe_proto::{
    BlobProto, BlobShape, ConvolutionParameter, InnerProductParameter, InputParameter, LayerParameter, NetParameter,
    PoolingParameter,
};

/// SplitMix64: tiny, fast, and identical everywhere.
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    pub fn uniform(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32; // [0, 1), 24 bits
        (2.0 * unit - 1.0) * scale
    }
}

fn blob(dims: &[i64], values: Vec<f32>) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape { dim: dims.to_vec() }),
        data: values,
        ..Default::default()
    }
}

fn xavier(rng: &mut SplitMix, dims: &[i64]) -> BlobProto {
    let count: i64 = dims.iter().product();
    let fan_in: i64 = dims[1..].iter().product();
    let scale = (3.0 / fan_in as f32).sqrt();
    blob(dims, (0..count).map(|_| rng.uniform(scale)).collect())
}

fn layer(name: &str, ty: &str, bottom: &str, top: &str) -> LayerParameter {
    LayerParameter {
        name: Some(name.into()),
        r#type: Some(ty.into()),
        bottom: if bottom.is_empty() { vec![] } else { vec![bottom.into()] },
        top: vec![top.into()],
        ..Default::default()
    }
}

fn input(shape: &[i64]) -> LayerParameter {
    LayerParameter {
        input_param: Some(InputParameter {
            shape: vec![BlobShape { dim: shape.to_vec() }],
        }),
        ..layer("data", "Input", "", "data")
    }
}

/// A convolution; `weights` gives the generator to fill its blobs, or `None` for the bare definition.
fn conv(
    weights: Option<&mut SplitMix>,
    name: &str,
    bottom: &str,
    inputs: i64,
    outputs: i64,
    kernel: i64,
    pad: u32,
) -> LayerParameter {
    let mut l = layer(name, "Convolution", bottom, name);
    l.convolution_param = Some(ConvolutionParameter {
        num_output: Some(outputs as u32),
        kernel_size: vec![kernel as u32],
        pad: if pad > 0 { vec![pad] } else { vec![] },
        stride: vec![1],
        ..Default::default()
    });
    if let Some(rng) = weights {
        l.blobs = vec![
            xavier(rng, &[outputs, inputs, kernel, kernel]),
            blob(&[outputs], vec![0.1; outputs as usize]),
        ];
    }
    l
}

/// A fully connected layer; `weights` as for [`conv`].
fn inner_product(
    weights: Option<&mut SplitMix>,
    name: &str,
    bottom: &str,
    inputs: i64,
    outputs: i64,
) -> LayerParameter {
    let mut l = layer(name, "InnerProduct", bottom, name);
    l.inner_product_param = Some(InnerProductParameter {
        num_output: Some(outputs as u32),
        ..Default::default()
    });
    if let Some(rng) = weights {
        l.blobs = vec![
            xavier(rng, &[outputs, inputs]),
            blob(&[outputs], vec![0.1; outputs as usize]),
        ];
    }
    l
}

fn max_pool(name: &str, bottom: &str) -> LayerParameter {
    let mut l = layer(name, "Pooling", bottom, name);
    l.pooling_param = Some(PoolingParameter {
        pool: Some(caffe_proto::pooling_parameter::PoolMethod::Max as i32),
        kernel_size: Some(2),
        stride: Some(2),
        ..Default::default()
    });
    l
}

fn in_place(name: &str, ty: &str, blob: &str) -> LayerParameter {
    layer(name, ty, blob, blob)
}

/// Caffe's MNIST LeNet (deploy form: Input 64x1x28x28 ... ip2, prob). Without weights it is the net definition.
pub fn lenet(seed: u64, with_weights: bool) -> NetParameter {
    let rng = &mut SplitMix::new(seed);
    NetParameter {
        name: Some("LeNet".into()),
        layer: vec![
            input(&[64, 1, 28, 28]),
            conv(with_weights.then_some(&mut *rng), "conv1", "data", 1, 20, 5, 0),
            max_pool("pool1", "conv1"),
            conv(with_weights.then_some(&mut *rng), "conv2", "pool1", 20, 50, 5, 0),
            max_pool("pool2", "conv2"),
            inner_product(with_weights.then_some(&mut *rng), "ip1", "pool2", 800, 500),
            in_place("relu1", "ReLU", "ip1"),
            inner_product(with_weights.then_some(&mut *rng), "ip2", "ip1", 500, 10),
            layer("prob", "Softmax", "ip2", "prob"),
        ],
        ..Default::default()
    }
}

/// VGG16 (configuration D): 13 3x3 convolutions, 3 fully connected layers, 138,357,544 parameters.
pub fn vgg16(seed: u64) -> NetParameter {
    let rng = &mut SplitMix::new(seed);
    let mut layers = vec![input(&[1, 3, 224, 224])];
    let stages: [&[i64]; 5] = [
        &[64, 64],
        &[128, 128],
        &[256, 256, 256],
        &[512, 512, 512],
        &[512, 512, 512],
    ];
    let mut bottom = "data".to_string();
    let mut channels = 3;
    for (s, widths) in stages.iter().enumerate() {
        for (c, &width) in widths.iter().enumerate() {
            let name = format!("conv{}_{}", s + 1, c + 1);
            layers.push(conv(Some(&mut *rng), &name, &bottom, channels, width, 3, 1));
            layers.push(in_place(&format!("relu{}_{}", s + 1, c + 1), "ReLU", &name));
            channels = width;
            bottom = name;
        }
        let pool = format!("pool{}", s + 1);
        layers.push(max_pool(&pool, &bottom));
        bottom = pool;
    }
    let fcs = [("fc6", 512 * 7 * 7, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)];
    for (name, inputs, outputs) in fcs {
        layers.push(inner_product(Some(&mut *rng), name, &bottom, inputs, outputs));
        if name != "fc8" {
            layers.push(in_place(&name.replace("fc", "relu"), "ReLU", name));
            layers.push(in_place(&name.replace("fc", "drop"), "Dropout", name));
        }
        bottom = name.to_string();
    }
    layers.push(layer("prob", "Softmax", "fc8", "prob"));
    NetParameter {
        name: Some("VGG_ILSVRC_16_layers".into()),
        layer: layers,
        ..Default::default()
    }
}

/// Caffe's examples/mnist `lenet_train_test.prototxt`: Data layers for TRAIN (batch 64) and TEST (batch 100) over
/// the fixtures' MNIST LMDBs (`train_source`, `test_source`, relative to the prototxt's folder), pixels scaled by
/// 1/256, learning rates x1 for weights and x2 for biases, xavier fillers, Accuracy in TEST, SoftmaxWithLoss.
pub fn lenet_train_test(train_source: &str, test_source: &str) -> NetParameter {
    use caffe_proto::{DataParameter, FillerParameter, NetStateRule, ParamSpec, Phase, TransformationParameter};
    let data = |phase: Phase, source: &str, batch: u32| LayerParameter {
        name: Some("mnist".into()),
        r#type: Some("Data".into()),
        top: vec!["data".into(), "label".into()],
        include: vec![NetStateRule {
            phase: Some(phase as i32),
            ..Default::default()
        }],
        transform_param: Some(TransformationParameter {
            scale: Some(0.00390625),
            ..Default::default()
        }),
        data_param: Some(DataParameter {
            source: Some(source.into()),
            batch_size: Some(batch),
            backend: Some(caffe_proto::data_parameter::Db::Lmdb as i32),
            ..Default::default()
        }),
        ..Default::default()
    };
    let filler = |kind: &str| {
        Some(FillerParameter {
            r#type: Some(kind.into()),
            ..Default::default()
        })
    };
    let learnable = |mut l: LayerParameter| {
        l.param = vec![
            ParamSpec {
                lr_mult: Some(1.0),
                ..Default::default()
            },
            ParamSpec {
                lr_mult: Some(2.0),
                ..Default::default()
            },
        ];
        if let Some(c) = l.convolution_param.as_mut() {
            c.weight_filler = filler("xavier");
            c.bias_filler = filler("constant");
        }
        if let Some(p) = l.inner_product_param.as_mut() {
            p.weight_filler = filler("xavier");
            p.bias_filler = filler("constant");
        }
        l
    };
    let mut accuracy = LayerParameter {
        include: vec![NetStateRule {
            phase: Some(Phase::Test as i32),
            ..Default::default()
        }],
        ..layer("accuracy", "Accuracy", "ip2", "accuracy")
    };
    accuracy.bottom.push("label".into());
    let mut loss = layer("loss", "SoftmaxWithLoss", "ip2", "loss");
    loss.bottom.push("label".into());
    NetParameter {
        name: Some("LeNet".into()),
        layer: vec![
            data(Phase::Train, train_source, 64),
            data(Phase::Test, test_source, 100),
            learnable(conv(None, "conv1", "data", 1, 20, 5, 0)),
            max_pool("pool1", "conv1"),
            learnable(conv(None, "conv2", "pool1", 20, 50, 5, 0)),
            max_pool("pool2", "conv2"),
            learnable(inner_product(None, "ip1", "pool2", 800, 500)),
            in_place("relu1", "ReLU", "ip1"),
            learnable(inner_product(None, "ip2", "ip1", 500, 10)),
            accuracy,
            loss,
        ],
        ..Default::default()
    }
}

/// Caffe's examples/mnist `lenet_solver.prototxt` for `net`, with `max_iter` iterations and a fixed seed: SGD, lr
/// 0.01, momentum 0.9, weight decay 5e-4, the `inv` policy (gamma 1e-4, power 0.75), a test of the whole 10,000-image
/// test set (100 x 100) every 500 iterations.
pub fn lenet_solver(net: &str, max_iter: i32, snapshot_prefix: &str) -> caffe_proto::SolverParameter {
    caffe_proto::SolverParameter {
        net: Some(net.into()),
        test_iter: vec![100],
        test_interval: Some(500),
        base_lr: Some(0.01),
        momentum: Some(0.9),
        weight_decay: Some(0.0005),
        lr_policy: Some("inv".into()),
        gamma: Some(0.0001),
        power: Some(0.75),
        display: Some(100),
        max_iter: Some(max_iter),
        snapshot: Some(0),
        snapshot_prefix: Some(snapshot_prefix.into()),
        random_seed: Some(1701),
        ..Default::default()
    }
}
