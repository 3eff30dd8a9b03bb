#!/usr/bin/env python3
"""Baseline for crates/prune/benches/prune.rs: the Deep Compression tutorial's pruning in numpy.

Times, on the same blob sizes and the same pseudo-random weights as the Rust bench:
  - copy:   np.copyto of the blob into an already written buffer (the floor for one pass);
  - prune:  k = floor((N-1) t); cut = np.sort(np.abs(W).ravel())[::-1][k]; keep |w| > cut, else +0.0
            (t = 1 leaves the blob untouched);
  - encode: the tutorial's relative-index encoding of the pruned blob, as a pure-Python loop.
            An entry (value, run) is stored for every nonzero value, with run = zeros skipped
            before it; when the skipped run has reached 2^B - 1 and another zero comes, that zero
            is stored as a filler (0.0, 2^B - 1). A trailing run of z zeros ends with one
            (0.0, z - 1) entry (fillers were already emitted as the run grew). B = 8 for conv
            layers, 5 for fully connected ones, as in the paper.
For the 100 M blob the Python loop would take minutes per run: encode is timed on the first 1 M
weights of the pruned blob and extrapolated linearly (said so in the output).

Prints one JSON object: medians in seconds, kept counts (they must equal the Rust crate's on the
same weights) and entry counts. Usage: python3 prune_numpy.py [--quick]  (--quick: LeNet only).

`python3 prune_numpy.py --once IN.npz OUT.npz` is the whole-process baseline: load LeNet's weights from an npz
(`<layer>_W` keys, as `caffe-convert X.caffemodel -o X.npz` writes them), prune conv1/conv2/ip1/ip2 at the
tutorial's rates, relative-index encode each, save `<layer>_W` (values, float32) and `<layer>_W_indx` (runs, uint8)
with np.savez, and print the kept counts as JSON.
"""

import json
import math
import platform
import sys
import time

import numpy as np

# Same layers, keep fractions and seeds as benches/prune.rs.
LENET = [("conv1", 500, 0.3, 8), ("conv2", 25_000, 0.1, 8), ("ip1", 400_000, 0.01, 5), ("ip2", 5_000, 0.2, 5)]
BIG = ("big", 100_000_000, 0.1, 5)
BIG_SEED = 42
ENCODE_SLICE = 1_000_000

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def weights(n, seed, chunk=1 << 22):
    """SplitMix64 then Irwin-Hall over four 32-bit uniforms, bit for bit as `weights()` in
    crates/prune/benches/prune.rs."""
    out = np.empty(n, dtype=np.float32)
    scale = 0.05 / math.sqrt(1.0 / 3.0)
    with np.errstate(over="ignore"):
        for start in range(0, n, chunk):
            i = np.arange(start, min(start + chunk, n), dtype=np.uint64)
            total = np.zeros(len(i), dtype=np.uint64)
            for draw in (1, 2):  # weight i uses the generator's states 2i+1 and 2i+2, wrapping
                z = np.uint64(seed) + (np.uint64(2) * i + np.uint64(draw)) * GOLDEN
                z = (z ^ (z >> np.uint64(30))) * MIX1
                z = (z ^ (z >> np.uint64(27))) * MIX2
                z = z ^ (z >> np.uint64(31))
                total += (z & np.uint64(0xFFFFFFFF)) + (z >> np.uint64(32))
            out[start : start + len(i)] = ((total.astype(np.float64) / 4294967296.0 - 2.0) * scale).astype(np.float32)
    return out


def prune(w, t):
    """The tutorial's sort-based rule."""
    if t == 1.0 or w.size == 0:
        return w.copy()
    k = int(math.floor((w.size - 1) * t))
    cut = np.sort(np.abs(w).ravel())[::-1][k]
    return np.where(np.abs(w) > cut, w, np.float32(0.0))


def encode(values, bits):
    """Relative-index encoding, one Python iteration per weight."""
    max_run = (1 << bits) - 1
    entries = []
    run = 0
    for v in values.tolist():
        if v != 0.0:
            entries.append((v, run))
            run = 0
        elif run == max_run:
            entries.append((0.0, run))
            run = 0
        else:
            run += 1
    if run > 0:
        entries.append((0.0, run - 1))
    return entries


def decode(entries, n):
    """Inverse of encode, to check it (not timed)."""
    out = np.zeros(n, dtype=np.float32)
    pos = -1
    for v, run in entries:
        pos += run + 1
        out[pos] = v
    assert pos == n - 1, (pos, n)
    return out


def median_time(fn, repeats):
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def measure(name, n, t, bits, seed, repeats, encode_limit=None):
    w = weights(n, seed)
    dst = w.copy()
    copy_s, _ = median_time(lambda: np.copyto(dst, w), repeats)
    prune_s, pruned = median_time(lambda: prune(w, t), repeats)
    kept = int(np.count_nonzero(pruned))
    row = {"name": name, "n": n, "t": t, "index_bits": bits, "copy_median_s": copy_s,
           "prune_median_s": prune_s, "kept": kept}
    if encode_limit is None:
        encode_s, entries = median_time(lambda: encode(pruned, bits), repeats)
        assert np.array_equal(decode(entries, n), pruned)
        row.update({"encode_median_s": encode_s, "entries": len(entries)})
    else:
        part = pruned[:encode_limit]
        part_s, entries = median_time(lambda: encode(part, bits), repeats)
        assert np.array_equal(decode(entries, encode_limit), part)
        row.update({
            "encode_median_s_measured": part_s,
            "encode_measured_on": encode_limit,
            "encode_median_s_extrapolated": part_s * n / encode_limit,
            "encode_note": f"Python loop timed on the first {encode_limit} weights, extrapolated linearly to {n}",
        })
    return row


def once(src, dst):
    """Whole-process baseline: load, prune, encode and save LeNet as the tutorial does (see the module docs)."""
    weights_in = np.load(src)
    out, kept = {}, {}
    for name, _, t, bits in LENET:
        w = weights_in[f"{name}_W"]
        pruned = prune(w.ravel(), t)
        entries = encode(pruned, bits)
        out[f"{name}_W"] = np.array([v for v, _ in entries], dtype=np.float32)
        out[f"{name}_W_indx"] = np.array([r for _, r in entries], dtype=np.uint8)
        kept[name] = int(np.count_nonzero(pruned))
    np.savez(dst, **out)
    print(json.dumps({"kept": kept}))


def main():
    if sys.argv[1:2] == ["--once"]:
        once(sys.argv[2], sys.argv[3])
        return
    quick = "--quick" in sys.argv[1:]
    results = [measure(name, n, t, bits, i + 1, 7) for i, (name, n, t, bits) in enumerate(LENET)]
    if not quick:
        name, n, t, bits = BIG
        results.append(measure(name, n, t, bits, BIG_SEED, 3, encode_limit=ENCODE_SLICE))
    print(json.dumps({
        "baseline": "numpy sort-based prune + pure-Python relative-index encoder",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "statistic": "median wall-clock seconds",
        "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()
