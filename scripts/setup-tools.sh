#!/usr/bin/env bash
# Installs the tools the examples and tests use, idempotently: each step is
# skipped when its tool is already there.
#   - Python packages: grpcio, grpcio-tools (protoc 3x as a module),
#     grpcio-status, grpcio-health-checking, prometheus-client, PyJWT, h2,
#     protobuf,
#     googleapis-common-protos, pytest
#   - grpcurl (Go module, into .tools/go/bin); with --bench also ghz
#   - buf (npm package @bufbuild/buf, into .tools/node)
#   - protoc from Debian (protobuf-compiler)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"

log() { printf '[setup] %s\n' "$*" >&2; }

# Python packages, pinned to known-good ranges.
py_pkgs=(
  "grpcio>=1.70,<2"
  "grpcio-tools>=1.70,<2"
  "grpcio-status>=1.70,<2"
  "grpcio-health-checking>=1.70,<2"
  "prometheus-client>=0.20"
  "PyJWT[crypto]>=2.8"
  "h2>=4.1"
  "protobuf>=5.29,<8"
  "googleapis-common-protos>=1.66,<2"
  "pytest>=8"
)
if python3 - <<'PY' 2>/dev/null
import grpc, grpc_tools, grpc_status, grpc_health, prometheus_client, jwt, cryptography, h2, google.protobuf, google.api, pytest  # noqa: F401
PY
then
  log "python packages present"
else
  log "installing python packages"
  python3 -m pip install --quiet --disable-pip-version-check "${py_pkgs[@]}"
fi

# buf from npm, kept inside the repo's .tools folder.
if [ -x "$tools/node/node_modules/.bin/buf" ]; then
  log "buf present"
else
  log "installing buf from npm"
  mkdir -p "$tools/node"
  (cd "$tools/node" && npm install --silent --no-audit --no-fund --prefix . "@bufbuild/buf@^1.50" >/dev/null)
fi

# grpcurl from the Go module proxy, kept inside .tools/go/bin.
if [ -x "$tools/go/bin/grpcurl" ]; then
  log "grpcurl present"
else
  log "installing grpcurl with go install"
  (cd "$tools" && GOBIN="$tools/go/bin" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3)
fi

# ghz (load generator for bench/run.py), same place; only with --bench,
# since only the benchmark needs it.
if [ "${1:-}" != "--bench" ]; then
  :
elif [ -x "$tools/go/bin/ghz" ]; then
  log "ghz present"
else
  log "installing ghz with go install"
  (cd "$tools" && GOBIN="$tools/go/bin" go install github.com/bojand/ghz/cmd/ghz@v0.120.0)
fi

# protoc from Debian.
if command -v protoc >/dev/null 2>&1; then
  log "protoc present ($(protoc --version))"
else
  log "installing protobuf-compiler from Debian"
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y -qq protobuf-compiler >/dev/null 2>&1) || { apt-get update -qq >/dev/null && apt-get install -y -qq protobuf-compiler >/dev/null; }
  else
    (sudo apt-get install -y -qq protobuf-compiler >/dev/null 2>&1) || { sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq protobuf-compiler >/dev/null; }
  fi
fi
log "done"
