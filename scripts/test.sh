#!/usr/bin/env bash
# The whole test suite: lint gates, Rust tests (unit, golden, plugin,
# front ends, property tests, compile tests, macro, round trip), the lean
# feature sets, packaging, docs, the protovalidate conformance suite, and
# the end-to-end suite (protoc, buf, grpcio, corpus, scaffold, Dockerfile
# replay, the gRPC interop matrix, nginx, Prometheus). Installs what it
# needs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# Each step says how much disk is left: the builds below (the workspace,
# scaffolds, the corpus, the interop peers, a Dockerfile replay) share one
# disk with the tools, and a full disk fails tests far from its cause.
step() { printf '\n==> %s  [%s free]\n' "$*" "$(df -h --output=avail "$root" | tail -1 | tr -d ' ')" >&2; }

# No incremental caches (CI builds once) and line tables instead of full
# debug info (panics' backtraces keep file and line): both shrink every
# build directory; with them, a whole run's target/ ends near 9 GB. Builds
# the tests start (scaffolds, the corpus, `cargo install`) inherit both.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

# A full run takes about 12 GB (target/, .tools, the package caches).
avail_kb="$(df -Pk "$root" | awk 'NR == 2 {print $4}')"
if [ "${avail_kb:-0}" -lt $((12 * 1024 * 1024)) ]; then
  printf 'warning: %s has %s MB free; the whole suite needs about 12 GB, and a full disk fails\n' \
    "$root" "$((avail_kb / 1024))" >&2
  printf 'whichever test writes next (free space, or set CARGO_TARGET_DIR to a larger disk)\n' >&2
fi

step "tools"
bash scripts/setup-tools.sh

step "cargo fmt --check"
cargo fmt --all --check
# The crates outside the workspace (their builds need fetched inputs).
cargo fmt --check --manifest-path examples/interop/Cargo.toml
cargo fmt --check --manifest-path tests/conformance/Cargo.toml

step "cargo clippy --workspace --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "lean builds: the runtime without features, the generator without manifests"
cargo clippy -p svc-runtime --all-targets -- -D warnings
cargo test -q -p svc-runtime --lib
cargo clippy -p protoc-gen-svc --no-default-features --lib -- -D warnings

step "packaging: every publishable crate builds from its .crate alone"
bash scripts/package.sh

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q

step "protovalidate conformance (strict), against generated validators"
# The floor rises with each rule family compiled; the goal is every case.
bash scripts/conformance.sh

step "examples/interop: clippy (-D warnings) and unit tests"
CARGO_TARGET_DIR="$root/target" cargo clippy -q --manifest-path examples/interop/Cargo.toml --all-targets -- -D warnings
CARGO_TARGET_DIR="$root/target" cargo test -q --manifest-path examples/interop/Cargo.toml

step "end-to-end suite (pytest)"
python3 -m pytest -q tests/e2e
step "done"
