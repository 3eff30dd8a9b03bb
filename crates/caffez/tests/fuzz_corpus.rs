//! Replays the corpus of the fuzz target `decode` (crates/caffez/fuzz; minimised with `cargo fuzz cmin`, in
//! tests/corpus/decode) and its crash reproducers (tests/corpus/regressions) as an ordinary test: every input goes
//! through the fuzzer's own checks (caffez::fuzzing::check_decode), as it is and with its checksums recomputed.

use std::path::{Path, PathBuf};

#[path = "../fuzz/fuzz_targets/fix_checksums.rs"]
mod fix_checksums;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The files of `tests/corpus/<kind>`, sorted (none when the folder is missing).
fn inputs(kind: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(corpus_dir().join(kind)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
}

#[test]
fn decode_corpus_replays() {
    let corpus = inputs("decode");
    // A lost folder must not pass unnoticed.
    assert!(corpus.len() >= 10, "the decode corpus has only {} inputs", corpus.len());
    let mut whole = 0;
    for path in corpus.iter().chain(&inputs("regressions")) {
        let data = std::fs::read(path).unwrap();
        fix_checksums::check_decode_both(&data);
        if let Err(err) = caffez::decompress(&data) {
            let message = err.to_string();
            assert!(!message.contains('\n'), "{}: one line: {message}", path.display());
        } else {
            whole += 1;
        }
    }
    eprintln!("{} corpus inputs, {whole} decode whole", corpus.len());
    // The corpus keeps files that decode whole; none left means the format changed under it (regenerate the
    // seeds with `regenerate_seed_corpus` and fuzz again, see the README's Fuzzing section).
    assert!(whole >= 3, "only {whole} corpus files decode: has the format changed?");
}

/// Writes the seed corpus into tests/corpus/decode: small `.caffez` files of miniatures of testdata/lenet.caffemodel
/// (every blob cut to a few values of its own, at most 20 a dimension) quantized at every code width, with some
/// layers coded and others kept, all pruned or none; a blob of 2^20 + 1,000 values (two chunks); a skeleton that
/// deflate cannot shrink (stored); the V1 LeNet fixture's miniature; and damaged files. Run by hand
/// (`cargo test -p caffez --test fuzz_corpus -- --ignored`) when the format changes, then fuzz and minimise with
/// `cargo fuzz cmin` (see the README's Fuzzing section).
#[test]
#[ignore]
fn regenerate_seed_corpus() {
    use caffe_proto::{BlobProto, BlobShape, LayerParameter, NetParameter};
    use prost::Message;

    let dir = corpus_dir().join("decode");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        assert!(bytes.len() <= 8192, "seed {name} is {} bytes", bytes.len());
        std::fs::write(dir.join(name), bytes).unwrap();
    };

    // Every dimension cut to at most 20 (4 and 2 for a convolution's outputs and inputs); modern or V1 blobs.
    let shrink = |b: &mut BlobProto| {
        if let Some(shape) = &mut b.shape {
            let caps: &[i64] = if shape.dim.len() == 4 { &[4, 2, 5, 5] } else { &[20, 20] };
            for (d, cap) in shape.dim.iter_mut().zip(caps.iter().chain(std::iter::repeat(&20))) {
                *d = (*d).min(*cap);
            }
            let count: i64 = shape.dim.iter().product();
            b.data.truncate(count as usize);
        } else {
            b.num = b.num.map(|n| n.min(4));
            b.channels = b.channels.map(|n| n.min(2));
            b.height = b.height.map(|n| n.min(10));
            b.width = b.width.map(|n| n.min(20));
            let count: i32 = [b.num, b.channels, b.height, b.width]
                .iter()
                .map(|d| d.unwrap_or(1))
                .product();
            b.data.truncate(count as usize);
        }
    };
    let lenet = std::fs::read(testkit::repo_root().join("testdata/lenet.caffemodel")).unwrap();
    let mut mini = NetParameter::decode(lenet.as_slice()).unwrap();
    for layer in &mut mini.layer {
        layer.blobs.iter_mut().for_each(shrink);
    }
    let prunable =
        |l: &LayerParameter| matches!(l.r#type.as_deref(), Some("Convolution" | "InnerProduct")) && !l.blobs.is_empty();
    // `mini` with the weight blobs of the layers `which` picks pruned and shared.
    let quantized = |net: &NetParameter, which: &dyn Fn(&str) -> bool, keep: f64, bits: u32| {
        let mut net = net.clone();
        for layer in net.layer.iter_mut().filter(|l| prunable(l)) {
            if which(layer.name.as_deref().unwrap_or("")) {
                let weights = &mut layer.blobs[0];
                weights.data = quantize::synthetic::prune_and_share(&weights.data, keep, bits);
            }
        }
        net.encode_to_vec()
    };
    let compress = |name: &str, model: Vec<u8>| {
        let model = caffemodel::ModelFile::from_bytes(name, model).unwrap();
        let compressed = caffez::compress(&model).unwrap().bytes;
        assert!(caffez::decompress(&compressed).unwrap() == model.bytes(), "{name}");
        compressed
    };
    let all = |_: &str| true;
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for bits in 1..=8 {
        for keep in [0.1, 0.5] {
            let name = format!("lenet-mini-keep{keep}-b{bits}");
            seeds.push((name.clone(), compress(&name, quantized(&mini, &all, keep, bits))));
        }
    }
    seeds.push((
        "lenet-mini-keep1-b8".into(),
        compress("keep1", quantized(&mini, &all, 1.0, 8)),
    ));
    seeds.push((
        "lenet-mini-ip2-only-b3".into(),
        compress("ip2", quantized(&mini, &|name| name == "ip2", 0.3, 3)),
    ));
    // Every weight pruned: an empty codebook, no kept weight, empty streams.
    let mut none = mini.clone();
    for layer in none.layer.iter_mut().filter(|l| prunable(l)) {
        layer.blobs[0].data.iter_mut().for_each(|v| *v = 0.0);
    }
    seeds.push(("lenet-mini-all-pruned".into(), compress("none", none.encode_to_vec())));

    // Two chunks: one blob of 2^20 + 1,000 values, 40 kept with three shared values, the last in chunk 2.
    let count = (1 << 20) + 1000;
    let mut values = vec![0.0f32; count];
    for i in 0..40 {
        values[(i * 26_237 + 999) % count] = [-0.5, 0.25, 0.75][i % 3];
    }
    let big = NetParameter {
        name: Some("two-chunks".into()),
        layer: vec![LayerParameter {
            name: Some("ip".into()),
            r#type: Some("InnerProduct".into()),
            blobs: vec![BlobProto {
                shape: Some(BlobShape {
                    dim: vec![count as i64],
                }),
                data: values,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    seeds.push(("two-chunks".into(), compress("two-chunks", big.encode_to_vec())));

    // A skeleton deflate cannot shrink: a coded blob beside 1,500 random floats (stored as they are).
    let mut state = 0x1234_5678u64;
    let noise: Vec<f32> = (0..1500)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            f32::from_bits((state >> 32) as u32)
        })
        .collect();
    let stored = NetParameter {
        layer: vec![
            LayerParameter {
                name: Some("s".into()),
                r#type: Some("Scale".into()),
                blobs: vec![BlobProto {
                    shape: Some(BlobShape { dim: vec![1500] }),
                    data: noise,
                    ..Default::default()
                }],
                ..Default::default()
            },
            LayerParameter {
                name: Some("c".into()),
                r#type: Some("Convolution".into()),
                blobs: vec![BlobProto {
                    shape: Some(BlobShape { dim: vec![2, 1, 2, 2] }),
                    data: vec![0.0, 1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let stored = compress("stored", stored.encode_to_vec());
    let parsed = caffez::CaffezFile::parse(&stored).unwrap();
    assert_eq!(parsed.skeleton.method, caffez::format::Method::Stored);
    seeds.push(("stored-skeleton".into(), stored));

    // The V1 LeNet fixture's miniature (enum layer types, 4-D legacy blob dimensions).
    if let Some(fixtures) = testkit::fixtures() {
        let v1 = std::fs::read(fixtures.join("models/lenet_mnist_v1_2014/lenet_iter_10000")).unwrap();
        let mut v1 = NetParameter::decode(v1.as_slice()).unwrap();
        for layer in &mut v1.layers {
            layer.blobs.iter_mut().for_each(shrink);
            // Convolution and InnerProduct: weights and bias.
            if layer.blobs.len() == 2 {
                layer.blobs[0].data = quantize::synthetic::prune_and_share(&layer.blobs[0].data, 0.3, 4);
            }
        }
        seeds.push(("lenet-v1-mini-b4".into(), compress("v1", v1.encode_to_vec())));
    }

    // Damaged: cut, extended, a stream byte flipped (its checksum left wrong; the fuzz target also tries it with
    // the checksums recomputed), the header alone, the magic alone.
    let base = seeds
        .iter()
        .find(|(n, _)| n == "lenet-mini-keep0.1-b5")
        .unwrap()
        .1
        .clone();
    let mut damaged = vec![
        ("cut-half".to_string(), base[..base.len() / 2].to_vec()),
        ("cut-last-byte".to_string(), base[..base.len() - 1].to_vec()),
        ("header-only".to_string(), base[..32].to_vec()),
        ("magic-only".to_string(), caffez::MAGIC.to_vec()),
    ];
    let mut longer = base.clone();
    longer.push(0);
    damaged.push(("extended".into(), longer));
    let mut flipped = base.clone();
    let last = flipped.len() - 6;
    flipped[last] ^= 0x10;
    damaged.push(("stream-byte-flipped".into(), flipped));
    for (name, bytes) in seeds.iter().chain(&damaged) {
        write(name, bytes);
    }
}
