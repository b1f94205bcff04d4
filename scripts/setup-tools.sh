#!/usr/bin/env bash
# Installs the tools the examples and tests use, idempotently: each step is
# skipped when its tool is already there.
#
#   scripts/setup-tools.sh --example   what the main job needs: grpcio and
#                                      grpcio-tools (the Python client), buf
#   scripts/setup-tools.sh             everything the test suite needs
#   scripts/setup-tools.sh --bench     that, plus ghz and the benchmark's
#                                      peers' toolchains (Go stub
#                                      generators, Debian's grpc C++)
#
# The test suite's tools:
#   - Python packages: grpcio, grpcio-tools (protoc 3x as a module),
#     grpcio-status, grpcio-health-checking, grpcio-reflection (v1alpha
#     client), prometheus-client, PyJWT, h2,
#     protobuf,
#     googleapis-common-protos, pytest; for the Kubernetes manifest checks
#     (tests/e2e/k8s_tools.py): kubernetes-validate, cloudcoil (pydantic
#     models of the Kubernetes and prometheus-operator APIs), PyYAML
#   - checkov, in its own virtualenv .tools/checkov (its pins would downgrade
#     boto3/botocore/packaging/networkx under the image's awscli and moto)
#   - grpcurl, grpc_health_probe and kubectl-validate (Go modules, into
#     .tools/go/bin); with
#     --bench also ghz and hey
#   - buf (npm package @bufbuild/buf, into .tools/node)
#   - from Debian: protoc (protobuf-compiler, 3.21), dnsmasq, etcd, nginx
#     (nginx-light) and prometheus; a current protoc (33.x, with editions)
#     from Maven Central into .tools/protoc
#   - the gRPC interop peers: grpc-java's interop client and server
#     (Maven Central; with the interop protos and test certificates from
#     its jars, into .tools/interop) and grpc-go's (Go modules, into
#     .tools/go/bin)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"
mode="${1:-all}"
case "$mode" in
  all | --bench | --example) ;;
  *) echo "usage: scripts/setup-tools.sh [--example | --bench]" >&2; exit 2 ;;
esac

log() { printf '[setup] %s\n' "$*" >&2; }

# The Go tools build with one build cache for this run, removed at the end:
# the binaries land in .tools/go/bin, and the cache (over 2 GB for grpc-go's
# module graph) would otherwise take disk the test suite's builds need. A
# GOCACHE set by the caller is left alone.
if [ -z "${GOCACHE:-}" ]; then
  GOCACHE="$(mktemp -d)"
  export GOCACHE
  trap 'rm -rf "$GOCACHE"' EXIT
fi

# buf from npm, kept inside the repo's .tools folder.
if [ -x "$tools/node/node_modules/.bin/buf" ]; then
  log "buf present"
else
  log "installing buf from npm"
  mkdir -p "$tools/node"
  (cd "$tools/node" && npm install --silent --no-audit --no-fund --prefix . "@bufbuild/buf@^1.50" >/dev/null)
fi

if [ "$mode" = --example ]; then
  # googleapis-common-protos: the example's stubs import google.api.
  if python3 -c 'import grpc, grpc_tools, google.api.annotations_pb2' 2>/dev/null; then
    log "grpcio, grpcio-tools and googleapis-common-protos present"
  else
    log "installing grpcio, grpcio-tools and googleapis-common-protos"
    python3 -m pip install --quiet --disable-pip-version-check "grpcio>=1.70,<2" "grpcio-tools>=1.70,<2" \
      "googleapis-common-protos>=1.60,<2"
  fi
  log "done"
  exit 0
fi

