//! `cargo xtask bench-eval`: `caffe-prune eval` as a whole process over the 10,000 MNIST test images (the fixtures'
//! LMDB, through the net's Data layer with its transform), for the dense LeNet and for the LeNet pruned at the
//! tutorial's rates (conv1/conv2/ip1/ip2 keep 30/10/1/20%), alternating in the same run, with 1 and 2 threads.
//! Before timing, each side's 10,000 predictions are checked against real Caffe's (golden/lenet and golden/pruned).
//!
//! Real Caffe's side is its recorded `caffe test` run of the same net and data (golden/lenet/lenet_mnist_v2/
//! caffe_test.log): the time from its first log line to its last, which leaves out its process start and net
//! set-up, so the ratio against it understates ours. When pycaffe is importable, its forward is also measured now
//! (`xtask/baselines/caffe_speed.py`, the fixtures' protocol) and printed beside.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::bench::{median, target_dir};

/// The tutorial's keep fractions, and the golden folder holding Caffe's predictions for them.
const TUTORIAL_KEEP: &str = "conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2";
const TUTORIAL_GOLDEN: &str = "golden/pruned/lenet_mnist_v2/t_0.3_0.1_0.01_0.2/pred.npy";

/// Seconds from the first to the last timestamped line of a glog log (`I20261128 02:15:36.855379 ...`).
fn glog_span(log: &str) -> Result<f64> {
    let seconds = |line: &str| -> Option<f64> {
        let time = line.strip_prefix('I')?.split_whitespace().nth(1)?;
        let mut parts = time.split(':');
        let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
        Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
    };
    let stamps: Vec<f64> = log.lines().filter_map(seconds).collect();
    match (stamps.first(), stamps.last()) {
        (Some(first), Some(last)) if last > first => Ok(last - first),
        _ => bail!("no timestamped span in the Caffe log"),
    }
}

