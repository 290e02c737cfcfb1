#!/usr/bin/env bash
# Builds {{name}} into build/{{name}}.wasm, a wasm32-wasip1 command module.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip1 >/dev/null 2>&1 || true
cargo build --quiet --release --target wasm32-wasip1
mkdir -p build
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/{{name}}.wasm" build/{{name}}.wasm
