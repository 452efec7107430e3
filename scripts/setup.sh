#!/usr/bin/env bash
# Installs what the relay needs to build, run and test, skipping what is already
# there: the wasm32 target, worker-build, the wasm-bindgen CLI matching Cargo.lock,
# the npm packages (wrangler, a Node 22 runtime for it, binaryen) and schemathesis.
# Idempotent: a second run takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
say() { printf 'setup: %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    say "adding rustup component $component"
    rustup component add "$component"
  fi
done

if [ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# The wasm-bindgen CLI must equal the wasm-bindgen crate in Cargo.lock.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]; then
  say "installing wasm-bindgen-cli $bindgen_version (a few minutes, once)"
  # Not --locked: a locked dependency of the CLI is missing from the registry.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

# schemathesis (the OpenAPI contract test) in a project-local virtualenv. A .venv
# copied or moved from elsewhere points at interpreters that are gone: remake it.
SCHEMATHESIS_VERSION=4.32.5
if [ -e .venv ] && ! .venv/bin/python -c '' >/dev/null 2>&1; then
  say "the .venv is broken (moved or copied checkout?): recreating it"
  rm -rf .venv
fi
if [ "$(.venv/bin/schemathesis --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into .venv"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
# The tests' fake push service checks VAPID JWTs with Python's cryptography.
CRYPTOGRAPHY_VERSION=48.0.0
if [ "$(.venv/bin/python -c 'import cryptography; print(cryptography.__version__)' 2>/dev/null)" != "$CRYPTOGRAPHY_VERSION" ]; then
  say "installing cryptography $CRYPTOGRAPHY_VERSION into .venv (the fake push service)"
  .venv/bin/pip install --quiet "cryptography==$CRYPTOGRAPHY_VERSION"
fi

# npm packages: reinstall when package-lock.json changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (wrangler, node 22, binaryen, anvil, solc)"
  npm ci --no-audit --no-fund
fi
# The local chain of the contract-wallet tests: npm may install anvil without its mode.
anvil=node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
[ -x "$anvil" ] || chmod +x "$anvil"

# `setup.sh browser` (make setup-browser): Debian's Chromium for the browser tests,
# whose major version must be the one the pinned playwright-core drives.
if [ "${1:-}" = browser ]; then
  if ! command -v chromium >/dev/null; then
    say "installing Debian's chromium (browser tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  have=$(chromium --version 2>/dev/null | grep -oE '[0-9]+\.' | head -1 | tr -d .)
  want=$(node -e 'const b=require("./node_modules/playwright-core/browsers.json").browsers.find(b=>b.name==="chromium");process.stdout.write(b.browserVersion.split(".")[0])')
  if [ "$have" != "$want" ]; then
    echo "setup: chromium $have is installed, but playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version') drives chromium $want." >&2
    echo "setup: pin a playwright-core whose browsers.json names chromium $have (see ../shared/TOOLCHAIN.md)." >&2
    exit 1
  fi
fi
