//! `cargo xtask bench-prune`: prune + relative-index export of LeNet-sized blobs and a 100 M-weight blob, against the
//! tutorial's algorithm in numpy (xtask/baselines/prune_numpy.py, same weights bit for bit) in the same run, and
//! against one memcpy pass over the blob.

use crate::bench::median;
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Instant;

/// (name, weights, keep fraction, index bits, seed): the baseline script's table.
const BLOBS: [(&str, usize, f64, u8, u64); 5] = [
    ("conv1", 500, 0.3, 8, 1),
    ("conv2", 25_000, 0.1, 8, 2),
    ("ip1", 400_000, 0.01, 5, 3),
    ("ip2", 5_000, 0.2, 5, 4),
    ("big", 100_000_000, 0.1, 5, 42),
];

/// The numpy baseline's JSON: measured now, or (for quick iterations, said so in the output) read from the file named
/// by `BENCH_PRUNE_NUMPY_JSON`.
fn numpy_baseline(dir: &std::path::Path) -> Result<(serde_json::Value, bool)> {
    if let Some(saved) = std::env::var_os("BENCH_PRUNE_NUMPY_JSON") {
        let text = std::fs::read(&saved).with_context(|| format!("reading {}", saved.to_string_lossy()))?;
        eprintln!(
            "numpy baseline read from {} (not measured in this run)",
            saved.to_string_lossy()
        );
        return Ok((serde_json::from_slice(&text)?, true));
    }
    let script = crate::repo_root().join("xtask/baselines/prune_numpy.py");
    eprintln!(
        "running the numpy baseline ({}; the 100 M blob takes a minute)...",
        script.display()
    );
    let out = Command::new("python3")
        .arg(&script)
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!("numpy baseline failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(dir.join("prune_numpy.json"), &out.stdout)?;
    Ok((serde_json::from_slice(&out.stdout)?, false))
}

/// Prune + export as a program does it: the keep-fraction cut (one read pass), then `sparse::encode_gaps_pruned`, which
/// zeroes the dropped weights in place and gap-encodes the blob in one pass.
fn prune_and_encode(weights: &mut [f32], t: f64, bits: u8) -> Result<sparse::GapEncoded> {
    Ok(match prune::keep_fraction_cut(weights, t)? {
        Some(cut) => sparse::encode_gaps_pruned(weights, bits, cut)?.0,
        None => sparse::encode_gaps(weights, bits)?,
    })
}

/// The same in two separate steps (prune in place, then encode): the path before the fused pass, timed for comparison
/// and used to check the fused one.
fn prune_then_encode(weights: &mut [f32], t: f64, bits: u8) -> Result<sparse::GapEncoded> {
    prune::prune_in_place(weights, prune::Rule::KeepFraction(t))?;
    Ok(sparse::encode_gaps(weights, bits)?)
}

/// Runs the benchmark and prints medians and ratios.
pub fn run() -> Result<()> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"))
        .join("bench");
    std::fs::create_dir_all(&dir)?;
    let (numpy, numpy_reused) = numpy_baseline(&dir)?;
    let mut rows = Vec::new();
    // BENCH_PRUNE_ONLY=conv1,ip1: just those blobs (for profiling).
    let only = std::env::var("BENCH_PRUNE_ONLY").ok();
    for (i, &(name, len, t, bits, seed)) in BLOBS.iter().enumerate() {
        if only.as_deref().is_some_and(|only| !only.split(',').any(|n| n == name)) {
            continue;
        }
        let original = prune::synthetic::weights(len, seed);
        let repeats = if len > 1_000_000 { 7 } else { 201 };
        let mut scratch = original.clone();

        // Untimed check: the fused pass leaves the same weights and the same encoding as the two steps.
        let mut two_step = original.clone();
        let expected = prune_then_encode(&mut two_step, t, bits)?;
        let encoded = prune_and_encode(&mut scratch, t, bits)?;
        if encoded != expected
            || scratch
                .iter()
                .map(|w| w.to_bits())
                .ne(two_step.iter().map(|w| w.to_bits()))
        {
            bail!("{name}: the fused prune + encode differs from prune_in_place + encode_gaps");
        }
        let kept = encoded.nonzero_count();
        drop((two_step, expected, encoded));

        let (mut copy_s, mut total_s, mut two_step_s) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats {
            let t0 = Instant::now();
            scratch.copy_from_slice(&original);
            copy_s.push(t0.elapsed().as_secs_f64());
            // Timed: prune the blob in place and encode it (the copy above restores it between runs).
            let t0 = Instant::now();
            let encoded = prune_and_encode(&mut scratch, t, bits)?;
            total_s.push(t0.elapsed().as_secs_f64());
            drop(std::hint::black_box(encoded));

            scratch.copy_from_slice(&original);
            let t0 = Instant::now();
            let encoded = prune_then_encode(&mut scratch, t, bits)?;
            two_step_s.push(t0.elapsed().as_secs_f64());
            drop(std::hint::black_box(encoded));
            scratch.copy_from_slice(&original);
        }
        // Where the time goes: the cut alone, and the fused pass alone with the cut known.
        let (mut cut_s, mut pass_s) = (Vec::new(), Vec::new());
        let cut = prune::keep_fraction_cut(&original, t)?;
        for _ in 0..repeats.min(21) {
            let t0 = Instant::now();
            std::hint::black_box(prune::keep_fraction_cut(&original, t)?);
            cut_s.push(t0.elapsed().as_secs_f64());
            if let Some(cut) = cut {
                let t0 = Instant::now();
                let encoded = sparse::encode_gaps_pruned(&mut scratch, bits, cut)?;
                pass_s.push(t0.elapsed().as_secs_f64());
                drop(std::hint::black_box(encoded));
                scratch.copy_from_slice(&original);
            }
        }
        let np = &numpy["results"][i];
        if np["kept"].as_u64() != Some(kept as u64) {
            bail!("{name}: numpy kept {} weights, we kept {kept}", np["kept"]);
        }
        let np_encode = np["encode_median_s"]
            .as_f64()
            .or(np["encode_median_s_extrapolated"].as_f64())
            .unwrap_or(0.0);
        let np_total = np["prune_median_s"].as_f64().unwrap_or(0.0) + np_encode;
        let (copy, total, two_step) = (median(copy_s), median(total_s), median(two_step_s));
        rows.push(serde_json::json!({
            "blob": name, "weights": len, "keep": t, "index_bits": bits, "kept": kept, "repeats": repeats,
            "rust_prune_encode_median_s": total, "memcpy_median_s": copy,
            "rust_two_step_median_s": two_step,
            "rust_cut_median_s": median(cut_s.clone()), "rust_fused_pass_median_s": if pass_s.is_empty() { 0.0 } else { median(pass_s.clone()) },
            "numpy_prune_encode_median_s": np_total,
            "numpy_encode_extrapolated": np["encode_median_s"].is_null(),
            "speedup_vs_numpy": np_total / total, "ratio_to_memcpy": total / copy,
        }));
        println!(
            "{name:>5} {len:>11} weights: ours {:>11.1} us, numpy {:>13.1} us{} -> {:>6.1}x faster; {:>6.2}x one memcpy \
             ({:.1} us); two steps {:.1} us ({:.1}x numpy)",
            total * 1e6,
            np_total * 1e6,
            if np["encode_median_s"].is_null() { " (encode extrapolated from 1 M)" } else { "" },
            np_total / total,
            total / copy,
            copy * 1e6,
            two_step * 1e6,
            np_total / two_step,
        );
        println!(
            "      of which: cut {:.1} us, zero + encode {:.1} us",
            median(cut_s) * 1e6,
            if pass_s.is_empty() { 0.0 } else { median(pass_s) * 1e6 }
        );
    }
    let whole = if only.is_none() {
        Some(whole_process(&dir)?)
    } else {
        None
    };
    let report = serde_json::json!({"rows": rows, "whole_process": whole, "numpy": numpy, "numpy_reused": numpy_reused, "targets": {"speedup_at_least": 50, "memcpy_ratio_at_most": 3}});
    std::fs::write(dir.join("prune.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written to {}", dir.join("prune.json").display());
    Ok(())
}

/// Whole processes, LeNet from its file to the pruned, relative-index file: `caffe-prune` (with the npz alone, and
/// with the pruned caffemodel as well) against the tutorial's numpy code as one process (`prune_numpy.py --once`,
/// reading the same weights from an npz), alternating, 21 runs each. Both keep the same weights per layer.
fn whole_process(dir: &std::path::Path) -> Result<serde_json::Value> {
    let root = crate::repo_root();
    let bin = crate::bench::build_release(&["caffe-prune", "caffe-convert"])?;
    let model = root.join("../shared/fixtures/models/lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let dense_npz = dir.join("lenet_dense.npz");
    let status = Command::new(bin.join("caffe-convert"))
        .arg(&model)
        .arg("-o")
        .arg(&dense_npz)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("caffe-convert {} -o {} failed", model.display(), dense_npz.display());
    }
    let keep = "conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2";
    let ours_npz = dir.join("lenet_pruned_whole.npz");
    let ours_model = dir.join("lenet_pruned_whole.caffemodel");
    let mut npz_only = Command::new(bin.join("caffe-prune"));
    npz_only
        .arg(&model)
        .args(["--keep", keep, "--quiet", "--npz"])
        .arg(&ours_npz);
    let mut both = Command::new(bin.join("caffe-prune"));
    both.arg(&model)
        .args(["--keep", keep, "--quiet", "--npz"])
        .arg(&ours_npz)
        .arg("-o")
        .arg(&ours_model);
    let mut numpy = Command::new("python3");
    numpy
        .arg(root.join("xtask/baselines/prune_numpy.py"))
        .arg("--once")
        .arg(&dense_npz)
        .arg(dir.join("lenet_pruned_numpy.npz"));
    let timed = |command: &mut Command| -> Result<(f64, Vec<u8>)> {
        // Untimed: write back what the previous run left dirty, so every timed run starts from the same state.
        // numpy does not fsync its output; our fsync commits the file system's journal and would otherwise write
        // numpy's file as well.
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        let t0 = Instant::now();
        let out = command.output()?;
        let elapsed = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok((elapsed, out.stdout))
    };
    // Untimed: numpy keeps what the tutorial's rates keep, as our table says (149, 2499, 3999, 999).
    let (_, printed) = timed(&mut numpy)?;
    let kept: serde_json::Value = serde_json::from_slice(&printed)?;
    for (layer, expected) in [("conv1", 149), ("conv2", 2499), ("ip1", 3999), ("ip2", 999)] {
        if kept["kept"][layer].as_u64() != Some(expected) {
            bail!(
                "numpy kept {} weights of {layer}, caffe-prune keeps {expected}",
                kept["kept"][layer]
            );
        }
    }
    let (mut npz_s, mut both_s, mut numpy_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..21 {
        npz_s.push(timed(&mut npz_only)?.0);
        both_s.push(timed(&mut both)?.0);
        numpy_s.push(timed(&mut numpy)?.0);
    }
    let (npz_m, both_m, numpy_m) = (median(npz_s), median(both_s), median(numpy_s));
    println!(
        "whole process, LeNet: caffe-prune --npz {:.2} ms ({:.1}x numpy), with -o as well {:.2} ms ({:.1}x); the \
         tutorial's numpy code {:.1} ms (medians of 21; every output is fsync'd, numpy's are not)",
        npz_m * 1e3,
        numpy_m / npz_m,
        both_m * 1e3,
        numpy_m / both_m,
        numpy_m * 1e3
    );
    Ok(serde_json::json!({
        "caffe_prune_npz_median_s": npz_m, "caffe_prune_npz_and_caffemodel_median_s": both_m,
        "numpy_once_median_s": numpy_m, "speedup_npz": numpy_m / npz_m, "speedup_both": numpy_m / both_m,
    }))
}
