//! The solver on LeNet with real data and real Caffe files: test nets against Caffe's test accuracy, snapshots
//! against a caffemodel and a solverstate real Caffe wrote, iter_size against a full batch.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use caffe_proto::{NetParameter, SolverState};
use common::{fixtures, read_net, read_solver, weights};
use prost::Message as _;
use train::{
    Control, DataFeeder, DataOptions, IterationReport, Observer, Snapshot, Solver, SolverNets, Source, TestReport,
};

/// The lenet_fashion solver (train/test net, test_iter 100) with the TRAIN Data layer reading the MNIST 10k LMDB
/// (the Fashion-MNIST training set is not among the fixtures) and the TEST one the Fashion-MNIST test LMDB.
fn fashion_solver(fx: &Path, edit: impl FnOnce(&mut caffe_proto::SolverParameter)) -> Solver {
    let dir = fx.join("models/lenet_fashion");
    let mut param = read_solver(&dir.join("lenet_solver.prototxt"));
    edit(&mut param);
    let nets = SolverNets::resolve(&param, |p| Ok::<_, String>(read_net(&dir.join(p)))).unwrap();
    let data = fx.join("golden/data");
    let mut train_data = DataOptions::new(&data);
    train_data
        .sources
        .insert("mnist".into(), Source::Lmdb(data.join("mnist_train10k_lmdb")));
    let train = DataFeeder::new(&nets.train, &nets.train_state, &train_data).unwrap();
    assert_eq!(train.layers(), ["mnist"]);
    // TRAIN overrides do not reach the TEST net; its own override points at the test LMDB by absolute path.
    train_data
        .test_sources
        .insert("mnist".into(), Source::Lmdb(data.join("fashion_mnist_test_lmdb")));
    let test = DataFeeder::new(&nets.tests[0].param, &nets.tests[0].state, &train_data).unwrap();
    Solver::with_feeders(&param, nets, Box::new(train), vec![Box::new(test)]).unwrap()
}

#[derive(Default)]
struct Record {
    iterations: Vec<IterationReport>,
    tests: Vec<TestReport>,
    snapshots: Vec<Snapshot>,
}

impl Observer for Record {
    fn on_iteration(&mut self, report: &IterationReport) -> Control {
        self.iterations.push(report.clone());
        Control::Continue
    }
    fn on_test(&mut self, report: &TestReport) -> Control {
        self.tests.push(report.clone());
        Control::Continue
    }
    fn on_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        self.snapshots.push(snapshot);
        Ok(())
    }
}

#[test]
fn test_net_scores_equal_caffe_test() {
    let Some(fx) = fixtures() else { return };
    let mut solver = fashion_solver(&fx, |p| {
        p.max_iter = Some(2);
        p.test_interval = Some(2);
        p.test_compute_loss = Some(true);
        p.display = Some(1);
        p.snapshot = Some(0);
    });
    solver
        .load_weights(&weights(
            &fx.join("models/lenet_fashion/lenet_fashion_iter_10000.caffemodel"),
        ))
        .unwrap();
    let mut record = Record::default();
    solver.solve(&mut record).unwrap();
    // Tests at iteration 0 (test_initialization) and after the last one (Solve's final TestAll).
    assert_eq!(record.tests.iter().map(|t| t.iter).collect::<Vec<_>>(), [0, 2]);
    let first = &record.tests[0];
    let names: Vec<&str> = first.outputs.iter().map(|o| o.blob.as_str()).collect();
    assert_eq!(names, ["accuracy", "loss"]);
    // golden/lenet/lenet_fashion/result.json: Caffe's `caffe test` printed accuracy 0.8968, loss 0.324098; pycaffe's
    // mean of the 100 batch values is 0.896800000667572 and 0.32409813545644284.
    let accuracy = first.outputs[0].value;
    let loss = first.outputs[1].value;
    assert!(
        (f64::from(accuracy) - 0.896800000667572).abs() < 1e-6,
        "accuracy {accuracy}"
    );
    assert!(
        (f64::from(loss) - 0.32409813545644284).abs() < 1e-5 * 0.324,
        "loss {loss}"
    );
    assert_eq!((first.outputs[0].loss_weight, first.outputs[1].loss_weight), (0.0, 1.0));
    assert!((first.loss.unwrap() - loss).abs() < 1e-6);
    // Two updates, then Caffe's extra forward for the display (display divides max_iter), then the final snapshot.
    let iters: Vec<(i32, bool)> = record.iterations.iter().map(|r| (r.iter, r.lr.is_some())).collect();
    assert_eq!(iters, [(0, true), (1, true), (2, false)]);
    assert_eq!(record.iterations[0].outputs[0].blob, "loss");
    assert_eq!(record.snapshots.len(), 1);
    assert_eq!(record.snapshots[0].model_filename, "lenet_fashion_iter_2.caffemodel");
}

