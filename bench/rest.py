"""The same method over gRPC and over HTTP/JSON, in one run: the
benchmark's Echo.Say on the generated server (full default middleware:
JWT auth with a cached token, rate limit, access record per call), called
with ghz over gRPC and with hey as `POST /v1/say` (its google.api.http
binding, JSON in and out, HTTP/1.1 keep-alive). The server is pinned to CPU
0, the load generator to CPU 1; rounds alternate between the two surfaces.
Prints req/s and the server's CPU µs per call (from /proc/<pid>/stat),
median and min–max over the rounds, and the JSON/gRPC ratio.

usage: python3 bench/rest.py [--rounds N] [--requests N]
"""

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import CLIENT_CPU, SERVER_CPU, TASKSET  # noqa: E402
from run import CLK_TCK, GHZ, ROOT, SECRET, TARGET, cpu_ticks, sh, start  # noqa: E402

HEY = ROOT / ".tools" / "go" / "bin" / "hey"
BODY = '{"text": "hello"}'


def grpc_round(addr, requests, token):
    out = sh([TASKSET, "-c", CLIENT_CPU, GHZ, "--insecure", "--call", "bench.v1.Echo/Say", "-d", BODY,
              "-m", json.dumps({"authorization": f"Bearer {token}"}),
              "-n", str(requests), "-c", "50", "--connections", "4", "--format", "json", addr]).stdout
    report = json.loads(out)
    codes = report.get("statusCodeDistribution", {})
    if set(codes) != {"OK"}:
        sys.exit(f"gRPC calls failed: {codes}")
    return report["rps"]


def http_round(addr, requests, token):
    out = sh([TASKSET, "-c", CLIENT_CPU, HEY, "-n", str(requests), "-c", "50", "-m", "POST",
              "-T", "application/json", "-H", f"Authorization: Bearer {token}", "-d", BODY,
              f"http://{addr}/v1/say"]).stdout
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    if [code for code, _ in codes] != ["200"] or int(codes[0][1]) != requests:
        sys.exit(f"HTTP calls failed: {codes}\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def measure(proc, call, addr, requests, token):
    before = cpu_ticks(proc.pid)
    rps = call(addr, requests, token)
    return rps, (cpu_ticks(proc.pid) - before) / CLK_TCK * 1e6 / requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=50000)
    args = ap.parse_args()
    sh(["bash", ROOT / "scripts/setup-tools.sh", "--bench"])
    sh(["cargo", "build", "--release", "-q", "-p", "svc-bench", "--bin", "bench-generated"], cwd=ROOT)
    token = jwt.encode({"iss": "https://bench.test", "aud": "bench", "exp": int(time.time()) + 3600, "sub": "bench"},
                       SECRET, algorithm="HS256")
    env = {"SVC_GRPC_ADDR": "127.0.0.1:0", "SVC_METRICS_ADDR": "127.0.0.1:0", "SVC_HTTP_ADDR": "127.0.0.1:0",
           "SVC_JWT_SECRET": SECRET, "SVC_LOG": "info"}
    proc, rest = start(TARGET / "release" / "bench-generated", env, r"serving \S+ on (.*)",
                       prefix=[TASKSET, "-c", SERVER_CPU])
    m = re.match(r"(\S+) \(health and metrics on [^,]+, HTTP/JSON on ([^)]+)\)", rest)
    if not m:
        proc.kill()
        sys.exit(f"unexpected start-up line: {rest!r}")
    grpc_addr, http_addr = m.groups()
    try:
        grpc_round(grpc_addr, 5000, token)  # warm up both
        http_round(http_addr, 5000, token)
        results = {"gRPC": [], "HTTP/JSON": []}
        for i in range(args.rounds):
            results["gRPC"].append(measure(proc, grpc_round, grpc_addr, args.requests, token))
            results["HTTP/JSON"].append(measure(proc, http_round, http_addr, args.requests, token))
            print(f"round {i + 1} of {args.rounds} done", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    cpu = sh(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]).stdout.strip()
    print(f"bench.v1.Echo/Say, {args.rounds} alternating rounds of {args.requests} calls (50 concurrent); "
          f"server on CPU {SERVER_CPU}, load generator on CPU {CLIENT_CPU} ({cpu}); median [min–max]")
    print(f"{'surface':12} {'req/s':>26} {'server CPU µs/call':>24}")
    median = {}
    for name, rows in results.items():
        rps = [r for r, _ in rows]
        us = [u for _, u in rows]
        median[name] = statistics.median(us)
        print(f"{name:12} {statistics.median(rps):>10,.0f} [{min(rps):,.0f}–{max(rps):,.0f}] "
              f"{median[name]:>10.1f} [{min(us):.1f}–{max(us):.1f}]")
    print(f"HTTP/JSON / gRPC server CPU per call: {median['HTTP/JSON'] / median['gRPC']:.2f}x")


if __name__ == "__main__":
    main()
