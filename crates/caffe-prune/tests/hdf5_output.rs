//! Nets holding an HDF5Output layer run in `forward` and `eval`, writing the HDF5 file Caffe writes (read back with
//! h5py; skipped without it, except under CI=true).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_caffe-prune");

/// h5py's view of an HDF5 file: per dataset its shape, dtype and values.
fn h5py_read(file: &Path) -> serde_json::Value {
    let script = r#"
import json, sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    print(json.dumps({k: {"shape": list(f[k].shape), "dtype": f[k].dtype.str,
                          "values": np.asarray(f[k]).reshape(-1).astype(float).tolist()} for k in f.keys()}))
"#;
    let out = Command::new("python3").args(["-c", script]).arg(file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const OUTPUT_LAYER: &str =
    "layer {\n  name: \"out\"\n  type: \"HDF5Output\"\n  bottom: \"ip2\"\n  bottom: \"label\"\n  \
                            hdf5_output_param { file_name: \"FILE\" }\n}\n";

#[test]
fn forward_writes_the_bottoms_as_caffe_does() {
    let Some(fx) = testkit::fixtures() else { return };
    if !testkit::python_has(&["h5py", "numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let h5 = tmp.path().join("out.h5");
    // The deploy LeNet with a label input and an HDF5Output of its scores and labels.
    let mut net = std::fs::read_to_string(fx.join("models/lenet_mnist_v2/lenet.prototxt")).unwrap();
    net.push_str(
        "layer {\n  name: \"label\"\n  type: \"Input\"\n  top: \"label\"\n  input_param { shape { dim: 3 } }\n}\n",
    );
    net.push_str(&OUTPUT_LAYER.replace("FILE", h5.to_str().unwrap()));
    std::fs::write(tmp.path().join("net.prototxt"), net).unwrap();
    let x: Vec<f32> = (0..3 * 28 * 28).map(|i| ((i * 37) % 256) as f32 / 256.0).collect();
    sparse::write_npy(tmp.path().join("x.npy"), &[3, 1, 28, 28], &x).unwrap();
    sparse::write_npy(tmp.path().join("l.npy"), &[3], &[4.0f32, 1.0, 9.0]).unwrap();
    let out = Command::new(BIN)
        .arg("forward")
        .arg("--net")
        .arg(tmp.path().join("net.prototxt"))
        .arg("--weights")
        .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
        .arg("--input")
        .arg(format!("data={}", tmp.path().join("x.npy").display()))
        .arg("--input")
        .arg(format!("label={}", tmp.path().join("l.npy").display()))
        .arg("-o")
        .arg(tmp.path().join("blobs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = h5py_read(&h5);
    let ip2 = sparse::read_npy::<f32>(tmp.path().join("blobs/ip2.npy")).unwrap();
    assert_eq!(file["data"]["shape"], serde_json::json!([3, 10, 1, 1]));
    assert_eq!(file["data"]["dtype"], "<f4");
    let values: Vec<f32> = file["data"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(values, ip2.data, "the data dataset is ip2 exactly");
    assert_eq!(file["label"]["shape"], serde_json::json!([3, 1, 1, 1]));
    assert_eq!(file["label"]["dtype"], "<f4");
    assert_eq!(file["label"]["values"], serde_json::json!([4.0, 1.0, 9.0]));
}

#[test]
fn eval_runs_a_net_with_an_hdf5_output_and_it_never_replaces_an_input() {
    let Some(fx) = testkit::fixtures() else { return };
    if !testkit::python_has(&["h5py", "numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let net = std::fs::read_to_string(fx.join("golden/lenet/lenet_mnist_v2/lenet_test.prototxt")).unwrap();
    let start = net.find("layer {").unwrap();
    let end = start + net[start..].find("\n}\n").unwrap() + 3;
    let dummy = "layer {\n  name: \"mnist\"\n  type: \"DummyData\"\n  top: \"data\"\n  top: \"label\"\n  \
                 dummy_data_param {\n    shape { dim: 5 dim: 1 dim: 28 dim: 28 }\n    shape { dim: 5 }\n    \
                 data_filler { type: \"uniform\" }\n    data_filler { type: \"constant\" value: 2 }\n  }\n}\n";
    let with = |file: &Path| {
        format!(
            "{}{dummy}{}{}",
            &net[..start],
            &net[end..],
            OUTPUT_LAYER.replace("FILE", file.to_str().unwrap())
        )
    };
    let run = |net_text: String| {
        std::fs::write(tmp.path().join("net.prototxt"), net_text).unwrap();
        Command::new(BIN)
            .arg("eval")
            .arg("--net")
            .arg(tmp.path().join("net.prototxt"))
            .arg("--weights")
            .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
            .arg("--json")
            .output()
            .unwrap()
    };
    let h5 = tmp.path().join("scores.h5");
    let out = run(with(&h5));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"], 5);
    let file = h5py_read(&h5);
    assert_eq!(file["data"]["shape"], serde_json::json!([5, 10, 1, 1]));
    assert_eq!(file["label"]["values"], serde_json::json!([2.0, 2.0, 2.0, 2.0, 2.0]));
    // An HDF5Output naming the weights is refused before any pass: the weights stay.
    let weights = tmp.path().join("w.caffemodel");
    std::fs::copy(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"), &weights).unwrap();
    let before = std::fs::read(&weights).unwrap();
    std::fs::write(tmp.path().join("net.prototxt"), with(&weights)).unwrap();
    let out = Command::new(BIN)
        .arg("eval")
        .arg("--net")
        .arg(tmp.path().join("net.prototxt"))
        .arg("--weights")
        .arg(&weights)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to write an output") && err.lines().count() == 1,
        "{err}"
    );
    assert!(std::fs::read(&weights).unwrap() == before, "the weights were replaced");
}
