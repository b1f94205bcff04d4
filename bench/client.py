"""Benchmark: the generated client (pool, p2c, a retry policy, client
metrics) against a plain tonic `Channel` calling the same bare tonic
server(s), measured in one run in alternating rounds.

Reports calls per second at saturation (closed loop) and client CPU
microseconds per call (from /proc/self/stat of the client process), with
ours/tonic ratios: one server (tonic `Channel`), then three servers
(tonic `Channel::balance_list` against our `ipv4:` target).

usage: python3 bench/client.py [--rounds N] [--seconds S] [--concurrency C]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def start_bare():
    proc = subprocess.Popen([str(TARGET / "release" / "bench-bare")], env={"BENCH_ADDR": "127.0.0.1:0", "PATH": "/usr/bin:/bin"},
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        sys.exit(f"bench-bare did not start: {line!r}")
    return proc, m.group(1)


def drive(kind, targets, concurrency, seconds):
    out = subprocess.run([str(TARGET / "release" / "bench-client"), kind, targets, str(concurrency), str(seconds)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["failed"]:
        sys.exit(f"{kind}: {result['failed']} calls failed")
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=4)
    p.add_argument("--concurrency", type=int, default=64)
    a = p.parse_args()
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "svc-bench", "--bin", "bench-bare", "--bin", "bench-client"],
                   cwd=ROOT, check=True)
    servers = [start_bare() for _ in range(3)]
    try:
        addrs = [addr for _, addr in servers]
        setups = [
            ("one server", addrs[0], addrs[0]),
            ("three servers", ",".join(addrs), "ipv4:" + ",".join(addrs)),
        ]
        for name, tonic_targets, our_target in setups:
            rows = {"tonic": [], "ours": []}
            for r in range(a.rounds):
                order = [("tonic", tonic_targets), ("ours", our_target)]
                if r % 2:
                    order.reverse()
                for kind, targets in order:
                    rows[kind].append(drive(kind, targets, a.concurrency, a.seconds))
            qps = {k: [x["calls_per_second"] for x in v] for k, v in rows.items()}
            cpu = {k: [x["cpu_us_per_call"] for x in v] for k, v in rows.items()}
            ratio_qps = [o / t for o, t in zip(qps["ours"], qps["tonic"])]
            ratio_cpu = [o / t for o, t in zip(cpu["ours"], cpu["tonic"])]
            print(f"{name}, {a.concurrency} calls in flight, median of {a.rounds} alternating rounds:")
            for k in ("tonic", "ours"):
                print(f"  {k:5}  {statistics.median(qps[k]):9.0f} calls/s   {statistics.median(cpu[k]):6.1f} us client CPU per call")
            print(f"  ours/tonic: throughput {statistics.median(ratio_qps):.3f} (range {min(ratio_qps):.3f}-{max(ratio_qps):.3f}),"
                  f" CPU per call {statistics.median(ratio_cpu):.3f} (range {min(ratio_cpu):.3f}-{max(ratio_cpu):.3f})")
    finally:
        for proc, _ in servers:
            proc.kill()


if __name__ == "__main__":
    main()
