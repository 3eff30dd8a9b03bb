//! Net construction on real prototxts and caffemodels: phase filtering, data-layer inputs, legacy refusals, the
//! nets stored inside caffemodels (with their weights), and the errors for bad wiring and bad weights.

mod common;

use caffe_proto::{LayerParameter, NetParameter};
use common::{fixtures, read_prototxt, read_prototxt_raw, weights};
use engine::{Error, LayerWeights, Net, NetOptions, WeightBlob};

fn layer_names(net: &Net) -> Vec<String> {
    net.layers().map(|l| l.name.clone()).collect()
}

#[test]
fn train_and_test_phases_pick_their_layers_from_a_real_train_test_prototxt() {
    let Some(dir) = fixtures() else { return };
    let param = read_prototxt(&dir.join("models/lenet_fashion/lenet_train_test.prototxt"));
    let test = Net::new(&param, &NetOptions::test().with_input_shape("data", &[100, 1, 28, 28])).unwrap();
    let train = Net::new(&param, &NetOptions::train().with_input_shape("data", &[64, 1, 28, 28])).unwrap();
    // BVLC's lenet_train_test: one Data layer per phase (same name), Accuracy only in TEST.
    assert!(layer_names(&test).contains(&"accuracy".to_string()));
    assert!(!layer_names(&train).contains(&"accuracy".to_string()));
    assert_eq!(test.inputs()[0].declared, Some(vec![Some(100), None, None, None]));
    assert_eq!(train.inputs()[0].declared, Some(vec![Some(64), None, None, None]));
    // In TEST, ip2 and label feed both accuracy and loss: Caffe's splits appear, with Caffe's names.
    assert!(layer_names(&test).contains(&"ip2_ip2_0_split".to_string()));
    assert!(layer_names(&test).contains(&"label_mnist_1_split".to_string()));
    assert_eq!(test.outputs(), ["accuracy", "loss"]);
    assert_eq!(train.outputs(), ["loss"]);
}

#[test]
fn a_data_layer_without_its_shape_is_a_clear_error() {
    let Some(dir) = fixtures() else { return };
    let param = read_prototxt(&dir.join("models/lenet_fashion/lenet_train_test.prototxt"));
    let err = Net::new(&param, &NetOptions::test()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 'mnist' (Data): the shape of its top 'data' is not known from its parameters (known: [100, ?, ?, ?]); \
         give it in NetOptions::input_shapes"
    );
    let err = Net::new(&param, &NetOptions::test().with_input_shape("pixels", &[1])).unwrap_err();
    assert!(
        matches!(err, Error::NotAnInput { ref blob, .. } if blob == "pixels"),
        "{err}"
    );
}

#[test]
fn legacy_nets_are_refused_with_the_way_out() {
    let Some(dir) = fixtures() else { return };
    let v1 = read_prototxt_raw(&dir.join("models/lenet_mnist_v1_2014/lenet_train.prototxt"));
    let err = Net::new(&v1, &NetOptions::train()).unwrap_err();
    assert!(matches!(err, Error::LegacyLayers { .. }), "{err}");
    assert!(err.to_string().contains("upgrade"), "{err}");
    let legacy_input = read_prototxt_raw(&dir.join("models/mtcnn_det1/det1.prototxt"));
    let err = Net::new(&legacy_input, &NetOptions::test()).unwrap_err();
    assert!(
        matches!(err, Error::LegacyInputs { ref inputs } if inputs == &["data"]),
        "{err}"
    );
    // Upgraded, both build.
    Net::new(
        &read_prototxt(&dir.join("models/mtcnn_det1/det1.prototxt")),
        &NetOptions::test(),
    )
    .unwrap();
}

