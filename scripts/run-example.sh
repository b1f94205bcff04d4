#!/usr/bin/env bash
# The main job: generate the example service with buf (protoc-gen-svc as a
# local plugin), build it, run it, and call all four methods with a Python
# grpcio client. Installs what it needs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
step() { printf '\n==> %s\n' "$*" >&2; }

step "tools"
bash scripts/setup-tools.sh --example

step "build protoc-gen-svc and the example"
cargo build -q -p protoc-gen-svc -p greeter-example
plugin="$root/target/debug/protoc-gen-svc"
buf="$root/.tools/node/node_modules/.bin/buf"

step "buf generate (examples/01-greeter)"
example="$root/examples/01-greeter"
"$plugin" protos "$example/third_party"
(cd "$example" && PATH="$root/target/debug:$PATH" "$buf" generate proto)
if git -C "$root" diff --quiet -- examples/01-greeter/gen examples/01-greeter/deploy; then
  echo "generated code and manifests match the committed examples/01-greeter/{gen,deploy}" >&2
else
  echo "generated output differs from the committed copy (was the proto changed?):" >&2
  git -C "$root" diff --stat -- examples/01-greeter/gen examples/01-greeter/deploy >&2
fi

step "run the server"
cargo build -q -p greeter-example
log="$(mktemp)"
SVC_GRPC_ADDR=127.0.0.1:0 SVC_METRICS_ADDR=127.0.0.1:0 SVC_HTTP_ADDR=127.0.0.1:0 "$root/target/debug/greeter" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  grep -q "svc: serving" "$log" && break
  sleep 0.1
done
addr="$(sed -n 's/^svc: serving [^ ]* on \([^ ]*\) .*/\1/p' "$log")"
[ -n "$addr" ] || { cat "$log"; echo "server did not start" >&2; exit 1; }
cat "$log" >&2

step "call it with Python grpcio"
python3 "$root/scripts/greeter_client.py" "$addr" "$example/proto" "$example/third_party"

step "call it over HTTP/JSON (its google.api.http bindings)"
http="$(sed -n 's/^svc: serving .*HTTP\/JSON on \([^ )]*\)).*/\1/p' "$log")"
[ -n "$http" ] || { cat "$log"; echo "no HTTP/JSON listener" >&2; exit 1; }
python3 - "http://$http" <<'PY'
import sys, urllib.request
base = sys.argv[1]
for request in (
    urllib.request.Request(f"{base}/v1/hello/Ada"),
    urllib.request.Request(f"{base}/v1/hello", data=b'{"name": "Grace"}', method="POST"),
    urllib.request.Request(f"{base}/v1/hello/Ada:stream?count=2"),
):
    with urllib.request.urlopen(request, timeout=10) as response:
        print(request.get_method(), request.full_url, "->", response.status, response.read().decode().strip())
PY

step "call it with the generated Rust client (all four methods through the pool)"
"$root/target/debug/greeter-client" --target "$addr"
