//! Every blob of real Caffe's forward pass over the five deploy nets (golden/deploy), compared by name.
//!
//! Metric, per blob: max |ours - Caffe's| / max(max |Caffe's|, 1e-12) <= 1e-4.

mod common;

use std::path::Path;

use common::{fixtures, read_npy, read_prototxt, relative_error, weights};
use engine::{Net, NetOptions};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

/// Runs one deploy model and returns (blob name, relative error) for every golden blob.
fn compare_deploy(dir: &Path, model: &str) -> Vec<(String, f64)> {
    let case = dir.join("golden/deploy").join(model);
    let outputs: Value = serde_json::from_str(&std::fs::read_to_string(case.join("outputs.json")).unwrap()).unwrap();
    let param = read_prototxt(&case.join("deploy.prototxt"));
    let mut net = Net::new(&param, &NetOptions::test()).unwrap_or_else(|e| panic!("{model}: {e}"));
    let weights_path = dir.join("golden").join(outputs["weights"].as_str().unwrap());
    let report = net
        .copy_from(&weights(&weights_path))
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    assert!(!report.copied.is_empty(), "{model}: no weights copied");
    let input = read_npy(&case.join("input.npy"));
    let input_blob = outputs["input_blob"].as_str().unwrap();
    net.set_input(input_blob, &input.shape, &input.data).unwrap();
    net.forward().unwrap_or_else(|e| panic!("{model}: {e}"));

    let mut files: Vec<_> = std::fs::read_dir(case.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
        .iter()
        .map(|file| {
            let name = file.file_stem().unwrap().to_str().unwrap().replace("__", "/");
            let golden = read_npy(file);
            let ours = net
                .blob(&name)
                .unwrap_or_else(|| panic!("{model}: the net has no blob '{name}'"));
            assert_eq!(ours.shape(), golden.shape.as_slice(), "{model}: shape of blob '{name}'");
            (name, relative_error(ours.data(), &golden.data))
        })
        .collect()
}

fn check(model: &str) {
    let Some(dir) = fixtures() else { return };
    let errors = compare_deploy(&dir, model);
    for (name, error) in &errors {
        eprintln!("{model}: {name}: relative error {error:.3e}");
    }
    // NaN counts as bad.
    let bad: Vec<_> = errors.iter().filter(|(_, e)| e.is_nan() || *e > TOLERANCE).collect();
    assert!(bad.is_empty(), "{model}: blobs beyond {TOLERANCE}: {bad:?}");
}

#[test]
fn cifar10_full_v2_every_blob_matches_caffe() {
    check("cifar10_full_v2");
}

#[test]
fn cifar10_quick_v1_2014_every_blob_matches_caffe() {
    // V1 weights: legacy 4-D blob shapes matched by Caffe's ShapeEquals rule.
    check("cifar10_quick_v1_2014");
}

#[test]
fn mtcnn_det1_every_blob_matches_caffe() {
    // Non-square input, ceil-mode max pooling, PReLU, an auto-inserted split after an in-place layer.
    check("mtcnn_det1");
}

#[test]
fn mtcnn_det2_every_blob_matches_caffe() {
    check("mtcnn_det2");
}

#[test]
fn resnet20_cifar10_bn_every_blob_matches_caffe() {
    // BatchNorm with global statistics, Scale with bias, Eltwise SUM, global average pooling, splits.
    check("resnet20_cifar10_bn");
}
