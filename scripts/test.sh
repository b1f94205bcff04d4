#!/usr/bin/env bash
# The whole test suite: lint gates, Rust tests (unit, golden, plugin,
# front ends, property tests, compile tests, macro, round trip), docs, and
# the end-to-end suite (protoc, buf, grpcio, corpus). Installs what it needs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
step() { printf '\n==> %s\n' "$*" >&2; }

step "tools"
bash scripts/setup-tools.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q

step "end-to-end suite (pytest)"
python3 -m pytest -q tests/e2e
