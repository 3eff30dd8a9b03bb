//! Keep-fraction pruning against a plain copy of the same blob, at LeNet's sizes and at 100 M
//! weights (about AlexNet's fc6 + fc7 + fc8 together). Weights are deterministic pseudo-random,
//! roughly normal with std 0.05 like trained layers. Each pruning iteration gets a fresh copy of
//! the blob (not timed); the `copy` benches time `copy_from_slice` of the same blob into an
//! already written buffer, the floor any in-place pass over it is measured against.

use divan::Bencher;
use prune::{prune_in_place, Rule};

fn main() {
    divan::main();
}

/// LeNet's weight blobs (conv1, conv2, ip1, ip2) with the tutorial's keep fractions.
const LENET: [(&str, usize, f64); 4] = [
    ("conv1", 500, 0.3),
    ("conv2", 25_000, 0.1),
    ("ip1", 400_000, 0.01),
    ("ip2", 5_000, 0.2),
];
const LENET_NAMES: [&str; 4] = ["conv1", "conv2", "ip1", "ip2"];

const BIG_LEN: usize = 100_000_000;
const BIG_KEEP: f64 = 0.1;

use prune::synthetic::weights;

fn lenet_blob(name: &str) -> (Vec<f32>, f64) {
    let (i, &(_, len, t)) = LENET
        .iter()
        .enumerate()
        .find(|(_, (n, _, _))| *n == name)
        .expect("bench argument is a LeNet layer name");
    (weights(len, i as u64 + 1), t)
}

#[divan::bench(args = LENET_NAMES)]
fn lenet_keep_fraction(bencher: Bencher, layer: &str) {
    let (blob, t) = lenet_blob(layer);
    bencher
        .with_inputs(|| blob.clone())
        .bench_local_refs(|w| prune_in_place(w, Rule::KeepFraction(t)));
}

#[divan::bench(args = LENET_NAMES)]
fn lenet_copy(bencher: Bencher, layer: &str) {
    let (blob, _) = lenet_blob(layer);
    let mut dst = blob.clone();
    bencher.bench_local(|| dst.copy_from_slice(divan::black_box(&blob)));
}

/// 100 M weights, with the rayon pool limited to `threads`: shows whether parallelism pays.
#[divan::bench(args = [1, 2], sample_count = 5, sample_size = 1)]
fn big_keep_fraction(bencher: Bencher, threads: usize) {
    let blob = weights(BIG_LEN, 42);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool of 1 or 2 threads");
    bencher
        .with_inputs(|| blob.clone())
        .bench_local_refs(|w| pool.install(|| prune_in_place(w, Rule::KeepFraction(BIG_KEEP))));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn big_copy(bencher: Bencher) {
    let blob = weights(BIG_LEN, 42);
    let mut dst = blob.clone();
    bencher.bench_local(|| dst.copy_from_slice(divan::black_box(&blob)));
}