# Python packages, pinned to known-good ranges.
py_pkgs=(
  "grpcio>=1.70,<2"
  "grpcio-tools>=1.70,<2"
  "grpcio-status>=1.70,<2"
  "grpcio-health-checking>=1.70,<2"
  "grpcio-reflection>=1.70,<2"
  "prometheus-client>=0.20"
  "PyJWT[crypto]>=2.8"
  "h2>=4.1"
  "protobuf>=5.29,<8"
  "googleapis-common-protos>=1.66,<2"
  "pytest>=8"
  "PyYAML>=6"
  "opentelemetry-proto>=1.30,<2"
  "pydantic>=2.12,<3"
  "kubernetes-validate>=1.34,<2"
  "cloudcoil>=0.6,<0.7"
  "cloudcoil-models-kubernetes>=1.32,<1.33"
  "cloudcoil-models-prometheus-operator>=0.80,<0.81"
  "httpx>=0.27,<1"
  "openapi-spec-validator>=0.7,<0.8"
  "schemathesis>=4.32,<5"
)
if python3 - <<'PY' 2>/dev/null
import grpc, grpc_tools, grpc_status, grpc_health, grpc_reflection, prometheus_client, jwt, cryptography, h2, google.protobuf, google.api, pytest  # noqa: F401
import yaml  # noqa: F401
import httpx, openapi_spec_validator, schemathesis  # noqa: F401
import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401
import inspect, pydantic
assert "extra" in inspect.signature(pydantic.BaseModel.model_validate).parameters  # pydantic>=2.12
# By metadata, not import: importing cloudcoil's models takes seconds.
from importlib.metadata import version
v = lambda name: tuple(int(x) for x in version(name).split(".")[:2])
assert v("kubernetes-validate") >= (1, 34)  # bundles the schemas up to its own version
assert v("cloudcoil") >= (0, 6) and v("cloudcoil.models.kubernetes") == (1, 32)
assert v("cloudcoil.models.prometheus_operator") >= (0, 80)
PY
then
  log "python packages present"
else
  log "installing python packages"
  python3 -m pip install --quiet --disable-pip-version-check "${py_pkgs[@]}"
fi

# checkov (Kubernetes static analysis) in a virtualenv of its own inside
# .tools: installed next to the other packages it would downgrade boto3,
# botocore, s3transfer, packaging and networkx, breaking the image's awscli
# (botocore==1.43.11) and moto.
if [ -x "$tools/checkov/bin/checkov" ]; then
  log "checkov present"
else
  log "installing checkov into .tools/checkov"
  rm -rf "$tools/checkov"
  python3 -m venv "$tools/checkov"
  "$tools/checkov/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==3.3.30"
fi

# grpcurl from the Go module proxy, kept inside .tools/go/bin.
if [ -x "$tools/go/bin/grpcurl" ]; then
  log "grpcurl present"
else
  log "installing grpcurl with go install"
  (cd "$tools" && GOBIN="$tools/go/bin" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3)
fi

# grpc_health_probe (the probe Kubernetes users run), same place. The module
# proxy here refuses `go install ...@version` for it (403 on its version list,
# and sum.golang.org has no record of it), so it is built from a throwaway
# module that requires the pinned version; only this one module skips the
# checksum database, its dependencies are verified as usual.
if [ -x "$tools/go/bin/grpc_health_probe" ]; then
  log "grpc_health_probe present"
else
  log "building grpc_health_probe v0.4.39"
  probe_mod="$(mktemp -d)"
  (
    cd "$probe_mod"
    go mod init probe.build >/dev/null 2>&1
    printf 'package main\n\nimport _ "github.com/grpc-ecosystem/grpc-health-probe"\n' >tools.go
    export GONOSUMDB=github.com/grpc-ecosystem/grpc-health-probe GOFLAGS=-mod=mod
    go get github.com/grpc-ecosystem/grpc-health-probe@v0.4.39 >/dev/null 2>&1
    go build -o "$tools/go/bin/grpc_health_probe" github.com/grpc-ecosystem/grpc-health-probe
  )
  rm -rf "$probe_mod"
fi

# The protovalidate conformance harness (tools v1.2.2), built from a
# throwaway module: `go install ...@v1.2.2` is refused by the proxy here.
if [ -x "$tools/go/bin/protovalidate-conformance" ]; then
  log "protovalidate-conformance present"
