#!/usr/bin/env bash
# Packages the publishable crates (svc-runtime, svc-macros, protoc-gen-svc)
# as crates.io would receive them, and verifies that each builds from its
# tarball alone (`cargo package`), in dependency order.
#
# The generator's package carries the third-party .proto files it embeds
# (buf/validate, google/api, google/rpc) in third_party/: this script takes
# them from the build of this checkout, whose build script fetched them from
# their crates.io packages, so the published crate needs no network to build.
# third_party/ is generated (ignored by git), hence --allow-dirty.
#
#   scripts/package.sh              package and verify (what CI runs)
#   scripts/package.sh --no-verify  package only (scripts/vendor.sh uses it)
#
# The .crate files land in target/package/. To publish, run `cargo publish`
# with the same flags per crate, in dependency order: protoc-gen-svc,
# svc-macros, svc-runtime.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
verify=()
case "${1:-}" in
  "") ;;
  --no-verify) verify=(--no-verify) ;;
  *) echo "usage: scripts/package.sh [--no-verify]" >&2; exit 2 ;;
esac

target="${CARGO_TARGET_DIR:-$root/target}"
cargo build -q -p protoc-gen-svc --bin protoc-gen-svc
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
"$target/debug/protoc-gen-svc" protos "$staging"
rm -rf protoc-gen-svc/third_party
mkdir protoc-gen-svc/third_party
# Everything but svc/options.proto, which the crate has as proto/svc/.
for dir in "$staging"/*/; do
  name="$(basename "$dir")"
  [ "$name" = svc ] || cp -R "$dir" "protoc-gen-svc/third_party/$name"
done

cargo package -q --allow-dirty --all-features "${verify[@]}" -p protoc-gen-svc -p svc-macros -p svc-runtime
ls "$target"/package/*.crate >&2
