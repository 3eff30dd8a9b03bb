//! `caffe-prune quantize` as a user runs it: weight sharing of a pruned LeNet keeps the mask, stays within the bit
//! budget, changes nothing else, and refuses bad arguments in one line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_caffe-prune");

fn blobs(path: &Path) -> BTreeMap<(String, usize), Vec<f32>> {
    let model = caffemodel::ModelFile::open(path).unwrap();
    let net = model.net().unwrap();
    let mut out = BTreeMap::new();
    for layer in net.layers() {
        for (i, blob) in layer.blobs().iter().enumerate() {
            out.insert((layer.name().to_string(), i), blob.data().to_vec_f32());
        }
    }
    out
}

/// Runs caffe-prune with `args`; its stdout. Fails the test on an error.
fn caffe_prune(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<u8> {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The fixtures' LeNet pruned at the tutorial's rates, written to `out`.
fn prune_lenet(fx: &Path, out: &Path) {
    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    caffe_prune(&[
        &input,
        &"--keep",
        &"conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2",
        &"-q",
        &"-o",
        &out,
    ]);
}

/// Every blob of `model` as raw little-endian float32, `<layer>.f32` and `<layer>_b.f32` in `dir`, for Python.
fn write_raw(model: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for ((layer, index), values) in blobs(model) {
        let name = if index == 0 {
            format!("{layer}.f32")
        } else {
            format!("{layer}_b.f32")
        };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn sharing_keeps_the_mask_and_the_bit_budget_and_nothing_else_changes() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (pruned, quantized) = (tmp.path().join("p.caffemodel"), tmp.path().join("q.caffemodel"));
    prune_lenet(&fx, &pruned);
    let stdout = caffe_prune(&[
        &"quantize",
        &"--json",
        &"--bits",
        &"conv2=6",
        &"-o",
        &quantized,
        &pruned,
    ]);
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let before = blobs(&pruned);
    let after = blobs(&quantized);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    let bits: BTreeMap<&str, u32> = [("conv1", 8), ("conv2", 6), ("ip1", 5), ("ip2", 5)].into();
    for ((layer, index), old) in &before {
        let new = &after[&(layer.clone(), *index)];
        if *index == 1 || !bits.contains_key(layer.as_str()) {
            assert!(old == new, "{layer}/{index} changed");
            continue;
        }
        // The mask, exactly; the shared values, within the budget.
        assert!(
            old.iter().zip(new).all(|(a, b)| (*a == 0.0) == (*b == 0.0)),
            "{layer}: mask changed"
        );
        let shared: BTreeSet<u32> = new.iter().filter(|v| **v != 0.0).map(|v| v.to_bits()).collect();
        assert!(
            shared.len() < 1 << bits[layer.as_str()],
            "{layer}: {} shared values",
            shared.len()
        );
        let row = report["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["layer"] == layer.as_str())
            .unwrap();
        assert_eq!(row["centroids"], shared.len());
        assert_eq!(row["bits"], bits[layer.as_str()]);
        // Each weight took a value near it: at most half the widest gap between neighbouring shared values, plus
        // the distance outside the range.
        let scale = old.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = old.iter().zip(new).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= scale, "{layer}: moved by {worst}");
    }
    // The payload bytes aside, the file is the input's: same length (float payloads keep their size).
    assert_eq!(
        std::fs::metadata(&pruned).unwrap().len(),
        std::fs::metadata(&quantized).unwrap().len()
    );
    // Stage sizes shrink in order.
    let (p, q, h) = (
        report["model_pruned_bytes"].as_u64().unwrap(),
        report["model_quantized_bytes"].as_u64().unwrap(),
        report["model_coded_bytes"].as_u64().unwrap(),
    );
    assert!(
        report["model_dense_bytes"].as_u64().unwrap() > p && p > q && q > h,
        "{report}"
    );
}

#[test]
fn bad_quantize_arguments_fail_in_one_line() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_random.caffemodel");
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("q.caffemodel");
    for (extra, message) in [
        (vec!["--bits", "conv1=9"], "1..8"),
        (vec!["--bits", "conv1"], "LAYER=B"),
        (vec!["--bits", "nosuch=4"], "no layer named 'nosuch'"),
        (vec!["--bits", "pool1=4"], "no weight blob"),
    ] {
        let o = Command::new(BIN)
            .arg("quantize")
            .arg(&model)
            .args(&extra)
            .arg("-o")
            .arg(&out_path)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(message) && err.lines().count() == 1, "{extra:?}: {err}");
        assert!(!out_path.exists());
    }
    let before = std::fs::read(&model).unwrap();
    let o = Command::new(BIN)
        .arg("quantize")
        .arg(&model)
        .arg("-o")
        .arg(&model)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing"));
    assert!(std::fs::read(&model).unwrap() == before);
}

/// numpy rebuilds each quantized blob from the codebook dict: `codebook[codes]` placed by the gaps.
const PY_CODEBOOK: &str = r#"
import sys, numpy as np
d = np.load(sys.argv[1], allow_pickle=False)
raw = sys.argv[2]
for layer in ["conv1", "conv2", "ip1", "ip2"]:
    cb, codes, gaps = d[layer + "_codebook"], d[layer + "_maskcode_W"], d[layer + "_maskcode_indx"]
    shape = d[layer + "_W_shape"]
    assert cb.dtype == np.float32 and codes.dtype == np.uint8 and gaps.dtype == np.uint8
    assert cb[0] == 0.0 and np.all(np.diff(cb[1:]) > 0)
    pos = np.cumsum(gaps.astype(np.int64) + 1) - 1
    w = np.zeros(int(np.prod(shape)), np.float32)
    w[pos[pos < w.size]] = cb[codes[pos < w.size]]
    want = np.fromfile(raw + "/" + layer + ".f32", dtype="<f4")
    assert np.array_equal(w, want), layer
    assert np.array_equal(d[layer + "_b"], np.fromfile(raw + "/" + layer + "_b.f32", dtype="<f4")), layer
print("ok")
"#;

#[test]
fn the_codebook_dict_rebuilds_every_blob_in_numpy_and_imports_back_byte_for_byte() {
    let Some(fx) = testkit::fixtures() else { return };
    if !testkit::python_has(&["numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (pruned, quantized) = (tmp.path().join("p.caffemodel"), tmp.path().join("q.caffemodel"));
    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    prune_lenet(&fx, &pruned);
    caffe_prune(&[&"quantize", &pruned, &"-q", &"-o", &quantized]);
    let raw = tmp.path().join("raw");
    write_raw(&quantized, &raw);
    for bits in [5u8, 8] {
        let npz = tmp.path().join(format!("q{bits}.npz"));
        let model = caffemodel::ModelFile::open(&quantized).unwrap();
        let layout = caffemodel::npz::Layout::Codebook { index_bits: bits };
        caffemodel::npz::export_npz(&model.net().unwrap(), &npz, layout).unwrap();
        let py = Command::new("python3")
            .args(["-c", PY_CODEBOOK])
            .arg(&npz)
            .arg(&raw)
            .output()
            .unwrap();
        assert!(
            py.status.success(),
            "bits {bits}: {}",
            String::from_utf8_lossy(&py.stderr)
        );
        // export -> import into the original gives the quantized file byte for byte.
        let base = caffemodel::ModelFile::open(&input).unwrap();
        let mut net = base.net().unwrap();
        caffemodel::npz::import_npz(&mut net, &npz).unwrap();
        assert!(net.to_bytes() == std::fs::read(&quantized).unwrap(), "bits {bits}");
    }
    // An unquantized model does not fit one-byte codes: a clear error.
    let model = caffemodel::ModelFile::open(&pruned).unwrap();
    let layout = caffemodel::npz::Layout::Codebook { index_bits: 5 };
    let err = caffemodel::npz::export_npz(&model.net().unwrap(), &tmp.path().join("x.npz"), layout).unwrap_err();
    assert!(err.to_string().contains("quantize the model first"), "{err}");
}

#[test]
fn trained_quantization_recovers_accuracy_and_keeps_the_sharing() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (pruned, tuned) = (tmp.path().join("p.caffemodel"), tmp.path().join("t.caffemodel"));
    prune_lenet(&fx, &pruned);
    // testdata's solver reads the fixtures' MNIST LMDBs and tests on the 10,000 test images.
    let solver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_solver.prototxt");
    let plot = tmp.path().join("rounds.svg");
    let stdout = caffe_prune(&[
        &"quantize",
        &"--json",
        &"-q",
        &"--rounds",
        &"2",
        &"--steps",
        &"30",
        &"--solver",
        &solver,
        &"--weights",
        &pruned,
        &"-o",
        &tuned,
        &"--plot",
        &plot,
    ]);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 1, "one line: the accuracy per round");
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    let accuracy = |r: &serde_json::Value| r["accuracy"].as_f64().unwrap();
    // Pruned without retraining scores about 57%; fine-tuning only the shared values lifts it far.
    assert!(accuracy(&rounds[2]) > accuracy(&rounds[0]) + 0.2, "{rounds:?}");
    let (before, after) = (blobs(&pruned), blobs(&tuned));
    for layer in ["conv1", "conv2", "ip1", "ip2"] {
        let (old, new) = (&before[&(layer.to_string(), 0)], &after[&(layer.to_string(), 0)]);
        assert!(
            old.iter().zip(new).all(|(a, b)| (*a == 0.0) == (*b == 0.0)),
            "{layer}: mask changed"
        );
        let shared: BTreeSet<u32> = new.iter().filter(|v| **v != 0.0).map(|v| v.to_bits()).collect();
        let row = report["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["layer"] == layer)
            .unwrap();
        assert!(shared.len() <= row["centroids"].as_u64().unwrap() as usize, "{layer}");
        // The biases trained too.
        assert!(
            before[&(layer.to_string(), 1)] != after[&(layer.to_string(), 1)],
            "{layer} bias"
        );
    }
}

/// Han's decode.py (songhan/Deep-Compression-AlexNet), its reading loop as released, on our file.
const PY_HAN: &str = r#"
import sys, numpy as np
layers = sys.argv[3].split(",")
raw = sys.argv[2]
fin = open(sys.argv[1], "rb")
nz_num = np.fromfile(fin, dtype=np.uint32, count=len(layers))
for idx, layer in enumerate(layers):
    bits = 8 if "conv" in layer else 4
    codebook = np.fromfile(fin, dtype=np.float32, count=2 ** bits)
    want_b = np.fromfile(raw + "/" + layer + "_b.f32", dtype="<f4")
    bias = np.fromfile(fin, dtype=np.float32, count=want_b.size)
    spm_stream = np.fromfile(fin, dtype=np.uint8, count=(int(nz_num[idx]) - 1) // (8 // bits) + 1)
    ind_stream = np.fromfile(fin, dtype=np.uint8, count=(int(nz_num[idx]) - 1) // 2 + 1)
    if bits == 8:
        code = spm_stream
    else:
        code = np.zeros(nz_num[idx], np.uint8)
        code[0::2] = spm_stream % 16
        code[1::2] = spm_stream // 16
    ind = np.zeros(nz_num[idx], np.uint8)
    ind[0::2] = ind_stream % 16
    ind[1::2] = ind_stream // 16
    want = np.fromfile(raw + "/" + layer + ".f32", dtype="<f4")
    data = np.zeros(want.size, np.float32)
    ind = np.cumsum(ind.astype(np.int64) + 1) - 1
    data[ind] = codebook[code]
    assert np.array_equal(data, want), layer
    assert np.array_equal(bias, want_b), layer
assert fin.read() == b"", "trailing bytes"
print("ok")
"#;

#[test]
fn hans_decode_py_reads_our_han_layout() {
    let Some(fx) = testkit::fixtures() else { return };
    if !testkit::python_has(&["numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (pruned, quantized) = (tmp.path().join("p.caffemodel"), tmp.path().join("q.caffemodel"));
    prune_lenet(&fx, &pruned);
    // Han's layout: 8 bits for conv layers, 4 for the rest.
    caffe_prune(&[
        &"quantize",
        &pruned,
        &"--bits",
        &"ip1=4,ip2=4",
        &"-q",
        &"-o",
        &quantized,
    ]);
    let raw = tmp.path().join("raw");
    write_raw(&quantized, &raw);
    let model = caffemodel::ModelFile::open(&quantized).unwrap();
    let mut bytes = Vec::new();
    let layers = caffemodel::han::write_han(&model.net().unwrap(), &mut bytes).unwrap();
    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["conv1", "conv2", "ip1", "ip2"]);
    assert!(layers.iter().all(|(_, n)| n % 2 == 0), "{layers:?}");
    let han = tmp.path().join("lenet.han");
    std::fs::write(&han, &bytes).unwrap();
    let py = Command::new("python3")
        .args(["-c", PY_HAN])
        .arg(&han)
        .arg(&raw)
        .arg(names.join(","))
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    // The default 5-bit ip layers do not fit Han's 4-bit codebooks: a clear error.
    let five = tmp.path().join("q5.caffemodel");
    let out = Command::new(BIN)
        .arg("quantize")
        .arg(&pruned)
        .arg("-q")
        .arg("-o")
        .arg(&five)
        .output()
        .unwrap();
    assert!(out.status.success());
    let model = caffemodel::ModelFile::open(&five).unwrap();
    let err = caffemodel::han::write_han(&model.net().unwrap(), &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("quantize it to 4 bits"), "{err}");
}

#[test]
fn quantize_writes_a_caffez_that_gives_the_quantized_caffemodel_back() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pruned = tmp.path().join("p.caffemodel");
    let (model, coded) = (tmp.path().join("q.caffemodel"), tmp.path().join("q.caffez"));
    prune_lenet(&fx, &pruned);
    caffe_prune(&[&"quantize", &pruned, &"-q", &"-o", &model]);
    let stdout = caffe_prune(&[&"quantize", &pruned, &"--json", &"-o", &coded]);
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let bytes = std::fs::read(&coded).unwrap();
    assert_eq!(report["model_coded_bytes"].as_u64(), Some(bytes.len() as u64));
    assert!(caffez::decompress(&bytes).unwrap() == std::fs::read(&model).unwrap());
    // The tutorial's rates at 8/8/5/5 bits: over 100x, and arithmetic coding beats the paper's Huffman.
    let dense = std::fs::metadata(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
        .unwrap()
        .len();
    assert!(dense / bytes.len() as u64 >= 100, "{} bytes", bytes.len());
    assert!(report["model_huffman_bytes"].as_u64().unwrap() > bytes.len() as u64);
    // Deep Compression's rates and bits, post-training: at least the paper's 39x.
    let (pruned_a, coded_a) = (tmp.path().join("pa.caffemodel"), tmp.path().join("qa.caffez"));
    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    caffe_prune(&[
        &input,
        &"--keep",
        &"conv1=0.66,conv2=0.12,ip1=0.08,ip2=0.19",
        &"-q",
        &"-o",
        &pruned_a,
    ]);
    caffe_prune(&[&"quantize", &pruned_a, &"-q", &"-o", &coded_a]);
    let size_a = std::fs::metadata(&coded_a).unwrap().len();
    assert!(dense / size_a >= 39, "{size_a} bytes");
    // Every other command reads the .caffez as the model it stands for.
    let o = Command::new(BIN)
        .args(["quantize", "--json", "-q"])
        .arg(&coded)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn reclustering_keeps_the_mask_and_the_bit_budget() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (pruned, tuned) = (tmp.path().join("p.caffemodel"), tmp.path().join("t.caffemodel"));
    prune_lenet(&fx, &pruned);
    let solver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_solver.prototxt");
    // Periods of 10: 8 shared steps, 2 free ones, re-clustering; 29 steps end in a free phase, so the weights are
    // shared once more at the end (a third row after rounds 0 and 1).
    let stdout = caffe_prune(&[
        &"quantize",
        &"--json",
        &"-q",
        &"--rounds",
        &"1",
        &"--steps",
        &"29",
        &"--recluster",
        &"10",
        &"--bits",
        &"conv1=4,conv2=4,ip1=3,ip2=3",
        &"--solver",
        &solver,
        &"--weights",
        &pruned,
        &"-o",
        &tuned,
    ]);
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["rounds"].as_array().unwrap().len(), 3, "{report}");
    let (before, after) = (blobs(&pruned), blobs(&tuned));
    for (layer, bits) in [("conv1", 4), ("conv2", 4), ("ip1", 3), ("ip2", 3)] {
        let (old, new) = (&before[&(layer.to_string(), 0)], &after[&(layer.to_string(), 0)]);
        assert!(
            old.iter().zip(new).all(|(a, b)| (*a == 0.0) == (*b == 0.0)),
            "{layer}: mask changed"
        );
        let shared: BTreeSet<u32> = new.iter().filter(|v| **v != 0.0).map(|v| v.to_bits()).collect();
        assert!(shared.len() < 1 << bits, "{layer}: {} values", shared.len());
    }
}

#[test]
fn compress_runs_every_stage_and_its_caffez_gives_back_the_last_one() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let solver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_solver.prototxt");
    let (out, stages) = (tmp.path().join("lenet.caffez"), tmp.path().join("stages"));
    let stdout = caffe_prune(&[
        &"compress",
        &input,
        &"--solver",
        &solver,
        &"--keep",
        &"conv1=0.66,conv2=0.12,ip1=0.08,ip2=0.19",
        &"--prune-rounds",
        &"1",
        &"--prune-steps",
        &"20",
        &"--quantize-rounds",
        &"1",
        &"--quantize-steps",
        &"20",
        &"--stages",
        &stages,
        &"--json",
        &"-q",
        &"-o",
        &out,
    ]);
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let rows = report["stages"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["dense", "P", "P+Q", "P+Q+H"]);
    let bytes: Vec<u64> = rows.iter().map(|r| r["bytes"].as_u64().unwrap()).collect();
    assert!(bytes.windows(2).all(|w| w[0] > w[1]), "{bytes:?}");
    assert_eq!(bytes[0], std::fs::metadata(&input).unwrap().len());
    let coded = std::fs::read(&out).unwrap();
    assert_eq!(bytes[3], coded.len() as u64);
    // Deep Compression's rates and bits after a little training: near the paper's 39x (the post-training figure
    // is checked in quantize_writes_a_caffez...).
    assert!(bytes[0] / bytes[3] >= 35, "{bytes:?}");
    assert!(caffez::decompress(&coded).unwrap() == std::fs::read(stages.join("quantized.caffemodel")).unwrap());
    let accuracy = |i: usize| rows[i]["accuracy"].as_f64().unwrap();
    assert!(accuracy(0) > 0.99 && accuracy(2) > 0.95, "{rows:?}");

    // Wrong outputs are refused before any work.
    for (output, message) in [
        (tmp.path().join("x.caffemodel"), ".caffez"),
        (input.clone(), "refusing"),
    ] {
        let o = Command::new(BIN)
            .arg("compress")
            .arg(&input)
            .arg("--solver")
            .arg(&solver)
            .args(["--keep", "ip1=0.1", "-o"])
            .arg(&output)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(message) && err.lines().count() == 1, "{err}");
    }
}

#[test]
fn entropy_constrained_sharing_makes_the_file_smaller_and_keeps_the_mask() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pruned = tmp.path().join("p.caffemodel");
    prune_lenet(&fx, &pruned);
    let sizes: Vec<u64> = ["0", "4"]
        .iter()
        .map(|lambda| {
            let out = tmp.path().join(format!("q{lambda}.caffez"));
            let stdout = caffe_prune(&[&"quantize", &pruned, &"--entropy", lambda, &"--json", &"-o", &out]);
            let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
            let model = caffez::open_model(&out).unwrap();
            let net = model.net().unwrap();
            let before = blobs(&pruned);
            for layer in net.layers().iter().filter(|l| l.name().starts_with("ip")) {
                let new = layer.blobs()[0].data().to_vec_f32();
                let old = &before[&(layer.name().to_string(), 0)];
                assert!(old.iter().zip(&new).all(|(a, b)| (*a == 0.0) == (*b == 0.0)), "mask");
                let shared: BTreeSet<u32> = new.iter().filter(|v| **v != 0.0).map(|v| v.to_bits()).collect();
                assert!(shared.len() < 32);
            }
            report["model_coded_bytes"].as_u64().unwrap()
        })
        .collect();
    assert!(sizes[1] < sizes[0], "{sizes:?}");
    let o = Command::new(BIN)
        .args(["quantize", "--entropy=-1"])
        .arg(&pruned)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("entropy weight"));
}

#[test]
fn a_diverging_fine_tune_stops_with_a_clear_error() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (pruned, out) = (tmp.path().join("p.caffemodel"), tmp.path().join("q.caffemodel"));
    prune_lenet(&fx, &pruned);
    let solver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet_solver.prototxt");
    let o = Command::new(BIN)
        .args([
            "quantize",
            "-q",
            "--rounds",
            "1",
            "--steps",
            "50",
            "--lr-scale",
            "1000",
            "--solver",
        ])
        .arg(&solver)
        .arg("--weights")
        .arg(&pruned)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("diverged") && err.lines().count() == 1, "{err}");
    assert!(!out.exists());
}