else
  log "building protovalidate-conformance v1.2.2"
  pv_mod="$(mktemp -d)"
  (
    cd "$pv_mod"
    go mod init conformance.build >/dev/null 2>&1
    go get github.com/bufbuild/protovalidate/tools/protovalidate-conformance@v1.2.2 >/dev/null 2>&1
    go build -o "$tools/go/bin/protovalidate-conformance" \
      github.com/bufbuild/protovalidate/tools/protovalidate-conformance
  )
  rm -rf "$pv_mod"
fi

# kubectl-validate (Kubernetes' own schema validation, offline for the
# versions built into it: 1.23-1.30 in v0.0.4, its newest release), same
# place. kube-linter is not installed: the module proxy refuses
# golang.stackrox.io/kube-linter (403).
if [ -x "$tools/go/bin/kubectl-validate" ]; then
  log "kubectl-validate present"
else
  log "installing kubectl-validate with go install"
  (cd "$tools" && GOBIN="$tools/go/bin" go install sigs.k8s.io/kubectl-validate@v0.0.4)
fi

# ghz (load generator for bench/run.py), same place; only with --bench,
# since only the benchmark needs it.
if [ "$mode" != "--bench" ]; then
  :
elif [ -x "$tools/go/bin/ghz" ]; then
  log "ghz present"
else
  log "installing ghz with go install"
  (cd "$tools" && GOBIN="$tools/go/bin" go install github.com/bojand/ghz/cmd/ghz@v0.120.0)
fi

# hey (HTTP load generator for bench/rest.py); only with --bench.
if [ "$mode" != "--bench" ]; then
  :
elif [ -x "$tools/go/bin/hey" ]; then
  log "hey present"
else
  log "installing hey with go install"
  (cd "$tools" && GOBIN="$tools/go/bin" go install github.com/rakyll/hey@v0.1.4)
fi

# Packages from Debian: debian_package installs one (updating the package
# lists only if the first try fails); debian_install skips it when its
# command is there.
debian_package() {
  local package="$1" why="$2"
  log "installing $package from Debian ($why)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  ($sudo apt-get install -y -qq "$package" >/dev/null 2>&1) ||
    { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq "$package" >/dev/null; }
}
debian_install() {
  local command="$1" package="$2" why="$3"
  if command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ]; then
    log "$command present"
    return
  fi
  debian_package "$package" "$why"
}
debian_install protoc protobuf-compiler "protoc 3.21, one of the protoc versions the plugin is driven by"
debian_install dnsmasq dnsmasq-base "the DNS server the client's discovery tests change records on"
debian_install etcd etcd-server "the registry the client's discovery tests register servers in and watch"
debian_install nginx nginx-light "the gRPC proxy (grpc_pass) the example is load-balanced behind"
debian_install prometheus prometheus "the server that scrapes the example's /metrics"
# A current protoc (editions) from Maven Central, where protobuf publishes
# its protoc executables; the embedded compiler hands edition files to it.
protoc_version=33.5
if [ -x "$tools/protoc/protoc" ] && "$tools/protoc/protoc" --version | grep -q "$protoc_version"; then
  log "protoc $protoc_version present"
else
  log "fetching protoc $protoc_version from Maven Central"
  mkdir -p "$tools/protoc"
  mvn_log="$(mktemp)"
  if ! mvn -B -q dependency:copy -Dartifact="com.google.protobuf:protoc:4.$protoc_version:exe:linux-x86_64" \
    -DoutputDirectory="$tools/protoc" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    exit 1
  fi
  rm -f "$mvn_log"
  mv "$tools/protoc/protoc-4.$protoc_version-linux-x86_64.exe" "$tools/protoc/protoc"
  chmod +x "$tools/protoc/protoc"
fi

# The gRPC interop peers (scripts/interop.sh): grpc-java's interop client
# and server (io.grpc:grpc-interop-testing from Maven Central; its jar also
# carries the interop protos, and grpc-testing's the peers' test
# certificates), and grpc-go's (packages interop/client and interop/server
# of google.golang.org/grpc, built from a throwaway module).
interop="$tools/interop"
java_interop_version=1.79.0
if [ -s "$interop/java/classpath-$java_interop_version.txt" ] && [ -f "$interop/proto/grpc/testing/test.proto" ] \
  && [ -f "$interop/certs/ca.pem" ]; then
  log "grpc-java interop $java_interop_version present"
