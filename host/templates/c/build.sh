#!/usr/bin/env bash
# Builds {{name}} into build/{{name}}.wasm with clang and wasi-libc
# (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
clang --target=wasm32-wasi -O2 -o build/{{name}}.wasm job.c
