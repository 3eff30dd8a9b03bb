#!/usr/bin/env python3
"""Live real-Caffe side of `cargo xtask bench-eval` and `bench-train`, when pycaffe is importable.

Repeats the fixtures' own protocol (golden/caffe_speed.json) on this machine, now:
  forward: lenet_deploy_b100.prototxt + models/lenet_mnist_v2 weights; the 10,000 MNIST test images preloaded as
           float32 (pixel * 0.00390625); one pass = 100 x (copy a batch into net.blobs['data'], net.forward(),
           argmax of ip2); 1 warm-up pass, median of 3 timed passes; images/s = 10000 / median.
  train:   caffe.SGDSolver(lenet_solver_speed.prototxt) run from golden/speed (its Data layer reads
           ../data/mnist_train10k_lmdb), started from the same weights; step(20) warm-up, then 3 x timed
           step(500); iterations/s = 500 / median.

Usage: python3 caffe_speed.py FIXTURES forward|train
Prints one JSON object. Exits 3 when pycaffe cannot be imported (the caller then uses the recorded figures).
"""

import gzip
import json
import os
import sys
import time

try:
    import caffe  # noqa: F401
except ImportError:
    sys.exit(3)
import numpy as np


def median(xs):
    return sorted(xs)[len(xs) // 2]


def forward(fixtures):
    caffe.set_mode_cpu()
    golden = os.path.join(fixtures, "golden")
    net = caffe.Net(os.path.join(golden, "speed/lenet_deploy_b100.prototxt"),
                    os.path.join(fixtures, "models/lenet_mnist_v2/lenet_iter_10000.caffemodel"), caffe.TEST)
    with gzip.open(os.path.join(fixtures, "mnist/t10k-images-idx3-ubyte.gz")) as f:
        pixels = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    images = (pixels.reshape(10000, 1, 28, 28).astype(np.float32) * np.float32(0.00390625))

    def one_pass():
        labels = np.empty(10000, dtype=np.int64)
        for start in range(0, 10000, 100):
            net.blobs["data"].data[...] = images[start:start + 100]
            net.forward()
            labels[start:start + 100] = net.blobs["ip2"].data.argmax(axis=1)
        return labels

    one_pass()
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        one_pass()
        runs.append(time.perf_counter() - t0)
    return {"runs_s": runs, "median_s": median(runs), "images_per_s": 10000 / median(runs)}


def train(fixtures):
    caffe.set_mode_cpu()
    speed = os.path.join(fixtures, "golden/speed")
    os.chdir(speed)
    solver = caffe.SGDSolver("lenet_solver_speed.prototxt")
    solver.net.copy_from(os.path.join(fixtures, "models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
    solver.step(20)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        solver.step(500)
        runs.append(time.perf_counter() - t0)
    return {"runs_s": runs, "median_s": median(runs), "iters_per_s": 500 / median(runs)}


if __name__ == "__main__":
    fixtures, mode = sys.argv[1], sys.argv[2]
    print(json.dumps(forward(fixtures) if mode == "forward" else train(fixtures)))
