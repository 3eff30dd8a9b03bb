//! caffe-convert as a user runs it: upgrades equal real Caffe's output, text output, safe writing.

use std::path::Path;
use std::process::{Command, Output};

fn convert(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_caffe-convert"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

#[test]
fn v1_caffemodels_upgrade_to_the_bytes_caffe_writes() {
    let Some(dir) = testkit::fixtures() else { return };
    let out_dir = tempfile::tempdir().unwrap();
    for (model, golden) in [
        (
            "models/lenet_mnist_v1_2014/lenet_iter_10000",
            "golden/upgrade/lenet_mnist_v1_2014.upgraded.caffemodel",
        ),
        (
            "models/cifar10_quick_v1_2014/cifar10_quick_iter_4000",
            "golden/upgrade/cifar10_quick_v1_2014.upgraded.caffemodel",
        ),
    ] {
        let out = out_dir.path().join("up.caffemodel");
        let run = convert(&[&dir.join(model), &"-o", &out, &"--upgrade"]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let stderr = String::from_utf8(run.stderr).unwrap();
        assert!(stderr.contains("upgraded") && stderr.contains("V1 layer"), "{stderr}");
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(dir.join(golden)).unwrap(),
            "{model}"
        );
        // The result reads back in our own reader as a modern net.
        let file = caffemodel::ModelFile::open(&out).unwrap();
        assert_eq!(file.net().unwrap().generation(), caffemodel::Generation::Modern);
    }
    let leftovers: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind");
}

#[test]
fn legacy_prototxts_upgrade_to_caffes_text_on_stdout() {
    let Some(dir) = testkit::fixtures() else { return };
    let run = convert(&[&dir.join("models/mtcnn_det2/det2.prototxt"), &"-o", &"-", &"--upgrade"]);
    assert!(run.status.success());
    let golden = std::fs::read(dir.join("golden/upgrade/mtcnn_det2__det2.upgraded.prototxt")).unwrap();
    assert!(run.stdout == golden);
}

#[test]
fn caffemodel_prints_as_text_without_weights_unless_asked() {
    let Some(dir) = testkit::fixtures() else { return };
    let model = dir.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let run = convert(&[&model, &"-o", &"-"]);
    let text = String::from_utf8(run.stdout).unwrap();
    assert!(text.starts_with("name: \"LeNet\"\nlayer {\n"), "{}", &text[..100]);
    assert!(text.contains("    shape {\n      dim: 20\n      dim: 1\n      dim: 5\n      dim: 5\n"));
    assert!(!text.contains("data: "));
    let run = convert(&[&model, &"-o", &"-", &"--with-weights"]);
    let text = String::from_utf8(run.stdout).unwrap();
    // 431,080 values, one `data:` line each.
    assert_eq!(text.matches("\n    data: ").count(), 431_080);
}

#[test]
fn never_overwrites_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.caffemodel");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel"),
        &model,
    )
    .unwrap();
    let before = std::fs::read(&model).unwrap();
    let run = convert(&[&model, &"-o", &model]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8(run.stderr)
        .unwrap()
        .contains("refusing to write an output over the input"));
    assert!(std::fs::read(&model).unwrap() == before);
    // No flag changes that: --force only replaces an existing LMDB folder.
    let run = convert(&[&model, &"-o", &model, &"--force"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--force does not apply"));
    // Nor another spelling of the same file.
    let dotted = model.parent().unwrap().join(".").join(model.file_name().unwrap());
    assert_eq!(convert(&[&model, &"-o", &dotted]).status.code(), Some(1));
    assert!(std::fs::read(&model).unwrap() == before);
}

#[test]
fn flags_that_do_not_apply_to_the_conversion_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    let text = dir.path().join("out.prototxt");
    let npz = dir.path().join("out.npz");
    for (args, flag) in [
        (vec!["--index-bits", "5"], "--index-bits"),
        (vec!["--scipy-format", "csr"], "--scipy-format"),
        (vec!["--layout", "dense"], "--layout"),
        (vec!["--force"], "--force"),
    ] {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&model, &"-o", &text];
        all.extend(args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let run = convert(&all);
        assert_eq!(run.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(&format!("{flag} does not apply")), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&format!("caffe-convert: error: {flag}")), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!text.exists(), "nothing written");
    }
    // Within npz export: index bits belong to the sparse layout, the scipy format to the scipy one.
    let run = convert(&[&model, &"-o", &npz, &"--layout", &"dense", &"--index-bits", &"5"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--index-bits does not apply to this layout"));
    let run = convert(&[&model, &"-o", &npz, &"--upgrade"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        convert(&[&model, &"-o", &npz, &"--layout", &"sparse", &"--index-bits", &"5"])
            .status
            .success()
    );
}

#[test]
fn npz_roundtrip_and_bad_npz_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    for layout in ["sparse", "dense"] {
        let npz = dir.path().join(format!("{layout}.npz"));
        assert!(convert(&[&model, &"-o", &npz, &"--layout", &layout]).status.success());
        let back = dir.path().join("back.caffemodel");
        let run = convert(&[&npz, &"--into", &model, &"-o", &back]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert!(
            std::fs::read(&back).unwrap() == std::fs::read(&model).unwrap(),
            "{layout}"
        );
        std::fs::remove_file(&back).unwrap();
    }
    // An npz written by numpy-like code with one array missing and one of the wrong shape.
    let bad = dir.path().join("bad.npz");
    let mut w = sparse::NpzWriter::create(&bad).unwrap();
    w.add::<f32>("conv1_W", &[20, 1, 5, 4], &[0.0; 400]).unwrap();
    w.finish().unwrap();
    let out = dir.path().join("out.caffemodel");
    let run = convert(&[&bad, &"--into", &model, &"-o", &out]);
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8(run.stderr).unwrap();
    assert!(err.contains("'conv1_W' has shape [20, 1, 5, 4]"), "{err}");
    assert!(!out.exists());
    let run = convert(&[&bad, &"-o", &out]);
    assert!(String::from_utf8(run.stderr).unwrap().contains("needs --into"));
}

/// Every key and value of an LMDB, in key order.
fn lmdb_records(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = datasets::LmdbDataset::open_unlocked(path).unwrap();
    let mut reader = db.raw_reader().unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next().unwrap() {
        out.push((r.key.to_vec(), r.value.to_vec()));
    }
    out
}

#[test]
fn idx_images_become_the_lmdb_caffe_made_record_for_record() {
    let Some(dir) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("train_lmdb");
    // The labels file is found from the images file's name.
    let run = convert(&[&dir.join("mnist/train-10k-images-idx3-ubyte.gz"), &"-o", &db]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let ours = lmdb_records(&db);
    // golden/data/mnist_train10k_lmdb was written by Caffe's own convert_mnist_data from the same files.
    let caffes = lmdb_records(&dir.join("golden/data/mnist_train10k_lmdb"));
    assert_eq!(ours.len(), 10_000);
    assert!(ours == caffes, "records differ from Caffe's LMDB");
    assert!(
        !tmp.path()
            .read_dir()
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")),
        "no temporary folder left behind"
    );

    // An existing output is kept unless --force.
    let again = convert(&[
        &dir.join("mnist/t10k-images-idx3-ubyte.gz"),
        &"--labels",
        &dir.join("mnist/t10k-labels-idx1-ubyte.gz"),
        &"-o",
        &db,
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(lmdb_records(&db) == caffes, "refused run left the old LMDB as it was");

    // An images file given as the labels: one line, nothing written.
    let bad = tmp.path().join("bad_lmdb");
    let run = convert(&[
        &dir.join("mnist/t10k-images-idx3-ubyte.gz"),
        &"--labels",
        &dir.join("mnist/t10k-images-idx3-ubyte.gz"),
        &"-o",
        &bad,
    ]);
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!bad.exists());
}

#[test]
fn threads_quiet_and_a_worked_example() {
    let help = convert(&[&"--help"]);
    let text = String::from_utf8(help.stdout).unwrap();
    for needle in ["--threads <N>", "--quiet", "Examples"] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    let run = convert(&[&model, &"-o", &dir.path().join("x.npz"), &"--quiet", &"--threads", &"2"]);
    assert!(run.status.success());
    assert!(run.stderr.is_empty(), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn onnx_export_as_a_user_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join("testdata/lenet.caffemodel");
    let train_test = root.join("testdata/lenet_train_test.prototxt");
    let onnx = dir.path().join("lenet.onnx");
    // A deploy net of the testdata LeNet: its train/test net with the data layer replaced by an Input.
    let text = std::fs::read_to_string(&train_test).unwrap();
    assert!(text.contains("type: \"Data\""), "the testdata net reads a Data layer");
    let deploy = dir.path().join("deploy.prototxt");
    std::fs::write(
        &deploy,
        "name: \"LeNet\"\nlayer { name: \"data\" type: \"Input\" top: \"data\" input_param { shape { dim: 1 dim: 1 dim: 28 dim: 28 } } }\n\
         layer { name: \"conv1\" type: \"Convolution\" bottom: \"data\" top: \"conv1\" convolution_param { num_output: 20 kernel_size: 5 } }\n\
         layer { name: \"pool1\" type: \"Pooling\" bottom: \"conv1\" top: \"pool1\" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n\
         layer { name: \"conv2\" type: \"Convolution\" bottom: \"pool1\" top: \"conv2\" convolution_param { num_output: 50 kernel_size: 5 } }\n\
         layer { name: \"pool2\" type: \"Pooling\" bottom: \"conv2\" top: \"pool2\" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n\
         layer { name: \"ip1\" type: \"InnerProduct\" bottom: \"pool2\" top: \"ip1\" inner_product_param { num_output: 500 } }\n\
         layer { name: \"relu1\" type: \"ReLU\" bottom: \"ip1\" top: \"ip1\" }\n\
         layer { name: \"ip2\" type: \"InnerProduct\" bottom: \"ip1\" top: \"ip2\" inner_product_param { num_output: 10 } }\n\
         layer { name: \"prob\" type: \"Softmax\" bottom: \"ip2\" top: \"prob\" }\n",
    )
    .unwrap();
    let run = convert(&[&model, &"--net", &deploy, &"-o", &onnx]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let size = std::fs::metadata(&onnx).unwrap().len();
    // The weights (431,080 floats) and a small graph.
    assert!((1_724_320..1_730_000).contains(&size), "{size} bytes");
    // Another batch size.
    let run = convert(&[
        &model,
        &"--net",
        &deploy,
        &"-o",
        &onnx,
        &"--input-shape",
        &"64,1,28,28",
        &"--opset",
        &"13",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    // Wrong and hostile use: one line, nothing written.
    let out = dir.path().join("never.onnx");
    for (args, code, expected) in [
        (vec![], 2, "needs --net"),
        (vec!["--opset", "9"], 2, "--opset 9: choose 13 to 21"),
        (
            vec!["--input-shape", "0,1,28,28"],
            2,
            "every dimension must be positive",
        ),
        (vec!["--input-shape", "1,1,28"], 1, "bad bottom shape"),
    ] {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&model, &"-o", &out];
        if !args.is_empty() {
            all.extend([&"--net" as &dyn AsRef<std::ffi::OsStr>, &deploy]);
        }
        all.extend(args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let run = convert(&all);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!out.exists());
    }
    let run = convert(&[&model, &"--net", &train_test, &"-o", &out]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr.contains("is a Data layer") && stderr.contains("deploy prototxt"),
        "{stderr}"
    );
    // ONNX flags on another conversion, and the deploy file as the output.
    let run = convert(&[&model, &"-o", &dir.path().join("x.prototxt"), &"--opset", &"13"]);
    assert_eq!(run.status.code(), Some(2));
    let run = convert(&[&model, &"--net", &deploy, &"-o", &deploy]);
    assert_ne!(run.status.code(), Some(0));
    assert!(
        std::fs::read_to_string(&deploy).unwrap().contains("Input"),
        "the input survives"
    );
}
