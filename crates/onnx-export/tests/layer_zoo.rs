//! The layer zoo (`golden/layers`, real Caffe's forward of one layer at a time): every case whose layer has an
//! inference-time ONNX translation is exported and run in onnxruntime on Caffe's recorded bottoms; each top must be
//! within 1e-4 of its scale of Caffe's. Cases the engine cannot build yet, and layers with no ONNX expression
//! (losses, training-only layers), are listed, and the test fails when one of them starts to export, so the lists
//! only shrink.

use std::path::Path;
use std::process::Command;

use caffemodel::text::Schema;
use engine::{Net, NetOptions};
use onnx_export::{export, write, ExportError, ExportOptions, EXTERNAL_THRESHOLD};

use testkit::relative_error;

const TOLERANCE: f64 = 1e-4;

/// Layers whose forward depends on the phase, for cases recorded in TRAIN: the export is for inference.
const TRAIN_ONLY_DIFFERS: [&str; 2] = ["BatchNorm", "Dropout"];

/// Cases whose layer the exporter refuses (no inference-time ONNX expression, or not translated yet).
const NOT_EXPORTED: [&str; 10] = [
    "accuracy_top2",
    "contrastive_loss",
    "euclidean_loss",
    "euclidean_loss_weight",
    "hinge_loss",
    "infogain_loss",
    "multinomial_logistic_loss",
    "silence",
    "sigmoid_cross_entropy_loss",
    "softmax_loss_ignore",
];

/// Checks the model with onnx.checker (full check), runs it on the named inputs (`name=path.npy` arguments) and saves
/// every output.
const RUN: &str = r#"
import sys, numpy as np, onnx, onnxruntime as ort
model_path, out = sys.argv[1:3]
onnx.checker.check_model(model_path, full_check=True)
feeds = {kv.split("=", 1)[0]: np.load(kv.split("=", 1)[1]).astype(np.float32) for kv in sys.argv[3:]}
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
wanted = {i.name for i in session.get_inputs()}
for name, value in zip(names, session.run(names, {k: v for k, v in feeds.items() if k in wanted})):
    np.save(f"{out}/{name}.npy", np.asarray(value, dtype=np.float32))
"#;

enum Outcome {
    Matched(f64),
    NotBuilt(String),
    NotExported(String),
    PhaseDependent,
}

