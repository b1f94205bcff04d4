"""Benchmark: the generated server (full default middleware, JWT with a
cached token, rate limit not tripping) against bare tonic serving the same
proto, measured in one run on this machine.

Reports, for each server: server CPU microseconds per request (from
/proc/<pid>/stat over a closed-loop run) and p50/p99 latency at fixed
request rates (ghz's constant-rate scheduler), then generated/bare ratios.

usage: python3 bench/run.py [--requests N] [--rates R,R] [--duration S]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
GHZ = ROOT / ".tools" / "go" / "bin" / "ghz"
SECRET = "benchmark-secret-benchmark-secret-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def start(binary, env, pattern, prefix=()):
    """Starts `binary` (after `prefix`, e.g. taskset) with only `env` and a
    plain PATH, and waits for the stderr line matching `pattern`, whose
    group is the address."""
    import threading

    cmd = [*map(str, prefix), str(binary)]
    proc = subprocess.Popen(cmd, env={**env, "PATH": "/usr/bin:/bin"}, stderr=subprocess.PIPE)
    line = proc.stderr.readline().decode(errors="replace")
    m = re.search(pattern, line)
    if not m:
        proc.kill()
        sys.exit(f"{binary} did not start: {line!r}")

    # Keep draining the logs (one access record per call) in large reads,
    # as a container runtime does, so the server never blocks on a full
    # pipe; writing them is part of what is measured.
    def drain():
        while proc.stderr.read1(1 << 20):
            pass

    threading.Thread(target=drain, daemon=True).start()
    return proc, m.group(1)


def ghz(addr, proto_args, token, extra):
    out = subprocess.run(
        [str(GHZ), "--insecure", *proto_args, "--call", "bench.v1.Echo/Say", "-d", '{"text":"hello"}',
         "-m", json.dumps({"authorization": f"Bearer {token}"}), "--format", "json", *extra, addr],
        capture_output=True, text=True, check=True,
    ).stdout
    report = json.loads(out)
    codes = report.get("statusCodeDistribution", {})
    bad = sum(n for code, n in codes.items() if code != "OK")
    # Timed runs (-z) cut the calls in flight at the end: allow those few.
    allowed = 0 if "-n" in extra else max(10, report.get("count", 0) // 1000)
    if bad > allowed:
        sys.exit(f"non-OK responses from {addr}: {codes}")
    lat = {d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    return report, lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--rates", default="1000,4000")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--svc-log", default="info", help="SVC_LOG of the generated server (info writes an access record per call)")
    args = ap.parse_args()
    sh(["bash", ROOT / "scripts/setup-tools.sh", "--bench"])
    sh(["cargo", "build", "--release", "-q", "-p", "svc-bench"], cwd=ROOT)
    import jwt

    token = jwt.encode({"iss": "https://bench.test", "aud": "bench", "exp": int(time.time()) + 3600, "sub": "bench"}, SECRET, algorithm="HS256")
    protos = Path(tempfile.mkdtemp())
    sh(["cargo", "run", "-q", "-p", "protoc-gen-svc", "--", "protos", protos], cwd=ROOT)
    proto_args = ["--proto", ROOT / "bench/proto/bench/v1/bench.proto", "--import-paths", f"{ROOT / 'bench/proto'},{protos}"]
    servers = {
        "bare tonic": start(TARGET / "release" / "bench-bare", {"BENCH_ADDR": "127.0.0.1:0"}, r"listening on (\S+)"),
        "generated": start(
            TARGET / "release" / "bench-generated",
            {"SVC_GRPC_ADDR": "127.0.0.1:0", "SVC_METRICS_ADDR": "127.0.0.1:0", "SVC_HTTP_ADDR": "127.0.0.1:0",
             "SVC_JWT_SECRET": SECRET, "SVC_LOG": args.svc_log},
            r"serving \S+ on (\S+)",
        ),
    }
    rounds = {name: [] for name in servers}
    try:
        # Rounds alternate between the servers so drift on this shared
        # machine hits both alike; each figure is the median over rounds.
        for _ in range(args.rounds):
            for name, (proc, addr) in servers.items():
                ghz(addr, proto_args, token, ["-n", "2000", "-c", "20"])  # warm up
                before = cpu_ticks(proc.pid)
                report, _ = ghz(addr, proto_args, token, ["-n", str(args.requests), "-c", "50"])
                ticks = cpu_ticks(proc.pid) - before
                r = {"cpu_us_per_req": ticks / CLK_TCK * 1e6 / args.requests, "closed_loop_rps": report["rps"]}
                for rate in [int(x) for x in args.rates.split(",")]:
                    extra = ["--rps", str(rate), "-z", f"{args.duration}s", "-c", "50", "--connections", "4"]
                    _, lat = ghz(addr, proto_args, token, extra)
                    r[f"p50_ms@{rate}"] = lat.get(50)
                    r[f"p99_ms@{rate}"] = lat.get(99)
                rounds[name].append(r)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(protos, ignore_errors=True)
    results = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rounds.items()
    }
    bare, gen = results["bare tonic"], results["generated"]
    keys = list(bare)
    print(f"median of {args.rounds} rounds; {args.requests} closed-loop requests per round (50 streams); generated SVC_LOG={args.svc_log}")
    print(f"{'metric':<22}{'bare tonic':>14}{'generated':>14}{'ratio':>10}")
    for k in keys:
        ratio = gen[k] / bare[k] if bare[k] else float("nan")
        print(f"{k:<22}{bare[k]:>14.3f}{gen[k]:>14.3f}{ratio:>10.2f}")


if __name__ == "__main__":
    main()
