"""`protoc-gen-svc new`: what a user gets. A fresh scaffold, moved out of
where it was made, passes rustfmt, clippy and its own test (which calls
every method, with a token of its own when the service requires JWT); the
binary serves and a Python client gets UNIMPLEMENTED naming the method;
nothing `new` or `generate` writes names the machine that wrote it."""

import importlib
import os
import pathlib
import re
import shutil
import sys

import grpc
import pytest

from conftest import EXAMPLE, REPO, TARGET, run, start_greeter

PROTOS = REPO / "tests" / "protos"
# (crate name, proto, include dir, methods): the sample, a proto with all
# four method kinds, one with HS256 auth, roles and a public method, and the
# maximal one (auth, TLS, well-known types).
CASES = {
    "hello-service": (None, None, ["Greet", "GreetMany"]),
    "greeter-copy": (EXAMPLE / "proto" / "greeter" / "v1" / "greeter.proto", EXAMPLE / "proto",
                     ["SayHello", "SayHelloStream", "CollectHellos", "Chat"]),
    "vault-svc": (PROTOS / "auth" / "vault.proto", PROTOS / "auth", ["Peek", "Open", "Status"]),
    "shop-service": (PROTOS / "maximal" / "shop.proto", PROTOS / "maximal", ["GetItem", "PlaceOrder", "Ping", "WatchInventory"]),
}


def cargo(crate, *args, timeout=1800):
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET / "scaffold"))
    return run(["cargo", *args], cwd=crate, env=env, timeout=timeout)


def new(plugin, name, where, *extra):
    proto, include, _ = CASES[name]
    args = [plugin, "new", name, "--path", where, *extra]
    if proto:
        args += ["--proto", proto, "-I", include]
    r = run(args)
    assert r.returncode == 0, r.stderr
    return where / name


@pytest.fixture(scope="module")
def moved(binaries, tmp_path_factory):
    """Each case made with `--runtime-path` (builds against this checkout),
    then moved to another directory, as a user moves or clones it."""
    made = tmp_path_factory.mktemp("made")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    crates = {}
    for name in CASES:
        shutil.move(new(binaries["plugin"], name, made, "--runtime-path", REPO), elsewhere / name)
        crates[name] = elsewhere / name
    return crates


@pytest.mark.parametrize("name", list(CASES))
def test_moved_scaffold_is_formatted_lint_free_and_its_test_calls_every_method(moved, name):
    crate = moved[name]
    r = cargo(crate, "fmt", "--check")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    r = cargo(crate, "clippy", "-q", "--all-targets", "--", "-D", "warnings")
    assert r.returncode == 0, r.stderr[-6000:]
    r = cargo(crate, "test", "-q")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    assert "1 passed" in r.stdout, r.stdout
    # The test calls each method once; the server logs each call.
    # Each method is called for real: it reaches its handler (UNIMPLEMENTED),
    # or its default request breaks the proto's rules and the generated
    # server refuses it first (INVALID_ARGUMENT).
    called = re.findall(r'"msg":"rpc","method":"/[\w.]+/(\w+)","code":"(?:Unimplemented|InvalidArgument)"', r.stderr)
    assert sorted(called) == sorted(CASES[name][2]), r.stderr[-3000:]
    if name in ("vault-svc", "shop-service"):
        # Every call was authenticated with the test's own token (public
        # methods need none but get one).
        assert '"subject":"test"' in r.stderr
        assert 'features = ["jwt"' in (crate / "Cargo.toml").read_text()


def test_sample_binary_answers_unimplemented(moved, third_party, grpc_tools_include, tmp_path):
    crate = moved["hello-service"]
    r = cargo(crate, "build", "-q")
    assert r.returncode == 0, r.stderr[-4000:]
    served = start_greeter(TARGET / "scaffold" / "debug" / "hello-service")
    try:
        r = run([sys.executable, "-m", "grpc_tools.protoc", "-I", crate / "proto", "-I", third_party,
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


def test_a_lean_scaffold_says_which_feature_tls_needs(moved, tmp_path):
    """The sample is built without the runtime's `tls` feature (its
    annotations do not ask for TLS): TLS settings stop it at start-up with a
    message naming the variable and the feature."""
    crate = moved["hello-service"]
    assert cargo(crate, "build", "-q").returncode == 0
    (tmp_path / "tls.crt").write_text("unused")
    (tmp_path / "tls.key").write_text("unused")
    env = {"SVC_GRPC_ADDR": "127.0.0.1:0", "SVC_METRICS_ADDR": "127.0.0.1:0", "SVC_HTTP_ADDR": "127.0.0.1:0", "PATH": "/usr/bin:/bin",
           "SVC_TLS_CERT_FILE": str(tmp_path / "tls.crt"), "SVC_TLS_KEY_FILE": str(tmp_path / "tls.key")}
    r = run([TARGET / "scaffold" / "debug" / "hello-service"], env=env, timeout=30)
    assert r.returncode != 0
    assert "SVC_TLS_CERT_FILE" in r.stderr and "enable the `tls` feature of svc-runtime" in r.stderr, r.stderr


def machine_paths():
    home = pathlib.Path.home()
    return [str(REPO), str(REPO.resolve()), str(home), str(home.resolve())]


def written_files(root):
    return [p for p in sorted(pathlib.Path(root).rglob("*")) if p.is_file()]


def test_nothing_new_or_generate_writes_names_this_machine(binaries, tmp_path):
    out = tmp_path / "out"
    for name in CASES:
        new(binaries["plugin"], name, out / "new")
    for proto, include in [(EXAMPLE / "proto" / "greeter" / "v1" / "greeter.proto", EXAMPLE / "proto"),
                           (PROTOS / "maximal" / "shop.proto", PROTOS / "maximal")]:
        r = run([binaries["plugin"], "generate", "-I", include, "--opt", "target=all", "--out",
                 out / "generate" / proto.stem, proto])
        assert r.returncode == 0, r.stderr
    files = written_files(out)
    assert len(files) > 80, len(files)
    for path in files:
        text = path.read_text()
        for needle in machine_paths():
            assert needle not in text, f"{path.relative_to(out)} names {needle}"
    for name in CASES:
        manifest = (out / "new" / name / "Cargo.toml").read_text()
        assert "path =" not in manifest and 'svc-runtime = ' in manifest, manifest


def test_runtime_path_is_written_to_the_cargo_config_only(binaries, tmp_path):
    crate = new(binaries["plugin"], "hello-service", tmp_path, "--runtime-path", REPO)
    naming = [p.relative_to(crate).as_posix() for p in written_files(crate) if str(REPO.resolve()) in p.read_text()]
    assert naming == [".cargo/config.toml"], naming
    config = (crate / ".cargo" / "config.toml").read_text()
    assert f'svc-runtime = {{ path = "{REPO.resolve()}/runtime" }}' in config, config
    assert "/.cargo/config.toml" in (crate / ".gitignore").read_text()


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
    r = run([binaries["plugin"], "new", "ok", "--path", tmp_path, "--runtime-path", tmp_path])
    assert r.returncode != 0
    assert f"--runtime-path {tmp_path}: not a protoc-gen-svc checkout (no runtime/Cargo.toml" in r.stderr, r.stderr
    assert not (tmp_path / "ok").exists()
