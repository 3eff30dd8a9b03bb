#!/usr/bin/env python3
"""Baseline for `cargo xtask bench-kmeans`: the Deep Compression tutorial's weight sharing in scipy.

For each line `name path bits repeats` of argv[1] (path: raw little-endian float32 weights),
times, `repeats` times each:
  - kmeans: nz = W[W != 0]; kmeans(nz, np.linspace(nz.min(), nz.max(), 2**bits - 1)), the
            tutorial's call (scipy works in float32 for float32 weights);
  - vq:     vq(nz, codebook), the tutorial's codes against the centroids found.
Prints one JSON object: per case the medians in seconds and scipy's centroids, with the numpy and
scipy versions. Also, untimed, the same call in float64 (weights and starting points widened):
scipy's float32 sums drift with the cluster sizes (about 1.7e-5 of max|w| at 10 M weights), so our
centroids, summed in f64, are checked against the float64 run.
"""

import json
import sys
import time

import numpy as np
import scipy
from scipy.cluster.vq import kmeans, vq


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    cases = []
    for line in open(sys.argv[1]):
        name, path, bits, repeats = line.split()
        bits, repeats = int(bits), int(repeats)
        W = np.fromfile(path, dtype="<f4")
        kmeans_s, vq_s = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            nz = W[W != 0]
            codebook, distortion = kmeans(nz, np.linspace(nz.min(), nz.max(), 2**bits - 1))
            kmeans_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            codes, _ = vq(nz, codebook)
            vq_s.append(time.perf_counter() - t)
        start = np.linspace(nz.min(), nz.max(), 2**bits - 1)
        codebook64, _ = kmeans(nz.astype(np.float64), start.astype(np.float64))
        cases.append({
            "name": name,
            "kmeans_median_s": median(kmeans_s),
            "vq_median_s": median(vq_s),
            "repeats": repeats,
            "centroids": [float(c) for c in codebook],
            "distortion": float(distortion),
            "centroids_f64": [float(c) for c in codebook64],
        })
    print(json.dumps({"numpy": np.__version__, "scipy": scipy.__version__, "cases": cases}))


if __name__ == "__main__":
    main()
