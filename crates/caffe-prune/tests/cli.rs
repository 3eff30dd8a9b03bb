//! caffe-prune end to end: the reference rule on real models (kept counts and cut values of real Caffe's reference
//! run), byte-level fidelity of the output, and the NPZ exports read by numpy and scipy.

use caffemodel::ModelFile;
use std::path::Path;
use std::process::{Command, Output};

fn run(bin: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(bin);
    for a in args {
        cmd.arg(a);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{bin}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

const PRUNE: &str = env!("CARGO_BIN_EXE_caffe-prune");

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let file = ModelFile::open(path).unwrap();
    let net = file.net().unwrap();
    net.layers()
        .iter()
        .filter(|l| !l.blobs().is_empty())
        .map(|l| (l.name().to_string(), l.blobs()[0].data().to_vec_f32()))
        .collect()
}

#[test]
fn golden_settings_keep_the_counts_and_cuts_of_the_reference_run() {
    let Some(dir) = testkit::fixtures() else { return };
    let models = [
        ("lenet_mnist_v2", "models/lenet_mnist_v2/lenet_iter_10000.caffemodel"),
        ("lenet_mnist_v1_2014", "models/lenet_mnist_v1_2014/lenet_iter_10000"),
        (
            "lenet_fashion",
            "models/lenet_fashion/lenet_fashion_iter_10000.caffemodel",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (model, path) in models {
        for setting in ["t_0.3_0.1_0.01_0.2", "t_1_1_0.05_1", "t_0.5_0.2_0.05_0.3"] {
            let result: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("golden/pruned/{model}/{setting}/result.json"))).unwrap(),
            )
            .unwrap();
            let keep: Vec<String> = result["keep_fractions"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(l, t)| format!("{l}={}", t.as_f64().unwrap()))
                .collect();
            let out = tmp.path().join("p.caffemodel");
            run(PRUNE, &[&dir.join(path), &"--keep", &keep.join(","), &"-o", &out]);
            let before = weights(&dir.join(path));
            let after = weights(&out);
            for ((name, w0), (_, w1)) in before.iter().zip(&after) {
                let facts = &result["layers"][name.as_str()];
                let kept = w1.iter().filter(|v| **v != 0.0).count() as u64;
                assert_eq!(kept, facts["kept"].as_u64().unwrap(), "{model} {setting} {name}");
                let t = facts["t"].as_f64().unwrap();
                if t < 1.0 {
                    // The cut the reference found, and the rule: kept exactly where |w| > cut.
                    let cut =
                        f32::from_bits(u32::from_str_radix(facts["cut_float32_hex"].as_str().unwrap(), 16).unwrap());
                    assert_eq!(
                        prune::keep_fraction_cut(w0, t).unwrap(),
                        Some(cut),
                        "{model} {setting} {name}"
                    );
                    for (a, b) in w0.iter().zip(w1) {
                        let expected = if a.abs() > cut { *a } else { 0.0 };
                        assert_eq!(b.to_bits(), expected.to_bits());
                    }
                } else {
                    assert!(w0.iter().zip(w1).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}

/// Byte ranges of every layer's first blob payload in `path`: (offset, len).
fn payload_ranges(path: &Path) -> Vec<(usize, usize)> {
    let file = ModelFile::open(path).unwrap();
    let net = file.net().unwrap();
    net.layers()
        .iter()
        .filter_map(|layer| {
            layer
                .blobs()
                .first()
                .map(|blob| blob.data().packed_f32_range().unwrap())
        })
        .map(|range| (range.start as usize, (range.end - range.start) as usize))
        .collect()
}

#[test]
fn output_differs_from_input_only_in_pruned_payloads_for_both_generations() {
    let Some(dir) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for path in [
        "models/lenet_mnist_v2/lenet_iter_10000.caffemodel",
        "models/lenet_mnist_v1_2014/lenet_iter_10000",
    ] {
        let input = dir.join(path);
        let out = tmp.path().join("p.caffemodel");
        run(
            PRUNE,
            &[&input, &"--keep", &"conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2", &"-o", &out],
        );
        let (a, b) = (std::fs::read(&input).unwrap(), std::fs::read(&out).unwrap());
        assert_eq!(a.len(), b.len());
        let ranges = payload_ranges(&input);
        assert_eq!(ranges.len(), 4);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if x != y {
                assert!(
                    ranges.iter().any(|&(o, l)| i >= o && i < o + l),
                    "{path}: byte {i} changed outside a payload"
                );
            }
        }
        // Same input, same bytes out.
        let again = tmp.path().join("q.caffemodel");
        run(
            PRUNE,
            &[
                &input,
                &"--keep",
                &"conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2",
                &"-o",
                &again,
            ],
        );
        assert!(std::fs::read(&again).unwrap() == b);
    }
}

/// The tutorial's decoder, written from the rule in the issue: for each entry emit `gap` zeros, then the value.
const PY_CHECK: &str = r#"
import sys, numpy as np, scipy.sparse as sp, os
npz, raw_dir, scipy_dir, bits = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
d = np.load(npz, allow_pickle=False)
for layer in ["conv1", "conv2", "ip1", "ip2"]:
    vals, gaps, shape = d[layer + "_W"], d[layer + "_W_indx"], d[layer + "_W_shape"]
    assert gaps.dtype == (np.uint8 if bits <= 8 else np.uint16), gaps.dtype
    assert vals.dtype == np.float32 and shape.dtype == np.int64
    assert int(gaps.max()) <= 2 ** bits - 1
    out = []
    for v, g in zip(vals, gaps):
        out.extend([0.0] * int(g))
        out.append(v)
    dense = np.array(out, dtype=np.float32).reshape(shape)
    expected = np.fromfile(os.path.join(raw_dir, layer + ".f32"), dtype="<f4").reshape(shape)
    assert np.array_equal(dense, expected), layer
    assert np.array_equal(d[layer + "_b"], np.fromfile(os.path.join(raw_dir, layer + "_b.f32"), dtype="<f4"))
    m = sp.load_npz(os.path.join(scipy_dir, layer + ".npz"))
    assert m.format == "csc", m.format
    assert np.array_equal(m.toarray(), expected.reshape(expected.shape[0], -1)), layer
print("ok")
"#;

#[test]
fn npz_exports_load_in_numpy_and_scipy_and_import_back_identically() {
    let Some(dir) = testkit::fixtures() else { return };
    if !testkit::python_has(&["numpy", "scipy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let input = dir.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let pruned = tmp.path().join("pruned.caffemodel");
    for bits in [8u8, 5, 12] {
        let npz = tmp.path().join(format!("pruned{bits}.npz"));
        run(
            PRUNE,
            &[
                &input,
                &"--keep",
                &"conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2",
                &"-o",
                &pruned,
                &"--npz",
                &npz,
                &"--index-bits",
                &bits.to_string(),
            ],
        );
        // Without -o the weights are pruned where they lie in the input, not in a copy: the same npz.
        let npz_alone = tmp.path().join(format!("alone{bits}.npz"));
        run(
            PRUNE,
            &[
                &input,
                &"--keep",
                &"conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2",
                &"--npz",
                &npz_alone,
                &"--index-bits",
                &bits.to_string(),
            ],
        );
        assert!(
            std::fs::read(&npz_alone).unwrap() == std::fs::read(&npz).unwrap(),
            "bits {bits}"
        );
        // The expected blobs, straight from the pruned caffemodel, as raw little-endian floats for Python.
        let raw = tmp.path().join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        let file = ModelFile::open(&pruned).unwrap();
        for layer in file.net().unwrap().layers() {
            let blobs = layer.blobs();
            if blobs.is_empty() {
                continue;
            }
            let bytes = |i: usize| -> Vec<u8> {
                blobs[i]
                    .data()
                    .to_vec_f32()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            };
            std::fs::write(raw.join(format!("{}.f32", layer.name())), bytes(0)).unwrap();
            std::fs::write(raw.join(format!("{}_b.f32", layer.name())), bytes(1)).unwrap();
        }
        let scipy_dir = tmp.path().join("scipy");
        let pruned_file = ModelFile::open(&pruned).unwrap();
        caffemodel::npz::export_scipy(
            &pruned_file.net().unwrap(),
            &scipy_dir,
            caffemodel::npz::ScipyFormat::Csc,
        )
        .unwrap();
        let py = Command::new("python3")
            .args(["-c", PY_CHECK])
            .arg(&npz)
            .arg(&raw)
            .arg(&scipy_dir)
            .arg(bits.to_string())
            .output()
            .unwrap();
        assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
        // prune -> export -> import gives the pruned file byte for byte.
        // (caffe-convert IN.npz --into BASE runs exactly this; its own CLI test covers the command line.)
        let base = ModelFile::open(&input).unwrap();
        let mut net = base.net().unwrap();
        caffemodel::npz::import_npz(&mut net, &npz).unwrap();
        assert!(net.to_bytes() == std::fs::read(&pruned).unwrap(), "bits {bits}");
    }
}

#[test]
fn global_std_and_filter_rules_run_and_report() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p.caffemodel");
    let json = |args: &[&dyn AsRef<std::ffi::OsStr>]| -> serde_json::Value {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&model, &"-o", &out, &"--json"];
        all.extend_from_slice(args);
        serde_json::from_slice(&run(PRUNE, &all).stdout).unwrap()
    };
    let global = json(&[&"--global-keep", &"0.1"]);
    // One cut across 430,500 weights: floor(430499 * 0.1) = 43049 kept (distinct random weights, no ties).
    assert_eq!(global["total"]["nonzero_after"], 43_049);
    let std = json(&[&"--std", &"1.0"]);
    for layer in std["layers"].as_array().unwrap() {
        // Uniform weights on [-a, a]: |w| > std = a / sqrt(3) keeps about 1 - 1/sqrt(3) = 42%.
        let keep = layer["achieved_keep"].as_f64().unwrap();
        assert!((keep - 0.4226).abs() < 0.05, "{layer}");
    }
    let filters = json(&[&"--filters", &"--keep", &"conv2=0.5"]);
    // 50 filters: k = floor(49 * 0.5) = 24, so the 24 filters with norm above the 24th largest stay, 26 go.
    assert_eq!(filters["layers"][0]["dropped_filters"], 26);
    let file = ModelFile::open(&out).unwrap();
    let net = file.net().unwrap();
    let conv2 = net.layers().into_iter().find(|l| l.name() == "conv2").unwrap();
    let w = conv2.blobs()[0].data().to_vec_f32();
    let b = conv2.blobs()[1].data().to_vec_f32();
    let zero_rows: Vec<usize> = (0..50)
        .filter(|&r| w[r * 500..(r + 1) * 500].iter().all(|v| *v == 0.0))
        .collect();
    assert_eq!(zero_rows.len(), 26);
    assert!(zero_rows.iter().all(|&r| b[r] == 0.0));
}

#[test]
fn without_an_output_the_report_is_printed_and_nothing_written() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    let before = std::fs::read(&model).unwrap();
    let o = run(PRUNE, &[&model, &"--keep", &"conv1=0.3,ip1=0.01", &"--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report.to_string().contains("conv1"));
    assert!(std::fs::read(&model).unwrap() == before);
}

#[test]
fn an_output_is_never_an_input() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.caffemodel");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel"),
        &model,
    )
    .unwrap();
    let before = std::fs::read(&model).unwrap();
    let link = tmp.path().join("link.caffemodel");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let dotted = tmp.path().join("./m.caffemodel");
    let other = tmp.path().join("o.caffemodel");
    for outputs in [
        vec!["-o", dotted.to_str().unwrap()],
        vec!["--npz", link.to_str().unwrap()],
        vec!["-o", other.to_str().unwrap(), "--npz", other.to_str().unwrap()],
    ] {
        let mut args = vec![model.to_str().unwrap(), "--keep", "conv1=0.3"];
        args.extend(&outputs);
        let o = Command::new(PRUNE).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{outputs:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("refusing") || err.contains("named as two outputs"),
            "{outputs:?}: {err}"
        );
        assert!(std::fs::read(&model).unwrap() == before, "{outputs:?}");
        assert!(!other.exists());
    }
}

#[test]
fn bad_rules_are_clear_errors() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p.caffemodel");
    for (args, message) in [
        (vec!["--keep", "conv9=0.3"], "no layer named 'conv9'"),
        (vec!["--keep", "conv1=1.5"], "must be in [0, 1]"),
        (vec!["--keep", "conv1"], "is not LAYER=FRACTION"),
        (vec!["--keep", "relu1=0.5"], "layer 'relu1' has no weights"),
        (vec![], "no rule given"),
    ] {
        let o = Command::new(PRUNE)
            .arg(&model)
            .args(&args)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(err.contains(message) && err.lines().count() == 1, "{args:?}: {err}");
        assert!(!out.exists());
    }
}

#[test]
fn every_command_has_threads_quiet_and_a_worked_example() {
    for sub in [
        None,
        Some("eval"),
        Some("forward"),
        Some("sweep"),
        Some("train"),
        Some("retrain"),
    ] {
        let help = Command::new(PRUNE).args(sub).arg("--help").output().unwrap();
        let text = String::from_utf8(help.stdout).unwrap();
        for needle in ["--threads <N>", "--quiet", "Example", "--deterministic"] {
            assert!(text.contains(needle), "{sub:?} --help lacks {needle}");
        }
    }
    // --quiet: results on stdout, nothing on stderr; --threads 0 is a usage error.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    let o = Command::new(PRUNE)
        .arg(&model)
        .args(["--keep", "conv1=0.5", "--threads", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success() && !o.stdout.is_empty() && o.stderr.is_empty());
    let o = Command::new(PRUNE)
        .arg(&model)
        .args(["--keep", "conv1=0.5", "--threads", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn clap_usage_errors_are_one_line_with_exit_code_2() {
    for args in [
        vec![
            "retrain",
            "--solver",
            "s",
            "--weights",
            "w",
            "--keep",
            "ip1=0.1",
            "-o",
            "o",
            "--distill-weight",
            "2",
        ],
        vec!["sweep", "--bogus"],
        vec!["eval", "--threads", "many"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caffe-prune"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("caffe-prune: error: ") && stderr.contains("see caffe-prune --help"),
            "{stderr}"
        );
    }
}