#[test]
fn snapshot_model_has_the_layers_real_caffe_writes() {
    let Some(fx) = fixtures() else { return };
    let path = fx.join("models/lenet_fashion/lenet_fashion_iter_10000.caffemodel");
    let mut solver = fashion_solver(&fx, |_| {});
    solver.load_weights(&weights(&path)).unwrap();
    let ours = solver.to_proto();
    let caffe = NetParameter::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    // Same layers and parameters as Caffe's Net::ToProto of the TRAIN net, byte for byte.
    assert_eq!(ours.name, caffe.name);
    assert_eq!(ours.layer.len(), caffe.layer.len());
    for (a, b) in ours.layer.iter().zip(&caffe.layer) {
        let strip = |l: &caffe_proto::LayerParameter| caffe_proto::LayerParameter {
            blobs: vec![],
            ..l.clone()
        };
        assert_eq!(strip(a), strip(b), "layer {}", b.name());
        assert!(a.blobs == b.blobs, "layer {}: blobs differ", b.name());
    }
    assert!(ours.encode_to_vec() == caffe.encode_to_vec(), "encodings differ");
}

#[test]
fn real_solverstate_restores_and_snapshots_byte_for_byte() {
    let Some(fx) = fixtures() else { return };
    let dir = fx.join("models/lenet_fashion");
    let bytes = std::fs::read(dir.join("lenet_fashion_iter_10000.solverstate")).unwrap();
    let state = SolverState::decode(bytes.as_slice()).unwrap();
    let mut solver = fashion_solver(&fx, |_| {});
    solver
        .load_weights(&weights(&dir.join("lenet_fashion_iter_10000.caffemodel")))
        .unwrap();
    solver.restore(&state).unwrap();
    assert_eq!(solver.iter(), 10000);
    assert_eq!(solver.history().len(), 8);
    let again = solver.state(state.learned_net());
    assert_eq!(again.encode_to_vec(), bytes);
    let snapshot = solver.snapshot();
    assert_eq!(snapshot.state_filename, "lenet_fashion_iter_10000.solverstate");
    assert_eq!(snapshot.state.learned_net(), "lenet_fashion_iter_10000.caffemodel");
}

struct Losses(Vec<f32>);

impl Observer for Losses {
    fn on_iteration(&mut self, report: &IterationReport) -> Control {
        self.0.push(report.loss);
        Control::Continue
    }
}

fn golden_solver(fx: &Path, batch: u32, iter_size: i32) -> Solver {
    let dir = fx.join("golden/train");
    let mut param = read_solver(&dir.join("lenet_solver_sgd.prototxt"));
    param.iter_size = Some(iter_size);
    let nets = SolverNets::resolve(&param, |p| {
        let mut net = read_net(&dir.join(p));
        net.layer[0].data_param.as_mut().unwrap().batch_size = Some(batch);
        Ok::<_, String>(net)
    })
    .unwrap();
    let mut solver = Solver::new(&param, nets, &DataOptions::new(fx.join("golden"))).unwrap();
    solver
        .load_weights(&weights(&dir.join("round_start.caffemodel")))
        .unwrap();
    solver
}

fn lenet_params(solver: &Solver) -> BTreeMap<String, Vec<f32>> {
    let mut out = BTreeMap::new();
    for layer in ["conv1", "conv2", "ip1", "ip2"] {
        for (i, t) in solver.net().params(layer).unwrap().iter().enumerate() {
            out.insert(format!("{layer}_{i}"), t.data().to_vec());
        }
    }
    out
}

#[test]
fn iter_size_two_at_batch_32_equals_batch_64() {
    let Some(fx) = fixtures() else { return };
    let mut full = golden_solver(&fx, 64, 1);
    let mut halves = golden_solver(&fx, 32, 2);
    let start = lenet_params(&full);
    let (mut l1, mut l2) = (Losses(vec![]), Losses(vec![]));
    full.step(5, &mut l1).unwrap();
    halves.step(5, &mut l2).unwrap();
    for (a, b) in l1.0.iter().zip(&l2.0) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "loss {a} vs {b}");
    }
    let (p1, p2) = (lenet_params(&full), lenet_params(&halves));
    for (key, begin) in &start {
        let c1: Vec<f32> = p1[key].iter().zip(begin).map(|(a, b)| a - b).collect();
        let c2: Vec<f32> = p2[key].iter().zip(begin).map(|(a, b)| a - b).collect();
        let error = common::relative_error(&c2, &c1);
        assert!(
            error < 1e-4,
            "{key}: change differs by {error:e} of its largest magnitude"
        );
    }
}

