//! `caffe-prune forward --backward`: real Caffe's gradients (the fixtures' layer zoo) come out of the command line,
//! as pycaffe's `net.backward()` gives them.

use std::path::Path;
use std::process::Command;

use testkit::relative_error;

const BIN: &str = env!("CARGO_BIN_EXE_caffe-prune");

fn check_case(root: &Path, name: &str, give_top_diffs: bool) {
    let case = root.join(name);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("case.json")).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("forward")
        .arg("--net")
        .arg(case.join("net.prototxt"))
        .arg("--weights")
        .arg(case.join("weights.caffemodel"))
        .arg("-o")
        .arg(out.path())
        .arg("--backward")
        .current_dir(&case);
    for b in spec["bottoms"].as_array().unwrap() {
        let b = b.as_str().unwrap();
        cmd.arg("--input").arg(format!(
            "{b}={}",
            case.join("bottom").join(format!("{b}.npy")).display()
        ));
    }
    if give_top_diffs {
        for t in spec["tops"].as_array().unwrap() {
            let t = t.as_str().unwrap();
            cmd.arg("--top-diff").arg(format!(
                "{t}={}",
                case.join("top_diff").join(format!("{t}.npy")).display()
            ));
        }
    }
    let run = cmd.output().unwrap();
    assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
    let mut compared = 0;
    for entry in std::fs::read_dir(case.join("bottom_diff")).unwrap() {
        let file = entry.unwrap().path();
        let theirs = sparse::read_npy::<f32>(&file).unwrap();
        let ours = sparse::read_npy::<f32>(out.path().join("diff").join(file.file_name().unwrap())).unwrap();
        assert_eq!(ours.shape, theirs.shape, "{name}: {}", file.display());
        let error = relative_error(&ours.data, &theirs.data);
        assert!(error <= 1e-3, "{name}: {}: {error:e}", file.display());
        compared += 1;
    }
    if let Ok(entries) = std::fs::read_dir(case.join("param_diff")) {
        for entry in entries {
            let file = entry.unwrap().path();
            let theirs = sparse::read_npy::<f32>(&file).unwrap();
            let ours =
                sparse::read_npy::<f32>(out.path().join("param_diff/L").join(file.file_name().unwrap())).unwrap();
            let error = relative_error(&ours.data, &theirs.data);
            assert!(error <= 1e-3, "{name}: param {}: {error:e}", file.display());
            compared += 1;
        }
    }
    assert!(compared > 0, "{name}: nothing compared");
}

#[test]
fn backward_gives_caffes_gradients() {
    let Some(fx) = testkit::fixtures() else { return };
    let root = fx.join("golden/layers");
    // Convolution and InnerProduct (bottom and parameter gradients), an LSTM (propagate_down false on cont).
    for name in ["conv_rect", "inner_product_axis", "lstm", "scale_two_bottoms"] {
        check_case(&root, name, true);
    }
    // A loss: no top gradient given, the loss weight seeds it.
    check_case(&root, "euclidean_loss", false);
}

#[test]
fn bad_top_diffs_are_refused_before_anything_is_written() {
    let Some(fx) = testkit::fixtures() else { return };
    let case = fx.join("golden/layers/conv_rect");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("blobs");
    let run = |extra: &[String]| {
        Command::new(BIN)
            .arg("forward")
            .arg("--net")
            .arg(case.join("net.prototxt"))
            .arg("--weights")
            .arg(case.join("weights.caffemodel"))
            .arg("--input")
            .arg(format!("x={}", case.join("bottom/x.npy").display()))
            .arg("-o")
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let wrong_shape = format!("y={}", case.join("bottom/x.npy").display());
    for (extra, code, expected) in [
        (vec!["--top-diff".to_string(), wrong_shape.clone()], 2, "--backward"),
        (
            vec!["--backward".into(), "--top-diff".into(), wrong_shape],
            1,
            "has shape",
        ),
        (
            vec!["--backward".into(), "--top-diff".into(), "nope=x.npy".into()],
            1,
            "x.npy",
        ),
        (
            vec!["--backward".into(), "--top-diff".into(), "y".into()],
            1,
            "NAME=g.npy",
        ),
    ] {
        let r = run(&extra);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(code), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!dir.exists(), "{extra:?}: nothing written");
    }
}
