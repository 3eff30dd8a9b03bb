//! `caffe-prune train` and `retrain` as a user runs them, against real Caffe's training steps and pruned accuracy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_caffe-prune");

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(BIN);
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every blob of a caffemodel by `<layer>_<index>`.
fn blobs(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let model = caffemodel::ModelFile::open(path).unwrap();
    let net = model.net().unwrap();
    let mut out = std::collections::BTreeMap::new();
    for layer in net.layers() {
        for (i, blob) in layer.blobs().iter().enumerate() {
            out.insert(format!("{}_{i}", layer.name()), blob.data().to_vec_f32());
        }
    }
    out
}

/// The tutorial's keep fractions for LeNet.
const KEEP: &str = "conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2";

/// `caffe-prune retrain --json` of the fixture LeNet with testdata's solver, writing `output`, with `extra`
/// arguments; the parsed report.
fn retrain_lenet(fx: &Path, output: &Path, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> serde_json::Value {
    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let solver = repo_root().join("testdata/lenet_solver.prototxt");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"retrain",
        &"--solver",
        &solver,
        &"--weights",
        &input,
        &"--json",
        &"-o",
        &output,
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ten_sgd_steps_from_the_command_line_match_real_caffe() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden/train");
    let tmp = tempfile::tempdir().unwrap();
    // The golden solver (BVLC lenet_solver settings, seed 1701), stopped after 10 iterations, snapshot in tmp.
    let solver = std::fs::read_to_string(golden.join("lenet_solver_sgd.prototxt"))
        .unwrap()
        .replace(
            "net: \"lenet_train_b64.prototxt\"",
            &format!("net: \"{}\"", golden.join("lenet_train_b64.prototxt").display()),
        )
        .replace("max_iter: 1000", "max_iter: 10")
        .replace(
            "snapshot: 0",
            &format!("snapshot: 0\nsnapshot_prefix: \"{}/snap\"", tmp.path().display()),
        );
    let solver_path = tmp.path().join("solver.prototxt");
    std::fs::write(&solver_path, solver).unwrap();
    let start = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let out = run(&[&"train", &"--solver", &solver_path, &"--weights", &start, &"--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["iterations"], 10);

    let ours = blobs(&tmp.path().join("snap_iter_10.caffemodel"));
    let before = blobs(&start);
    let mut caffe = sparse::NpzReader::open(golden.join("from_trained/sgd_iter10.npz")).unwrap();
    for key in caffe.keys().to_vec() {
        let theirs = caffe.read::<f32>(&key).unwrap().data;
        let (ours, start) = (&ours[&key], &before[&key]);
        // The rule: the change (after - start) within 1e-3 of its largest magnitude after 10 iterations.
        let largest = theirs
            .iter()
            .zip(start)
            .map(|(t, s)| (t - s).abs())
            .fold(0f32, f32::max);
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(o, t)| (o - t).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-3 * largest,
            "{key}: off by {worst}, largest change {largest}"
        );
    }
    // The solver state names the model and holds a momentum blob per learnable blob.
    let state = caffemodel::ModelFile::open(tmp.path().join("snap_iter_10.solverstate")).unwrap();
    let view = state.solver_state().unwrap();
    assert_eq!(view.iter(), Some(10));
    assert_eq!(view.history().count(), 8);
    assert!(view.learned_net().unwrap().ends_with("snap_iter_10.caffemodel"));
}

#[test]
fn deterministic_training_gives_the_same_bytes_with_any_kernel_and_thread_count() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden/train");
    let start = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let tmp = tempfile::tempdir().unwrap();
    // (threads, CAFFE_RS_PORTABLE, --deterministic): the AVX kernel at 1 and 3 threads, the portable (SSE2) kernel
    // at 2, as a CPU without AVX runs it, and the portable switch alone, which implies the fixed order.
    let runs = [(1, "0", true), (3, "0", true), (2, "1", true), (2, "1", false)];
    let mut models = Vec::new();
    for (i, &(threads, portable, deterministic)) in runs.iter().enumerate() {
        let dir = tmp.path().join(format!("run{i}"));
        std::fs::create_dir(&dir).unwrap();
        let solver = std::fs::read_to_string(golden.join("lenet_solver_sgd.prototxt"))
            .unwrap()
            .replace(
                "net: \"lenet_train_b64.prototxt\"",
                &format!("net: \"{}\"", golden.join("lenet_train_b64.prototxt").display()),
            )
            .replace("max_iter: 1000", "max_iter: 20")
            .replace(
                "snapshot: 0",
                &format!("snapshot: 0\nsnapshot_prefix: \"{}/snap\"", dir.display()),
            );
        let solver_path = dir.join("solver.prototxt");
        std::fs::write(&solver_path, solver).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["train", "--json", "--solver"])
            .arg(&solver_path)
            .arg("--weights")
            .arg(&start);
        if deterministic {
            cmd.arg("--deterministic");
        }
        let out = cmd
            .env("RAYON_NUM_THREADS", threads.to_string())
            .env("CAFFE_RS_PORTABLE", portable)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        models.push(std::fs::read(dir.join("snap_iter_20.caffemodel")).unwrap());
    }
    for (run, model) in runs.iter().zip(&models).skip(1) {
        assert!(model == &models[0], "{run:?} trained other bytes than {:?}", runs[0]);
    }
}