#[test]
fn masked_retraining_keeps_the_pruned_lenet_sparse() {
    let Some(fx) = fixtures() else { return };
    let mut solver = golden_solver(&fx, 64, 1);
    let start = lenet_params(&solver);
    let masks: Vec<train::ParamMask> = ["conv1", "conv2", "ip1", "ip2"]
        .iter()
        .map(|l| train::ParamMask::from_nonzero(*l, 0, &start[&format!("{l}_0")]))
        .collect();
    solver.set_masks(&masks).unwrap();
    solver.step(10, &mut ()).unwrap();
    let now = lenet_params(&solver);
    // train_golden.json: kept 149/2499/3999/999 (real Caffe's dense steps regrow ip1 to 342,400 nonzeros).
    for (layer, kept) in [("conv1", 149), ("conv2", 2499), ("ip1", 3999), ("ip2", 999)] {
        let key = format!("{layer}_0");
        let nonzero = now[&key].iter().filter(|v| v.to_bits() != 0).count();
        assert_eq!(nonzero, kept, "{layer}");
        let moved = now[&key].iter().zip(&start[&key]).filter(|(a, b)| a != b).count();
        assert!(moved > kept / 2, "{layer}: only {moved} of {kept} kept weights moved");
    }
}

#[test]
fn idx_pair_feeds_the_same_batches_as_the_lmdb() {
    let Some(fx) = fixtures() else { return };
    let dir = fx.join("golden/train");
    let net = read_net(&dir.join("lenet_train_b64.prototxt"));
    let state = caffe_proto::NetState {
        phase: Some(caffe_proto::Phase::Train as i32),
        ..Default::default()
    };
    let mut lmdb = DataFeeder::new(&net, &state, &DataOptions::new(fx.join("golden"))).unwrap();
    let mut idx_options = DataOptions::new("/nonexistent");
    idx_options.sources.insert(
        "mnist".into(),
        Source::Idx {
            images: fx.join("mnist/train-10k-images-idx3-ubyte.gz"),
            labels: fx.join("mnist/train-10k-labels-idx1-ubyte.gz"),
        },
    );
    let mut idx = DataFeeder::new(&net, &state, &idx_options).unwrap();
    use train::Feeder as _;
    assert_eq!(
        lmdb.input_shapes(),
        [("data".into(), vec![64, 1, 28, 28]), ("label".into(), vec![64])]
    );
    assert_eq!(lmdb.input_shapes(), idx.input_shapes());
    // A net of the Data layer alone, to receive the batches.
    let only_data = NetParameter {
        layer: vec![net.layer[0].clone()],
        ..Default::default()
    };
    let mut options = engine::NetOptions::train();
    for (blob, shape) in lmdb.input_shapes() {
        options = options.with_input_shape(&blob, &shape);
    }
    let mut a = engine::Net::new(&only_data, &options).unwrap();
    let mut b = engine::Net::new(&only_data, &options).unwrap();
    // 157 batches of 64 pass the 10,000th record: the wrap-around is covered too.
    for batch in 0..160 {
        lmdb.feed(&mut a).unwrap();
        idx.feed(&mut b).unwrap();
        assert!(a.blob("data") == b.blob("data"), "batch {batch}: images differ");
        assert!(a.blob("label") == b.blob("label"), "batch {batch}: labels differ");
    }
    assert_eq!(lmdb.positions(), [(160 * 64) % 10_000]);
}

#[test]
fn solvers_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Solver>();
}

