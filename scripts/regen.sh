#!/usr/bin/env bash
# Regenerates the committed generated code: the example's gen/ folder and
# the golden fixtures. Review the diff before committing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build -q -p protoc-gen-svc
rm -rf examples/01-greeter/gen
./target/debug/protoc-gen-svc generate -I examples/01-greeter/proto \
  examples/01-greeter/proto/greeter/v1/greeter.proto --out examples/01-greeter/gen
UPDATE_GOLDEN=1 cargo test -q -p protoc-gen-svc --test golden
git status --short examples/01-greeter/gen examples/01-greeter/deploy protoc-gen-svc/tests/golden
