//! `caffe-prune eval` and `forward` against real Caffe's outputs: every predicted label, accuracy and loss on the
//! full MNIST / Fashion-MNIST test sets, before and after pruning; one deploy net's blobs.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_caffe-prune");

fn eval(golden: &Path, net: &str, weights: &Path, data: &str, predictions: Option<&Path>) -> serde_json::Value {
    let mut cmd = Command::new(BIN);
    cmd.arg("eval")
        .arg("--net")
        .arg(golden.join(net))
        .arg("--weights")
        .arg(weights);
    cmd.arg("--data").arg(golden.join(data)).arg("--json");
    if let Some(p) = predictions {
        cmd.arg("--predictions").arg(p);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn predictions_never_replace_an_input() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    // The weights under test are a copy, so a regression cannot damage the fixtures.
    let weights = tmp.path().join("w.caffemodel");
    std::fs::copy(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"), &weights).unwrap();
    let before = std::fs::read(&weights).unwrap();
    let lmdb = golden.join("data/mnist_test_lmdb");
    for target in [
        weights.clone(),
        tmp.path().join("./w.caffemodel"),
        lmdb.join("data.mdb"),
    ] {
        let out = Command::new(BIN)
            .arg("eval")
            .arg("--net")
            .arg(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"))
            .arg("--weights")
            .arg(&weights)
            .arg("--data")
            .arg(&lmdb)
            .arg("--predictions")
            .arg(&target)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{target:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing to write an output"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(std::fs::read(&weights).unwrap() == before, "the weights were replaced");
}

#[test]
fn the_data_layer_follows_caffes_rules_for_stage_and_level() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    // The golden TEST net with a second Data layer for stage "other" and level >= 2, reading nothing that exists.
    let net = std::fs::read_to_string(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt")).unwrap();
    let net = net.replacen(
        "  include { phase: TEST }\n  transform_param",
        "  include { phase: TEST not_stage: \"other\" max_level: 1 }\n  transform_param",
        1,
    );
    let other = "layer {\n  name: \"other\"\n  type: \"Data\"\n  top: \"data\"\n  top: \"label\"\n  \
                 include { phase: TEST stage: \"other\" }\n  include { phase: TEST min_level: 2 }\n  \
                 data_param { source: \"no/such/lmdb\" batch_size: 10 backend: LMDB }\n}\n";
    let net = net.replacen("layer {", &format!("{other}layer {{"), 1);
    let path = tmp.path().join("staged.prototxt");
    std::fs::write(&path, net).unwrap();
    let weights = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .arg("eval")
            .arg("--net")
            .arg(&path)
            .arg("--weights")
            .arg(&weights)
            .args(extra)
            .output()
            .unwrap()
    };
    // Without a stage, level 0: the original layer, fed by --data.
    let data = golden.join("data/mnist_test_lmdb");
    let o = run(&["--data", data.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["images"], 10000);
    // With the stage, or at level 2, the other layer: its missing source is the error.
    for extra in [["--stage", "other"], ["--level", "2"]] {
        let o = run(&extra);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("no/such/lmdb"), "{extra:?}: {err}");
    }
}

/// Caffe prints loss with 6 significant digits ("0.0272693"): ours must print the same.
fn same_as_printed(ours: f64, printed: &str) {
    let caffe: f64 = printed.split_whitespace().next().unwrap().parse().unwrap();
    let digits = format!("{:.5e}", ours);
    let theirs = format!("{:.5e}", caffe);
    assert_eq!(digits, theirs, "loss {ours} vs Caffe's {printed}");
}

#[test]
fn lenet_on_the_mnist_test_set_predicts_every_label_as_caffe() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred.npy");
    let weights = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let report = eval(
        &golden,
        "lenet/lenet_mnist_v2/lenet_test.prototxt",
        &weights,
        "data/mnist_test_lmdb",
        Some(&pred),
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("lenet/lenet_mnist_v2/result.json")).unwrap())
            .unwrap();
    assert_eq!(report["images"], 10000);
    assert_eq!(
        format!("{}", report["top1"]),
        result["caffe_test"]["accuracy_printed"].as_str().unwrap()
    );
    same_as_printed(
        report["loss"].as_f64().unwrap(),
        result["caffe_test"]["loss_printed"].as_str().unwrap(),
    );
    let ours = sparse::read_npy::<u8>(&pred).unwrap().data;
    let theirs = sparse::read_npy::<u8>(golden.join("lenet/lenet_mnist_v2/pred.npy"))
        .unwrap()
        .data;
    assert!(
        ours == theirs,
        "{} of 10000 labels differ",
        ours.iter().zip(&theirs).filter(|(a, b)| a != b).count()
    );
}

#[test]
fn pruned_lenets_score_what_caffe_scored() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    for (model, weights, data) in [
        (
            "lenet_mnist_v2",
            "models/lenet_mnist_v2/lenet_iter_10000.caffemodel",
            "data/mnist_test_lmdb",
        ),
        (
            "lenet_fashion",
            "models/lenet_fashion/lenet_fashion_iter_10000.caffemodel",
            "data/fashion_mnist_test_lmdb",
        ),
        (
            "lenet_mnist_v1_2014",
            "models/lenet_mnist_v1_2014/lenet_iter_10000",
            "data/mnist_test_lmdb",
        ),
    ] {
        let setting = "t_0.3_0.1_0.01_0.2";
        let pruned = tmp.path().join("pruned.caffemodel");
        let out = Command::new(BIN)
            .arg(fx.join(weights))
            .args(["--keep", "conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2", "-o"])
            .arg(&pruned)
            .output()
            .unwrap();
        assert!(out.status.success());
        let pred = tmp.path().join("pred.npy");
        let report = eval(
            &golden,
            &format!("lenet/{model}/lenet_test.prototxt"),
            &pruned,
            data,
            Some(&pred),
        );
        let dir = golden.join(format!("pruned/{model}/{setting}"));
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap();
        let printed = result["caffe_test"]["accuracy_printed"].as_str().unwrap();
        assert_eq!(format!("{}", report["top1"]), printed, "{model}");
        same_as_printed(
            report["loss"].as_f64().unwrap(),
            result["caffe_test"]["loss_printed"].as_str().unwrap(),
        );
        let ours = sparse::read_npy::<u8>(&pred).unwrap().data;
        let theirs = sparse::read_npy::<u8>(dir.join("pred.npy")).unwrap().data;
        assert!(
            ours == theirs,
            "{model}: {} labels differ",
            ours.iter().zip(&theirs).filter(|(a, b)| a != b).count()
        );
    }
}

#[test]
fn idx_input_gives_the_same_accuracy_as_the_lmdb() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let weights = fx.join("models/lenet_mnist_v1_2014/lenet_iter_10000");
    let report = eval(
        &golden,
        "lenet/lenet_mnist_v1_2014/lenet_test.prototxt",
        &weights,
        "../mnist/t10k-images-idx3-ubyte.gz",
        None,
    );
    assert_eq!(report["top1"], 0.991);
}

