#!/usr/bin/env bash
# Builds the TypeScript SDK into sdk/dist/: crates/wasm for wasm32 (plain cargo), the
# pinned wasm-bindgen CLI (--target web: browsers, and Node given the bytes; its .d.ts
# carries the types generated from the Rust ones), then sdk/src/index.ts compiled by
# tsc (the npm package typescript) to index.js and index.d.ts. No download at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
cargo build -q -p denet-wasm --target wasm32-unknown-unknown --release
rm -rf sdk/dist sdk/src/wasm
mkdir -p sdk/dist
wasm-bindgen --target web --out-dir sdk/src/wasm target/wasm32-unknown-unknown/release/denet_wasm.wasm
wasm-opt -Os --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  sdk/src/wasm/denet_wasm_bg.wasm -o sdk/src/wasm/denet_wasm_bg.wasm
tsc -p sdk/tsconfig.json
cp -r sdk/src/wasm sdk/dist/wasm
cp sdk/package.json sdk/dist/
# The relay's static assets ([assets] in wrangler.toml): the page at / and the SDK at /sdk/.
rm -rf public
mkdir -p public
cp page/index.html page/app.js page/names.js page/sw.js page/style.css page/icon.svg page/_headers public/
cp -r sdk/dist public/sdk
echo "sdk: built sdk/dist and public/ ($(du -sh sdk/dist | cut -f1))"