fn run_case(dir: &Path) -> Outcome {
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let kind = case["type"].as_str().unwrap();
    if case["phase"] == "TRAIN" && TRAIN_ONLY_DIFFERS.contains(&kind) {
        return Outcome::PhaseDependent;
    }
    let param = caffemodel::text::read_net_upgraded(&dir.join("net.prototxt"), &Schema::builtin()).unwrap();
    let mut net = match Net::new(&param, &NetOptions::test()) {
        Ok(net) => net,
        Err(e) => return Outcome::NotBuilt(e.to_string()),
    };
    let model = caffemodel::ModelFile::open(dir.join("weights.caffemodel")).unwrap();
    if let Err(e) = net.copy_from(&clikit::engine_weights(&model.net().unwrap())) {
        return Outcome::NotBuilt(e.to_string());
    }
    let onnx = match export(&param, &net, &ExportOptions::default()) {
        Ok(onnx) => onnx,
        Err(e @ (ExportError::Layer { .. } | ExportError::NoOutputs)) => return Outcome::NotExported(e.to_string()),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.onnx");
    write(onnx, &path, EXTERNAL_THRESHOLD).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let feeds = case["bottoms"].as_array().unwrap().iter().map(|b| {
        format!(
            "{}={}",
            b.as_str().unwrap(),
            dir.join("bottom")
                .join(format!("{}.npy", b.as_str().unwrap()))
                .display()
        )
    });
    let status = Command::new("python3")
        .args(["-c", RUN])
        .arg(&path)
        .arg(&out)
        .args(feeds)
        .status()
        .unwrap();
    assert!(status.success(), "{}: onnxruntime failed", dir.display());
    let mut worst = 0.0f64;
    for top in case["tops"].as_array().unwrap() {
        let top = top.as_str().unwrap();
        let theirs = sparse::read_npy::<f32>(dir.join("top").join(format!("{top}.npy"))).unwrap();
        let ours = sparse::read_npy::<f32>(out.join(format!("{top}.npy")))
            .unwrap_or_else(|e| panic!("{}: top {top}: {e}", dir.display()));
        assert_eq!(ours.shape, theirs.shape, "{}: shape of top {top}", dir.display());
        worst = worst.max(relative_error(&ours.data, &theirs.data));
    }
    Outcome::Matched(worst)
}

#[test]
fn inference_layers_export_with_caffes_outputs() {
    let Some(fixtures) = testkit::fixtures() else { return };
    if !testkit::python_has(&["onnx", "onnxruntime", "numpy"]) {
        return;
    }
    let root = fixtures.join("golden/layers");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("INDEX.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let (mut matched, mut not_built) = (0, 0);
    for case in index["cases"].as_array().unwrap() {
        let name = case.as_str().unwrap();
        let listed = NOT_EXPORTED.contains(&name);
        match run_case(&root.join(name)) {
            Outcome::Matched(error) => {
                eprintln!("{name}: relative error {error:.2e}");
                matched += 1;
                if error.is_nan() || error > TOLERANCE {
                    failures.push(format!("{name}: relative error {error:e}"));
                }
                if listed {
                    failures.push(format!("{name}: exports now: take it off NOT_EXPORTED"));
                }
            }
            Outcome::NotExported(why) => {
                eprintln!("{name}: not exported: {why}");
                if !listed {
                    failures.push(format!("{name}: {why}"));
                }
            }
            // The engine does not run this layer yet (its own tests track that).
            Outcome::NotBuilt(why) => {
                eprintln!("{name}: not built: {why}");
                not_built += 1;
            }
            Outcome::PhaseDependent => eprintln!("{name}: recorded in TRAIN, where this layer differs"),
        }
    }
    eprintln!("{matched} cases matched, {not_built} not built by the engine");
    assert!(matched >= 53, "only {matched} cases compared");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// LSTM and RNN with a static input and `expose_hidden` (no golden case: the engine's own forward, itself checked
/// against Caffe on the plain cases and by finite differences on these, is the reference).
#[test]
fn recurrent_layers_with_static_input_and_exposed_state_match_the_engine() {
    if !testkit::python_has(&["onnx", "onnxruntime", "numpy"]) {
        return;
    }
    for (kind, states) in [("LSTM", 2), ("RNN", 1)] {
        let (steps, batch, hidden) = (4usize, 2usize, 3usize);
        let mut text = format!(
            "name: \"r\"\n\
             layer {{ name: \"in_x\" type: \"Input\" top: \"x\" input_param {{ shape {{ dim: {steps} dim: {batch} dim: 5 }} }} }}\n\
             layer {{ name: \"in_cont\" type: \"Input\" top: \"cont\" input_param {{ shape {{ dim: {steps} dim: {batch} }} }} }}\n\
             layer {{ name: \"in_s\" type: \"Input\" top: \"s\" input_param {{ shape {{ dim: {batch} dim: 6 }} }} }}\n"
        );
        let state_names = ["h0", "c0"];
        for name in &state_names[..states] {
            text += &format!(
                "layer {{ name: \"in_{name}\" type: \"Input\" top: \"{name}\" input_param {{ shape {{ dim: 1 dim: {batch} dim: {hidden} }} }} }}\n"
            );
        }
        let bottoms: String = state_names[..states]
            .iter()
            .map(|n| format!(" bottom: \"{n}\""))
            .collect();
        let tops = if states == 2 {
            " top: \"y\" top: \"hT\" top: \"cT\""
        } else {
            " top: \"y\" top: \"hT\""
        };
        text += &format!(
            "layer {{ name: \"L\" type: \"{kind}\" bottom: \"x\" bottom: \"cont\" bottom: \"s\"{bottoms}{tops} \
             recurrent_param {{ num_output: {hidden} expose_hidden: true weight_filler {{ type: \"uniform\" min: -0.5 max: 0.5 }} \
             bias_filler {{ type: \"uniform\" min: -0.2 max: 0.2 }} }} }}\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let prototxt = dir.path().join("net.prototxt");
        std::fs::write(&prototxt, &text).unwrap();
        let param = caffemodel::text::read_net_upgraded(&prototxt, &Schema::builtin()).unwrap();
        let mut net = Net::new(&param, &NetOptions::test()).unwrap();
        let values =
            |n: usize, seed: f32| -> Vec<f32> { (0..n).map(|i| ((i as f32 * 0.7 + seed).sin()) * 0.8).collect() };
        // A sequence start at t = 0 for both, and again at t = 2 for the second sample.
        let cont: Vec<f32> = (0..steps * batch)
            .map(|i| if i < batch || i == 2 * batch + 1 { 0.0 } else { 1.0 })
            .collect();
        let mut feeds = vec![
            ("x", vec![steps, batch, 5], values(steps * batch * 5, 0.1)),
            ("cont", vec![steps, batch], cont),
            ("s", vec![batch, 6], values(batch * 6, 0.5)),
        ];
        for (i, name) in state_names[..states].iter().enumerate() {
            feeds.push((name, vec![1, batch, hidden], values(batch * hidden, 1.0 + i as f32)));
        }
        let mut args = Vec::new();
        for (name, shape, data) in &feeds {
            net.set_input(name, shape, data).unwrap();
            let path = dir.path().join(format!("{name}.npy"));
            sparse::write_npy(&path, shape, data).unwrap();
            args.push(format!("{name}={}", path.display()));
        }
        net.forward().unwrap();
        let onnx = export(&param, &net, &ExportOptions::default()).unwrap();
        let model = dir.path().join("model.onnx");
        write(onnx, &model, EXTERNAL_THRESHOLD).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let status = Command::new("python3")
            .args(["-c", RUN])
            .arg(&model)
            .arg(&out)
            .args(&args)
            .status()
            .unwrap();
        assert!(status.success(), "{kind}: onnxruntime failed");
        let top_names = if states == 2 {
            vec!["y", "hT", "cT"]
        } else {
            vec!["y", "hT"]
        };
        for top in top_names {
            let ours = net.blob(top).unwrap();
            let theirs = sparse::read_npy::<f32>(out.join(format!("{top}.npy"))).unwrap();
            assert_eq!(theirs.shape, ours.shape(), "{kind}: {top}");
            let error = relative_error(&theirs.data, ours.data());
            assert!(error <= TOLERANCE, "{kind}: {top}: relative error {error:e}");
        }
    }
}