#[test]
fn forward_writes_every_blob_as_caffe_computed_it() {
    let Some(fx) = testkit::fixtures() else { return };
    let dir = fx.join("golden/deploy/mtcnn_det1");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("forward")
        .arg("--net")
        .arg(dir.join("deploy.prototxt"))
        .arg("--weights")
        .arg(fx.join("models/mtcnn_det1/det1.caffemodel"))
        .arg("--input")
        .arg(format!("data={}", dir.join("input.npy").display()))
        .arg("-o")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut compared = 0;
    for entry in std::fs::read_dir(dir.join("blobs")).unwrap() {
        let golden = entry.unwrap().path();
        let theirs = sparse::read_npy::<f32>(&golden).unwrap();
        let ours = sparse::read_npy::<f32>(tmp.path().join(golden.file_name().unwrap())).unwrap();
        assert_eq!(ours.shape, theirs.shape, "{}", golden.display());
        let scale = theirs.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
        let worst = ours
            .data
            .iter()
            .zip(&theirs.data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst / scale <= 1e-4,
            "{}: max error {worst} of {scale}",
            golden.display()
        );
        compared += 1;
    }
    assert!(compared >= 10, "{compared}");
}

#[test]
fn an_encoded_png_lmdb_predicts_every_label_as_caffe() {
    // The MNIST test LMDB rewritten as convert_imageset --encoded would (PNG bytes, no dimensions): PNG is
    // lossless, so every prediction is Caffe's on the raw LMDB.
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    let encoded = tmp.path().join("mnist_test_png_lmdb");
    {
        use prost::Message as _;
        let raw = datasets::LmdbDataset::open_unlocked(golden.join("data/mnist_test_lmdb")).unwrap();
        let mut reader = raw.raw_reader().unwrap();
        let mut writer = datasets::LmdbWriter::create(&encoded).unwrap();
        while let Some(pair) = reader.next().unwrap() {
            let datum = caffe_proto::Datum::decode(pair.value).unwrap();
            let (w, h) = (datum.width() as u32, datum.height() as u32);
            let mut bytes = Vec::new();
            let mut encoder = png::Encoder::new(&mut bytes, w, h);
            encoder.set_color(png::ColorType::Grayscale);
            let mut png = encoder.write_header().unwrap();
            png.write_image_data(datum.data()).unwrap();
            png.finish().unwrap();
            let png_datum = caffe_proto::Datum {
                data: Some(bytes),
                label: datum.label,
                encoded: Some(true),
                ..Default::default()
            };
            writer.put_datum(pair.key, &png_datum).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), 10000);
    }
    let pred = tmp.path().join("pred.npy");
    let weights = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let report = eval(
        &golden,
        "lenet/lenet_mnist_v2/lenet_test.prototxt",
        &weights,
        encoded.to_str().unwrap(),
        Some(&pred),
    );
    assert_eq!(report["images"], 10000);
    let ours = sparse::read_npy::<u8>(&pred).unwrap().data;
    let theirs = sparse::read_npy::<u8>(golden.join("lenet/lenet_mnist_v2/pred.npy"))
        .unwrap()
        .data;
    assert!(
        ours == theirs,
        "{} of 10000 labels differ",
        ours.iter().zip(&theirs).filter(|(a, b)| a != b).count()
    );
}

