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