#[test]
fn retrain_holds_the_pruned_weights_at_zero_and_recovers_accuracy() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let output = tmp.path().join("retrained.caffemodel");
    let plot = tmp.path().join("rounds.svg");
    let report = retrain_lenet(
        &fx,
        &output,
        &[&"--keep", &KEEP, &"--rounds", &"2", &"--steps", &"60", &"--plot", &plot],
    );
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    // Round 0 is the pruned net before training: real Caffe scored it 0.5685 (golden/train/train_golden.json).
    let text = std::fs::read_to_string(fx.join("golden/train/train_golden.json")).unwrap();
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    let caffe_pruned = golden["tutorial_round"]["accuracy_loss_before"][0].as_f64().unwrap();
    assert!((rounds[0]["accuracy"].as_f64().unwrap() - caffe_pruned).abs() < 1e-6);
    // Caffe's test averages in float, as the solver does: 0.9914 to float precision.
    assert!((report["dense_accuracy"].as_f64().unwrap() - 0.9914).abs() < 1e-6);
    // 149 + 2499 + 3999 + 999 weights kept, in every round.
    for r in rounds {
        assert_eq!(r["kept_weights"], 7646, "round {}", r["round"]);
    }
    assert!(
        rounds[2]["accuracy"].as_f64().unwrap() > 0.9,
        "60 steps recover most of the accuracy"
    );

    // Every pruned weight is still exactly +0.0 in the output, and only the trained blobs changed.
    let pruned = tmp.path().join("pruned.caffemodel");
    let made = run(&[&input, &"--keep", &KEEP, &"-o", &pruned]);
    assert!(made.status.success());
    let (ours, reference) = (blobs(&output), blobs(&pruned));
    for layer in ["conv1", "conv2", "ip1", "ip2"] {
        let key = format!("{layer}_0");
        for (i, (o, p)) in ours[&key].iter().zip(&reference[&key]).enumerate() {
            if *p == 0.0 {
                assert_eq!(o.to_bits(), 0, "{key}[{i}] regrew to {o}");
            }
        }
        assert_ne!(ours[&key], reference[&key], "{key} was trained");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 1);
}

#[test]
fn regrow_lets_pruned_weights_grow_back_then_prunes_again() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("regrown.caffemodel");
    let report = retrain_lenet(
        &fx,
        &output,
        &[&"--keep", &KEEP, &"--rounds", &"1", &"--steps", &"20", &"--regrow"],
    );
    let round = &report["rounds"][1];
    assert!(
        round["kept_weights_before_reprune"].as_u64().unwrap() > 300_000,
        "{round}"
    );
    assert_eq!(round["kept_weights"], 7646);
    assert!(round["accuracy_before_reprune"].as_f64().unwrap() > round["accuracy"].as_f64().unwrap());
}

#[test]
fn retrain_without_a_test_net_reports_the_training_loss_and_a_given_test_net_its_accuracy() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    // Real Caffe's own training solver: BVLC's settings, no test net.
    let solver = golden.join("train/lenet_solver_sgd.prototxt");
    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let retrain = |extra: &[&dyn AsRef<std::ffi::OsStr>]| -> serde_json::Value {
        let output = tmp.path().join("r.caffemodel");
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"retrain",
            &"--solver",
            &solver,
            &"--weights",
            &input,
            &"--keep",
            &KEEP,
            &"--rounds",
            &"2",
            &"--steps",
            &"20",
            &"--json",
            &"-o",
            &output,
        ];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let report = retrain(&[]);
    assert!(report["dense_accuracy"].is_null());
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    assert!(rounds.iter().all(|r| r["accuracy"].is_null()));
    assert!(rounds[0]["train_loss"].is_null(), "round 0 has not trained");
    for r in &rounds[1..] {
        let loss = r["train_loss"].as_f64().unwrap();
        assert!(loss > 0.0 && loss < 3.0, "{loss}");
        assert_eq!(r["kept_weights"], 7646);
    }
    // A test net given on the command line: 10 batches of 100 test images.
    let test_net = golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt");
    let test_data = golden.join("data/mnist_test_lmdb");
    let report = retrain(&[
        &"--test-net",
        &test_net,
        &"--test-iter",
        &"10",
        &"--test-data",
        &test_data,
    ]);
    assert!(report["dense_accuracy"].as_f64().unwrap() > 0.98);
    let last = report["rounds"].as_array().unwrap().last().unwrap().clone();
    assert!(last["accuracy"].as_f64().unwrap() > 0.9, "{last}");
    assert!(last["train_loss"].as_f64().is_some());
}

