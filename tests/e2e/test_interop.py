"""The gRPC interop suite in both directions (examples/interop, contract §8).

- grpc-java's official interop client (io.grpc:grpc-interop-testing 1.79.0)
  runs its 18 core cases, compression included, against our generated
  server, in plaintext and over TLS (the peers' test CA, with
  --server_host_override);
- grpc-go's official interop client (google.golang.org/grpc v1.85.0) runs
  its cases, soak included, the same two ways;
- our interop client (on the generated client) runs the 18 cases against
  grpc-go's and grpc-java's interop servers and against ours, both ways.

Each case is a test of its own, named peer-transport-case, so a failure
says which case, which peer and which transport. The peers are built by
scripts/setup-tools.sh into .tools.
"""

import os
import subprocess
import time

import pytest

from conftest import REPO, TARGET, free_tcp_port, listening, run, stop_process

TOOLS = REPO / ".tools"
CERTS = TOOLS / "interop" / "certs"
JAVA_CLASSPATH = TOOLS / "interop" / "java" / "classpath-1.79.0.txt"
GO_CLIENT = TOOLS / "go" / "bin" / "go-interop-client-v1.85.0"
GO_SERVER = TOOLS / "go" / "bin" / "go-interop-server-v1.85.0"
# The name in the peers' test server certificate (server1.pem).
HOST_OVERRIDE = "foo.test.google.fr"

# grpc-java's core cases: all of them, the four compression cases included.
JAVA_CASES = [
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
]

# grpc-go's cases that need no cloud credentials, xDS or ORCA load reports
# (its client has no compression cases).
GO_CASES = [
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "timeout_on_sleeping_server",
    "cancel_after_begin",
    "cancel_after_first_response",
    "status_code_and_message",
    "special_status_message",
    "custom_metadata",
    "unimplemented_method",
    "unimplemented_service",
    "pick_first_unary",
    "rpc_soak",
    "channel_soak",
]

OUR_CASES = JAVA_CASES
# The two client-compression cases begin with a probe that a server must
# refuse (expect_compressed on an uncompressed message). grpc-go's and
# grpc-java's interop servers do not check expect_compressed — the Java
# client fails these cases against them too — so, as grpc's own interop
# matrix does, they run only against a server that implements the check
# (ours).
NEEDS_COMPRESSION_CHECK = {"client_compressed_unary", "client_compressed_streaming"}

TRANSPORTS = ["plaintext", "tls"]


def wait_listening(port, proc, what, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} before listening on {port}")
        if listening(port):
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")


def java_classpath():
    if not JAVA_CLASSPATH.exists():
        pytest.fail(f"grpc-java's interop testing is not fetched ({JAVA_CLASSPATH}); run scripts/setup-tools.sh")
    return JAVA_CLASSPATH.read_text().strip()


def need(path):
    if not path.exists():
        pytest.fail(f"{path} is missing; run scripts/setup-tools.sh")
    return path


@pytest.fixture(scope="module")
def interop_bins():
    env = {**os.environ, "CARGO_TARGET_DIR": str(TARGET), "SVC_INTEROP_PROTO": str(need(TOOLS / "interop" / "proto"))}
    r = run(["cargo", "build", "-q", "--manifest-path", REPO / "examples" / "interop" / "Cargo.toml"], env=env)
    assert r.returncode == 0, r.stderr
    return {"server": TARGET / "debug" / "interop-server", "client": TARGET / "debug" / "interop-client"}


