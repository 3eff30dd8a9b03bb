//! `caffe-prune sweep` against real Caffe: a swept setting scores what Caffe scored for the same pruned net, the
//! CSV, plot and JSON agree, and the budget suggestion is measured.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_caffe-prune");

#[test]
fn a_swept_setting_scores_what_caffe_scored_and_the_outputs_agree() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    let (csv, svg) = (tmp.path().join("sweep.csv"), tmp.path().join("sweep.svg"));
    let out = Command::new(BIN)
        .arg("sweep")
        .arg("--net")
        .arg(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"))
        .arg("--weights")
        .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
        .arg("--data")
        .arg(golden.join("data/mnist_test_lmdb"))
        .args([
            "--grid",
            "ip1=0.05",
            "--grid",
            "conv2=0.2,1",
            "--budget",
            "0.5",
            "--json",
            "--csv",
        ])
        .arg(&csv)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // The unpruned net and ip1 alone at 0.05 are two of Caffe's own evaluations (golden t_1_1_0.05_1).
    let caffe = |dir: &str| -> f64 {
        let text = std::fs::read_to_string(golden.join(dir).join("result.json")).unwrap();
        let result: serde_json::Value = serde_json::from_str(&text).unwrap();
        result["caffe_test"]["accuracy_printed"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(report["images"], 10000);
    assert_eq!(report["dense"]["top1"].as_f64().unwrap(), caffe("lenet/lenet_mnist_v2"));
    let rows = report["rows"].as_array().unwrap();
    let layers: Vec<(&str, f64)> = rows
        .iter()
        .map(|r| (r["layer"].as_str().unwrap(), r["keep"].as_f64().unwrap()))
        .collect();
    assert_eq!(layers, [("ip1", 0.05), ("conv2", 0.2), ("conv2", 1.0)]);
    assert_eq!(
        rows[0]["top1"].as_f64().unwrap(),
        caffe("pruned/lenet_mnist_v2/t_1_1_0.05_1")
    );
    // ip1 keeps floor(399999 * 0.05) = 19999 of 400000 weights (GOLDEN.md's count); keep 1 leaves conv2 as it is.
    assert!((rows[0]["sparsity"].as_f64().unwrap() - (1.0 - 19999.0 / 400000.0)).abs() < 1e-12);
    assert_eq!(rows[2]["sparsity"].as_f64().unwrap(), 0.0);
    assert_eq!(rows[2]["top1"], report["dense"]["top1"]);

    // The suggestion is measured, within the budget, and prunes something.
    let s = &report["suggestion"];
    assert!(s["within_budget"].as_bool().unwrap());
    assert!(s["drop_points"].as_f64().unwrap() <= 0.5 + 1e-9);
    assert!(s["kept_fraction"].as_f64().unwrap() < 1.0);
    assert_eq!(s["keep"].as_object().unwrap().len(), 2);

    let csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "layer,keep,sparsity,top1,top5,loss");
    assert_eq!(lines.len(), 4);
    assert!(lines[1].starts_with("ip1,0.05,0.950002,"), "{}", lines[1]);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2, "one line per layer");
}

#[test]
fn bad_sweep_arguments_fail_with_one_line() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let base_code = |extra: &[&str], code: i32| {
        let out = Command::new(BIN)
            .arg("sweep")
            .arg("--net")
            .arg(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"))
            .arg("--weights")
            .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
            .arg("--data")
            .arg(golden.join("data/mnist_test_lmdb"))
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        err
    };
    let base = |extra: &[&str]| base_code(extra, 1);
    // A flag of eval's that sweep does not take is a usage error.
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("p.npy");
    let err = base_code(&["--grid", "ip1=0.5", "--predictions", pred.to_str().unwrap()], 2);
    assert!(err.contains("unexpected argument '--predictions'"), "{err}");
    assert!(!pred.exists());
    // An output that is an input, under another spelling, is refused before any evaluation.
    let weights = fx.join("models/lenet_mnist_v2/./lenet_iter_10000.caffemodel");
    assert!(base(&["--grid", "ip1=0.5", "--csv", weights.to_str().unwrap()])
        .contains("refusing to write an output over the input"));
    assert!(base(&["--grid", "pool1=0.5"]).contains("not a prunable layer"));
    assert!(base(&["--grid", "ip1=1.5"]).contains("not in [0, 1]"));
    assert!(base(&["--grid", "ip1"]).contains("LAYER="));
    assert!(base(&["--grid", "ip1=0.5", "--plot", "x.pdf"]).contains("SVG or PNG"));
}

#[test]
fn plots_are_svg_or_png_by_name_and_other_names_are_refused_first() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    let run = |plot: &std::path::Path| {
        Command::new(BIN)
            .arg("sweep")
            .arg("--net")
            .arg(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"))
            .arg("--weights")
            .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
            .arg("--data")
            .arg(golden.join("data/mnist_test_lmdb"))
            .args(["--grid", "ip1=0.05", "--quiet", "--plot"])
            .arg(plot)
            .output()
            .unwrap()
    };
    let pdf = tmp.path().join("sweep.pdf");
    let out = run(&pdf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("give a .svg or .png file name"), "{stderr}");
    assert!(!pdf.exists());
    let png = tmp.path().join("sweep.png");
    let out = run(&png);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}
