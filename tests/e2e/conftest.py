"""Shared fixtures of the end-to-end suite: built binaries, the bundled
third-party protos, and helpers to run commands and servers."""

import importlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BUF = REPO / ".tools" / "node" / "node_modules" / ".bin" / "buf"
GRPCURL = REPO / ".tools" / "go" / "bin" / "grpcurl"
GRPC_HEALTH_PROBE = REPO / ".tools" / "go" / "bin" / "grpc_health_probe"
# A protoc with editions support (33.x from Maven Central, scripts/setup-tools.sh).
PROTOC_CURRENT = REPO / ".tools" / "protoc" / "protoc"
EXAMPLE = REPO / "examples" / "01-greeter"


def run(cmd, **kw):
    """Runs a command, returning CompletedProcess; never raises on failure."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 600)
    return subprocess.run([str(c) for c in cmd], **kw)


@pytest.fixture(scope="session")
def binaries():
    """Builds the plugin and the example server once per session."""
    r = run(["cargo", "build", "-q", "-p", "protoc-gen-svc", "-p", "greeter-example", "-p", "svc-tests", "--bins"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    return {
        "plugin": TARGET / "debug" / "protoc-gen-svc",
        "greeter": TARGET / "debug" / "greeter",
        "greeter_client": TARGET / "debug" / "greeter-client",
        "shop": TARGET / "debug" / "shop-server",
    }


@pytest.fixture(scope="session")
def third_party(binaries, tmp_path_factory):
    """The bundled svc/options.proto, buf/validate and google/api protos."""
    d = tmp_path_factory.mktemp("third_party")
    r = run([binaries["plugin"], "protos", d])
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="session")
def buf():
    if not BUF.exists():
        pytest.fail(f"buf is not installed at {BUF}; run scripts/setup-tools.sh")
    return BUF


@pytest.fixture(scope="session")
def grpc_tools_include():
    import grpc_tools

    return pathlib.Path(grpc_tools.__file__).parent / "_proto"


def protoc35(plugin, args):
    """protoc 3x from grpcio-tools, driving our plugin."""
    return run([sys.executable, "-m", "grpc_tools.protoc", f"--plugin=protoc-gen-svc={plugin}", *args])


def protoc321(plugin, args):
    """protoc 3.21 from Debian, driving our plugin."""
    exe = shutil.which("protoc")
    if exe is None:
        pytest.fail("protoc is not installed; run scripts/setup-tools.sh")
    return run([exe, f"--plugin=protoc-gen-svc={plugin}", *args])


def health_probe(addr, service="", timeout=2):
    """grpc_health_probe against addr: its exit code (0 serving, 2 cannot
    connect, 3 RPC failed, e.g. unknown service, 4 not serving) and output."""
    if not GRPC_HEALTH_PROBE.exists():
        pytest.fail(f"grpc_health_probe is not installed at {GRPC_HEALTH_PROBE}; run scripts/setup-tools.sh")
    args = [GRPC_HEALTH_PROBE, f"-addr={addr}", f"-connect-timeout={timeout}s", f"-rpc-timeout={timeout}s"]
    if service:
        args.append(f"-service={service}")
    r = run(args, timeout=timeout * 2 + 10)
    return r.returncode, r.stdout + r.stderr


def wait_for(predicate, seconds=10):
    """Polls predicate every 0.1 s until it holds or `seconds` pass."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def free_tcp_port():
    """A TCP port free on 127.0.0.1 (for servers that cannot take port 0)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def tree(path):
    """{relative name: content} of every file under path."""
    path = pathlib.Path(path)
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


class Served:
    """A running example server process and its addresses. Its stderr (the
    logs) is drained into `lines` so the server never blocks writing."""

    def __init__(self, proc, grpc_addr, metrics_addr):
        import threading

        self.proc, self.grpc, self.metrics = proc, grpc_addr, metrics_addr
        self.lines = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def logs(self):
        """The JSON records logged so far."""
        import json

        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def stop(self):
        stop_process(self.proc, timeout=15)


def start_greeter(binary, extra_env=None):
    """Starts the example server on 127.0.0.1 port 0 and waits for its
    start-up line: `svc: serving NAME on ADDR (health and metrics on ADDR,
    HTTP/JSON on ADDR)` (the last part for services with HTTP bindings)."""
    import re

    env = {"SVC_GRPC_ADDR": "127.0.0.1:0", "SVC_METRICS_ADDR": "127.0.0.1:0", "SVC_HTTP_ADDR": "127.0.0.1:0", "PATH": "/usr/bin:/bin"}
    env.update(extra_env or {})
    proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline().strip()
    m = re.match(r"svc: serving (\S+) on (\S+) \(health and metrics on ([^,\s)]+)(?:, HTTP/JSON on (\S+))?\)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"unexpected start-up output {line!r} {proc.stderr.read()!r}")
    served = Served(proc, m.group(2), m.group(3))
    served.http = m.group(4)
    return served


@pytest.fixture(scope="session")
def stubs(third_party, grpc_tools_include, tmp_path_factory):
    out = tmp_path_factory.mktemp("py")
    r = run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            "-I", EXAMPLE / "proto", "-I", third_party, "-I", grpc_tools_include,
            f"--python_out={out}", f"--grpc_python_out={out}",
            "greeter/v1/greeter.proto", "svc/options.proto", "buf/validate/validate.proto",
        ]
    )
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, str(out))
    pb2 = importlib.import_module("greeter.v1.greeter_pb2")
    grpc_pb2 = importlib.import_module("greeter.v1.greeter_pb2_grpc")
    return pb2, grpc_pb2


