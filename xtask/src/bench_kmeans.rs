//! `cargo xtask bench-kmeans`: weight sharing (1-D k-means, then codes) against the tutorial's scipy calls
//! (xtask/baselines/kmeans_scipy.py) on the same weights, in the same run.
//!
//! Two comparisons per blob: our `quantize::kmeans` against scipy's `kmeans(W[W != 0], linspace(...))`, and our
//! `quantize::quantize` (k-means and one code per weight) against that `kmeans` followed by `vq` for the codes, as the
//! tutorial does. Before timing, the centroids are checked against scipy's: the same count, within 1e-5 of max|w| (the
//! tolerance of `crates/quantize/tests/scipy_parity.rs`) of scipy's run in float64, and the distance to its float32
//! run (the tutorial's, whose f32 sums drift with the cluster sizes) is printed.

use crate::bench::median;
use anyhow::{bail, Context, Result};
use quantize::{kmeans, quantize, KMeansOptions};
use std::io::Write;
use std::process::Command;
use std::time::Instant;

/// (name, weights, pruning cut |w| <= cut, bits, our repeats, scipy's repeats): synthetic trained-like weights
/// (roughly normal, std 0.05, `quantize::synthetic::pruned`, seed 7). The target is the 10 M blob at 8 bits
/// (256 codebook entries); LeNet's ip1 at the paper's 8% kept and 5 bits is there for scale.
const CASES: [(&str, usize, f32, u32, usize, usize); 3] = [
    ("ip1_8pct_B5", 400_000, 0.0875, 5, 101, 5),
    ("dense10M_B8", 10_000_000, 0.0, 8, 21, 3),
    ("big100M_10pct_B8", 100_000_000, 0.0822, 8, 7, 3),
];

