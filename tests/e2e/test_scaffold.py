"""`protoc-gen-svc new`: the scaffolded crate builds, its own test passes,
the binary serves, and a Python client gets UNIMPLEMENTED naming the
method."""

import importlib
import os
import subprocess
import sys

import grpc
import pytest

from conftest import EXAMPLE, TARGET, run, start_greeter


def cargo(crate, *args):
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET / "scaffold"))
    return run(["cargo", *args], cwd=crate, env=env, timeout=1800)


@pytest.fixture(scope="module")
def sample(binaries, tmp_path_factory):
    root = tmp_path_factory.mktemp("scaffold")
    r = run([binaries["plugin"], "new", "hello-service", "--path", root])
    assert r.returncode == 0, r.stderr
    return root / "hello-service"


def test_sample_crate_builds_and_its_test_passes(sample):
    assert (sample / "proto" / "hello" / "v1" / "hello.proto").exists()
    r = cargo(sample, "test", "-q")
    assert r.returncode == 0, r.stderr[-6000:]


def test_sample_binary_answers_unimplemented(sample, third_party, grpc_tools_include, tmp_path):
    r = cargo(sample, "build", "-q")
    assert r.returncode == 0, r.stderr[-4000:]
    served = start_greeter(TARGET / "scaffold" / "debug" / "hello-service")
    try:
        r = run([sys.executable, "-m", "grpc_tools.protoc", "-I", sample / "proto", "-I", third_party,
                 "-I", grpc_tools_include, f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                 "hello/v1/hello.proto", "svc/options.proto"])
        assert r.returncode == 0, r.stderr
        sys.path.insert(0, str(tmp_path))
        pb2 = importlib.import_module("hello.v1.hello_pb2")
        stubs = importlib.import_module("hello.v1.hello_pb2_grpc")
        with grpc.insecure_channel(served.grpc) as channel:
            with pytest.raises(grpc.RpcError) as err:
                stubs.HelloStub(channel).Greet(pb2.GreetRequest(name="x"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert err.value.details() == "hello.v1.Hello/Greet is not implemented yet"
    finally:
        served.stop()


def test_scaffold_from_a_proto(binaries, tmp_path):
    r = run([binaries["plugin"], "new", "greeter-copy", "--proto", EXAMPLE / "proto" / "greeter" / "v1" / "greeter.proto",
             "-I", EXAMPLE / "proto", "--path", tmp_path])
    assert r.returncode == 0, r.stderr
    crate = tmp_path / "greeter-copy"
    handlers = (crate / "src" / "handlers.rs").read_text()
    for method in ("SayHello", "SayHelloStream", "CollectHellos", "Chat"):
        assert f"greeter.v1.Greeter/{method} is not implemented yet" in handlers
    r = cargo(crate, "test", "-q")
    assert r.returncode == 0, r.stderr[-6000:]


def test_new_refuses_bad_input(binaries, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    r = run([binaries["plugin"], "new", "taken", "--path", tmp_path])
    assert r.returncode != 0 and "already exists" in r.stderr
    (tmp_path / "empty.proto").write_text('syntax = "proto3";\npackage e;\nmessage M {}\n')
    r = run([binaries["plugin"], "new", "nosvc", "--proto", tmp_path / "empty.proto", "--path", tmp_path])
    assert r.returncode != 0 and "declares no service" in r.stderr
    r = run([binaries["plugin"], "new", "1bad", "--path", tmp_path])
    assert r.returncode != 0 and "not a valid package name" in r.stderr
