//! Real Caffe's SGD steps on LeNet (golden/train): losses of iterations 1..100 and the weights after 1, 10 and 100
//! iterations, from trained and from pruned weights.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{fixtures, read_net, read_solver, weights};
use train::{Control, DataOptions, IterationReport, Observer, Solver, SolverNets};

struct Losses(Vec<f32>);

impl Observer for Losses {
    fn on_iteration(&mut self, report: &IterationReport) -> Control {
        self.0.push(report.loss);
        Control::Continue
    }
}

fn params(solver: &Solver) -> BTreeMap<String, Vec<f32>> {
    let mut out = BTreeMap::new();
    for layer in ["conv1", "conv2", "ip1", "ip2"] {
        for (i, t) in solver.net().params(layer).unwrap().iter().enumerate() {
            out.insert(format!("{layer}_{i}"), t.data().to_vec());
        }
    }
    out
}

/// Largest |(found - start) - (golden - start)| over the largest |golden - start|, per blob.
fn change_errors(
    start: &BTreeMap<String, Vec<f32>>,
    now: &BTreeMap<String, Vec<f32>>,
    npz: &Path,
) -> Vec<(String, f64)> {
    let mut reader = sparse::NpzReader::open(npz).unwrap();
    let mut out = Vec::new();
    for (key, begin) in start {
        let golden = reader.read::<f32>(key).unwrap().data;
        let found: Vec<f32> = now[key].iter().zip(begin).map(|(a, b)| a - b).collect();
        let expected: Vec<f32> = golden.iter().zip(begin).map(|(a, b)| a - b).collect();
        out.push((key.clone(), common::relative_error(&found, &expected)));
    }
    out
}

fn check_run(case: &str, start_model: &str) {
    let Some(fx) = fixtures() else { return };
    let dir = fx.join("golden/train");
    let param = read_solver(&dir.join("lenet_solver_sgd.prototxt"));
    let nets = SolverNets::resolve(&param, |p| Ok::<_, String>(read_net(&dir.join(p)))).unwrap();
    let mut solver = Solver::new(&param, nets, &DataOptions::new(fx.join("golden"))).unwrap();
    let report = solver.load_weights(&weights(&fx.join(start_model))).unwrap();
    assert_eq!(report.copied, ["conv1", "conv2", "ip1", "ip2"]);
    let start = params(&solver);
    let mut losses = Losses(Vec::new());
    let golden_losses = sparse::read_npy::<f32>(dir.join(case).join("sgd_loss.npy"))
        .unwrap()
        .data;
    for (done, tolerance) in [(1, 1e-3), (10, 1e-3), (100, 1e-2)] {
        solver.step(done - solver.iter(), &mut losses).unwrap();
        let errors = change_errors(
            &start,
            &params(&solver),
            &dir.join(case).join(format!("sgd_iter{done}.npz")),
        );
        eprintln!("{case} after {done}: weight-change errors {errors:?}");
        for (key, error) in errors {
            assert!(
                error <= tolerance,
                "{case} iter {done} {key}: change error {error:e} > {tolerance:e}"
            );
        }
    }
    let worst = losses
        .0
        .iter()
        .zip(&golden_losses)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs() / f64::from(b.abs()))
        .enumerate()
        .fold((0, 0.0), |best, (i, e)| if e > best.1 { (i, e) } else { best });
    eprintln!(
        "{case}: worst loss relative error {:e} at iteration {}",
        worst.1,
        worst.0 + 1
    );
    for (i, (found, golden)) in losses.0.iter().zip(&golden_losses).enumerate() {
        let rel = (f64::from(*found) - f64::from(*golden)).abs() / f64::from(golden.abs());
        assert!(
            rel <= 1e-4,
            "{case} iteration {}: loss {found} vs Caffe's {golden} (relative {rel:e})",
            i + 1
        );
    }
    assert_eq!(losses.0.len(), 100);
}

#[test]
fn sgd_from_trained_equals_caffe() {
    check_run("from_trained", "models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
}

#[test]
fn sgd_from_pruned_equals_caffe() {
    check_run("from_pruned", "golden/train/round_start.caffemodel");
}

/// MNIST test accuracy of the train net's current weights, with golden/lenet/lenet_mnist_v2/lenet_test.prototxt
/// (TEST Data layer over golden/data/mnist_test_lmdb, batch 100, 100 iterations), as `caffe test` computes it.
fn test_accuracy(fx: &Path, solver: &Solver) -> f32 {
    use train::Feeder as _;
    let param = read_net(&fx.join("golden/lenet/lenet_mnist_v2/lenet_test.prototxt"));
    let state = caffe_proto::NetState {
        phase: Some(caffe_proto::Phase::Test as i32),
        ..Default::default()
    };
    let mut feeder = train::DataFeeder::new(&param, &state, &DataOptions::new(fx.join("golden"))).unwrap();
    let mut options = engine::NetOptions::test();
    for (blob, shape) in feeder.input_shapes() {
        options = options.with_input_shape(&blob, &shape);
    }
    let mut net = engine::Net::new(&param, &options).unwrap();
    let model = solver.to_proto();
    let weights: Vec<engine::LayerWeights> = model
        .layer
        .iter()
        .map(|l| engine::LayerWeights {
            name: l.name().to_string(),
            blobs: l.blobs.iter().map(engine::WeightBlob::from_proto).collect(),
        })
        .collect();
    net.copy_from(&weights).unwrap();
    let mut sum = 0.0f32;
    for _ in 0..100 {
        feeder.feed(&mut net).unwrap();
        net.forward().unwrap();
        sum += net.blob("accuracy").unwrap().data()[0];
    }
    sum / 100.0
}

/// train_golden.json `tutorial_round`: real Caffe's 500 dense SGD steps from the pruned start regrow the pruned
/// weights (exact nonzero counts) and bring MNIST test accuracy from 0.5685 to 0.9801.
#[test]
fn dense_tutorial_round_regrows_as_in_caffe() {
    let Some(fx) = fixtures() else { return };
    let dir = fx.join("golden/train");
    let param = read_solver(&dir.join("lenet_solver_sgd.prototxt"));
    let nets = SolverNets::resolve(&param, |p| Ok::<_, String>(read_net(&dir.join(p)))).unwrap();
    let mut solver = Solver::new(&param, nets, &DataOptions::new(fx.join("golden"))).unwrap();
    solver
        .load_weights(&weights(&dir.join("round_start.caffemodel")))
        .unwrap();
    let before = test_accuracy(&fx, &solver);
    assert!(
        (f64::from(before) - 0.568499998152256).abs() < 1e-6,
        "accuracy before {before}"
    );
    solver.step(500, &mut ()).unwrap();
    let now = params(&solver);
    for (layer, nonzero) in [("conv1", 500), ("conv2", 25000), ("ip1", 342400), ("ip2", 4294)] {
        let found = now[&format!("{layer}_0")].iter().filter(|v| **v != 0.0).count();
        assert_eq!(found, nonzero, "{layer}: nonzero weights after 500 dense steps");
    }
    let after = test_accuracy(&fx, &solver);
    eprintln!("accuracy {before} -> {after} (Caffe: 0.5685 -> 0.9801)");
    assert!(
        (f64::from(after) - 0.9801000064611435).abs() <= 0.002,
        "accuracy after {after}"
    );
}
