//! Every prototxt among the fixtures (real nets and solvers from BVLC, the
//! 2014 V1 files, the MTCNN deploy files with legacy inputs, and real Caffe's
//! upgraded outputs) must parse as text format against the built-in schema.

mod common;

use prost_reflect::DynamicMessage;

#[test]
fn every_fixture_prototxt_parses_against_the_schema() {
    let Some(dir) = common::fixtures_dir() else {
        return;
    };
    let pool = caffe_proto::descriptor_pool();
    let net = pool.get_message_by_name("caffe.NetParameter").unwrap();
    let solver = pool.get_message_by_name("caffe.SolverParameter").unwrap();

    let prototxts: Vec<String> = common::listed_files(&dir)
        .into_iter()
        .filter(|name| name.ends_with(".prototxt"))
        .collect();
    // FILES.json lists 53 prototxts, 11 of them solvers.
    assert_eq!(prototxts.len(), 53, "{prototxts:?}");

    let mut solvers = 0;
    let mut failures = Vec::new();
    for name in &prototxts {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let file = name.rsplit('/').next().unwrap();
        let descriptor = if file.contains("solver") {
            solvers += 1;
            solver.clone()
        } else {
            net.clone()
        };
        match DynamicMessage::parse_text_format(descriptor, &text) {
            Ok(message) => {
                // A real file always sets something; an empty parse would mean
                // the text was silently ignored.
                if message.fields().next().is_none() {
                    failures.push(format!("{name}: parsed to an empty message"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert_eq!(solvers, 11);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn v1_prototxt_layer_types_parse_as_the_legacy_enum() {
    let Some(dir) = common::fixtures_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("models/lenet_mnist_v1_2014/lenet.prototxt")).unwrap();
    let descriptor = caffe_proto::descriptor_pool()
        .get_message_by_name("caffe.NetParameter")
        .unwrap();
    let dynamic = DynamicMessage::parse_text_format(descriptor, &text).unwrap();
    let net: caffe_proto::NetParameter = dynamic.transcode_to().unwrap();
    use caffe_proto::v1_layer_parameter::LayerType;
    let types: Vec<LayerType> = net.layers.iter().map(|l| l.r#type()).collect();
    // The deploy LeNet of 2014: conv, pool, conv, pool, ip, relu, ip, softmax.
    assert_eq!(
        types,
        [
            LayerType::Convolution,
            LayerType::Pooling,
            LayerType::Convolution,
            LayerType::Pooling,
            LayerType::InnerProduct,
            LayerType::Relu,
            LayerType::InnerProduct,
            LayerType::Softmax,
        ]
    );
    assert_eq!(net.input, ["data"]);
    assert_eq!(net.input_dim, [64, 1, 28, 28]);
}
