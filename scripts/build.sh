#!/bin/sh
# Builds the Worker (wasm32) into build/ with worker-build, using the local
# wasm-bindgen and esbuild instead of downloading them. Called by wrangler's [build].
set -eu
if [ "${DENET_SKIP_BUILD:-}" = 1 ] && [ -f build/index.js ]; then
  exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/@esbuild/linux-x64/bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$root/node_modules/.bin/wasm-opt}"
exec "$HOME/.cargo/bin/worker-build" --release