/// A solver over a fixture model folder's own solver file, its nets read from the folder (paths in the solver are
/// reduced to file names), every input fed by a feeder that only declares shapes.
fn fixture_solver(dir: &Path, solver_file: &str, data_shape: &[usize]) -> Solver {
    let mut param = read_solver(&dir.join(solver_file));
    if caffemodel::upgrade::solver_needs_upgrade(&param) {
        caffemodel::upgrade::upgrade_solver(&mut param).unwrap();
    }
    let nets = SolverNets::resolve(&param, |p| {
        let name = Path::new(p).file_name().unwrap();
        let mut net = read_net(&dir.join(name));
        // 2014 nets leave the loss layer without a top; Caffe's Net::Init gives loss layers (AutoTopBlobs) an
        // anonymous one, which the engine does not do yet.
        for layer in &mut net.layer {
            if layer.r#type().ends_with("Loss") && layer.top.is_empty() {
                layer.top.push(format!("{}_auto_top", layer.name()));
            }
        }
        Ok::<_, String>(net)
    })
    .unwrap();
    let shapes = |batch: usize| {
        let mut data = data_shape.to_vec();
        data[0] = batch;
        vec![("data".to_string(), data), ("label".to_string(), vec![batch])]
    };
    let batch = |net: &NetParameter| {
        net.layer
            .iter()
            .find_map(|l| l.data_param.as_ref().map(|d| d.batch_size() as usize))
            .unwrap()
    };
    let feeder = |n: usize| -> Box<dyn train::Feeder> {
        Box::new(train::FnFeeder::new(shapes(n), |_: &mut engine::Net| Ok(())))
    };
    let train = feeder(batch(&nets.train));
    let tests = nets.tests.iter().map(|t| feeder(batch(&t.param))).collect();
    Solver::with_feeders(&param, nets, train, tests).unwrap()
}

#[test]
fn legacy_and_cifar_solverstates_restore() {
    let Some(fx) = fixtures() else { return };
    for (folder, solver_file, model, state_file, shape, iter) in [
        (
            "lenet_mnist_v1_2014",
            "lenet_solver.prototxt",
            "lenet_iter_10000",
            "lenet_iter_10000.solverstate",
            [0, 1, 28, 28],
            10000,
        ),
        (
            "cifar10_quick_v1_2014",
            "cifar10_quick_solver.prototxt",
            "cifar10_quick_iter_4000",
            "cifar10_quick_iter_4000.solverstate",
            [0, 3, 32, 32],
            4000,
        ),
        (
            "cifar10_full_v2",
            "cifar10_full_solver.prototxt",
            "cifar10_full_iter_70000.caffemodel",
            "cifar10_full_iter_70000.solverstate",
            [0, 3, 32, 32],
            70000,
        ),
    ] {
        let dir = fx.join("models").join(folder);
        let mut solver = fixture_solver(&dir, solver_file, &shape);
        solver.load_weights(&weights(&dir.join(model))).unwrap();
        let bytes = std::fs::read(dir.join(state_file)).unwrap();
        let state = SolverState::decode(bytes.as_slice()).unwrap();
        solver.restore(&state).unwrap();
        assert_eq!(solver.iter(), iter, "{folder}");
        for (ours, theirs) in solver.history().iter().zip(&state.history) {
            assert!(ours == &theirs.data, "{folder}: history differs");
        }
        // The snapshot writes modern shapes; the values are the file's.
        let again = solver.state(state.learned_net());
        assert_eq!(again.history.len(), state.history.len());
        assert!(again.history.iter().all(|b| b.shape.is_some() && b.num.is_none()));
    }
}

#[test]
fn mean_files_are_listed_and_required() {
    let Some(fx) = fixtures() else { return };
    let dir = fx.join("models/cifar10_full_v2");
    let param = read_solver(&dir.join("cifar10_full_solver.prototxt"));
    let nets = SolverNets::resolve(&param, |p| {
        Ok::<_, String>(read_net(&dir.join(Path::new(p).file_name().unwrap())))
    })
    .unwrap();
    assert_eq!(nets.mean_files(), ["examples/cifar10/mean.binaryproto"]);
    // Without the decoded mean the feeder names what is missing (the source is checked first, so point it at a
    // real LMDB).
    let mut data = DataOptions::new(&dir);
    data.sources
        .insert("cifar".into(), Source::Lmdb(fx.join("golden/data/mnist_test_lmdb")));
    let err = DataFeeder::new(&nets.train, &nets.train_state, &data).err().unwrap();
    assert_eq!(
        err.to_string(),
        "data layer 'cifar' (Data): mean_file 'examples/cifar10/mean.binaryproto' was not supplied in \
         DataOptions::mean_files"
    );
    // A missing source names the resolved path.
    let err = DataFeeder::new(&nets.train, &nets.train_state, &DataOptions::new("/nowhere"))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "data layer 'cifar': source '/nowhere/examples/cifar10/cifar10_train_lmdb' not found"
    );
}
