//! caffe-inspect as a user runs it: JSON figures against the fixtures' MANIFEST, and bad input.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn inspect(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caffe-inspect"))
        .args(args)
        .output()
        .unwrap()
}

fn json(path: &Path) -> Value {
    let out = inspect(&[path, Path::new("--json")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn json_counts_equal_the_manifest() {
    let Some(dir) = testkit::fixtures() else { return };
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("MANIFEST.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (rel, facts) in manifest["models"].as_object().unwrap() {
        let Some(layers) = facts.get("layers") else { continue };
        let ours = json(&dir.join(rel));
        assert_eq!(ours["format"], facts["format"], "{rel}");
        assert_eq!(ours["total"]["params"], facts["total"]["params"], "{rel}");
        assert_eq!(ours["total"]["nonzero"], facts["total"]["nonzero"], "{rel}");
        let our_layers = ours["layers"].as_array().unwrap();
        assert_eq!(our_layers.len(), layers.as_array().unwrap().len(), "{rel}");
        for (o, t) in our_layers.iter().zip(layers.as_array().unwrap()) {
            assert_eq!(o["name"], t["name"], "{rel}");
            assert_eq!(o["type"], t["type"], "{rel}");
            let ob = o["blobs"].as_array().unwrap();
            let tb = t["blobs"].as_array().unwrap();
            assert_eq!(ob.len(), tb.len(), "{rel}");
            for (a, b) in ob.iter().zip(tb) {
                assert_eq!(a["shape"], b["shape"], "{rel}");
                assert_eq!(a["count"], b["count"], "{rel}");
                assert_eq!(a["nonzero"], b["nonzero"], "{rel}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn dense_model_figures_follow_from_the_counts() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    let report = json(&model);
    // LeNet: conv1 20x1x5x5+20, conv2 50x20x5x5+50, ip1 500x800+500, ip2 10x500+10 = 431,080 parameters.
    assert_eq!(report["total"]["params"], 431_080);
    assert_eq!(report["format"], "V2");
    assert_eq!(report["layer_count"], 9);
    // Dense weights: every value is its own gap entry, 4 + 1 bytes each.
    assert_eq!(report["total"]["dense_bytes"], 431_080 * 4);
    assert_eq!(report["total"]["sparse_bytes"], 431_080 * 5);
    let text = inspect(&[&model]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("format:  V2") && text.contains("ip1") && text.contains("500x800, 500"),
        "{text}"
    );
}

#[test]
fn solverstate_binaryproto_and_prototxt_get_summaries() {
    let Some(dir) = testkit::fixtures() else { return };
    let state = json(&dir.join("models/lenet_mnist_v1_2014/lenet_iter_10000.solverstate"));
    assert_eq!(state["iter"], 10000);
    assert_eq!(state["history"].as_array().unwrap().len(), 8);
    let mean = json(&dir.join("models/cifar10_quick_v1_2014/mean.binaryproto"));
    assert_eq!(mean["shape"], serde_json::json!([1, 3, 32, 32]));
    assert_eq!(mean["count"], 3072);
    let net = json(&dir.join("models/mtcnn_det1/det1.prototxt"));
    assert_eq!(net["upgraded_from_legacy"], true);
    assert_eq!(net["layers"][0]["type"], "Input");
    let check = inspect(&[
        &dir.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"),
        Path::new("--prototxt"),
        &dir.join("models/bvlc_examples/mnist/lenet_train_test.prototxt"),
    ]);
    let text = String::from_utf8(check.stdout).unwrap();
    assert!(text.contains("layers given weights: conv1, conv2, ip1, ip2"), "{text}");
}

fn expect_failure(path: &Path, what: &str) {
    let out = inspect(&[path]);
    assert_eq!(out.status.code(), Some(1), "{}", path.display());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("caffe-inspect: error: "), "{err}");
    assert!(err.contains(&path.display().to_string()) && err.contains(what), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_one_line_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    expect_failure(&write("empty.caffemodel", b""), "file is empty");
    expect_failure(
        &write("image.caffemodel", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0"),
        "PNG image",
    );
    expect_failure(
        &write("huge.caffemodel", &[0xa2, 0x06, 0x80, 0x80, 0x80, 0x80, 0x0c, 0x00]),
        "at byte 0",
    );
    expect_failure(&write("typo.prototxt", b"layer { nam: \"x\" }\n"), ":1:9:");
    expect_failure(dir.path(), "is a directory");
    expect_failure(&dir.path().join("missing.caffemodel"), "No such file");
    let missing = inspect(&[&dir.path().join("missing.caffemodel")]);
    let err = String::from_utf8(missing.stderr).unwrap();
    assert_eq!(err.matches("No such file").count(), 1, "the cause is said once: {err}");
    let model =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel")).unwrap();
    expect_failure(&write("cut.caffemodel", &model[..model.len() / 2]), "at byte");
}

#[test]
fn threads_quiet_net_and_a_worked_example() {
    let help = Command::new(env!("CARGO_BIN_EXE_caffe-inspect"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for needle in ["--threads <N>", "--quiet", "Example", "--net <NET.prototxt>"] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
    // --prototxt stays as an alias of --net.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    for flag in ["--net", "--prototxt"] {
        let o = Command::new(env!("CARGO_BIN_EXE_caffe-inspect"))
            .arg(root.join("lenet.caffemodel"))
            .arg(flag)
            .arg(root.join("lenet.prototxt"))
            .args(["--threads", "1", "-q"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{flag}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stderr.is_empty());
    }
}

/// testdata's LeNet with every weight blob pruned to `keep` by magnitude and shared to `bits` bits.
fn quantized_lenet(keep: f64, bits: u32) -> Vec<u8> {
    let path = testkit::repo_root().join("testdata/lenet.caffemodel");
    let model = caffemodel::ModelFile::open(&path).unwrap();
    let mut net = model.net().unwrap();
    let targets: Vec<(usize, Vec<f32>)> = net
        .layers()
        .iter()
        .filter(|l| caffemodel::is_prunable_type(&l.modern_type_name()))
        .map(|l| (l.index, l.blobs()[0].data().to_vec_f32()))
        .collect();
    for (index, values) in targets {
        let shared = quantize::synthetic::prune_and_share(&values, keep, bits);
        net.set_blob_data(index, 0, shared).unwrap();
    }
    net.to_bytes()
}

#[test]
fn a_quantized_model_and_its_caffez_get_deep_compressions_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, coded) = (tmp.path().join("q.caffemodel"), tmp.path().join("q.caffez"));
    std::fs::write(&model, quantized_lenet(0.1, 5)).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_caffe-inspect"))
        .arg(&model)
        .output()
        .unwrap();
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("weight bits P+Q+H") && text.contains("as .caffez"),
        "{text}"
    );

    let from_model = json(&model);
    let table = &from_model["compression"];
    let rows = table["layers"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{table}");
    // The file a caffez writer makes of it is exactly what the table says.
    let file = caffemodel::ModelFile::open(&model).unwrap();
    let compressed = caffez::compress(&file).unwrap();
    std::fs::write(&coded, &compressed.bytes).unwrap();
    assert_eq!(table["caffez_bytes"].as_u64(), Some(compressed.bytes.len() as u64));
    for row in rows {
        // The width the codebook needs: k-means may leave fewer than 2^5 - 1 values.
        assert!((1..=5).contains(&row["weight_bits_pq"].as_u64().unwrap()), "{row}");
        assert!((row["kept_percent"].as_f64().unwrap() - 10.0).abs() < 0.5, "{row}");
        // Index and weight bits per kept weight add up to the coded streams, within the section's codebook and
        // framing (a few hundred bytes at most for LeNet's layers).
        let kept = row["weights"].as_f64().unwrap() * row["kept_percent"].as_f64().unwrap() / 100.0;
        let streams = kept * (row["weight_bits_pqh"].as_f64().unwrap() + row["index_bits_pqh"].as_f64().unwrap()) / 8.0;
        let bytes = row["bytes_pqh"].as_f64().unwrap();
        assert!(streams < bytes && bytes < streams + 200.0, "{row}");
    }

    // The .caffez itself: the same table, and its own size beside the model's.
    let from_caffez = json(&coded);
    assert_eq!(
        from_caffez["caffez_bytes"].as_u64(),
        Some(compressed.bytes.len() as u64)
    );
    assert_eq!(from_caffez["size"], from_model["size"]);
    assert_eq!(from_caffez["compression"]["layers"], table["layers"]);

    // A dense model has no such table.
    let dense = json(&testkit::repo_root().join("testdata/lenet.caffemodel"));
    assert!(dense.get("compression").is_none());

    // A damaged .caffez: one line naming the section and offset.
    let mut bytes = compressed.bytes.clone();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x40;
    std::fs::write(&coded, &bytes).unwrap();
    let out = inspect(&[&coded]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("section") && err.contains("byte") && err.lines().count() == 1,
        "{err}"
    );
}
