"""Code-generation benchmark: protoc-gen-svc against protoc-gen-prost +
protoc-gen-tonic on a synthetic proto tree (bench/codegen/corpus.py), driven
by the same protoc on the same files, in alternating rounds.

For each shape it prints, per side: protoc's wall time with the plugin(s),
the plugins' peak memory (max RSS of the largest plugin process) and the
output size, with ours/theirs ratios; `protoc -o` alone is timed as the
floor. With --build it then compiles each side's generated code as a crate
(release, dependencies built beforehand so only the generated crate is
timed) and prints build time and rustc's peak memory.

usage: python3 bench/codegen/run.py [--files 500] [--messages 16]
       [--services 1] [--shapes deep,wide,googleapis] [--rounds 3]
       [--build] [--build-files 100]

Installs protoc-gen-prost and protoc-gen-tonic into .tools/cargo when they
are missing (cargo install, a few minutes once), and builds protoc-gen-svc
in release mode.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
TOOLS = ROOT / ".tools" / "cargo"
PEERS = {"protoc-gen-prost": "0.5.0", "protoc-gen-tonic": "0.5.0"}

# A plugin wrapper that records the plugin's peak memory and passes
# stdin/stdout through; the same wrapper runs on both sides.
WRAPPER = """#!{python}
import resource, subprocess, sys
code = subprocess.call([{plugin!r}], stdin=sys.stdin, stdout=sys.stdout)
with open({log!r}, "a") as f:
    f.write(f"{{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}\\n")
sys.exit(code)
"""

# A rustc wrapper that records the peak memory and wall time of compiling
# the generated crate.
RUSTC_WRAPPER = """#!{python}
import resource, subprocess, sys, time
start = time.monotonic()
code = subprocess.call(sys.argv[1:], close_fds=False)
args = sys.argv[1:]
if "--crate-name" in args and args[args.index("--crate-name") + 1] == "generated":
    with open({log!r}, "a") as f:
        f.write(f"{{time.monotonic() - start}} {{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}\\n")
sys.exit(code)
"""


# Each package's messages hold a Vec of the previous package's, so auto-trait
# checks walk a few nested types per package of the tree's depth.
RECURSION = '#![recursion_limit = "8192"]\n'


def sh(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}")
    return r


def find_protoc():
    for candidate in [os.environ.get("PROTOC"), shutil.which("protoc"), ROOT / ".tools" / "protoc" / "protoc"]:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    sys.exit("no protoc: install protobuf-compiler (scripts/setup-tools.sh) or set PROTOC")


def wkt_include(protoc):
    """protoc finds the well-known types next to itself (../include), as
    Debian's does; otherwise take them from grpcio-tools."""
    if (protoc.resolve().parent.parent / "include" / "google" / "protobuf" / "timestamp.proto").is_file():
        return []
    try:
        import grpc_tools

        return ["-I", Path(grpc_tools.__file__).parent / "_proto"]
    except ImportError:
        sys.exit(f"{protoc} has no well-known types beside it; pip install grpcio-tools")


def ensure_tools():
    sh(["cargo", "build", "--release", "-q", "-p", "protoc-gen-svc"], cwd=ROOT)
    ours = TARGET / "release" / "protoc-gen-svc"
    for name, version in PEERS.items():
        exe = TOOLS / "bin" / name
        if not exe.is_file():
            print(f"installing {name} {version} into {TOOLS} (once)", flush=True)
            sh(["cargo", "install", "-q", "--locked", "--root", TOOLS, f"{name}@{version}"])
    return ours, TOOLS / "bin" / "protoc-gen-prost", TOOLS / "bin" / "protoc-gen-tonic"


def wrap(work, name, plugin, log):
    path = work / f"wrap-{name}"
    path.write_text(WRAPPER.format(python=sys.executable, plugin=str(plugin), log=str(log)))
    path.chmod(0o755)
    return path


def dir_size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def spec_bytes(out):
    """Bytes of our per-service spec modules (`<service>_svc`, with their
    doc line) in the output under `out`."""
    total = 0
    for f in Path(out).rglob("*.rs"):
        inside = False
        for line in f.read_text().splitlines(keepends=True):
            if line.startswith("/// Settings and per-method policy of"):
                inside = True
            if inside:
                total += len(line)
                if line == "}\n":
                    inside = False
    return total