#[test]
fn retrain_refuses_bad_arguments_in_one_line() {
    let Some(fx) = testkit::fixtures() else { return };
    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let solver = repo_root().join("testdata/lenet_solver.prototxt");
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("o.caffemodel");
    let check = |extra: &[&dyn AsRef<std::ffi::OsStr>], expect: &str| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"retrain", &"--solver", &solver, &"--weights", &input];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{err}");
    };
    check(&[&"--keep", &"conv1=2", &"-o", &out_path], "[0, 1]");
    check(&[&"--keep", &"nosuch=0.5", &"-o", &out_path], "nosuch");
    check(
        &[&"--keep", &"conv1=0.5", &"-o", &input],
        "refusing to write an output over the input",
    );
    check(
        &[&"--keep", &"conv1=0.5", &"--schedule", &"1.5", &"-o", &out_path],
        "schedule",
    );
    assert!(!out_path.exists());
}

#[test]
fn a_schedule_prunes_gradually_down_to_the_final_fractions() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("gradual.caffemodel");
    let report = retrain_lenet(
        &fx,
        &output,
        &[
            &"--keep",
            &KEEP,
            &"--schedule",
            &"0.5,0.2",
            &"--rounds",
            &"3",
            &"--steps",
            &"5",
        ],
    );
    let kept: Vec<u64> = report["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kept_weights"].as_u64().unwrap())
        .collect();
    // floor((N-1) t) per layer, t = max(schedule, final): 0.5 everywhere (249 + 12499 + 199999 + 2499), then
    // 0.3 / 0.2 / 0.2 / 0.2 (149 + 4999 + 79999 + 999), then the final 149 + 2499 + 3999 + 999.
    assert_eq!(kept, [215_246, 215_246, 86_146, 7_646]);
}

#[test]
fn train_and_test_data_overrides_reach_their_own_phase() {
    // BVLC's nets call the TRAIN and the TEST Data layer both "mnist". --train-data and --test-data give the IDX
    // files those LMDBs were made from, so a correct run reads the same records in the same order and writes the
    // same bytes as a run on the prototxt's own sources; a mixed-up one trains on the test images.
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (lmdb, idx) = (tmp.path().join("lmdb.caffemodel"), tmp.path().join("idx.caffemodel"));
    let common: [&dyn AsRef<std::ffi::OsStr>; 6] = [&"--keep", &"ip1=0.05", &"--rounds", &"1", &"--steps", &"3"];
    let a = retrain_lenet(&fx, &lmdb, &common);
    let (train_idx, test_idx) = (
        fx.join("mnist/train-10k-images-idx3-ubyte.gz"),
        fx.join("mnist/t10k-images-idx3-ubyte.gz"),
    );
    let mut overridden = common.to_vec();
    overridden.extend_from_slice(&[&"--train-data", &train_idx, &"--test-data", &test_idx]);
    let b = retrain_lenet(&fx, &idx, &overridden);
    assert!(std::fs::read(&lmdb).unwrap() == std::fs::read(&idx).unwrap());
    assert_eq!(a["rounds"], b["rounds"]);
}

#[test]
fn distillation_from_the_dense_model_trains_and_bad_settings_are_refused() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (plain, distilled) = (
        tmp.path().join("plain.caffemodel"),
        tmp.path().join("distilled.caffemodel"),
    );
    let common: [&dyn AsRef<std::ffi::OsStr>; 6] = [&"--keep", &KEEP, &"--rounds", &"1", &"--steps", &"60"];
    let without = retrain_lenet(&fx, &plain, &common);
    let mut extra = common.to_vec();
    extra.extend_from_slice(&[&"--distill", &"4", &"--distill-weight", &"4"]);
    let with = retrain_lenet(&fx, &distilled, &extra);
    let accuracy = |r: &serde_json::Value, round: usize| r["rounds"][round]["accuracy"].as_f64().unwrap();
    // The same pruned start; the soft targets change the training (and its reported loss includes them).
    assert_eq!(accuracy(&without, 0), accuracy(&with, 0));
    assert!(accuracy(&with, 1) > 0.9, "{with}");
    assert_ne!(blobs(&plain)["ip1_0"], blobs(&distilled)["ip1_0"]);

    let input = fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let solver = repo_root().join("testdata/lenet_solver.prototxt");
    let out = tmp.path().join("x.caffemodel");
    for (extra, message) in [
        (vec!["--distill", "0"], "temperature"),
        (vec!["--distill", "4", "--distill-blob", "nosuch"], "no blob 'nosuch'"),
    ] {
        let o = Command::new(BIN)
            .args(["retrain", "--keep", KEEP, "--solver"])
            .arg(&solver)
            .arg("--weights")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(&extra)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(message) && err.lines().count() == 1, "{extra:?}: {err}");
        assert!(!out.exists());
    }
    // The soft loss's weight without --distill is a usage error (exit code 2).
    let o = Command::new(BIN)
        .args(["retrain", "--keep", KEEP, "--distill-weight", "2", "--solver"])
        .arg(&solver)
        .arg("--weights")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--distill <T>"));
}
