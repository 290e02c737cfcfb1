#!/usr/bin/env bash
# Builds {{name}} into build/{{name}}.wasm with Zig 0.14 (pip install ziglang==0.14.1).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
python3 -m ziglang build-exe -target wasm32-wasi -O ReleaseSmall -femit-bin=build/{{name}}.wasm job.zig
rm -f build/{{name}}.wasm.o
