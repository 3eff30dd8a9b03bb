//! The exported models run in onnxruntime (Python, pip) and give real Caffe's recorded outputs: every blob of the
//! five deploy nets in `golden/deploy` that the ONNX graph holds, within 1e-4 of each blob's scale, and every net
//! output; `onnx.checker` accepts each model.

use std::path::{Path, PathBuf};
use std::process::Command;

use caffemodel::text::Schema;
use engine::{Net, NetOptions};
use onnx_export::{export, write, ExportOptions, EXTERNAL_THRESHOLD};

use testkit::relative_error;

const TOLERANCE: f64 = 1e-4;

/// Checks the model with onnx.checker (full check, shapes inferred), runs it on `input` and saves every graph
/// output as `<out>/<name with / as __>.npy`.
const RUN: &str = r#"
import sys, numpy as np, onnx, onnxruntime as ort
model_path, input_name, input_path, out = sys.argv[1:5]
onnx.checker.check_model(model_path, full_check=True)
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
x = np.load(input_path)
names = [o.name for o in session.get_outputs()]
for name, value in zip(names, session.run(names, {input_name: x})):
    np.save(f"{out}/{name.replace('/', '__')}.npy", np.asarray(value, dtype=np.float32))
"#;

fn run_onnx(model: &Path, input_name: &str, input: &Path, out: &Path) {
    let status = Command::new("python3")
        .args(["-c", RUN])
        .arg(model)
        .arg(input_name)
        .arg(input)
        .arg(out)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "onnxruntime failed on {}", model.display());
}

fn build(prototxt: &Path, weights: &Path) -> (caffe_proto::NetParameter, Net) {
    let param = caffemodel::text::read_net_upgraded(prototxt, &Schema::builtin()).unwrap();
    let mut net = Net::new(&param, &NetOptions::test()).unwrap();
    let model = caffemodel::ModelFile::open(weights).unwrap();
    net.copy_from(&clikit::engine_weights(&model.net().unwrap())).unwrap();
    (param, net)
}

/// The fixtures' trained LeNet as its batch-100 deploy net.
fn lenet_b100(fixtures: &Path) -> (caffe_proto::NetParameter, Net) {
    build(
        &fixtures.join("golden/lenet/lenet_mnist_v2/lenet_deploy_b100.prototxt"),
        &fixtures.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"),
    )
}