/// The scipy baseline's JSON: measured now, or (for quick iterations, said so in the output) read from the file named
/// by `BENCH_KMEANS_SCIPY_JSON` (a `scipy_kmeans.json` an earlier run wrote, for the same cases).
fn scipy_baseline(dir: &std::path::Path, list_path: &std::path::Path) -> Result<serde_json::Value> {
    if let Some(saved) = std::env::var_os("BENCH_KMEANS_SCIPY_JSON") {
        let text = std::fs::read(&saved).with_context(|| format!("reading {}", saved.to_string_lossy()))?;
        eprintln!(
            "scipy baseline read from {} (not measured in this run)",
            saved.to_string_lossy()
        );
        return Ok(serde_json::from_slice(&text)?);
    }
    let script = crate::repo_root().join("xtask/baselines/kmeans_scipy.py");
    eprintln!("running the scipy baseline ({}; a minute or two)...", script.display());
    let out = Command::new("python3")
        .arg(&script)
        .arg(list_path)
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!("scipy baseline failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(dir.join("scipy_kmeans.json"), &out.stdout)?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Runs the benchmark and prints medians and ratios; writes target/bench/kmeans.json.
pub fn run() -> Result<()> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"))
        .join("bench");
    std::fs::create_dir_all(&dir)?;
    // BENCH_KMEANS_ONLY=dense10M_B8: just those cases.
    let only = std::env::var("BENCH_KMEANS_ONLY").ok();
    let cases: Vec<_> = CASES
        .iter()
        .filter(|c| only.as_deref().is_none_or(|only| only.split(',').any(|n| n == c.0)))
        .collect();
    let mut list = String::new();
    for &&(name, len, cut, bits, _, scipy_repeats) in &cases {
        let path = dir.join(format!("kmeans_{name}.f32"));
        let weights = quantize::synthetic::pruned(len, 7, cut);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for w in &weights {
            file.write_all(&w.to_le_bytes())?;
        }
        file.flush()?;
        list.push_str(&format!("{name} {} {bits} {scipy_repeats}\n", path.display()));
    }
    let list_path = dir.join("kmeans_cases.txt");
    std::fs::write(&list_path, &list)?;
    let scipy = scipy_baseline(&dir, &list_path)?;
    println!(
        "{} thread(s); scipy {} numpy {}",
        rayon::current_num_threads(),
        scipy["scipy"].as_str().unwrap_or("?"),
        scipy["numpy"].as_str().unwrap_or("?")
    );
    let mut rows = Vec::new();
    for &&(name, len, cut, bits, repeats, _) in &cases {
        let weights = quantize::synthetic::pruned(len, 7, cut);
        let options = KMeansOptions::new(bits);
        let sp = scipy["cases"]
            .as_array()
            .and_then(|cases| cases.iter().find(|c| c["name"] == name))
            .with_context(|| format!("no scipy figures for {name}"))?;
        let centroids = |key: &str| -> Result<Vec<f32>> {
            Ok(sp[key]
                .as_array()
                .with_context(|| format!("scipy's {key}"))?
                .iter()
                .map(|c| c.as_f64().unwrap_or(f64::NAN) as f32)
                .collect())
        };
        let (theirs, theirs_f64) = (centroids("centroids")?, centroids("centroids_f64")?);
        let ours = kmeans(&weights, &options)?;
        let scale = weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let worst = |theirs: &[f32]| {
            if theirs.len() != ours.centroids.len() {
                return f32::INFINITY;
            }
            ours.centroids
                .iter()
                .zip(theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max)
                / scale
        };
        let (worst_f32, worst_f64) = (worst(&theirs), worst(&theirs_f64));
        if worst_f64 > 1e-5 {
            bail!(
                "{name}: our {} centroids differ from scipy's float64 run's {} by {worst_f64:e} of max|w|",
                ours.centroids.len(),
                theirs_f64.len()
            );
        }
        let (mut kmeans_s, mut quantize_s) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let t = Instant::now();
            std::hint::black_box(kmeans(std::hint::black_box(&weights), &options)?);
            kmeans_s.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(quantize(std::hint::black_box(&weights), &options)?);
            quantize_s.push(t.elapsed().as_secs_f64());
        }
        let (k, q) = (median(kmeans_s), median(quantize_s));
        let sk = sp["kmeans_median_s"].as_f64().unwrap_or(f64::NAN);
        let sq = sk + sp["vq_median_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{name:>17}: {} nonzeros, {} iterations, {} centroids, within {:.1e} of max|w| of scipy's in float64 \
             ({:.1e} of its float32 run's)\n\
             {:>19}k-means    ours {:>9.2} ms  scipy {:>9.1} ms  {:>6.1}x\n\
             {:>19}+ codes    ours {:>9.2} ms  scipy {:>9.1} ms  {:>6.1}x (scipy: kmeans + vq)",
            ours.nonzeros,
            ours.iterations,
            ours.centroids.len(),
            worst_f64,
            worst_f32,
            "",
            k * 1e3,
            sk * 1e3,
            sk / k,
            "",
            q * 1e3,
            sq * 1e3,
            sq / q,
        );
        rows.push(serde_json::json!({
            "case": name, "weights": len, "nonzeros": ours.nonzeros, "bits": bits, "iterations": ours.iterations,
            "centroids": ours.centroids.len(),
            "worst_centroid_difference_of_scale": {"scipy_f64": worst_f64, "scipy_f32": worst_f32},
            "ours_kmeans_median_s": k, "ours_quantize_median_s": q, "repeats": repeats,
            "scipy_kmeans_median_s": sk, "scipy_kmeans_vq_median_s": sq,
            "speedup_kmeans": sk / k, "speedup_with_codes": sq / q,
        }));
    }
    let report = serde_json::json!({
        "threads": rayon::current_num_threads(), "rows": rows, "scipy": scipy, "targets": {"speedup_at_least": 100},
    });
    std::fs::write(dir.join("kmeans.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written to {}", dir.join("kmeans.json").display());
    Ok(())
}