class Servers:
    """Interop servers started for the module, stopped at its end."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.ports = {}

    def start(self, name, cmd, port, env=None):
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        wait_listening(port, proc, name)
        self.ports[name] = port

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            stop_process(p)


@pytest.fixture(scope="module")
def servers(interop_bins, tmp_path_factory):
    s = Servers(tmp_path_factory.mktemp("interop"))
    cert, key = need(CERTS / "server1.pem"), need(CERTS / "server1.key")
    tls_files = [f"--tls_cert_file={cert}", f"--tls_key_file={key}"]
    try:
        for transport in TRANSPORTS:
            tls = ["--use_tls"] + tls_files if transport == "tls" else []
            port = free_tcp_port()
            s.start(f"svc-{transport}", [interop_bins["server"], f"--port={port}", *tls], port)
            port = free_tcp_port()
            s.start(f"go-{transport}", [need(GO_SERVER), f"--port={port}", *tls], port)
            port = free_tcp_port()
            java_tls = "true" if transport == "tls" else "false"
            java = ["java", "-cp", java_classpath(), "io.grpc.testing.integration.TestServiceServer"]
            s.start(f"java-{transport}", [*java, f"--port={port}", f"--use_tls={java_tls}"], port)
        yield s
    finally:
        s.stop()


def check(result, client, server, transport, case):
    output = (result.stdout + result.stderr).strip().splitlines()
    lines = [line for line in output if not line.lstrip().startswith("at ")]  # no Java stack frames
    tail = "\n".join(lines[-25:])
    assert result.returncode == 0, (
        f"{case} failed: {client} client against the {server} server over {transport} "
        f"(exit {result.returncode}):\n{tail}"
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", JAVA_CASES)
def test_grpc_java_client_against_our_server(servers, case, transport):
    port = servers.ports[f"svc-{transport}"]
    tls = ["--use_tls=true", "--use_test_ca=true", f"--server_host_override={HOST_OVERRIDE}"]
    cmd = ["java", "-cp", java_classpath(), "io.grpc.testing.integration.TestServiceClient"]
    cmd += ["--server_host=127.0.0.1", f"--server_port={port}", f"--test_case={case}"]
    cmd += tls if transport == "tls" else ["--use_tls=false"]
    check(run(cmd, timeout=120), "grpc-java", "svc", transport, case)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", GO_CASES)
def test_grpc_go_client_against_our_server(servers, case, transport):
    port = servers.ports[f"svc-{transport}"]
    cmd = [need(GO_CLIENT), "--server_host=127.0.0.1", f"--server_port={port}", f"--test_case={case}"]
    if transport == "tls":
        cmd += ["--use_tls", "--use_test_ca", f"--ca_file={CERTS / 'ca.pem'}", f"--server_host_override={HOST_OVERRIDE}"]
    check(run(cmd, timeout=120), "grpc-go", "svc", transport, case)


OUR_MATRIX = [
    (server, transport, case)
    for server in ["go", "java", "svc"]
    for transport in TRANSPORTS
    for case in OUR_CASES
    if server == "svc" or case not in NEEDS_COMPRESSION_CHECK
]


@pytest.mark.parametrize(
    "server,transport,case", OUR_MATRIX, ids=[f"{s}-{t}-{c}" for s, t, c in OUR_MATRIX]
)
def test_our_client_against_interop_servers(interop_bins, servers, server, transport, case):
    port = servers.ports[f"{server}-{transport}"]
    cmd = [interop_bins["client"], "--server_host=127.0.0.1", f"--server_port={port}", f"--test_case={case}"]
    if transport == "tls":
        cmd += ["--use_tls", "--use_test_ca", f"--ca_file={CERTS / 'ca.pem'}", f"--server_host_override={HOST_OVERRIDE}"]
    result = run(cmd, timeout=120)
    check(result, "svc", server, transport, case)
    assert f"PASS {case}" in result.stdout, result.stdout


def test_our_client_refuses_an_unknown_case_naming_the_ones_it_runs(interop_bins):
    result = run([interop_bins["client"], "--server_port=1", "--test_case=no_such_case"])
    assert result.returncode == 2
    assert "unknown test case \"no_such_case\"" in result.stderr and "large_unary" in result.stderr


def test_our_server_refuses_tls_without_its_files(interop_bins):
    result = run([interop_bins["server"], "--port=0", "--use_tls"], timeout=30)
    assert result.returncode == 2
    assert "--use_tls needs --tls_cert_file" in result.stderr
