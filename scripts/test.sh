#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the numpy/scipy interop tests need, checks the
# generated testdata and the byte-exact roundtrip of every model, then runs the workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import numpy, scipy' 2>/dev/null; then
    python3 -m pip install --quiet numpy scipy
fi

cargo xtask testdata --check
if [ -d ../shared/fixtures ]; then
    cargo xtask roundtrip
else
    cargo xtask roundtrip testdata
fi
cargo test --workspace
