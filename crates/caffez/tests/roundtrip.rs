//! `.caffez` files of real models give the model back byte for byte, and damaged ones are refused in one line.

use caffemodel::ModelFile;
use std::path::Path;

/// `path` pruned (the smallest `1 - keep` of each weight blob's magnitudes set to +0.0) and shared to `bits`
/// bits with the quantize crate, as the bytes of a caffemodel.
fn quantized(path: &Path, keep: f64, bits: u32) -> ModelFile {
    let model = ModelFile::open(path).unwrap();
    let mut net = model.net().unwrap();
    let targets: Vec<(usize, Vec<f32>)> = net
        .layers()
        .iter()
        .filter(|l| caffemodel::is_prunable_type(&l.modern_type_name()) && !l.blobs().is_empty())
        .map(|l| (l.index, l.blobs()[0].data().to_vec_f32()))
        .collect();
    for (index, values) in targets {
        let shared = quantize::synthetic::prune_and_share(&values, keep, bits);
        net.set_blob_data(index, 0, shared).unwrap();
    }
    ModelFile::from_bytes(path, net.to_bytes()).unwrap()
}

fn default_model() -> std::path::PathBuf {
    testkit::repo_root().join("testdata/lenet.caffemodel")
}

#[test]
fn quantized_models_come_back_byte_for_byte() {
    let mut models = vec![default_model()];
    if let Some(fx) = testkit::fixtures() {
        models.push(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"));
        // Legacy V1 layout (enum layer types, 4-D blob shapes).
        models.push(fx.join("models/lenet_mnist_v1_2014/lenet_iter_10000"));
        models.push(fx.join("models/cifar10_full_v2/cifar10_full_iter_70000.caffemodel"));
        models.push(fx.join("models/cifar10_quick_v1_2014/cifar10_quick_iter_4000"));
    }
    for path in &models {
        assert!(path.is_file(), "{}", path.display());
        for (keep, bits) in [(0.1, 5), (1.0, 8), (0.01, 1)] {
            let model = quantized(path, keep, bits);
            let compressed = caffez::compress(&model).unwrap();
            let back = caffez::decompress(&compressed.bytes).unwrap();
            assert!(back == model.bytes(), "{}: keep {keep}, {bits} bits", path.display());
            // Deterministic.
            assert_eq!(caffez::compress(&model).unwrap().bytes, compressed.bytes);
            assert!(compressed.blobs.iter().all(|b| b.bits.is_some()));
        }
    }
}

#[test]
fn a_dense_model_is_refused_and_a_partly_quantized_one_keeps_the_rest() {
    let model = ModelFile::open(default_model()).unwrap();
    let err = caffez::compress(&model).unwrap_err().to_string();
    assert!(err.contains("no weight blob is quantized"), "{err}");

    // Only ip2 shared: the other weight blobs stay in the skeleton as they are.
    let mut net = model.net().unwrap();
    let ip2 = net.layers().iter().find(|l| l.name() == "ip2").unwrap().index;
    let values = net.layers()[ip2].blobs()[0].data().to_vec_f32();
    let shared = quantize::quantize(&values, &quantize::KMeansOptions::new(4)).unwrap();
    net.set_blob_data(ip2, 0, shared.reconstruct()).unwrap();
    let model = ModelFile::from_bytes("partly", net.to_bytes()).unwrap();
    let compressed = caffez::compress(&model).unwrap();
    let coded: Vec<&str> = compressed
        .blobs
        .iter()
        .filter(|b| b.bits.is_some())
        .map(|b| b.layer.as_str())
        .collect();
    assert_eq!(coded, ["ip2"]);
    assert!(caffez::decompress(&compressed.bytes).unwrap() == model.bytes());
}

#[test]
fn open_model_reads_a_caffez_like_a_caffemodel() {
    let model = quantized(&default_model(), 0.2, 4);
    let dir = tempfile_dir();
    let path = dir.join("m.caffez");
    std::fs::write(&path, caffez::compress(&model).unwrap().bytes).unwrap();
    let opened = caffez::open_model(&path).unwrap();
    assert!(opened.bytes() == model.bytes());
    // The plain reader names the format instead of failing on garbage.
    let err = ModelFile::open(&path).err().unwrap().to_string();
    assert!(err.contains(".caffez"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("caffez-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_truncation_and_every_flipped_byte_is_refused_without_a_panic() {
    let model = quantized(&default_model(), 0.05, 3);
    let bytes = caffez::compress(&model).unwrap().bytes;
    for len in 0..bytes.len() {
        let err = caffez::decompress(&bytes[..len]).unwrap_err().to_string();
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let mut damaged = bytes.clone();
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            damaged[at] ^= flip;
            let result = caffez::decompress(&damaged);
            assert!(result.is_err(), "flipping byte {at} by {flip:#x} went unnoticed");
            damaged[at] ^= flip;
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let err = caffez::decompress(&longer).unwrap_err().to_string();
    assert!(err.contains("follow the last section"), "{err}");
}

/// `file` with the body of section `index` rewritten by `edit`, its length and CRC-32 fixed up, so only the
/// reader's own rules can refuse it.
fn edit_section(file: &[u8], index: usize, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut edit = Some(edit);
    let mut out = file[..32].to_vec();
    let mut at = 32;
    let mut section = 0;
    while at < file.len() {
        let len = u64::from_le_bytes(file[at + 1..at + 9].try_into().unwrap()) as usize;
        let mut body = file[at + 9..at + 9 + len].to_vec();
        if section == index {
            if let Some(edit) = edit.take() {
                edit(&mut body);
            }
        }
        let start = out.len();
        out.push(file[at]);
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        at += 13 + len;
        section += 1;
    }
    out
}

#[test]
fn sections_that_pass_their_checksum_are_still_held_to_the_rules() {
    let model = quantized(&default_model(), 0.05, 3);
    let file = caffez::compress(&model).unwrap().bytes;
    assert!(caffez::decompress(&edit_section(&file, 0, |_| {})).is_ok());
    // Bytes after the skeleton's deflate stream.
    let err = caffez::decompress(&edit_section(&file, 0, |body| body.extend_from_slice(b"junk")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("follow the deflate stream"), "{err}");
    // A code width one wider than the codebook needs: the width byte follows the name, blob index, insert offset
    // and count varints.
    let err = caffez::decompress(&edit_section(&file, 1, |body| {
        let mut at = 1 + body[0] as usize;
        for _ in 0..3 {
            while body[at] & 0x80 != 0 {
                at += 1;
            }
            at += 1;
        }
        assert!((1..=3).contains(&body[at]), "the width byte");
        body[at] += 1;
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("smallest width"), "{err}");
}

#[test]
fn a_tiny_file_cannot_claim_a_huge_model() {
    // A hand-made file: a stored 1-byte skeleton and one blob of 2^32 pruned weights in 256 empty chunks of 2^24
    // (2 bytes each): structurally valid, 16 GiB of output from about 600 bytes.
    let mut skeleton = vec![0u8];
    entropy::varint::write(&mut skeleton, 1);
    skeleton.push(0x08);
    let mut blob = vec![1, b'w', 0, 1];
    entropy::varint::write(&mut blob, 1 << 32);
    blob.push(1);
    blob.push(0);
    entropy::varint::write(&mut blob, 1 << 24);
    for _ in 0..256 {
        blob.extend_from_slice(&[0, 0]);
    }
    let mut sections = Vec::new();
    for (kind, body) in [(1u8, &skeleton), (2, &blob)] {
        let start = sections.len();
        sections.push(kind);
        sections.extend_from_slice(&(body.len() as u64).to_le_bytes());
        sections.extend_from_slice(body);
        let crc = crc32fast::hash(&sections[start..]);
        sections.extend_from_slice(&crc.to_le_bytes());
    }
    let mut file = b"\x89CAFFEZ\n\x01\x00\x00\x00\x02\x00\x00\x00".to_vec();
    file.extend_from_slice(&(1u64 + 4 * (1 << 32)).to_le_bytes());
    file.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(&sections);
    let err = caffez::CaffezFile::parse(&file).unwrap_err().to_string();
    assert!(err.contains("more than a reader allows"), "{err}");
}
