#!/usr/bin/env bash
# Validation benchmark: generated validators against prost-protovalidate
# and against prost decoding, on the same messages, in one run.
#
#   bash bench/validate.sh [rounds]    (default 11)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
CARGO_TARGET_DIR="$root/target" cargo run -q --release --manifest-path "$root/bench/validate/Cargo.toml" -- "$@"
