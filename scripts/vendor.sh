#!/usr/bin/env bash
# Makes a service crate build with no network, as its Dockerfile does when it
# finds a vendor/ directory: every crates.io dependency (`cargo vendor`), this
# checkout's crates packaged as they would be published (vendor/svc/), and
# vendor/config.toml, which points cargo at both.
#
# It is for crates made with `protoc-gen-svc new --runtime-path CHECKOUT`
# while protoc-gen-svc's crates are not on crates.io; once they are,
# `cargo vendor vendor > vendor.toml && mv vendor.toml vendor/config.toml`
# does the same.
#
#   scripts/vendor.sh CRATE_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -ne 1 ] || [ ! -f "$1/Cargo.toml" ]; then
  echo "usage: scripts/vendor.sh CRATE_DIR (a directory with a Cargo.toml)" >&2
  exit 2
fi
crate="$(cd "$1" && pwd)"
if [ ! -f "$crate/Cargo.lock" ]; then
  echo "$crate/Cargo.lock is missing: run \`cargo build\` there first" >&2
  exit 1
fi
target="${CARGO_TARGET_DIR:-$root/target}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)"

bash "$root/scripts/package.sh" --no-verify
sources="$(mktemp)"
progress="$(mktemp)"
trap 'rm -f "$sources" "$progress"' EXIT
# cargo vendor prints the configuration to use on stdout, progress on stderr.
if ! (cd "$crate" && cargo vendor --locked --versioned-dirs vendor >"$sources" 2>"$progress"); then
  cat "$progress" >&2
  exit 1
fi

# cargo's directory source reads only vendor/<crate>/ folders holding a
# Cargo.toml, so vendor/svc/ is left to the patches below.
mkdir -p "$crate/vendor/svc"
patches=""
for name in protoc-gen-svc svc-macros svc-runtime; do
  grep -qx "name = \"$name\"" "$crate/Cargo.lock" || continue
  rm -rf "$crate/vendor/svc/$name-$version"
  tar -xzf "$target/package/$name-$version.crate" -C "$crate/vendor/svc"
  patches+="$name = { path = \"vendor/svc/$name-$version\" }"$'\n'
done
{
  echo "# The build's cargo configuration when vendor/ is used (the Dockerfile"
  echo "# copies it to .cargo/config.toml): crates.io crates from vendor/,"
  echo "# protoc-gen-svc's own from vendor/svc/. Written by scripts/vendor.sh."
  cat "$sources"
  printf '\n[patch.crates-io]\n%s' "$patches"
} >"$crate/vendor/config.toml"
echo "vendored into $crate/vendor ($(ls "$crate/vendor" | wc -l) crates)" >&2