def run_side(protoc, includes, files, plugins, out, log):
    """One protoc run with `plugins` [(name, wrapper, opt)]; returns wall
    seconds, peak plugin RSS in KiB and output bytes."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log.write_text("")
    cmd = [protoc, *includes]
    for name, wrapper, opt in plugins:
        cmd += [f"--plugin=protoc-gen-{name}={wrapper}", f"--{name}_out={out}"]
        if opt:
            cmd.append(f"--{name}_opt={opt}")
    start = time.monotonic()
    sh(cmd + files)
    wall = time.monotonic() - start
    peak = max(int(x) for x in log.read_text().split())
    size = dir_size(out)
    return wall, peak, size, size - spec_bytes(out)


def googleapis():
    """The .proto files of googleapis-common-protos (PyPI): a real tree of
    shared types. Returns (root, files)."""
    try:
        import google.api
    except ImportError:
        sys.exit("googleapis-common-protos is missing: pip install googleapis-common-protos")
    root = Path(list(google.api.__path__)[0]).parents[1]
    files = sorted(str(p.relative_to(root)) for p in (root / "google").rglob("*.proto"))
    return root, [f for f in files if not f.startswith("google/protobuf/")]


def measure(protoc, work, shape, args, ours, prost, tonic):
    if shape == "googleapis":
        tree, files = googleapis()
        files = [tree / f for f in files]
    else:
        tree = work / f"corpus-{shape}"
        files = [tree / f for f in corpus.write(tree, args.files, args.messages, args.services, shape)]
    includes = ["-I", tree, "-I", ROOT / "proto", *wkt_include(protoc)]
    log = work / "rss.log"
    sides = {
        "protoc-gen-svc": [("svc", wrap(work, "svc", ours, log), "")],
        "prost + tonic": [
            ("prost", wrap(work, "prost", prost, log), ""),
            ("tonic", wrap(work, "tonic", tonic, log), ""),
        ],
    }
    results = {name: [] for name in sides}
    alone = []
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            results[name].append(run_side(protoc, includes, files, sides[name], work / "out" / name, log))
        start = time.monotonic()
        sh([protoc, *includes, "-o", os.devnull, *files])
        alone.append(time.monotonic() - start)
    return tree, files, includes, results, statistics.median(alone)


def report_generation(shape, args, files, results, alone):
    ours, theirs = results["protoc-gen-svc"], results["prost + tonic"]
    med = lambda rows, i: statistics.median(row[i] for row in rows)  # noqa: E731
    what = (
        f"{len(files)} files of googleapis-common-protos"
        if shape == "googleapis"
        else f"{args.files} files, {args.files * args.messages} messages, {args.files * args.services} services"
    )
    print(f"\n{shape}: {what}; median of {args.rounds} rounds; protoc alone {alone:.2f} s")
    print(f"| metric | protoc-gen-svc | prost + tonic | ratio |\n|---|---|---|---|")
    for label, i, fmt in [
        ("wall time (protoc + plugins)", 0, lambda v: f"{v:.2f} s"),
        ("peak plugin memory", 1, lambda v: f"{v / 1024:.0f} MiB"),
        ("output size", 2, lambda v: f"{v / 1e6:.1f} MB"),
        ("output size without our per-service specs", 3, lambda v: f"{v / 1e6:.1f} MB"),
    ]:
        a, b = med(ours, i), med(theirs, i)
        print(f"| {label} | {fmt(a)} | {fmt(b)} | {a / b:.2f} |")


def crate(work, name, runtime_dep):
    d = work / "crates" / name
    (d / "src").mkdir(parents=True, exist_ok=True)
    (d / "Cargo.toml").write_text(
        f'[package]\nname = "generated"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
        f"[lib]\npath = \"src/lib.rs\"\n\n[dependencies]\n{runtime_dep}\n\n[workspace]\n\n"
        "[profile.release]\ndebug = false\n"
    )
    return d


def tree_module(files_by_package):
    """A nested module tree including each package's files."""
    root = {}
    for package, files in files_by_package.items():
        node = root
        for part in package.split("."):
            node = node.setdefault(part, {})
        node["\0files"] = files
    lines = []

    def walk(node, depth):
        pad = "    " * depth
        for f in node.get("\0files", []):
            lines.append(f'{pad}include!(concat!(env!("CARGO_MANIFEST_DIR"), "/gen/{f}"));')
        for name, child in sorted((k, v) for k, v in node.items() if k != "\0files"):
            lines.append(f"{pad}pub mod {name} {{")
            walk(child, depth + 1)
            lines.append(f"{pad}}}")

    walk(root, 0)
    return "\n".join(lines) + "\n"


