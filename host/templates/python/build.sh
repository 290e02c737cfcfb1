#!/usr/bin/env bash
# Builds {{name}} into build/{{name}}.wasm with componentize-py
# (pip install componentize-py==0.25.1).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
componentize-py -d wit -w job componentize app -o build/{{name}}.wasm >/dev/null