#[test]
fn the_training_net_stored_in_a_caffemodel_builds_with_its_weights_and_runs() {
    let Some(dir) = fixtures() else { return };
    // MTCNN's P-Net as saved by Caffe: HDF5Data, Slice, Caffe's own Split, Silence, SoftmaxWithLoss, EuclideanLoss,
    // Accuracy, and its weights embedded in the layers.
    let path = dir.join("models/mtcnn_det1/det1.caffemodel");
    let model = caffemodel::ModelFile::open(&path).unwrap();
    let param = caffemodel::decode_net(&model).unwrap();
    let batch = 4;
    let options = NetOptions::train()
        .with_input_shape("data12face", &[batch, 3, 12, 12])
        .with_input_shape("label12face", &[batch, 15]);
    let mut net = Net::new(&param, &options).unwrap();
    for stored in weights(&path) {
        let params = net.params(&stored.name).unwrap();
        assert_eq!(params.len(), stored.blobs.len(), "{}", stored.name);
        for (param, blob) in params.iter().zip(&stored.blobs) {
            assert_eq!(
                param.data(),
                blob.data.as_slice(),
                "{}: embedded weights loaded",
                stored.name
            );
        }
    }
    let types: Vec<String> = net.layers().map(|l| l.layer_type.clone()).collect();
    for expected in [
        "HDF5Data",
        "Slice",
        "Split",
        "Silence",
        "SoftmaxWithLoss",
        "EuclideanLoss",
    ] {
        assert!(types.iter().any(|t| t == expected), "{expected} missing from {types:?}");
    }
    let pixels: Vec<f32> = (0..batch * 3 * 144).map(|i| (0.01 * i as f32).sin() * 0.5).collect();
    // Labels: class (0 or 1), 4 box offsets, 10 landmarks.
    let labels: Vec<f32> = (0..batch * 15)
        .map(|i| if i % 15 == 0 { (i / 15 % 2) as f32 } else { 0.1 })
        .collect();
    net.set_input("data12face", &[batch, 3, 12, 12], &pixels).unwrap();
    net.set_input("label12face", &[batch, 15], &labels).unwrap();
    let loss = net.forward().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    // A class label outside [0, 2) is bad data, reported with the layer.
    let mut bad = labels.clone();
    bad[0] = 7.0;
    net.set_input("label12face", &[batch, 15], &bad).unwrap();
    let err = net.forward().unwrap_err();
    assert!(
        matches!(&err, Error::Layer { layer_type, .. } if layer_type == "SoftmaxWithLoss"),
        "{err}"
    );
}

