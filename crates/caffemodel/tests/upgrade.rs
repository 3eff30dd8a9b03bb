//! The V0/V1 upgrade against real Caffe's own upgrade outputs (fixtures
//! `golden/upgrade/`, made with `upgrade_net_proto_binary`,
//! `upgrade_net_proto_text` and `upgrade_solver_proto_text`), plus hand-built
//! legacy nets for the paths the fixtures do not exercise.

use std::path::Path;

use caffe_proto::{
    v1_layer_parameter::LayerType, BlobProto, BlobShape, ConvolutionParameter, DataParameter, FillerParameter,
    LayerParameter, NetParameter, ParamSpec, PoolingParameter, SolverParameter, TransformationParameter,
    V0LayerParameter, V1LayerParameter,
};
use caffemodel::upgrade::{
    net_needs_upgrade, solver_needs_upgrade, upgrade_net, upgrade_solver, LayerRef, UpgradeError, UpgradeStep,
};
use prost::Message;
use prost_reflect::DynamicMessage;

use testkit::fixtures;

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn parse_text<T: Message + Default>(dir: &Path, name: &str, message: &str) -> T {
    let text = String::from_utf8(read(dir, name)).unwrap();
    let descriptor = caffe_proto::descriptor_pool().get_message_by_name(message).unwrap();
    DynamicMessage::parse_text_format(descriptor, &text)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .transcode_to()
        .unwrap()
}

/// The two V1 snapshots and real Caffe's upgrades of them.
const V1_MODELS: [(&str, &str); 2] = [
    (
        "models/lenet_mnist_v1_2014/lenet_iter_10000",
        "golden/upgrade/lenet_mnist_v1_2014.upgraded.caffemodel",
    ),
    (
        "models/cifar10_quick_v1_2014/cifar10_quick_iter_4000",
        "golden/upgrade/cifar10_quick_v1_2014.upgraded.caffemodel",
    ),
];

#[test]
fn v1_caffemodels_upgrade_to_the_golden_message_and_bytes() {
    let Some(dir) = fixtures() else { return };
    for (legacy, golden) in V1_MODELS {
        let mut net = NetParameter::decode(read(&dir, legacy).as_slice()).unwrap();
        let layer_count = net.layers.len();
        assert!(net_needs_upgrade(&net), "{legacy}");
        let report = upgrade_net(&mut net).unwrap();
        // Both data layers carry legacy preprocessing (scale, mean_file) in
        // data_param, so the transformation step runs before the V1 step.
        assert_eq!(
            report.steps,
            [
                UpgradeStep::DataTransformation,
                UpgradeStep::V1ToV2 { layers: layer_count }
            ],
            "{legacy}"
        );
        assert!(report.warnings.is_empty(), "{legacy}: {report}");

        let golden_bytes = read(&dir, golden);
        let expected = NetParameter::decode(golden_bytes.as_slice()).unwrap();
        assert_eq!(net, expected, "{legacy}");
        // Caffe writes fields in number order, as prost does, so an upgrade
        // that matches Caffe's gives Caffe's bytes.
        assert!(net.encode_to_vec() == golden_bytes, "{legacy}: bytes differ");
        // The upgraded net is current: a second upgrade does nothing.
        assert!(!net_needs_upgrade(&net));
        assert!(upgrade_net(&mut net).unwrap().is_empty());
    }
}

/// Current type names of the V1 enum names, from Caffe's layer catalogue.
fn current_type_name(v1_name: &str) -> &'static str {
    match v1_name {
        "DATA" => "Data",
        "CONVOLUTION" => "Convolution",
        "POOLING" => "Pooling",
        "INNER_PRODUCT" => "InnerProduct",
        "RELU" => "ReLU",
        "SOFTMAX_LOSS" => "SoftmaxWithLoss",
        "SOFTMAX" => "Softmax",
        "ACCURACY" => "Accuracy",
        "LRN" => "LRN",
        "DROPOUT" => "Dropout",
        other => panic!("no hand mapping for V1 type {other}"),
    }
}

