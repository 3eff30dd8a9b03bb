//! Replays the corpora of the fuzz targets in crates/caffemodel/fuzz (`corpus/<target>`, minimised with
//! `cargo fuzz cmin`) and their crash reproducers (`regressions/<target>`) as ordinary tests: every input goes
//! through the same checks as in the fuzzer (caffemodel::fuzzing).

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs `check` over every file of `corpus/<target>` and `regressions/<target>`; the corpus must hold at least
/// `min` inputs (so a lost folder cannot pass unnoticed).
fn replay(target: &str, min: usize, mut check: impl FnMut(&Path, &[u8])) {
    let mut counts = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let mut count = 0;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).unwrap();
                check(&path, &data);
                count += 1;
            }
        }
        counts.push(count);
    }
    assert!(
        counts[0] >= min,
        "the corpus of {target} has only {} inputs (at least {min} expected)",
        counts[0]
    );
}

#[test]
fn decode_corpus_replays() {
    replay("decode", 10, |_, data| caffemodel::fuzzing::decode_all_kinds(data));
}

#[test]
fn net_corpus_replays() {
    replay("net", 10, |_, data| caffemodel::fuzzing::net(data));
}

#[test]
fn solverstate_corpus_replays() {
    replay("solverstate", 5, |_, data| caffemodel::fuzzing::solver_state(data));
}

#[test]
fn binaryproto_corpus_replays() {
    replay("binaryproto", 5, |_, data| caffemodel::fuzzing::binaryproto(data));
}

#[test]
fn prototxt_corpus_replays() {
    replay("prototxt", 10, |_, data| caffemodel::fuzzing::prototxt(data));
}

#[test]
fn npz_import_corpus_replays() {
    let scratch = tempfile::tempdir().unwrap();
    replay("npz_import", 4, |_, data| {
        caffemodel::fuzzing::npz_import_input(data, scratch.path())
    });
}

