#!/usr/bin/env bash
# Builds {{name}} into build/{{name}}.wasm with componentize-js.
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] || npm install --no-audit --no-fund --silent
npm run --silent build