#[test]
fn weight_loading_follows_caffe_rules() {
    let Some(dir) = fixtures() else { return };
    let param = read_prototxt(&dir.join("golden/lenet/lenet_mnist_v2/lenet_deploy_b100.prototxt"));
    let mut net = Net::new(&param, &NetOptions::test()).unwrap();
    // The caffemodel's Data and loss layers are not in the deploy net: ignored, as Caffe does.
    let report = net
        .copy_from(&weights(&dir.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel")))
        .unwrap();
    assert_eq!(report.copied, ["conv1", "conv2", "ip1", "ip2"]);
    assert_eq!(report.ignored, ["mnist", "loss"]);

    let conv1 = |blobs: Vec<WeightBlob>| {
        [LayerWeights {
            name: "conv1".into(),
            blobs,
        }]
    };
    let bias = WeightBlob::new(vec![20], vec![0.0; 20]);
    let err = net.copy_from(&conv1(vec![bias.clone()])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 'conv1': incompatible number of blobs: the net layer has 2, the source has 1"
    );
    let wrong = WeightBlob::new(vec![20, 1, 3, 3], vec![0.0; 180]);
    let err = net.copy_from(&conv1(vec![wrong, bias.clone()])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 'conv1': cannot copy parameter 0: shape mismatch; source shape [20, 1, 3, 3], net shape [20, 1, 5, 5]"
    );
    let short = WeightBlob::new(vec![20, 1, 5, 5], vec![0.0; 499]);
    assert!(matches!(
        net.copy_from(&conv1(vec![short, bias.clone()])),
        Err(Error::WeightLength { .. })
    ));
    // Legacy 4-D shapes pad the parameter shape on the left: bias [20] matches 1x1x1x20, not 1x1x20x1.
    let weights_ok = WeightBlob::new(vec![20, 1, 5, 5], vec![0.5; 500]);
    let legacy = |shape: Vec<i64>| WeightBlob {
        shape,
        legacy: true,
        data: vec![1.0; 20],
    };
    net.copy_from(&conv1(vec![weights_ok.clone(), legacy(vec![1, 1, 1, 20])]))
        .unwrap();
    assert_eq!(net.params("conv1").unwrap()[1].data(), &[1.0; 20]);
    assert!(matches!(
        net.copy_from(&conv1(vec![weights_ok, legacy(vec![1, 1, 20, 1])])),
        Err(Error::WeightShape { legacy: true, .. })
    ));
}

fn layer(name: &str, kind: &str, bottoms: &[&str], tops: &[&str]) -> LayerParameter {
    LayerParameter {
        name: Some(name.into()),
        r#type: Some(kind.into()),
        bottom: bottoms.iter().map(|s| s.to_string()).collect(),
        top: tops.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn input(shape: &[i64]) -> LayerParameter {
    let mut l = layer("input", "Input", &[], &["data"]);
    l.input_param = Some(caffe_proto::InputParameter {
        shape: vec![caffe_proto::BlobShape { dim: shape.to_vec() }],
    });
    l
}

fn build(layers: Vec<LayerParameter>) -> Result<Net, Error> {
    Net::new(
        &NetParameter {
            layer: layers,
            ..Default::default()
        },
        &NetOptions::test(),
    )
}

#[test]
fn wiring_errors_name_the_layer() {
    let err = build(vec![input(&[1, 2]), layer("act", "ReLU", &["dat"], &["act"])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 'act': unknown bottom blob 'dat' (bottom index 0); no earlier layer produces it"
    );
    // Python layers run user code: the engine will never have them.
    let err = build(vec![input(&[1, 2]), layer("py", "Python", &["data"], &["out"])]).unwrap_err();
    assert_eq!(err.to_string(), "layer 'py': unsupported layer type 'Python'");
    let err = build(vec![
        input(&[1, 2]),
        layer("a", "ReLU", &["data"], &["x"]),
        layer("b", "TanH", &["data"], &["x"]),
    ]);
    assert!(matches!(err, Err(Error::DuplicateTop { ref layer, .. }) if layer == "b"));
    let err = build(vec![input(&[1, 2]), layer("c", "Concat", &["data"], &["x", "y"])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 'c' (Concat): takes exactly 1 top blob(s), got 2"
    );
    let mut pool = layer("p", "Pooling", &["data"], &["p"]);
    pool.pooling_param = Some(caffe_proto::PoolingParameter {
        kernel_size: Some(3),
        ..Default::default()
    });
    let err = build(vec![input(&[1, 2]), pool]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("layer 'p' (Pooling): bad bottom shape: pooling takes a 4-D"),
        "{err}"
    );
}

#[test]
fn in_place_layers_share_their_blob_and_inputs_may_change_shape() {
    let mut net = build(vec![
        input(&[2, 3]),
        layer("relu", "ReLU", &["data"], &["data"]),
        layer("tanh", "TanH", &["data"], &["t"]),
    ])
    .unwrap();
    assert_eq!(net.blob_names().collect::<Vec<_>>(), ["data", "t"]);
    net.set_input("data", &[2, 3], &[-1.0, 0.0, 1.0, -2.0, 2.0, 0.5])
        .unwrap();
    net.forward().unwrap();
    assert_eq!(net.blob("data").unwrap().data(), &[0.0, 0.0, 1.0, 0.0, 2.0, 0.5]);
    // A new batch size reshapes every blob on the next forward, as pycaffe's reshape.
    net.set_input("data", &[1, 3], &[-5.0, 5.0, 0.0]).unwrap();
    net.forward().unwrap();
    assert_eq!(net.blob("t").unwrap().shape(), &[1, 3]);
    assert_eq!(net.blob("data").unwrap().data(), &[0.0, 5.0, 0.0]);
    assert!(matches!(
        net.set_input("data", &[2, 3], &[0.0]),
        Err(Error::InputLength {
            expected: 6,
            found: 1,
            ..
        })
    ));
}

#[test]
fn a_loss_layer_without_a_top_gets_caffes_anonymous_one() {
    // 2014 nets declare `layers { type: SOFTMAX_LOSS bottom: "ip2" bottom: "label" }` with no top; Caffe's
    // AutoTopBlobs gives the loss layer an anonymous "(automatic)" top that still carries the loss.
    let Some(dir) = fixtures() else { return };
    let mut param = read_prototxt(&dir.join("models/lenet_fashion/lenet_train_test.prototxt"));
    let options = NetOptions::train()
        .with_input_shape("data", &[2, 1, 28, 28])
        .with_input_shape("label", &[2]);
    let with_top = {
        let mut net = Net::new(&param, &options).unwrap();
        net.set_input("data", &[2, 1, 28, 28], &[0.5; 2 * 784]).unwrap();
        net.set_input("label", &[2], &[3.0, 7.0]).unwrap();
        net.forward().unwrap()
    };
    for layer in &mut param.layer {
        if layer.r#type() == "SoftmaxWithLoss" {
            layer.top.clear();
        }
    }
    let mut net = Net::new(&param, &options).unwrap();
    net.set_input("data", &[2, 1, 28, 28], &[0.5; 2 * 784]).unwrap();
    net.set_input("label", &[2], &[3.0, 7.0]).unwrap();
    let loss = net.forward().unwrap();
    assert_eq!(loss, with_top);
    assert!(loss > 0.0);
    assert!(net.outputs().is_empty(), "the anonymous top is no output");
    assert_eq!(net.layers().last().unwrap().tops, ["(automatic)"]);
    net.backward().unwrap();
}