/// The golden LeNet test net with its Data layer turned into an ImageData layer over `list.txt` (gray images,
/// batches of 100), beside the net.
fn image_data_lenet(golden: &Path) -> String {
    let net = std::fs::read_to_string(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt")).unwrap();
    let data_layer = "  type: \"Data\"";
    assert!(net.contains(data_layer));
    let net = net.replace(data_layer, "  type: \"ImageData\"").replace(
        "data_param {\n    source: \"data/mnist_test_lmdb\"\n    batch_size: 100\n    backend: LMDB\n  }",
        "image_data_param { source: \"list.txt\" batch_size: 100 is_color: false }",
    );
    assert!(net.contains("image_data_param"));
    net
}

#[test]
fn an_image_data_layer_over_png_files_predicts_as_caffe() {
    // The first 1000 MNIST test digits as PNG files listed for an ImageData layer (gray, paths relative to the
    // net's folder): PNG is lossless, so the predictions are Caffe's on the LMDB.
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("img")).unwrap();
    let mut list = String::new();
    {
        use prost::Message as _;
        let raw = datasets::LmdbDataset::open_unlocked(golden.join("data/mnist_test_lmdb")).unwrap();
        let mut reader = raw.raw_reader().unwrap();
        for i in 0..1000 {
            let pair = reader.next().unwrap().unwrap();
            let datum = caffe_proto::Datum::decode(pair.value).unwrap();
            let file = std::fs::File::create(tmp.path().join(format!("img/{i:05}.png"))).unwrap();
            let mut encoder = png::Encoder::new(file, datum.width() as u32, datum.height() as u32);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.write_header().unwrap().write_image_data(datum.data()).unwrap();
            list.push_str(&format!("img/{i:05}.png {}\n", datum.label()));
        }
    }
    std::fs::write(tmp.path().join("list.txt"), list).unwrap();
    std::fs::write(tmp.path().join("net.prototxt"), image_data_lenet(&golden)).unwrap();
    let pred = tmp.path().join("pred.npy");
    let out = Command::new(BIN)
        .arg("eval")
        .arg("--net")
        .arg(tmp.path().join("net.prototxt"))
        .arg("--weights")
        .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
        .arg("--predictions")
        .arg(&pred)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"], 1000);
    let ours = sparse::read_npy::<u8>(&pred).unwrap().data;
    let theirs = sparse::read_npy::<u8>(golden.join("lenet/lenet_mnist_v2/pred.npy"))
        .unwrap()
        .data;
    assert!(ours[..] == theirs[..1000], "predictions differ from Caffe's");
}

