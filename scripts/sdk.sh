#!/usr/bin/env bash
# Builds the JS/TS SDK into sdk/dist/: crates/wasm for wasm32 (plain cargo), the
# pinned wasm-bindgen CLI (--target web: browsers, and Node given the bytes), then
# the hand-written index.js and index.d.ts beside it. No download at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
cargo build -q -p denet-wasm --target wasm32-unknown-unknown --release
rm -rf sdk/dist
mkdir -p sdk/dist/wasm
wasm-bindgen --target web --out-dir sdk/dist/wasm target/wasm32-unknown-unknown/release/denet_wasm.wasm
wasm-opt -Os --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  sdk/dist/wasm/denet_wasm_bg.wasm -o sdk/dist/wasm/denet_wasm_bg.wasm
cp sdk/src/index.js sdk/src/index.d.ts sdk/package.json sdk/dist/
# The relay's static assets ([assets] in wrangler.toml): the page at / and the SDK at /sdk/.
rm -rf public
mkdir -p public
cp page/* public/
cp -r sdk/dist public/sdk
echo "sdk: built sdk/dist and public/ ($(du -sh sdk/dist | cut -f1))"
