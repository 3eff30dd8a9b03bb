//! Replays the decoder fuzz target's corpus (crates/caffemodel/fuzz/corpus/decode) as an ordinary test.

#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        caffemodel::fuzzing::decode_all_kinds(&data);
        count += 1;
    }
    assert!(count >= 10, "the corpus at {} has only {count} inputs", dir.display());
}

/// Writes the seed corpus: small files of every kind and generation, plus broken variants. Run by hand
/// (`cargo test -p caffemodel --test fuzz_corpus -- --ignored`) when the seeds should change.
#[test]
#[ignore]
fn regenerate_seed_corpus() {
    use caffe_proto::*;
    use prost::Message;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    std::fs::create_dir_all(&dir).unwrap();
    let blob = |dims: Vec<i64>| {
        let n: i64 = dims.iter().product();
        BlobProto {
            shape: Some(BlobShape { dim: dims }),
            data: (0..n).map(|i| if i % 3 == 0 { 0.0 } else { i as f32 * 0.5 }).collect(),
            ..Default::default()
        }
    };
    let modern = NetParameter {
        name: Some("tiny".into()),
        layer: vec![
            LayerParameter {
                name: Some("data".into()),
                r#type: Some("Input".into()),
                top: vec!["data".into()],
                ..Default::default()
            },
            LayerParameter {
                name: Some("ip".into()),
                r#type: Some("InnerProduct".into()),
                bottom: vec!["data".into()],
                top: vec!["ip".into()],
                blobs: vec![blob(vec![3, 4]), blob(vec![3])],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let legacy_blob = BlobProto {
        num: Some(1),
        channels: Some(1),
        height: Some(2),
        width: Some(2),
        data: vec![1.0, 0.0, -0.0, 2.0],
        ..Default::default()
    };
    let v1 = NetParameter {
        name: Some("v1".into()),
        layers: vec![V1LayerParameter {
            name: Some("conv".into()),
            r#type: Some(v1_layer_parameter::LayerType::Convolution as i32),
            blobs: vec![legacy_blob.clone()],
            blobs_lr: vec![1.0, 2.0],
            ..Default::default()
        }],
        ..Default::default()
    };
    let v0 = NetParameter {
        layers: vec![V1LayerParameter {
            layer: Some(V0LayerParameter {
                name: Some("conv".into()),
                r#type: Some("conv".into()),
                blobs: vec![legacy_blob.clone()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let state = SolverState {
        iter: Some(100),
        learned_net: Some("x.caffemodel".into()),
        history: vec![blob(vec![2, 2])],
        current_step: Some(1),
    };
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("modern", modern.encode_to_vec()),
        ("v1", v1.encode_to_vec()),
        ("v0", v0.encode_to_vec()),
        ("solverstate", state.encode_to_vec()),
        ("blob", legacy_blob.encode_to_vec()),
    ];
    let m = modern.encode_to_vec();
    seeds.push(("modern-truncated", m[..m.len() - 5].to_vec()));
    seeds.push((
        "modern-huge-length",
        vec![0xa2, 0x06, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00],
    ));
    seeds.push(("wrong-wire-type", vec![0xa0, 0x06, 0x01]));
    // An unpacked float run: blob { data: 1.0 (fixed32, field 5) data: 2.0 }.
    let mut unpacked = vec![0x2d];
    unpacked.extend_from_slice(&1.0f32.to_le_bytes());
    unpacked.push(0x2d);
    unpacked.extend_from_slice(&2.0f32.to_le_bytes());
    seeds.push(("blob-unpacked", unpacked));
    seeds.push(("group", vec![0x0a, 0x01, b'n', 0x2b, 0x08, 0x07, 0x2c]));
    seeds.push(("ragged-packed", vec![0x2a, 0x03, 1, 2, 3]));
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