#[test]
fn upgraded_types_and_blob_shapes_follow_the_manifest() {
    let Some(dir) = fixtures() else { return };
    let manifest: serde_json::Value = serde_json::from_slice(&read(&dir, "MANIFEST.json")).unwrap();
    for (legacy, _) in V1_MODELS {
        let entry = &manifest["models"][legacy];
        assert_eq!(entry["format"], "V1", "{legacy}");
        let mut net = NetParameter::decode(read(&dir, legacy).as_slice()).unwrap();
        upgrade_net(&mut net).unwrap();
        let layers = entry["layers"].as_array().unwrap();
        assert_eq!(net.layer.len(), layers.len(), "{legacy}");
        for (layer, listed) in net.layer.iter().zip(layers) {
            assert_eq!(layer.name(), listed["name"].as_str().unwrap());
            let v1_type = listed["type"].as_str().unwrap();
            assert_eq!(layer.r#type(), current_type_name(v1_type), "{legacy}");
            let blobs = listed["blobs"].as_array().unwrap();
            assert_eq!(layer.blobs.len(), blobs.len());
            for (blob, listed_blob) in layer.blobs.iter().zip(blobs) {
                // Blobs move as stored: legacy 4-D fields, no N-D shape.
                let shape: Vec<i64> = serde_json::from_value(listed_blob["shape"].clone()).unwrap();
                assert!(blob.shape.is_none());
                let legacy_shape = [blob.num(), blob.channels(), blob.height(), blob.width()].map(i64::from);
                assert_eq!(legacy_shape.as_slice(), shape.as_slice(), "{}", layer.name());
                assert_eq!(blob.data.len() as u64, listed_blob["count"].as_u64().unwrap());
            }
        }
    }
}

/// Golden upgraded prototxts, by source: `<model>__<file>.upgraded.prototxt`
/// was made from `models/<model>/<file>.prototxt`.
fn golden_prototxts(dir: &Path) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = std::fs::read_dir(dir.join("golden/upgrade"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter_map(|file| {
            let stem = file.strip_suffix(".upgraded.prototxt")?;
            let (model, source) = stem.split_once("__")?;
            Some((
                format!("models/{model}/{source}.prototxt"),
                format!("golden/upgrade/{file}"),
            ))
        })
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn legacy_prototxts_upgrade_to_the_golden_prototxts() {
    let Some(dir) = fixtures() else { return };
    let pairs = golden_prototxts(&dir);
    // 4 files of each 2014 model (net, train, test, solver) and the 2 MTCNN
    // deploy nets with legacy inputs.
    assert_eq!(pairs.len(), 10, "{pairs:?}");
    let mut nets = 0;
    for (source, golden) in &pairs {
        if source.contains("solver") {
            let mut solver: SolverParameter = parse_text(&dir, source, "caffe.SolverParameter");
            let expected: SolverParameter = parse_text(&dir, golden, "caffe.SolverParameter");
            // These solvers never used the legacy enum: nothing to do.
            assert!(!solver_needs_upgrade(&solver));
            assert!(upgrade_solver(&mut solver).unwrap().is_empty());
            assert_eq!(solver, expected, "{source}");
            continue;
        }
        nets += 1;
        let mut net: NetParameter = parse_text(&dir, source, "caffe.NetParameter");
        let expected: NetParameter = parse_text(&dir, golden, "caffe.NetParameter");
        assert!(net_needs_upgrade(&net), "{source}");
        let report = upgrade_net(&mut net).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert!(!report.is_empty());
        assert_eq!(net, expected, "{source}");
        assert!(upgrade_net(&mut net).unwrap().is_empty(), "{source}");
    }
    assert_eq!(nets, 8);
}

#[test]
fn mtcnn_legacy_inputs_become_an_input_layer() {
    let Some(dir) = fixtures() else { return };
    let mut net: NetParameter = parse_text(&dir, "models/mtcnn_det1/det1.prototxt", "caffe.NetParameter");
    // The file says: input "data" with input_dim 1, 3, 12, 12.
    assert_eq!(net.input, ["data"]);
    let first_layer = net.layer[0].name().to_owned();
    let report = upgrade_net(&mut net).unwrap();
    assert_eq!(report.steps, [UpgradeStep::Input { inputs: 1 }]);
    assert!(net.input.is_empty() && net.input_dim.is_empty());
    let input = &net.layer[0];
    assert_eq!((input.name(), input.r#type()), ("input", "Input"));
    assert_eq!(input.top, ["data"]);
    assert_eq!(
        input.input_param.as_ref().unwrap().shape,
        [BlobShape {
            dim: vec![1, 3, 12, 12]
        }]
    );
    assert_eq!(net.layer[1].name(), first_layer);
}

// ---------------------------------------------------------------------------
// Hand-built legacy nets.

fn v0_layer(name: &str, type_name: &str, bottom: &[&str], top: &[&str]) -> V1LayerParameter {
    V1LayerParameter {
        bottom: bottom.iter().map(|s| s.to_string()).collect(),
        top: top.iter().map(|s| s.to_string()).collect(),
        layer: Some(V0LayerParameter {
            name: Some(name.into()),
            r#type: Some(type_name.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn blob(values: &[f32]) -> BlobProto {
    BlobProto {
        num: Some(1),
        channels: Some(1),
        height: Some(1),
        width: Some(values.len() as i32),
        data: values.to_vec(),
        ..Default::default()
    }
}

/// A 2013-style V0 net: a data layer with preprocessing, a padding layer
/// feeding a convolution, a pooling layer, and a ReLU given a parameter that
/// does not apply to it.
fn v0_net() -> NetParameter {
    let mut data = v0_layer("data", "data", &[], &["data", "label"]);
    {
        let v0 = data.layer.as_mut().unwrap();
        v0.source = Some("train_db".into());
        v0.batchsize = Some(64);
        v0.scale = Some(0.00390625);
        v0.meanfile = Some("mean.binaryproto".into());
        v0.cropsize = Some(24);
        v0.mirror = Some(true);
    }
    let mut pad = v0_layer("pad1", "padding", &["data"], &["pad1"]);
    pad.layer.as_mut().unwrap().pad = Some(2);
    let mut conv = v0_layer("conv1", "conv", &["pad1"], &["conv1"]);
    {
        let v0 = conv.layer.as_mut().unwrap();
        v0.num_output = Some(8);
        v0.kernelsize = Some(5);
        v0.stride = Some(1);
        v0.weight_filler = Some(FillerParameter {
            r#type: Some("gaussian".into()),
            std: Some(0.01),
            ..Default::default()
        });
        v0.blobs = vec![blob(&[1.0, 2.0]), blob(&[3.0])];
        v0.blobs_lr = vec![1.0, 2.0];
        v0.weight_decay = vec![1.0, 0.0];
    }
    let mut pool = v0_layer("pool1", "pool", &["conv1"], &["pool1"]);
    {
        let v0 = pool.layer.as_mut().unwrap();
        v0.pool = Some(1); // AVE
        v0.kernelsize = Some(3);
        v0.stride = Some(2);
    }
    let mut relu = v0_layer("relu1", "relu", &["pool1"], &["pool1"]);
    relu.layer.as_mut().unwrap().num_output = Some(3);
    NetParameter {
        name: Some("v0net".into()),
        layers: vec![data, pad, conv, pool, relu],
        ..Default::default()
    }
}

#[test]
fn a_v0_net_with_padding_upgrades_like_caffe() {
    let mut net = v0_net();
    assert!(net_needs_upgrade(&net));
    let report = upgrade_net(&mut net).unwrap();
    assert_eq!(report.steps, [UpgradeStep::V0ToV1, UpgradeStep::V1ToV2 { layers: 4 }]);
    assert_eq!(report.warnings.len(), 1, "{report}");
    assert!(report.warnings[0].contains("relu1") && report.warnings[0].contains("num_output"));

    // Written out by hand from upgrade_proto.cpp's rules.
    let expected = NetParameter {
        name: Some("v0net".into()),
        layer: vec![
            LayerParameter {
                name: Some("data".into()),
                r#type: Some("Data".into()),
                top: vec!["data".into(), "label".into()],
                data_param: Some(DataParameter {
                    source: Some("train_db".into()),
                    batch_size: Some(64),
                    ..Default::default()
                }),
                transform_param: Some(TransformationParameter {
                    scale: Some(0.00390625),
                    mean_file: Some("mean.binaryproto".into()),
                    crop_size: Some(24),
                    mirror: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
            LayerParameter {
                name: Some("conv1".into()),
                r#type: Some("Convolution".into()),
                // Rewired past the padding layer, which is gone.
                bottom: vec!["data".into()],
                top: vec!["conv1".into()],
                param: vec![
                    ParamSpec {
                        lr_mult: Some(1.0),
                        decay_mult: Some(1.0),
                        ..Default::default()
                    },
                    ParamSpec {
                        lr_mult: Some(2.0),
                        decay_mult: Some(0.0),
                        ..Default::default()
                    },
                ],
                blobs: vec![blob(&[1.0, 2.0]), blob(&[3.0])],
                convolution_param: Some(ConvolutionParameter {
                    num_output: Some(8),
                    pad: vec![2],
                    kernel_size: vec![5],
                    stride: vec![1],
                    weight_filler: Some(FillerParameter {
                        r#type: Some("gaussian".into()),
                        std: Some(0.01),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            LayerParameter {
                name: Some("pool1".into()),
                r#type: Some("Pooling".into()),
                bottom: vec!["conv1".into()],
                top: vec!["pool1".into()],
                pooling_param: Some(PoolingParameter {
                    pool: Some(1),
                    kernel_size: Some(3),
                    stride: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            },
            LayerParameter {
                name: Some("relu1".into()),
                r#type: Some("ReLU".into()),
                bottom: vec!["pool1".into()],
                top: vec!["pool1".into()],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    assert_eq!(net, expected);
}

#[test]
fn v0_errors_name_the_layer_and_leave_the_net_unchanged() {
    let mut net = v0_net();
    net.layers[3].layer.as_mut().unwrap().r#type = Some("maxout".into());
    let before = net.clone();
    let err = upgrade_net(&mut net).unwrap_err();
    assert_eq!(
        err,
        UpgradeError::UnknownV0LayerType {
            layer: LayerRef {
                index: 3,
                name: "pool1".into()
            },
            type_name: "maxout".into()
        }
    );
    assert!(err.to_string().contains("layer 3 (\"pool1\")"), "{err}");
    assert_eq!(net, before);

    let mut net = v0_net();
    net.layers[2].bottom = vec!["nowhere".into()];
    let err = upgrade_net(&mut net).unwrap_err();
    assert!(
        matches!(&err, UpgradeError::UnknownBottom { layer, blob } if layer.index == 2 && blob == "nowhere"),
        "{err:?}"
    );

    // Padding may only feed conv or pool layers.
    let mut net = v0_net();
    net.layers[2].layer.as_mut().unwrap().r#type = Some("innerproduct".into());
    let err = upgrade_net(&mut net).unwrap_err();
    assert!(
        matches!(&err, UpgradeError::PaddingIntoUnsupportedLayer { layer, .. } if layer.name == "conv1"),
        "{err:?}"
    );
}

fn v1_layer(name: &str, layer_type: LayerType) -> V1LayerParameter {
    V1LayerParameter {
        name: Some(name.into()),
        r#type: Some(layer_type as i32),
        ..Default::default()
    }
}

#[test]
fn v1_param_names_share_modes_and_data_transformation() {
    let mut data = v1_layer("data", LayerType::Data);
    data.data_param = Some(DataParameter {
        source: Some("db".into()),
        scale: Some(0.5),
        mirror: Some(false),
        ..Default::default()
    });
    let mut image = v1_layer("images", LayerType::ImageData);
    image.top = vec!["images".into()];
    let mut ip = v1_layer("ip", LayerType::InnerProduct);
    ip.param = vec!["shared_w".into()];
    ip.blob_share_mode = vec![0, 1];
    ip.blobs_lr = vec![1.0, 2.0, 3.0];
    ip.blobs = vec![blob(&[0.5])];
    let mut net = NetParameter {
        name: Some("v1".into()),
        force_backward: Some(true),
        layers: vec![data, image, ip],
        ..Default::default()
    };
    let report = upgrade_net(&mut net).unwrap();
    assert_eq!(
        report.steps,
        [UpgradeStep::DataTransformation, UpgradeStep::V1ToV2 { layers: 3 }]
    );
    assert!(net.layers.is_empty());
    assert_eq!(net.force_backward, Some(true));
    let [data, image, ip] = &net.layer[..] else {
        panic!("{:?}", net.layer)
    };
    assert_eq!(
        data.data_param,
        Some(DataParameter {
            source: Some("db".into()),
            ..Default::default()
        })
    );
    assert_eq!(
        data.transform_param,
        Some(TransformationParameter {
            scale: Some(0.5),
            mirror: Some(false),
            ..Default::default()
        })
    );
    // Caffe's transformation upgrade touches every data layer of the net, so
    // both messages become present (empty) on the image layer too.
    assert_eq!(image.r#type(), "ImageData");
    assert_eq!(image.image_data_param, Some(Default::default()));
    assert_eq!(image.transform_param, Some(Default::default()));
    assert_eq!(ip.r#type(), "InnerProduct");
    assert_eq!(
        ip.param,
        [
            ParamSpec {
                name: Some("shared_w".into()),
                share_mode: Some(0),
                lr_mult: Some(1.0),
                ..Default::default()
            },
            ParamSpec {
                share_mode: Some(1),
                lr_mult: Some(2.0),
                ..Default::default()
            },
            ParamSpec {
                lr_mult: Some(3.0),
                ..Default::default()
            },
        ]
    );
    assert_eq!(ip.blobs, [blob(&[0.5])]);
}

#[test]
fn fatal_v1_and_input_problems_are_errors() {
    let mut both = NetParameter {
        layer: vec![LayerParameter::default()],
        layers: vec![v1_layer("a", LayerType::Relu)],
        ..Default::default()
    };
    let before = both.clone();
    assert_eq!(
        upgrade_net(&mut both).unwrap_err(),
        UpgradeError::BothLayerAndLayers { layer: 1, layers: 1 }
    );
    assert_eq!(both, before);

    let mut bad_type = NetParameter {
        layers: vec![v1_layer("ok", LayerType::Relu), {
            let mut l = v1_layer("odd", LayerType::Relu);
            l.r#type = Some(77);
            l
        }],
        ..Default::default()
    };
    let err = upgrade_net(&mut bad_type).unwrap_err();
    assert_eq!(
        err,
        UpgradeError::UnknownV1LayerType {
            layer: LayerRef {
                index: 1,
                name: "odd".into()
            },
            value: 77
        }
    );

    let mut bad_mode = NetParameter {
        layers: vec![{
            let mut l = v1_layer("ip", LayerType::InnerProduct);
            l.blob_share_mode = vec![5];
            l
        }],
        ..Default::default()
    };
    assert!(matches!(
        upgrade_net(&mut bad_mode).unwrap_err(),
        UpgradeError::UnknownShareMode { value: 5, .. }
    ));

    // 2 inputs need 8 input_dim values.
    let mut dims = NetParameter {
        input: vec!["a".into(), "b".into()],
        input_dim: vec![1, 3, 8, 8, 1, 3, 8],
        layers: vec![v1_layer("relu", LayerType::Relu)],
        ..Default::default()
    };
    let before = dims.clone();
    assert_eq!(
        upgrade_net(&mut dims).unwrap_err(),
        UpgradeError::InputDimCount { inputs: 2, dims: 7 }
    );
    // Checked before anything changed, though the V1 step came first.
    assert_eq!(dims, before);

    let mut shapes = NetParameter {
        input: vec!["a".into()],
        input_shape: vec![BlobShape { dim: vec![1] }, BlobShape { dim: vec![2] }],
        ..Default::default()
    };
    assert_eq!(
        upgrade_net(&mut shapes).unwrap_err(),
        UpgradeError::InputShapeCount { inputs: 1, shapes: 2 }
    );
}

#[test]
fn inputs_with_shapes_without_shapes_and_batch_norm() {
    let relu = LayerParameter {
        name: Some("relu".into()),
        r#type: Some("ReLU".into()),
        ..Default::default()
    };
    let mut shaped = NetParameter {
        input: vec!["x".into(), "y".into()],
        input_shape: vec![BlobShape { dim: vec![2, 5] }, BlobShape { dim: vec![7] }],
        layer: vec![relu.clone()],
        ..Default::default()
    };
    let report = upgrade_net(&mut shaped).unwrap();
    assert_eq!(report.steps, [UpgradeStep::Input { inputs: 2 }]);
    assert_eq!(shaped.layer.len(), 2);
    assert_eq!(shaped.layer[0].top, ["x", "y"]);
    assert_eq!(
        shaped.layer[0].input_param.as_ref().unwrap().shape,
        [BlobShape { dim: vec![2, 5] }, BlobShape { dim: vec![7] }]
    );
    assert!(shaped.input.is_empty() && shaped.input_shape.is_empty());

    // Inputs without shapes (old caffemodels) are just dropped.
    let mut bare = NetParameter {
        input: vec!["x".into()],
        layer: vec![relu.clone()],
        ..Default::default()
    };
    upgrade_net(&mut bare).unwrap();
    assert_eq!(bare.layer, std::slice::from_ref(&relu));
    assert!(bare.input.is_empty());

    // BatchNorm with the 3 legacy param specs loses them; with 2 it keeps them.
    let batch_norm = |params: usize| LayerParameter {
        r#type: Some("BatchNorm".into()),
        param: vec![
            ParamSpec {
                lr_mult: Some(0.0),
                ..Default::default()
            };
            params
        ],
        ..Default::default()
    };
    let mut net = NetParameter {
        layer: vec![batch_norm(3), batch_norm(2), batch_norm(3)],
        ..Default::default()
    };
    let report = upgrade_net(&mut net).unwrap();
    assert_eq!(report.steps, [UpgradeStep::BatchNorm { layers: 2 }]);
    assert_eq!(net.layer.iter().map(|l| l.param.len()).collect::<Vec<_>>(), [0, 2, 0]);

    // A current net is left alone.
    let mut current = NetParameter {
        layer: vec![relu],
        ..Default::default()
    };
    let before = current.clone();
    assert!(!net_needs_upgrade(&current));
    let report = upgrade_net(&mut current).unwrap();
    assert!(report.is_empty());
    assert_eq!(current, before);
}

#[test]
fn solver_type_enum_becomes_the_type_string() {
    // Caffe's mapping, enum number -> type string.
    let expected = ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"];
    for (number, name) in expected.iter().enumerate() {
        let mut solver = SolverParameter {
            solver_type: Some(number as i32),
            base_lr: Some(0.1),
            ..Default::default()
        };
        assert!(solver_needs_upgrade(&solver));
        let report = upgrade_solver(&mut solver).unwrap();
        assert_eq!(report.steps, [UpgradeStep::SolverType]);
        assert_eq!(
            solver,
            SolverParameter {
                r#type: Some(name.to_string()),
                base_lr: Some(0.1),
                ..Default::default()
            }
        );
    }

    let mut both = SolverParameter {
        solver_type: Some(5),
        r#type: Some("Adam".into()),
        ..Default::default()
    };
    let err = upgrade_solver(&mut both).unwrap_err();
    assert_eq!(
        err,
        UpgradeError::SolverTypeConflict {
            solver_type: "ADAM".into(),
            type_name: "Adam".into()
        }
    );
    let mut unknown = SolverParameter {
        solver_type: Some(9),
        ..Default::default()
    };
    assert_eq!(
        upgrade_solver(&mut unknown).unwrap_err(),
        UpgradeError::UnknownSolverType { value: 9 }
    );
    assert_eq!(unknown.solver_type, Some(9));
}

#[test]
fn report_lines_are_readable() {
    let mut net = v0_net();
    let report = upgrade_net(&mut net).unwrap();
    let text = report.to_string();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "upgraded V0 layers to the V1 layout",
            "upgraded 4 V1 layer(s) (`layers`, enum types) to `layer` with string types",
            "warning: layer 4 (\"relu1\"): V0 parameter num_output does not apply to layer type \"relu\"; dropped",
        ]
    );
}
