#!/usr/bin/env bash
# Builds {{name}} into build/{{name}}.wasm, a wasm32-wasip2 component of the job world.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --quiet --release --target wasm32-wasip2
mkdir -p build
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" build/{{name}}.wasm