def build(work, protoc, args, ours_plugin, prost, tonic):
    shape = "deep"
    tree = work / "corpus-build"
    files = corpus.write(tree, args.build_files, args.messages, args.services, shape)
    includes = ["-I", tree, "-I", ROOT / "proto", *wkt_include(protoc)]
    ours = crate(
        work,
        "ours",
        f'svc-runtime = {{ path = "{ROOT / "runtime"}" }}',
    )
    theirs = crate(work, "theirs", 'prost = "0.14"\nprost-types = "0.14"\ntonic = "0.14"\ntonic-prost = "0.14"')
    for d in (ours, theirs):
        shutil.rmtree(d / "gen", ignore_errors=True)
        (d / "gen").mkdir()
    sh([protoc, *includes, f"--plugin=protoc-gen-svc={ours_plugin}", f"--svc_out={ours / 'gen'}", *files])
    (ours / "src" / "lib.rs").write_text(
        f"{RECURSION}include!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/gen/mod.rs\"));\n"
    )
    sh(
        [
            protoc,
            *includes,
            f"--plugin=protoc-gen-prost={prost}",
            f"--plugin=protoc-gen-tonic={tonic}",
            f"--prost_out={theirs / 'gen'}",
            f"--tonic_out={theirs / 'gen'}",
            *files,
        ]
    )
    # protoc-gen-prost and protoc-gen-tonic write `<package>.rs` and
    # `<package>.tonic.rs` into a folder per package; the first includes
    # the second (through protoc's insertion point).
    by_package = {}
    for f in sorted((theirs / "gen").rglob("*.rs")):
        if not f.name.endswith(".tonic.rs"):
            by_package.setdefault(f.name.removesuffix(".rs"), []).append(str(f.relative_to(theirs / "gen")))
    (theirs / "src" / "lib.rs").write_text(RECURSION + tree_module(by_package))

    log = work / "rustc.log"
    wrapper = work / "rustc-wrapper"
    wrapper.write_text(RUSTC_WRAPPER.format(python=sys.executable, log=str(log)))
    wrapper.chmod(0o755)
    # Kept between runs, so only the first builds the dependencies.
    target = TARGET / "codegen-bench"
    env = {**os.environ, "CARGO_TARGET_DIR": str(target), "RUSTC_WRAPPER": str(wrapper)}
    results = {"protoc-gen-svc": [], "prost + tonic": []}
    for r in range(args.build_rounds):
        order = [("protoc-gen-svc", ours), ("prost + tonic", theirs)]
        if r % 2:
            order.reverse()
        for name, d in order:
            if r == 0:
                # Dependencies first, untimed.
                sh(["cargo", "build", "--release", "-q"], cwd=d, env=env)
            (d / "src" / "lib.rs").touch()
            log.write_text("")
            sh(["cargo", "build", "--release", "-q"], cwd=d, env=env)
            seconds, rss = log.read_text().split()
            results[name].append((float(seconds), int(rss)))
    print(
        f"\nrelease build of the generated crate: {args.build_files} files, "
        f"{args.build_files * args.messages} messages (deep); median of {args.build_rounds} rounds"
    )
    print("| metric | protoc-gen-svc | prost + tonic | ratio |\n|---|---|---|---|")
    a = statistics.median(x[0] for x in results["protoc-gen-svc"])
    b = statistics.median(x[0] for x in results["prost + tonic"])
    print(f"| rustc time | {a:.1f} s | {b:.1f} s | {a / b:.2f} |")
    a = statistics.median(x[1] for x in results["protoc-gen-svc"])
    b = statistics.median(x[1] for x in results["prost + tonic"])
    print(f"| rustc peak memory | {a / 1024:.0f} MiB | {b / 1024:.0f} MiB | {a / b:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--messages", type=int, default=16)
    p.add_argument("--services", type=int, default=1)
    p.add_argument("--shapes", default="deep,wide,googleapis", help="deep, wide, googleapis")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--build", action="store_true", help="also compile each side's generated crate")
    p.add_argument("--build-files", type=int, default=100)
    p.add_argument("--build-rounds", type=int, default=2)
    args = p.parse_args()
    protoc = find_protoc()
    ours, prost, tonic = ensure_tools()
    print(f"protoc: {protoc} ({sh([protoc, '--version']).stdout.strip()})")
    with tempfile.TemporaryDirectory(prefix="svc-codegen-bench-") as tmp:
        work = Path(tmp)
        for shape in args.shapes.split(","):
            _, files, _, results, alone = measure(protoc, work, shape, args, ours, prost, tonic)
            report_generation(shape, args, files, results, alone)
        if args.build:
            build(work, protoc, args, ours, prost, tonic)


if __name__ == "__main__":
    main()