fn check_deploy(model: &str) {
    let Some(fixtures) = testkit::fixtures() else { return };
    if !testkit::python_has(&["onnx", "onnxruntime", "numpy"]) {
        return;
    }
    let case = fixtures.join("golden/deploy").join(model);
    let outputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("outputs.json")).unwrap()).unwrap();
    let weights = fixtures.join("golden").join(outputs["weights"].as_str().unwrap());
    let input_blob = outputs["input_blob"].as_str().unwrap();
    let (param, net) = build(&case.join("deploy.prototxt"), &weights);
    let options = ExportOptions {
        every_blob: true,
        ..ExportOptions::default()
    };
    let onnx = export(&param, &net, &options).unwrap_or_else(|e| panic!("{model}: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    write(onnx, &path, EXTERNAL_THRESHOLD).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run_onnx(&path, input_blob, &case.join("input.npy"), &out);

    let net_outputs = net.outputs();
    let mut compared = 0;
    let mut bad = Vec::new();
    let mut golden: Vec<PathBuf> = std::fs::read_dir(case.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    golden.sort();
    for file in golden {
        let stem = file.file_stem().unwrap().to_str().unwrap().to_string();
        let name = stem.replace("__", "/");
        let ours_path = out.join(format!("{stem}.npy"));
        if !ours_path.exists() {
            // An intermediate folded away (a BatchNorm's output inside BatchNorm + Scale) or the input itself.
            assert!(
                !net_outputs.contains(&name.as_str()),
                "{model}: net output '{name}' missing from the ONNX graph"
            );
            continue;
        }
        let theirs = sparse::read_npy::<f32>(&file).unwrap();
        let ours = sparse::read_npy::<f32>(&ours_path).unwrap();
        assert_eq!(ours.shape, theirs.shape, "{model}: shape of '{name}'");
        let error = relative_error(&ours.data, &theirs.data);
        eprintln!("{model}: {name}: relative error {error:.2e}");
        if error.is_nan() || error > TOLERANCE {
            bad.push((name, error));
        }
        compared += 1;
    }
    assert!(compared >= net_outputs.len(), "{model}: only {compared} blobs compared");
    assert!(bad.is_empty(), "{model}: blobs beyond {TOLERANCE}: {bad:?}");
}

#[test]
fn cifar10_full_v2_runs_in_onnxruntime_as_in_caffe() {
    check_deploy("cifar10_full_v2");
}

#[test]
fn cifar10_quick_v1_2014_runs_in_onnxruntime_as_in_caffe() {
    check_deploy("cifar10_quick_v1_2014");
}

#[test]
fn mtcnn_det1_runs_in_onnxruntime_as_in_caffe() {
    check_deploy("mtcnn_det1");
}

#[test]
fn mtcnn_det2_runs_in_onnxruntime_as_in_caffe() {
    check_deploy("mtcnn_det2");
}

#[test]
fn resnet20_cifar10_bn_runs_in_onnxruntime_as_in_caffe() {
    check_deploy("resnet20_cifar10_bn");
}

/// Feeds the 10,000 MNIST test images (IDX, scaled by 1/256 as the Data layer's transform does) through the model in
/// batches of 100 and saves the argmax of `ip2` per image to `out`.
const PREDICT: &str = r#"
import gzip, sys, numpy as np, onnxruntime as ort
model_path, images_path, out = sys.argv[1:4]
with gzip.open(images_path) as f:
    images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
x = (images.astype(np.float32) * np.float32(0.00390625))
labels = [session.run(["ip2"], {"data": x[i:i + 100]})[0].argmax(axis=1) for i in range(0, len(x), 100)]
np.save(out, np.concatenate(labels).astype(np.uint8))
"#;

#[test]
fn pruned_lenet_gives_caffes_10000_predictions() {
    let Some(fixtures) = testkit::fixtures() else { return };
    if !testkit::python_has(&["onnxruntime", "numpy"]) {
        return;
    }
    let golden = fixtures.join("golden");
    let (param, mut net) = lenet_b100(&fixtures);
    // The tutorial's rates, as the fixtures' pruned nets were made (biases untouched).
    for (layer, keep) in [("conv1", 0.3), ("conv2", 0.1), ("ip1", 0.01), ("ip2", 0.2)] {
        let weights = &mut net.params_mut(layer).unwrap()[0];
        prune::prune_in_place(weights.data_mut(), prune::Rule::KeepFraction(keep)).unwrap();
    }
    let onnx = export(&param, &net, &ExportOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pruned.onnx");
    write(onnx, &path, EXTERNAL_THRESHOLD).unwrap();
    let pred = dir.path().join("pred.npy");
    let status = Command::new("python3")
        .args(["-c", PREDICT])
        .arg(&path)
        .arg(fixtures.join("mnist/t10k-images-idx3-ubyte.gz"))
        .arg(&pred)
        .status()
        .unwrap();
    assert!(status.success());
    let ours = sparse::read_npy::<u8>(&pred).unwrap().data;
    let theirs = sparse::read_npy::<u8>(golden.join("pruned/lenet_mnist_v2/t_0.3_0.1_0.01_0.2/pred.npy"))
        .unwrap()
        .data;
    assert_eq!(ours.len(), 10_000);
    let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} of 10,000 predictions differ from Caffe's");
}

#[test]
fn weights_past_the_threshold_go_to_an_external_file() {
    let Some(fixtures) = testkit::fixtures() else { return };
    if !testkit::python_has(&["onnx", "onnxruntime", "numpy"]) {
        return;
    }
    let case = fixtures.join("golden/deploy/cifar10_quick_v1_2014");
    let outputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("outputs.json")).unwrap()).unwrap();
    let weights = fixtures.join("golden").join(outputs["weights"].as_str().unwrap());
    let (param, net) = build(&case.join("deploy.prototxt"), &weights);
    let onnx = export(&param, &net, &ExportOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    // Threshold 0: every initializer goes out, as a model over 2 GiB would.
    let written = write(onnx, &path, 0).unwrap();
    let (data, bytes) = written.external.expect("external data written");
    assert_eq!(std::fs::metadata(&data).unwrap().len(), bytes);
    assert!(
        written.model_bytes < 20_000,
        "the graph alone: {} bytes",
        written.model_bytes
    );
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run_onnx(
        &path,
        outputs["input_blob"].as_str().unwrap(),
        &case.join("input.npy"),
        &out,
    );
    let name = net.outputs()[0].to_string();
    let theirs = sparse::read_npy::<f32>(case.join("blobs").join(format!("{}.npy", name.replace('/', "__")))).unwrap();
    let ours = sparse::read_npy::<f32>(out.join(format!("{}.npy", name.replace('/', "__")))).unwrap();
    assert!(relative_error(&ours.data, &theirs.data) <= TOLERANCE);
}

/// Runs two models on the first 100 MNIST test images and checks that `ip2` is bit-identical.
const SAME: &str = r#"
import gzip, sys, numpy as np, onnxruntime as ort
a, b, images_path = sys.argv[1:4]
with gzip.open(images_path) as f:
    x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:100].astype(np.float32) * np.float32(0.00390625)
ya, yb = (ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(["ip2"], {"data": x})[0] for m in (a, b))
assert ya.tobytes() == yb.tobytes(), float(np.abs(ya - yb).max())
"#;

#[test]
fn quantized_weights_keep_their_codebook_and_give_the_same_outputs() {
    let Some(fixtures) = testkit::fixtures() else { return };
    if !testkit::python_has(&["onnxruntime", "numpy"]) {
        return;
    }
    let (param, mut net) = lenet_b100(&fixtures);
    for (layer, bits) in [("conv1", 8), ("conv2", 8), ("ip1", 5), ("ip2", 5)] {
        let weights = &mut net.params_mut(layer).unwrap()[0];
        let shared = quantize::quantize(weights.data(), &quantize::KMeansOptions::new(bits)).unwrap();
        weights.data_mut().copy_from_slice(&shared.reconstruct());
    }
    let dir = tempfile::tempdir().unwrap();
    let dense = dir.path().join("dense.onnx");
    let coded = dir.path().join("codebook.onnx");
    write(
        export(&param, &net, &ExportOptions::default()).unwrap(),
        &dense,
        EXTERNAL_THRESHOLD,
    )
    .unwrap();
    let options = ExportOptions {
        codebook: true,
        ..ExportOptions::default()
    };
    let written = write(export(&param, &net, &options).unwrap(), &coded, EXTERNAL_THRESHOLD).unwrap();
    let dense_bytes = std::fs::metadata(&dense).unwrap().len();
    // One byte per weight instead of four, biases and codebooks beside.
    assert!(
        written.model_bytes * 3 < dense_bytes,
        "{} vs {dense_bytes}",
        written.model_bytes
    );
    let status = Command::new("python3")
        .args(["-c", SAME])
        .arg(&dense)
        .arg(&coded)
        .arg(fixtures.join("mnist/t10k-images-idx3-ubyte.gz"))
        .status()
        .unwrap();
    assert!(status.success(), "the codebook model's outputs differ");
}
