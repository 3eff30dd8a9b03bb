//! The lossless reader against real Caffe files: byte-identical roundtrips, the MANIFEST's facts, truncations.

use caffemodel::{BinaryKind, Error, ModelFile};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn caffe_binaries(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            caffe_binaries(&path, out);
        } else {
            let name = path.file_name().unwrap().to_str().unwrap();
            let ext = path.extension().and_then(|e| e.to_str());
            if matches!(ext, Some("caffemodel" | "solverstate" | "binaryproto"))
                || (ext.is_none() && name.contains("_iter_"))
            {
                out.push(path);
            }
        }
    }
}

#[test]
fn every_fixture_binary_roundtrips_byte_for_byte() {
    let Some(dir) = testkit::fixtures() else { return };
    let mut files = Vec::new();
    caffe_binaries(&dir, &mut files);
    // 8 caffemodels, 5 solverstates and a mean file in models/, plus Caffe's own outputs in golden/.
    assert!(files.len() >= 14, "found only {} Caffe binaries", files.len());
    for path in &files {
        let model = ModelFile::open(path).unwrap();
        let bytes = match BinaryKind::from_path(path) {
            BinaryKind::Net => model.net().unwrap().to_bytes(),
            BinaryKind::SolverState => model.solver_state().unwrap().to_bytes(),
            BinaryKind::Blob => model.blob().unwrap().to_bytes(),
        };
        assert!(bytes == model.bytes(), "{} does not roundtrip", path.display());
    }
}

#[test]
fn layers_blobs_and_counts_match_the_manifest() {
    let Some(dir) = testkit::fixtures() else { return };
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("MANIFEST.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (rel, facts) in manifest["models"].as_object().unwrap() {
        let Some(layers) = facts.get("layers") else { continue };
        let model = ModelFile::open(dir.join(rel)).unwrap();
        let net = model.net().unwrap();
        assert_eq!(net.generation().as_str(), facts["format"].as_str().unwrap(), "{rel}");
        let ours = net.layers();
        let theirs = layers.as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{rel}: layer count");
        let (mut params, mut nonzero) = (0u64, 0u64);
        for (layer, fact) in ours.iter().zip(theirs) {
            assert_eq!(layer.name(), fact["name"].as_str().unwrap(), "{rel}");
            assert_eq!(
                layer.type_name(),
                fact["type"].as_str().unwrap(),
                "{rel}: {}",
                layer.name()
            );
            let blobs = layer.blobs();
            let fact_blobs = fact["blobs"].as_array().unwrap();
            assert_eq!(blobs.len(), fact_blobs.len(), "{rel}: {} blob count", layer.name());
            for (blob, fb) in blobs.iter().zip(fact_blobs) {
                let shape: Vec<i64> = fb["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect();
                assert_eq!(blob.shape().dims, shape, "{rel}: {}", layer.name());
                let values = blob.data().to_vec_f32();
                assert_eq!(values.len() as u64, fb["count"].as_u64().unwrap());
                let nz = values.iter().filter(|v| **v != 0.0).count() as u64;
                assert_eq!(nz, fb["nonzero"].as_u64().unwrap(), "{rel}: {}", layer.name());
                params += values.len() as u64;
                nonzero += nz;
            }
        }
        assert_eq!(params, facts["total"]["params"].as_u64().unwrap(), "{rel}");
        assert_eq!(nonzero, facts["total"]["nonzero"].as_u64().unwrap(), "{rel}");
        checked += 1;
    }
    assert_eq!(checked, 8, "the MANIFEST lists 8 caffemodels with layer facts");
}

/// Offsets where a field of the top-level message ends: cutting there leaves a shorter but valid message. Walks the
/// wire format itself (tags, varints, lengths) so the test does not lean on the crate's own field reader.
fn top_level_boundaries(bytes: &[u8]) -> Vec<usize> {
    fn varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        value
    }
    let mut ends = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let tag = varint(bytes, &mut at);
        match tag & 7 {
            0 => {
                varint(bytes, &mut at);
            }
            1 => at += 8,
            2 => at += varint(bytes, &mut at) as usize,
            5 => at += 4,
            wire => panic!("wire type {wire} at the top level of a fixture"),
        }
        assert!(at <= bytes.len(), "a field runs past the end");
        ends.push(at);
    }
    ends
}

