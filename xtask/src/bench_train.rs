//! `cargo xtask bench-train`: training speed of LeNet at batch 64, measured the way the fixtures measured real Caffe
//! (golden/caffe_speed.json: pycaffe SGDSolver on lenet_train_b64.prototxt, `step(20)` warm-up, then three timed
//! `step(500)`, iterations/s = 500 / median), with the same solver settings and data, and compared with Caffe's
//! recorded figure, and with pycaffe measured now when it is importable (`xtask/baselines/caffe_speed.py`). (LeNet
//! forward speed: `cargo bench -p engine`.)

use anyhow::{Context, Result};
use caffe_proto::NetParameter;
use caffemodel::text::{self, Schema};
use std::path::Path;
use std::time::Instant;

use crate::bench::median;

/// Real Caffe's training iterations/s on this machine class.
fn caffe_train_speed(fixtures: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(fixtures.join("golden/caffe_speed.json"))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let primary = json["primary"].as_str().context("caffe_speed.json: no primary build")?;
    let build = &json[primary];
    build["train"]["iters_per_s"]
        .as_f64()
        .context("caffe_speed.json: no train figure")
}

/// Runs the benchmark and prints medians and ratios.
pub fn run() -> Result<()> {
    let fixtures = crate::repo_root().join("../shared/fixtures");
    let golden = fixtures.join("golden/train");
    let caffe_train = caffe_train_speed(&fixtures)?;
    let schema = Schema::builtin();
    let mut param = text::read_solver(&golden.join("lenet_solver_sgd.prototxt"), &schema)?;
    param.snapshot_after_train = Some(false);
    let net = text::read_net(&golden.join("lenet_train_b64.prototxt"), &schema)?;
    param.net = None;
    param.net_param = Some(net);
    let nets = train::SolverNets::resolve(&param, |_| Err::<NetParameter, _>("no net files"))?;
    let mut solver = train::Solver::new(&param, nets, &train::DataOptions::new(fixtures.join("golden")))?;
    let start = std::fs::read(fixtures.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))?;
    solver.load_net_param(&prost::Message::decode(start.as_slice())?)?;
    solver.step(20, &mut ())?;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        solver.step(500, &mut ())?;
        runs.push(t0.elapsed().as_secs_f64());
    }
    let train_median = median(runs.clone());
    let ours_train = 500.0 / train_median;
    println!(
        "train (LeNet, batch 64, SGD, 500 iterations x 3): median {train_median:.3} s -> {ours_train:.1} iterations/s; \
         real Caffe {caffe_train:.1} iterations/s -> {:.2}x",
        ours_train / caffe_train
    );
    if let Some(live) = crate::bench::live_caffe("train")? {
        let rate = live["iters_per_s"].as_f64().context("caffe_speed.py: no iters_per_s")?;
        println!(
            "pycaffe measured now: {rate:.1} iterations/s -> ours {:.2}x",
            ours_train / rate
        );
    }
    println!(
        "  runs: {}",
        runs.iter().map(|r| format!("{r:.3} s")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