/// One `caffe-prune eval` run; returns its wall time.
fn eval(program: &Path, args: &[OsString], threads: usize) -> Result<f64> {
    let t0 = Instant::now();
    let out = Command::new(program)
        .arg("eval")
        .args(args)
        .args(["--threads", &threads.to_string(), "--quiet"])
        .output()
        .context("running caffe-prune eval")?;
    let elapsed = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("caffe-prune eval failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(elapsed)
}

/// Runs the benchmark: `runs` timed runs of each side per thread count, alternating; prints medians and ratios and
/// writes them to target/bench/eval.json.
pub fn run(runs: usize) -> Result<()> {
    let root = crate::repo_root();
    let fixtures = root.join("../shared/fixtures");
    let program = crate::bench::build_release(&["caffe-prune"])?.join("caffe-prune");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let dense = fixtures.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let pruned = dir.join("lenet_pruned_tutorial.caffemodel");
    let status = Command::new(&program)
        .arg(&dense)
        .args(["--keep", TUTORIAL_KEEP, "--quiet", "-o"])
        .arg(&pruned)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("pruning {} failed", dense.display());
    }
    let net = root.join("testdata/lenet_train_test.prototxt");
    let data = fixtures.join("golden/data/mnist_test_lmdb");
    let sides: [(&str, PathBuf, PathBuf); 2] = [
        ("dense", dense, fixtures.join("golden/lenet/lenet_mnist_v2/pred.npy")),
        ("pruned", pruned, fixtures.join(TUTORIAL_GOLDEN)),
    ];
    let args = |weights: &Path| -> Vec<OsString> {
        vec![
            "--net".into(),
            net.clone().into(),
            "--weights".into(),
            weights.into(),
            "--data".into(),
            data.clone().into(),
        ]
    };

    // Untimed: each side makes real Caffe's 10,000 predictions.
    for (name, weights, golden) in &sides {
        let predictions = dir.join(format!("eval_{name}_pred.npy"));
        let mut check = args(weights);
        check.extend(["--predictions".into(), predictions.clone().into()]);
        eval(&program, &check, 2)?;
        let ours = sparse::read_npy::<u8>(&predictions)?;
        let caffe = sparse::read_npy::<u8>(golden)?;
        let differ = ours.data.iter().zip(&caffe.data).filter(|(a, b)| a != b).count();
        if ours.data.len() != 10_000 || caffe.data.len() != 10_000 || differ != 0 {
            bail!(
                "{name}: {differ} of 10,000 predictions differ from real Caffe's ({})",
                golden.display()
            );
        }
    }
    let caffe_log = std::fs::read_to_string(fixtures.join("golden/lenet/lenet_mnist_v2/caffe_test.log"))?;
    let caffe_s = glog_span(&caffe_log)?;
    let caffe_rate = 10_000.0 / caffe_s;
    println!(
        "real Caffe (caffe test, Data layer, recorded): {caffe_s:.3} s from its first log line to its last -> \
         {caffe_rate:.0} images/s"
    );
    let mut report = serde_json::Map::new();
    let live = crate::bench::live_caffe("forward")?;
    let live_rate = match &live {
        Some(live) => {
            let rate = live["images_per_s"]
                .as_f64()
                .context("caffe_speed.py: no images_per_s")?;
            println!("pycaffe forward measured now (batch 100, images preloaded): {rate:.0} images/s");
            Some(rate)
        }
        None => None,
    };
    for threads in [1, 2] {
        let (mut dense_s, mut pruned_s) = (Vec::new(), Vec::new());
        let (dense_args, pruned_args) = (args(&sides[0].1), args(&sides[1].1));
        // One warm-up of each (page cache, CPU frequency), then alternate.
        eval(&program, &dense_args, threads)?;
        eval(&program, &pruned_args, threads)?;
        for _ in 0..runs {
            dense_s.push(eval(&program, &dense_args, threads)?);
            pruned_s.push(eval(&program, &pruned_args, threads)?);
        }
        let (d, p) = (median(dense_s.clone()), median(pruned_s.clone()));
        println!(
            "{threads} thread{}: dense {d:.3} s ({:.0} images/s, {:.2}x Caffe), pruned {p:.3} s ({:.0} images/s, \
             {:.2}x Caffe): pruned/dense {:.2}x (medians of {runs})",
            if threads == 1 { "" } else { "s" },
            10_000.0 / d,
            caffe_s / d,
            10_000.0 / p,
            caffe_s / p,
            d / p
        );
        if let Some(rate) = live_rate {
            println!(
                "  against pycaffe's forward measured now: dense {:.2}x, pruned {:.2}x",
                10_000.0 / d / rate,
                10_000.0 / p / rate
            );
        }
        report.insert(
            format!("threads_{threads}"),
            serde_json::json!({
                "dense_s": dense_s, "pruned_s": pruned_s,
                "dense_median_s": d, "pruned_median_s": p,
                "pruned_speedup": d / p, "dense_vs_caffe": caffe_s / d, "pruned_vs_caffe": caffe_s / p,
            }),
        );
    }
    report.insert("caffe_test_log_span_s".into(), caffe_s.into());
    report.insert("pycaffe_live".into(), live.unwrap_or_default());
    report.insert("keep".into(), TUTORIAL_KEEP.into());
    std::fs::write(
        dir.join("eval.json"),
        serde_json::to_string_pretty(&serde_json::Value::Object(report))? + "\n",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_span_runs_from_the_first_stamp_to_the_last() {
        let log = "$ caffe test ...\nI20261128 02:15:36.855379 27769 caffe.cpp:268] Use CPU.\nnot a stamp\n\
                   I20261128 02:15:38.374980 27769 caffe.cpp:314] accuracy = 0.9914\n";
        assert!((glog_span(log).unwrap() - 1.519601).abs() < 1e-9);
        assert!(glog_span("no stamps\n").is_err());
    }
}
