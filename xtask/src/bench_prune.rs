//! `cargo xtask bench-prune`: prune + relative-index export of LeNet-sized blobs and a 100 M-weight blob, against the
//! tutorial's algorithm in numpy (xtask/baselines/prune_numpy.py, same weights bit for bit) in the same run, and
//! against one memcpy pass over the blob.

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

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Runs the benchmark and prints medians and ratios.
pub fn run() -> Result<()> {
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
    let numpy: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut rows = Vec::new();
    for (i, &(name, len, t, bits, seed)) in BLOBS.iter().enumerate() {
        let original = prune::synthetic::weights(len, seed);
        let repeats = if len > 1_000_000 { 5 } else { 51 };
        let mut scratch = original.clone();
        let (mut copy_s, mut total_s) = (Vec::new(), Vec::new());
        let mut kept = 0;
        for _ in 0..repeats {
            let t0 = Instant::now();
            scratch.copy_from_slice(&original);
            copy_s.push(t0.elapsed().as_secs_f64());
            // Timed: prune the blob in place, then encode it (the copy above restores it between runs).
            let t0 = Instant::now();
            prune::prune_in_place(&mut scratch, prune::Rule::KeepFraction(t))?;
            let encoded = sparse::encode_gaps(&scratch, bits)?;
            total_s.push(t0.elapsed().as_secs_f64());
            kept = encoded.values.iter().filter(|v| **v != 0.0).count();
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
        let (copy, total) = (median(copy_s), median(total_s));
        rows.push(serde_json::json!({
            "blob": name, "weights": len, "keep": t, "index_bits": bits, "kept": kept,
            "rust_prune_encode_median_s": total, "memcpy_median_s": copy,
            "numpy_prune_encode_median_s": np_total,
            "numpy_encode_extrapolated": np["encode_median_s"].is_null(),
            "speedup_vs_numpy": np_total / total, "ratio_to_memcpy": total / copy,
        }));
        println!(
            "{name:>5} {len:>11} weights: ours {:>10.6} s, numpy {:>10.6} s{} -> {:>7.1}x faster; {:.2}x one memcpy ({:.6} s)",
            total,
            np_total,
            if np["encode_median_s"].is_null() { " (encode extrapolated from 1 M)" } else { "" },
            np_total / total,
            total / copy,
            copy
        );
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"))
        .join("bench");
    std::fs::create_dir_all(&dir)?;
    let report = serde_json::json!({"rows": rows, "numpy": numpy, "targets": {"speedup_at_least": 50, "memcpy_ratio_at_most": 3}});
    std::fs::write(dir.join("prune.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written to {}", dir.join("prune.json").display());
    Ok(())
}