/// Writes the seed corpora: small files of every kind and generation, broken variants, miniatures of the fixtures'
/// real models (every blob shrunk to one value, cut to at most 4 KB) and of their prototxts. Run by hand
/// (`cargo test -p caffemodel --test fuzz_corpus -- --ignored`) when the seeds should change, then minimise with
/// `cargo fuzz cmin` (see the README).
#[test]
#[ignore]
fn regenerate_seed_corpus() {
    use caffe_proto::*;
    use prost::Message;
    let corpus = fuzz_dir().join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        assert!(bytes.len() <= 4096, "seed {target}/{name} is {} bytes", bytes.len());
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
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
    let mut binary: Vec<(&str, Vec<u8>)> = vec![
        ("modern", modern.encode_to_vec()),
        ("v1", v1.encode_to_vec()),
        ("v0", v0.encode_to_vec()),
        ("solverstate", state.encode_to_vec()),
        ("blob", legacy_blob.encode_to_vec()),
    ];
    let m = modern.encode_to_vec();
    binary.push(("modern-truncated", m[..m.len() - 5].to_vec()));
    binary.push((
        "modern-huge-length",
        vec![0xa2, 0x06, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00],
    ));
    binary.push(("wrong-wire-type", vec![0xa0, 0x06, 0x01]));
    // An unpacked float run: blob { data: 1.0 (fixed32, field 5) data: 2.0 }.
    let mut unpacked = vec![0x2d];
    unpacked.extend_from_slice(&1.0f32.to_le_bytes());
    unpacked.push(0x2d);
    unpacked.extend_from_slice(&2.0f32.to_le_bytes());
    binary.push(("blob-unpacked", unpacked));
    binary.push(("group", vec![0x0a, 0x01, b'n', 0x2b, 0x08, 0x07, 0x2c]));
    binary.push(("ragged-packed", vec![0x2a, 0x03, 1, 2, 3]));
    // Issue 13's first find: an overlong tag on an unpacked double_data element.
    binary.push((
        "overlong-unpacked-tag",
        vec![0xc1, 0x00, 0x5e, 0xc1, 0x81, 0xc1, 0xc1, 0xc1, 0xc1, 0x40],
    ));

    // Miniatures of the fixtures' real files: structure and parameters kept, every blob one value.
    if let Some(fixtures) = testkit::fixtures() {
        let shrink = |b: &mut BlobProto| {
            let legacy = b.num.is_some() || b.channels.is_some() || b.height.is_some() || b.width.is_some();
            if legacy {
                (b.num, b.channels, b.height, b.width) = (Some(1), Some(1), Some(1), Some(1));
            }
            if let Some(shape) = &mut b.shape {
                shape.dim.iter_mut().for_each(|d| *d = 1);
            }
            b.data.truncate(1);
            b.diff.truncate(1);
            b.double_data.truncate(1);
            b.double_diff.truncate(1);
        };
        let models = fixtures.join("models");
        let mut files: Vec<PathBuf> = Vec::new();
        let mut dirs = vec![models];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_none_or(|e| e != "md") {
                    files.push(path);
                }
            }
        }
        files.sort();
        for path in files {
            let stem = path.file_name().unwrap().to_string_lossy().replace('.', "-");
            let folder = path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            let bytes = std::fs::read(&path).unwrap();
            let name = format!("{folder}-{stem}");
            match caffemodel::BinaryKind::from_path(&path) {
                _ if path.extension().is_some_and(|e| e == "prototxt") => {
                    let text = String::from_utf8(bytes).unwrap();
                    let schema = caffemodel::text::Schema::builtin();
                    let is_solver = stem.contains("solver");
                    let message = if is_solver { "SolverParameter" } else { "NetParameter" };
                    let Ok(parsed) = caffemodel::text::parse(&path, &text, &schema, message) else {
                        continue;
                    };
                    let mut printed = caffemodel::text::format_text(&parsed);
                    if printed.len() > 4096 && !is_solver {
                        // Keep the first layers that fit.
                        let mut net = NetParameter::decode(parsed.encode_to_vec().as_slice()).unwrap();
                        while printed.len() > 4096 {
                            net.layer.pop();
                            net.layers.pop();
                            printed = caffemodel::text::to_text(&net, &schema, "NetParameter");
                        }
                    }
                    write("prototxt", &name, printed.as_bytes());
                }
                caffemodel::BinaryKind::SolverState => {
                    let mut s = SolverState::decode(bytes.as_slice()).unwrap();
                    s.history.iter_mut().for_each(shrink);
                    s.history.truncate(8);
                    write("solverstate", &name, &s.encode_to_vec());
                }
                caffemodel::BinaryKind::Blob => {
                    let mut b = BlobProto::decode(bytes.as_slice()).unwrap();
                    shrink(&mut b);
                    write("binaryproto", &name, &b.encode_to_vec());
                    write("binaryproto", &format!("{name}-head"), &bytes[..bytes.len().min(512)]);
                }
                caffemodel::BinaryKind::Net => {
                    let Ok(mut net) = NetParameter::decode(bytes.as_slice()) else {
                        continue; // not a model (a log, a json)
                    };
                    for l in &mut net.layer {
                        l.blobs.iter_mut().for_each(shrink);
                    }
                    for l in &mut net.layers {
                        l.blobs.iter_mut().for_each(shrink);
                        if let Some(v0) = &mut l.layer {
                            v0.blobs.iter_mut().for_each(shrink);
                        }
                    }
                    while net.encoded_len() > 4096 {
                        net.layer.pop();
                        net.layers.pop();
                    }
                    let mini = net.encode_to_vec();
                    write("net", &name, &mini);
                    write("decode", &name, &mini);
                    // The real file's first bytes: a cut inside a real blob payload.
                    write("net", &format!("{name}-head"), &bytes[..bytes.len().min(1024)]);
                }
            }
        }
    }
    for (name, bytes) in &binary {
        write("decode", name, bytes);
        write("net", name, bytes);
    }
    write("solverstate", "solverstate", &state.encode_to_vec());
    write("binaryproto", "blob", &legacy_blob.encode_to_vec());
    for name in ["blob-unpacked", "ragged-packed", "overlong-unpacked-tag"] {
        let (_, bytes) = binary.iter().find(|(n, _)| *n == name).unwrap();
        write("binaryproto", name, bytes);
    }

    // prototxt: hand-written corner cases beside the fixtures' miniatures.
    let texts: &[(&str, &str)] = &[
        ("v1-layers", "name: \"n\"\nlayers { name: \"c\" type: CONVOLUTION blobs_lr: 1 convolution_param { num_output: 2 kernel_size: 3 } }\n"),
        ("v0-layers", "layers { layer { name: \"c\" type: \"conv\" num_output: 2 kernelsize: 3 } bottom: \"data\" top: \"c\" }\ninput: \"data\"\ninput_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4\n"),
        ("solver-legacy", "net: \"n.prototxt\"\nbase_lr: 0.01\nlr_policy: \"step\"\nsolver_type: NESTEROV\nmax_iter: 10\n"),
        ("floats", "layer { name: \"s\" type: \"Scale\" param { lr_mult: -0 decay_mult: 1e-45 } scale_param { filler { value: nan } } }\n"),
        ("strings", "name: \"a\\\"b\\n\\303\\251\\x41\"\n# comment\nlayer { name: 'q' type: \"ReLU\" }\n"),
    ];
    for (name, text) in texts {
        write("prototxt", name, text.as_bytes());
    }

    // npz_import: the base net exported in every layout the importer reads.
    let base = caffemodel::fuzzing::npz_import_base();
    let file = caffemodel::ModelFile::from_bytes("base.caffemodel", base).unwrap();
    let net = file.net().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let layouts = [
        ("dense", caffemodel::npz::Layout::Dense),
        ("sparse-2", caffemodel::npz::Layout::Sparse { index_bits: 2 }),
        ("sparse-5", caffemodel::npz::Layout::Sparse { index_bits: 5 }),
        ("sparse-16", caffemodel::npz::Layout::Sparse { index_bits: 16 }),
        ("codebook-4", caffemodel::npz::Layout::Codebook { index_bits: 4 }),
    ];
    for (name, layout) in layouts {
        let path = tmp.path().join(format!("{name}.npz"));
        caffemodel::npz::export_npz(&net, &path, layout).unwrap();
        write("npz_import", name, &std::fs::read(&path).unwrap());
    }
    // Described archives (see caffemodel::fuzzing::npz_import_input): key index, dtype + 5 x rank, dims, elements.
    let array = |key: u8, dtype: u8, dims: &[u8], elems: &[u8]| {
        let mut a = vec![key, dtype + 5 * dims.len() as u8];
        a.extend_from_slice(dims);
        a.extend_from_slice(elems);
        a
    };
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let dense = [
        array(0, 0, &[2, 1, 2, 2], &f32s(&[1.0, 0.0, 2.0, 3.0, 0.0, 4.0, 5.0, 0.0])),
        array(3, 0, &[2], &f32s(&[0.5, -0.5])),
        array(4, 0, &[3, 4], &f32s(&[1.0; 12])),
        array(7, 0, &[3], &f32s(&[0.0, 1.0, 2.0])),
        array(8, 0, &[2], &f32s(&[0.25, 0.75])),
        array(9, 0, &[2], &f32s(&[1.5, 0.0])),
    ]
    .concat();
    write("npz_import", "described-dense", &dense);
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let sparse = [
        array(0, 0, &[5], &f32s(&[1.0, 2.0, 3.0, 4.0, 5.0])),
        array(1, 1, &[5], &[0, 1, 1, 2, 0]),
        array(2, 3, &[1], &i64s(&[4])),
        array(2, 3, &[4], &i64s(&[2, 1, 2, 2])),
        array(3, 0, &[2], &f32s(&[0.5, -0.5])),
        array(4, 0, &[3, 4], &f32s(&[1.0; 12])),
        array(7, 0, &[3], &f32s(&[0.0, 1.0, 2.0])),
        array(8, 0, &[2], &f32s(&[0.25, 0.75])),
        array(9, 0, &[2], &f32s(&[1.5, 0.0])),
    ]
    .concat();
    write("npz_import", "described-sparse", &sparse);
}
