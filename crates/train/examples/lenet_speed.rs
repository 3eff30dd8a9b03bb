//! Training speed on LeNet (batch 64, MNIST 10k LMDB, BVLC lenet_solver settings), to compare with real Caffe's
//! `golden/caffe_speed.json` (about 46 iterations/s on 2 cores).
//!
//! `cargo run --release -p train --example lenet_speed -- ../shared/fixtures [iterations]`

use std::path::PathBuf;
use std::time::Instant;

use train::{Control, DataOptions, IterationReport, Observer, Solver, SolverNets};

struct Quiet;

impl Observer for Quiet {
    fn on_iteration(&mut self, _report: &IterationReport) -> Control {
        Control::Continue
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let fixtures = PathBuf::from(args.next().unwrap_or_else(|| "../shared/fixtures".into()));
    let iterations: i32 = args.next().map_or(200, |s| s.parse().expect("iterations"));
    let dir = fixtures.join("golden/train");
    let schema = caffemodel::text::Schema::builtin();
    let param = caffemodel::text::read_solver(&dir.join("lenet_solver_sgd.prototxt"), &schema).unwrap();
    let nets = SolverNets::resolve(&param, |p| caffemodel::text::read_net(&dir.join(p), &schema)).unwrap();
    let mut solver = Solver::new(&param, nets, &DataOptions::new(fixtures.join("golden"))).unwrap();
    solver.step(20, &mut Quiet).unwrap();
    let start = Instant::now();
    solver.step(iterations, &mut Quiet).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{iterations} iterations in {seconds:.2} s: {:.1} iterations/s (loss {:.4})",
        f64::from(iterations) / seconds,
        solver.smoothed_loss()
    );
    // The engine's share: forward + backward on the last batch, no data reading, no update.
    let start = Instant::now();
    for _ in 0..iterations {
        solver.net_mut().forward_backward().unwrap();
    }
    let engine = start.elapsed().as_secs_f64();
    println!(
        "forward + backward alone: {:.2} ms per iteration; data + update: {:.2} ms per iteration",
        engine * 1e3 / f64::from(iterations),
        (seconds - engine) * 1e3 / f64::from(iterations)
    );
}
