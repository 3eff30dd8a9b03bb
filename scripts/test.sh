#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the numpy/scipy, onnxruntime and h5py interop tests
# need, checks the generated testdata and the byte-exact roundtrip of every model, then runs the workspace's tests,
# twice: with the kernels this CPU has, and with the portable ones only.
set -euo pipefail
cd "$(dirname "$0")/.."

# onnx/onnxruntime: the ONNX export tests run the models; h5py: the HDF5Data tests write their .h5 files with it.
if ! python3 -c 'import numpy, scipy, onnx, onnxruntime, h5py' 2>/dev/null; then
    python3 -m pip install --quiet numpy scipy onnx onnxruntime h5py
fi

cargo xtask testdata --check
if [ -d ../shared/fixtures ]; then
    cargo xtask roundtrip
else
    cargo xtask roundtrip testdata
fi
cargo test --workspace
# Once more with every kernel on its portable path (no AVX or AVX2: the fixed-order matrix product, the SSE2 pruning
# and encoding kernels), as on a CPU without wide vectors: no expected value may depend on the CPU.
CAFFE_RS_PORTABLE=1 cargo test --workspace
# Every public item documented, every doc link resolving.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