#[test]
fn a_leveldb_copy_of_the_test_lmdb_predicts_every_label_as_caffe() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    let leveldb = tmp.path().join("mnist_test_leveldb");
    {
        let raw = datasets::LmdbDataset::open_unlocked(golden.join("data/mnist_test_lmdb")).unwrap();
        let mut reader = raw.raw_reader().unwrap();
        let options = rusty_leveldb::Options {
            create_if_missing: true,
            ..Default::default()
        };
        let mut db = rusty_leveldb::DB::open(&leveldb, options).unwrap();
        while let Some(pair) = reader.next().unwrap() {
            db.put(pair.key, pair.value).unwrap();
        }
        db.close().unwrap();
    }
    let pred = tmp.path().join("pred.npy");
    let report = eval(
        &golden,
        "lenet/lenet_mnist_v2/lenet_test.prototxt",
        &fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"),
        leveldb.to_str().unwrap(),
        Some(&pred),
    );
    assert_eq!(report["images"], 10000);
    let ours = sparse::read_npy::<u8>(&pred).unwrap().data;
    let theirs = sparse::read_npy::<u8>(golden.join("lenet/lenet_mnist_v2/pred.npy"))
        .unwrap()
        .data;
    assert!(ours == theirs, "predictions differ from Caffe's");
}

/// The golden LeNet TEST net with its Data layer replaced by `layer` (the rest unchanged).
fn lenet_with_data_layer(golden: &Path, layer: &str) -> String {
    let net = std::fs::read_to_string(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt")).unwrap();
    let start = net.find("layer {").unwrap();
    let end = start + net[start..].find("\n}\n").unwrap() + 3;
    assert!(net[start..end].contains("type: \"Data\""));
    format!("{}{layer}{}", &net[..start], &net[end..])
}

/// Writes the MNIST test set as HDF5 files with h5py (`data` float32 N x 1 x 28 x 28 scaled as the TEST net's
/// transform scales it, `label` float32 N), split in two files listed in `dir/list.txt`. False without h5py.
fn mnist_as_hdf5(fx: &Path, dir: &Path) -> bool {
    if !testkit::python_has(&["h5py", "numpy"]) {
        return false;
    }
    let script = r#"
import gzip, sys, h5py, numpy as np
mnist = sys.argv[1]
with gzip.open(mnist + "/t10k-images-idx3-ubyte.gz") as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
with gzip.open(mnist + "/t10k-labels-idx1-ubyte.gz") as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8)
data = images.astype(np.float32) * np.float32(0.00390625)
for name, rows in [("a.h5", slice(0, 6000)), ("b.h5", slice(6000, 10000))]:
    with h5py.File(name, "w") as f:
        f["data"] = data[rows]
        f["label"] = labels[rows].astype(np.float32)
open("list.txt", "w").write("a.h5\nb.h5\n")
"#;
    let out = Command::new("python3")
        .current_dir(dir)
        .args(["-c", script])
        .arg(fx.join("mnist"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    true
}

const HDF5_LAYER: &str = "layer {\n  name: \"mnist\"\n  type: \"HDF5Data\"\n  top: \"data\"\n  top: \"label\"\n  \
                          include { phase: TEST }\n  hdf5_data_param { source: \"list.txt\" batch_size: 100 }\n}\n";

#[test]
fn the_mnist_test_set_as_hdf5_files_predicts_every_label_as_caffe() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    if !mnist_as_hdf5(&fx, tmp.path()) {
        return;
    }
    let net = tmp.path().join("net.prototxt");
    std::fs::write(&net, lenet_with_data_layer(&golden, HDF5_LAYER)).unwrap();
    let weights = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let theirs = sparse::read_npy::<u8>(golden.join("lenet/lenet_mnist_v2/pred.npy"))
        .unwrap()
        .data;
    // The net's own source (the list beside the net, its files beside it), then the list given with --data.
    for data in [None, Some(tmp.path().join("list.txt"))] {
        let pred = tmp.path().join("pred.npy");
        let mut cmd = Command::new(BIN);
        cmd.arg("eval").arg("--net").arg(&net).arg("--weights").arg(&weights);
        if let Some(d) = &data {
            cmd.arg("--data").arg(d);
        }
        let out = cmd.arg("--predictions").arg(&pred).arg("--json").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["images"], 10000);
        let ours = sparse::read_npy::<u8>(&pred).unwrap().data;
        assert!(
            ours == theirs,
            "{data:?}: {} of 10000 labels differ",
            ours.iter().zip(&theirs).filter(|(a, b)| a != b).count()
        );
    }
}

#[test]
fn bad_hdf5_sources_are_one_line_errors_naming_the_file() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    if !testkit::python_has(&["h5py", "numpy"]) {
        return;
    }
    let script = r#"