#[test]
fn every_truncation_of_a_real_model_fails_cleanly() {
    let Some(dir) = testkit::fixtures() else { return };
    let path = dir.join("models/mtcnn_det1/det1.caffemodel");
    let bytes = std::fs::read(&path).unwrap();
    let boundaries = top_level_boundaries(&bytes);
    let mut failures = 0;
    for len in 0..bytes.len() {
        let result = ModelFile::from_bytes("det1-truncated.caffemodel", bytes[..len].to_vec()).and_then(|m| {
            m.net()?;
            Ok(())
        });
        match result {
            Ok(()) => assert!(
                boundaries.contains(&len),
                "truncation at {len} is inside a field but was accepted"
            ),
            Err(e) => {
                failures += 1;
                let message = e.to_string();
                assert!(message.starts_with("det1-truncated.caffemodel: "), "{message}");
                assert!(!message.contains('\n'), "{message}");
                if len > 0 {
                    assert!(message.contains("at byte "), "{message}");
                }
            }
        }
    }
    // Only cuts exactly between top-level fields (whole layers) leave a valid, shorter net.
    assert_eq!(
        failures,
        bytes.len() - boundaries.iter().filter(|&&b| b < bytes.len()).count()
    );
}

#[test]
fn blob_values_are_read_exactly() {
    let Some(dir) = testkit::fixtures() else { return };
    // The V1 LeNet stores conv1's bias as a packed float payload; read it independently from the raw bytes.
    let model = ModelFile::open(dir.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel")).unwrap();
    let net = model.net().unwrap();
    for layer in net.layers() {
        for blob in layer.blobs() {
            let values = blob.data();
            let all = values.to_vec_f32();
            let mut chunked = Vec::new();
            values.for_each_chunk(777, |c| chunked.extend_from_slice(c));
            assert_eq!(
                all.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                chunked.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}

fn expect_error(bytes: &[u8], name: &str) -> String {
    let err = ModelFile::from_bytes(name, bytes.to_vec())
        .and_then(|m| m.net().map(|_| ()))
        .unwrap_err();
    err.to_string()
}

#[test]
fn bad_inputs_get_one_line_errors_naming_file_and_place() {
    assert_eq!(expect_error(b"", "e.caffemodel"), "e.caffemodel: file is empty");
    assert!(expect_error(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "p.caffemodel").contains("a PNG image"));
    assert!(expect_error(b"name: \"LeNet\"\nlayer {\n", "t.caffemodel").contains("prototxt"));
    // NetParameter.layer (100) claiming 3 GB in a 9-byte file.
    let huge = [0xa2, 0x06, 0x80, 0x80, 0x80, 0x80, 0x0c, 0x00, 0x00];
    let msg = expect_error(&huge, "h.caffemodel");
    assert!(
        msg.contains("needs 3221225472 bytes but only 2 remain at byte 0"),
        "{msg}"
    );
    // NetParameter.layer (100) as a varint instead of a message.
    let msg = expect_error(&[0xa0, 0x06, 0x01], "w.caffemodel");
    assert!(msg.contains("field 100 (layer) has wire type varint"), "{msg}");
    assert!(msg.contains("at byte 0"), "{msg}");
    // A blob whose shape says 4 values but holds 3: layer { blobs { shape { dim: 4 } data: [3 floats] } }.
    let blob = [0x3a, 0x02, 0x08, 0x04, 0x2a, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut layer = vec![0x0a, 0x01, b'x', 0x3a, blob.len() as u8];
    layer.extend_from_slice(&blob);
    let mut net = vec![0xa2, 0x06, layer.len() as u8];
    net.extend_from_slice(&layer);
    let msg = expect_error(&net, "s.caffemodel");
    assert!(
        msg.contains("layer 0 ('x') blob 0") && msg.contains("holds 4 values but the data has 3"),
        "{msg}"
    );
    // Only unknown fields: not a Caffe net.
    let msg = expect_error(&[0xf8, 0x3e, 0x01], "u.caffemodel");
    assert!(msg.contains("none of its fields are known"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    match ModelFile::open(dir.path()) {
        Err(Error::IsDirectory { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a directory"),
    }
    let missing = dir.path().join("nope.caffemodel");
    let msg = ModelFile::open(&missing).err().unwrap().to_string();
    assert!(
        msg.starts_with(&missing.display().to_string()) && msg.contains("No such file"),
        "{msg}"
    );
}
