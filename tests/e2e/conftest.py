"""Shared fixtures of the end-to-end suite: built binaries, the bundled
third-party protos, and helpers to run commands and servers."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BUF = REPO / ".tools" / "node" / "node_modules" / ".bin" / "buf"
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
    r = run(["cargo", "build", "-q", "-p", "protoc-gen-svc", "-p", "greeter-example"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    return {"plugin": TARGET / "debug" / "protoc-gen-svc", "greeter": TARGET / "debug" / "greeter"}


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


def tree(path):
    """{relative name: content} of every file under path."""
    path = pathlib.Path(path)
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}
