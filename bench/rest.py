"""The same method over gRPC and over HTTP/JSON, in one run: the example
greeter's SayHello (full default middleware, access record per call),
called with ghz over gRPC and with hey as `POST /v1/hello` (its
google.api.http binding, JSON in and out). The server is pinned to CPU 0,
the load generator to CPU 1; rounds alternate between the two surfaces.
Prints req/s and the server's CPU µs per call (from /proc/<pid>/stat),
median and min–max over the rounds, and the JSON/gRPC ratio.

usage: python3 bench/rest.py [--rounds N] [--requests N]
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import CLIENT_CPU, SERVER_CPU, TASKSET  # noqa: E402
from run import CLK_TCK, GHZ, ROOT, TARGET, cpu_ticks, sh, start  # noqa: E402

HEY = ROOT / ".tools" / "go" / "bin" / "hey"
BODY = '{"name": "Ada"}'


def grpc_round(addr, requests):
    out = sh([TASKSET, "-c", CLIENT_CPU, GHZ, "--insecure", "--call", "greeter.v1.Greeter/SayHello", "-d", BODY,
              "-n", str(requests), "-c", "50", "--connections", "4", "--format", "json", addr]).stdout
    report = json.loads(out)
    codes = report.get("statusCodeDistribution", {})
    if set(codes) != {"OK"}:
        sys.exit(f"gRPC calls failed: {codes}")
    return report["rps"]


def http_round(addr, requests):
    out = sh([TASKSET, "-c", CLIENT_CPU, HEY, "-n", str(requests), "-c", "50", "-m", "POST",
              "-T", "application/json", "-d", BODY, f"http://{addr}/v1/hello"]).stdout
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    if [code for code, _ in codes] != ["200"] or int(codes[0][1]) != requests:
        sys.exit(f"HTTP calls failed: {codes}\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def measure(proc, call, addr, requests):
    before = cpu_ticks(proc.pid)
    rps = call(addr, requests)
    return rps, (cpu_ticks(proc.pid) - before) / CLK_TCK * 1e6 / requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=50000)
    args = ap.parse_args()
    sh(["bash", ROOT / "scripts/setup-tools.sh", "--bench"])
    sh(["cargo", "build", "--release", "-q", "-p", "greeter-example", "--bin", "greeter"], cwd=ROOT)
    env = {"SVC_GRPC_ADDR": "127.0.0.1:0", "SVC_METRICS_ADDR": "127.0.0.1:0", "SVC_HTTP_ADDR": "127.0.0.1:0",
           "SVC_LOG": "info"}
    proc, rest = start(TARGET / "release" / "greeter", env, r"serving \S+ on (.*)", prefix=[TASKSET, "-c", SERVER_CPU])
    m = re.match(r"(\S+) \(health and metrics on [^,]+, HTTP/JSON on ([^)]+)\)", rest)
    if not m:
        proc.kill()
        sys.exit(f"unexpected start-up line: {rest!r}")
    grpc_addr, http_addr = m.groups()
    try:
        grpc_round(grpc_addr, 5000)  # warm up both
        http_round(http_addr, 5000)
        results = {"gRPC": [], "HTTP/JSON": []}
        for i in range(args.rounds):
            results["gRPC"].append(measure(proc, grpc_round, grpc_addr, args.requests))
            results["HTTP/JSON"].append(measure(proc, http_round, http_addr, args.requests))
            print(f"round {i + 1} of {args.rounds} done", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    cpu = sh(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]).stdout.strip()
    print(f"greeter.v1.Greeter/SayHello, {args.rounds} alternating rounds of {args.requests} calls "
          f"(50 concurrent); server on CPU {SERVER_CPU}, load generator on CPU {CLIENT_CPU} ({cpu}); median [min–max]")
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
