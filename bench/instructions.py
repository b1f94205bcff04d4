"""Instructions per request, counted by valgrind's callgrind: the
generated server (full default middleware, access record per call)
against bare tonic, both serving bench.complex.v1.Greeter as in
bench/peers.py.

CPU time on a shared machine swings from run to run; instruction counts
do not: the same binary, inputs and environment give the same count
whatever else the machine is doing. Each server runs under callgrind
(pinned to CPU 0, ghz on CPU 1), takes a warm-up, then has its counters
zeroed, serves a fixed number of calls and dumps them: the count covers
those calls alone, every thread of the server (the runtime, the log
flusher), user space only (the kernel's share is alike for both, see
`strace -c`). Prints instructions per request and the ratio; with
--functions, also the server's own middleware functions that cost the
most per request, for the next optimisation.

usage: python3 bench/instructions.py [--requests N] [--functions]
"""

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import RUST_SERVERS, SERVER_CPU, TASKSET, ghz  # noqa: E402
from run import ROOT, sh, start  # noqa: E402

def count(server, requests, work):
    """Instructions over `requests` calls, and the dump they are in."""
    binary, env, pattern = server
    out = work / f"{binary.name}.callgrind"
    # --quiet: valgrind's banner would hide the server's address line.
    prefix = [TASKSET, "-c", SERVER_CPU, "valgrind", "--quiet", "--tool=callgrind", f"--callgrind-out-file={out}"]
    proc, addr = start(binary, env, pattern, prefix=prefix)
    try:
        ghz(addr, ["-n", "1000", "-c", "20"])  # warm up: connections, tables, buffers
        sh(["callgrind_control", "-z", str(proc.pid)])
        ghz(addr, ["-n", str(requests), "-c", "50", "--connections", "4"])
        sh(["callgrind_control", "-d", str(proc.pid)])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    dump = Path(f"{out}.1")
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1]), dump
    sys.exit(f"no totals in {dump}")


def top_functions(dump, requests, limit=20):
    """The runtime's functions by inclusive instructions per request."""
    r = sh(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump])
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+\S*?:(.*?)(?:\s+\[.*\])?$", line)
        if m and m.group(2).startswith(("svc_runtime::", "<svc_runtime::")):
            rows.append((int(m.group(1).replace(",", "")) / requests, m.group(2)))
    return rows[:limit]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--functions", action="store_true")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian package valgrind)")
    sh(["bash", ROOT / "scripts/setup-tools.sh", "--bench"])
    sh(["cargo", "build", "--release", "-q", "-p", "svc-bench", "--bin", "bench-complex-bare", "--bin",
        "bench-complex-generated"], cwd=ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        per = {}
        dumps = {}
        for name, server in RUST_SERVERS.items():
            total, dumps[name] = count(server, args.requests, work)
            per[name] = total / args.requests
        bare, generated = per["bare tonic"], per["generated"]
        print(f"callgrind, {args.requests} calls (50 streams over 4 connections), user-space instructions per request")
        print(f"bare tonic   {bare:9,.0f}")
        print(f"generated    {generated:9,.0f}  (+{generated - bare:,.0f}, {generated / bare:.2f}x)")
        if args.functions:
            print("\nthe runtime's functions in the generated server, inclusive instructions per request:")
            for cost, name in top_functions(dumps["generated"], args.requests):
                print(f"{cost:9,.0f}  {name[:140]}")


if __name__ == "__main__":
    os.environ.setdefault("CARGO_TERM_COLOR", "never")
    main()
