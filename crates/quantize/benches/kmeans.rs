//! Weight sharing (k-means + codes) with the prefix-sum iterations against the same algorithm
//! done naively, one full pass over the blob per iteration, in the same run. Both start from the
//! same `linspace`, stop by the same rule, give the same centroids (checked before timing, with
//! the iteration count printed) and end with the same code assignment; only the iterations
//! differ, so the ratio grows with the number of iterations scipy's stopping rule allows.
//!
//! Weights are deterministic pseudo-random, roughly normal with std 0.05 like trained layers,
//! magnitude-pruned: LeNet's ip1 (400,000 weights) dense and at the paper's 8% kept, 10 M dense
//! weights at 8 bits (the k-means target size), and a 100 M-weight blob (about AlexNet's
//! fc6 + fc7 + fc8 together) at 10% kept. `_t0` runs to convergence (threshold 0) instead of
//! scipy's 1e-5, as re-clustering during trained quantization might.

use divan::{black_box, Bencher};
use quantize::reference::kmeans_linear;
use quantize::synthetic::pruned;
use quantize::{assign, quantize, KMeansOptions};

fn main() {
    divan::main();
}

/// `(name, len, cut, bits, threshold)`: `|w| <= cut` is pruned; with std 0.05, cut 0.0875 keeps
/// about 8% and 0.0822 about 10%.
const CASES: [(&str, usize, f32, u32, f64); 7] = [
    ("ip1_8pct_B5", 400_000, 0.0875, 5, 1e-5),
    ("ip1_dense_B5", 400_000, 0.0, 5, 1e-5),
    ("ip1_dense_B8", 400_000, 0.0, 8, 1e-5),
    ("ip1_dense_B5_t0", 400_000, 0.0, 5, 0.0),
    ("dense10M_B8", 10_000_000, 0.0, 8, 1e-5),
    ("big100M_10pct_B5", 100_000_000, 0.0822, 5, 1e-5),
    ("big100M_10pct_B8", 100_000_000, 0.0822, 8, 1e-5),
];
const SMALL: [&str; 4] = ["ip1_8pct_B5", "ip1_dense_B5", "ip1_dense_B8", "ip1_dense_B5_t0"];
const LARGE: [&str; 3] = ["dense10M_B8", "big100M_10pct_B5", "big100M_10pct_B8"];

fn case(name: &str) -> (Vec<f32>, KMeansOptions) {
    let &(_, len, cut, bits, threshold) = CASES.iter().find(|c| c.0 == name).expect("a bench case name");
    (pruned(len, 7, cut), KMeansOptions::new(bits).with_threshold(threshold))
}

/// The naive baseline: k-means with a pass per iteration, then the same codes.
fn naive(w: &[f32], options: &KMeansOptions) -> (Vec<f32>, Vec<u8>) {
    let clustering = kmeans_linear(w, (1 << options.bits) - 1, options.threshold, options.max_iterations);
    let mut codebook = vec![0.0];
    codebook.extend_from_slice(&clustering.centroids);
    let codes = assign(w, &codebook).expect("valid codebook");
    (codebook, codes)
}

/// Checks once that both give the same codebook, and prints the iteration count.
fn check(name: &str, w: &[f32], options: &KMeansOptions) {
    let q = quantize(w, options).expect("finite weights");
    let (codebook, codes) = naive(w, options);
    let scale = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert_eq!(q.codebook.len(), codebook.len(), "{name}: centroid counts differ");
    let worst = q
        .codebook
        .iter()
        .zip(&codebook)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-6 * scale, "{name}: centroids differ by {worst}");
    let same = q.codes.iter().zip(&codes).filter(|(a, b)| a == b).count();
    eprintln!(
        "{name}: {} nonzeros, {} iterations, {} centroids, {:.4}% of codes equal to the naive run's",
        w.iter().filter(|&&x| x != 0.0).count(),
        q.iterations,
        q.codebook.len() - 1,
        100.0 * same as f64 / w.len().max(1) as f64,
    );
}

#[divan::bench(args = SMALL, sample_count = 20)]
fn small_prefix_sums(bencher: Bencher, name: &str) {
    let (w, options) = case(name);
    check(name, &w, &options);
    bencher.bench_local(|| quantize(black_box(&w), &options).expect("finite weights"));
}

#[divan::bench(args = SMALL, sample_count = 20)]
fn small_naive(bencher: Bencher, name: &str) {
    let (w, options) = case(name);
    bencher.bench_local(|| naive(black_box(&w), &options));
}

#[divan::bench(args = LARGE, sample_count = 3, sample_size = 1)]
fn large_prefix_sums(bencher: Bencher, name: &str) {
    let (w, options) = case(name);
    check(name, &w, &options);
    bencher.bench_local(|| quantize(black_box(&w), &options).expect("finite weights"));
}

#[divan::bench(args = LARGE, sample_count = 3, sample_size = 1)]
fn large_naive(bencher: Bencher, name: &str) {
    let (w, options) = case(name);
    bencher.bench_local(|| naive(black_box(&w), &options));
}