import h5py, numpy as np
with h5py.File("short.h5", "w") as f:
    f["data"] = np.zeros((4, 1, 28, 28), np.float32)
    f["label"] = np.zeros(3, np.float32)
with h5py.File("nolabel.h5", "w") as f:
    f["data"] = np.zeros((4, 1, 28, 28), np.float32)
"#;
    let out = Command::new("python3")
        .current_dir(tmp.path())
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let net = tmp.path().join("net.prototxt");
    std::fs::write(&net, lenet_with_data_layer(&golden, HDF5_LAYER)).unwrap();
    let weights = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    for (list, named, problem) in [
        ("", "list.txt", "names no file"),
        ("missing.h5\n", "missing.h5", ""),
        ("short.h5\n", "short.h5", "has 3 rows but 'data' has 4"),
        ("nolabel.h5\n", "nolabel.h5", "dataset 'label'"),
    ] {
        std::fs::write(tmp.path().join("list.txt"), list).unwrap();
        let out = Command::new(BIN)
            .arg("eval")
            .arg("--net")
            .arg(&net)
            .arg("--weights")
            .arg(&weights)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{list:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(named) && err.contains(problem), "{list:?}: {err}");
    }
}

#[test]
fn a_dummy_data_net_evaluates_its_filled_batch() {
    // DummyData needs no --data: a constant image of 0.5 labelled 3, one batch of 7.
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    let dummy = "layer {\n  name: \"mnist\"\n  type: \"DummyData\"\n  top: \"data\"\n  top: \"label\"\n  \
                 include { phase: TEST }\n  dummy_data_param {\n    shape { dim: 7 dim: 1 dim: 28 dim: 28 }\n    \
                 shape { dim: 7 }\n    data_filler { type: \"constant\" value: 0.5 }\n    \
                 data_filler { type: \"constant\" value: 3 }\n  }\n}\n";
    let net = tmp.path().join("net.prototxt");
    std::fs::write(&net, lenet_with_data_layer(&golden, dummy)).unwrap();
    let weights = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let pred = tmp.path().join("pred.npy");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .arg("eval")
            .arg("--net")
            .arg(&net)
            .arg("--weights")
            .arg(&weights)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--json", "--predictions", pred.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"], 7);
    assert!(report["loss"].as_f64().unwrap().is_finite());
    // Seven identical images: seven identical predictions, scored against label 3.
    let ours = sparse::read_npy::<u8>(&pred).unwrap().data;
    assert_eq!(ours.len(), 7);
    assert!(ours.iter().all(|&p| p == ours[0]));
    let top1 = if ours[0] == 3 { 1.0 } else { 0.0 };
    assert_eq!(report["top1"], top1);
    // --data does not apply to a layer that reads nothing.
    let out = run(&["--data", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data does not apply") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_damaged_image_mid_list_is_the_same_one_line_error_with_and_without_prefetch() {
    // 300 images in 3 batches, the 251st not an image: with two threads the next batch is read while one runs,
    // and the reader's error must still be the one reported, as on one thread, with nothing written.
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("img")).unwrap();
    let mut list = String::new();
    for i in 0..300u32 {
        let path = tmp.path().join(format!("img/{i:05}.png"));
        if i == 250 {
            std::fs::write(&path, b"not a PNG at all").unwrap();
        } else {
            let pixels: Vec<u8> = (0..28 * 28u32).map(|p| ((p * 7 + i * 13) % 256) as u8).collect();
            let file = std::fs::File::create(&path).unwrap();
            let mut encoder = png::Encoder::new(file, 28, 28);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.write_header().unwrap().write_image_data(&pixels).unwrap();
        }
        list.push_str(&format!("img/{i:05}.png {}\n", i % 10));
    }
    std::fs::write(tmp.path().join("list.txt"), list).unwrap();
    std::fs::write(tmp.path().join("net.prototxt"), image_data_lenet(&golden)).unwrap();
    let pred = tmp.path().join("pred.npy");
    let run = |threads: &str| {
        Command::new(BIN)
            .arg("eval")
            .arg("--net")
            .arg(tmp.path().join("net.prototxt"))
            .arg("--weights")
            .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
            .args(["--predictions", pred.to_str().unwrap(), "--threads", threads])
            .output()
            .unwrap()
    };
    let (one, two) = (run("1"), run("2"));
    for out in [&one, &two] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("00250.png"), "{err}");
    }
    assert_eq!(one.stderr, two.stderr);
    assert!(!pred.exists(), "predictions written after a failed run");
}