else
  log "fetching grpc-java interop testing $java_interop_version from Maven Central"
  mkdir -p "$interop/java"
  cat >"$interop/java/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>build.interop</groupId>
  <artifactId>java-interop-peers</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.grpc</groupId>
      <artifactId>grpc-interop-testing</artifactId>
      <version>$java_interop_version</version>
    </dependency>
  </dependencies>
</project>
POM
  mvn_log="$(mktemp)"
  if ! (cd "$interop/java" && mvn -B -q dependency:build-classpath \
    -Dmdep.outputFile="classpath-$java_interop_version.txt.part") >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    exit 1
  fi
  rm -f "$mvn_log"
  python3 - "$interop" "$interop/java/classpath-$java_interop_version.txt.part" <<'PY'
import os, sys, zipfile
interop, classpath = sys.argv[1], sys.argv[2]
jars = open(classpath).read().strip().split(":")
def take(artifact, prefix, dest, strip):
    jar = next(j for j in jars if os.path.basename(j).startswith(artifact + "-"))
    with zipfile.ZipFile(jar) as z:
        for name in z.namelist():
            if name.startswith(prefix) and not name.endswith("/"):
                out = os.path.join(dest, name[len(strip):])
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with open(out, "wb") as f:
                    f.write(z.read(name))
take("grpc-interop-testing", "grpc/testing/", os.path.join(interop, "proto"), "")
take("grpc-testing", "certs/", os.path.join(interop, "certs"), "certs/")
PY
  mv "$interop/java/classpath-$java_interop_version.txt.part" "$interop/java/classpath-$java_interop_version.txt"
fi
go_interop_version=v1.85.0
if [ -x "$tools/go/bin/go-interop-client-$go_interop_version" ] && [ -x "$tools/go/bin/go-interop-server-$go_interop_version" ]; then
  log "grpc-go interop $go_interop_version present"
else
  log "building grpc-go interop client and server $go_interop_version"
  go_mod="$(mktemp -d)"
  (
    cd "$go_mod"
    go mod init interop.build >/dev/null 2>&1
    printf 'package main\n\nimport (\n\t_ "google.golang.org/grpc/interop/client"\n\t_ "google.golang.org/grpc/interop/server"\n)\n' >tools.go
    export GOFLAGS=-mod=mod
    go get "google.golang.org/grpc@$go_interop_version" >/dev/null 2>&1
    go mod tidy >/dev/null 2>&1
    go build -o "$tools/go/bin/go-interop-client-$go_interop_version" google.golang.org/grpc/interop/client
    go build -o "$tools/go/bin/go-interop-server-$go_interop_version" google.golang.org/grpc/interop/server
  )
  rm -rf "$go_mod"
fi
# bench/peers.py's peers, only with --bench: the Go stub generators for
# the grpc-go server, and Debian's grpc C++ (libgrpc++ 1.51 and its protoc
# plugin) for the C++ one.
if [ "$mode" = "--bench" ]; then
  if [ -x "$tools/go/bin/protoc-gen-go" ] && [ -x "$tools/go/bin/protoc-gen-go-grpc" ]; then
    log "protoc-gen-go and protoc-gen-go-grpc present"
  else
    log "installing protoc-gen-go and protoc-gen-go-grpc with go install"
    (cd "$tools" && GOBIN="$tools/go/bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12)
    (cd "$tools" && GOBIN="$tools/go/bin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1)
  fi
  debian_install grpc_cpp_plugin protobuf-compiler-grpc "the grpc C++ stub generator"
  if pkg-config --exists grpc++ 2>/dev/null; then
    log "libgrpc++ present ($(pkg-config --modversion grpc++))"
  else
    debian_package libgrpc++-dev "grpc C++, the benchmark's C++ peer"
  fi
fi
log "done"
