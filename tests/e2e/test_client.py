"""The generated Rust client (the example's `greeter-client`) against real
peers: a Python grpcio server (four RPC kinds; plaintext, gzip, TLS, mTLS),
three generated servers of which one is SIGKILLed mid-run and restarted,
and a dnsmasq DNS server whose records change mid-run."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from concurrent import futures

import grpc
import pytest

from conftest import free_tcp_port, start_greeter, wait_for
from test_tls import Ca, pem


class PyGreeter:
    """greeter.v1.Greeter in Python grpcio, answering like the example."""

    def __init__(self, pb2):
        self.pb2 = pb2
        self.calls = 0

    def SayHello(self, request, context):
        self.calls += 1
        return self.pb2.HelloReply(message=f"Hello, {request.name}!")

    def SayHelloStream(self, request, context):
        for i in range(1, request.count + 1):
            yield self.pb2.HelloReply(message=f"Hello #{i}, {request.name}!")

    def CollectHellos(self, request_iterator, context):
        names = [r.name for r in request_iterator]
        return self.pb2.HelloReply(message=f"Hello, {', '.join(names)}!")

    def Chat(self, request_iterator, context):
        for r in request_iterator:
            yield self.pb2.HelloReply(message=f"Hello, {r.name}!")


EXPECTED = [
    "SayHello: Hello, world!",
    "SayHelloStream: Hello #1, world!",
    "SayHelloStream: Hello #2, world!",
    "SayHelloStream: Hello #3, world!",
    "CollectHellos: Hello, Ada, Grace, world!",
    "Chat: Hello, Ada!",
    "Chat: Hello, world!",
]


def python_server(stubs, credentials=None, compression=None, servicer=PyGreeter):
    pb2, grpc_pb2 = stubs
    impl = servicer(pb2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), compression=compression)
    grpc_pb2.add_GreeterServicer_to_server(impl, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, impl, f"127.0.0.1:{port}"


def client(binaries, *args, timeout=60):
    return subprocess.run(
        [str(binaries["greeter_client"]), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture()
def certs(tmp_path):
    ca = Ca("client test root")
    cert, key = ca.issue("greeter", server=True)
    client_cert, client_key = ca.issue("client-1", client=True)
    files = {}
    for name, obj in [("ca", ca.cert), ("cert", cert), ("key", key), ("client_cert", client_cert), ("client_key", client_key)]:
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(pem(obj))
    return files


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_generated_client_calls_a_grpcio_server(binaries, stubs, gzip):
    server, impl, addr = python_server(stubs, compression=grpc.Compression.Gzip if gzip else None)
    try:
        r = client(binaries, "--target", addr, *(["--gzip"] if gzip else []))
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == EXPECTED
        assert impl.calls == 1
    finally:
        server.stop(0)


def test_a_failed_call_leaves_one_structured_record(binaries, stubs):
    class Refusing(PyGreeter):
        def SayHello(self, request, context):
            self.calls += 1
            context.abort(grpc.StatusCode.NOT_FOUND, f"no greeter for {request.name} (é)")

    server, impl, addr = python_server(stubs, servicer=Refusing)
    try:
        r = client(binaries, "--target", addr)
        assert r.returncode == 1, r.stderr
        records = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
        failed = [rec for rec in records if rec["msg"] == "call failed"]
        assert len(failed) == 1, r.stderr
        rec = failed[0]
        assert rec["level"] == "warn"
        assert rec["target"] == addr and rec["peer"] == addr
        assert rec["method"] == "/greeter.v1.Greeter/SayHello"
        assert rec["code"] == "NotFound" and rec["message"] == "no greeter for world (é)"
        assert rec["attempts"] == 1 and rec["duration_ms"] >= 0
        # Below warn, nothing is written.
        quiet = subprocess.run([str(binaries["greeter_client"]), "--target", addr], capture_output=True, text=True,
                               timeout=60, env={**os.environ, "SVC_LOG": "error"})
        assert quiet.returncode == 1 and "call failed" not in quiet.stderr, quiet.stderr
    finally:
        server.stop(0)


def test_generated_client_over_tls_and_mutual_tls(binaries, stubs, certs):
    read = lambda k: certs[k].read_bytes()
    tls = grpc.ssl_server_credentials([(read("key"), read("cert"))])
    server, _, addr = python_server(stubs, credentials=tls)
    try:
        r = client(binaries, "--target", addr, "--ca", certs["ca"], "--server-name", "localhost")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == EXPECTED
        # An untrusted server is refused, naming the problem.
        other = Ca("someone else")
        certs["ca"].write_bytes(pem(other.cert))
        r = client(binaries, "--target", addr, "--ca", certs["ca"], "--server-name", "localhost")
        assert r.returncode != 0
        assert "TLS handshake" in r.stderr and addr in r.stderr, r.stderr
    finally:
        server.stop(0)


def test_generated_client_presents_its_certificate_for_mutual_tls(binaries, stubs, certs):
    read = lambda k: certs[k].read_bytes()
    mtls = grpc.ssl_server_credentials(
        [(read("key"), read("cert"))], root_certificates=read("ca"), require_client_auth=True
    )
    server, _, addr = python_server(stubs, credentials=mtls)
    try:
        base = ["--target", addr, "--ca", certs["ca"], "--server-name", "localhost"]
        r = client(binaries, *base, "--cert", certs["client_cert"], "--key", certs["client_key"])
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == EXPECTED
        r = client(binaries, *base)
        assert r.returncode != 0, "a client without a certificate got through"
    finally:
        server.stop(0)


def handled(metrics_addr, method="SayHello"):
    """grpc_server_handled_total of `method`, summed over codes."""
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{") and f'grpc_method="{method}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_a_sigkilled_server_costs_no_idempotent_calls_and_gets_calls_again_after_a_restart(binaries):
    servers = [start_greeter(binaries["greeter"], {"SVC_LOG": "warn"}) for _ in range(3)]
    try:
        target = "ipv4:" + ",".join(s.grpc for s in servers)
        run = subprocess.Popen(
            [str(binaries["greeter_client"]), "--target", target, "--policy", "round_robin", "--rate", "200",
             "--seconds", "9"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(2.5)
        victim = servers[1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=5)
        time.sleep(1.5)
        # Restarted on the same address, it gets calls again from the same
        # client, which reconnects within its backoff.
        restarted = start_greeter(
            binaries["greeter"], {"SVC_LOG": "warn", "SVC_GRPC_ADDR": victim.grpc, "SVC_METRICS_ADDR": "127.0.0.1:0", "SVC_HTTP_ADDR": "127.0.0.1:0"}
        )
        servers.append(restarted)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0 or out, err
        stats = json.loads(out.strip().splitlines()[-1])
        success = stats["ok"] / stats["calls"]
        amplification = stats["attempts"] / stats["calls"]
        print(f"SIGKILL of one of three servers: {stats}; success {success:.4%}, amplification {amplification:.3f}")
        assert success >= 0.999, stats
        assert amplification <= 1.1, stats
        assert handled(restarted.metrics) > 0, "the restarted server got no calls"
    finally:
        for s in servers:
            s.stop()


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dns_records_that_change_move_the_calls(binaries, tmp_path):
    dnsmasq = "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else "dnsmasq"
    first = start_greeter(binaries["greeter"], {"SVC_LOG": "warn", "SVC_GRPC_ADDR": "127.0.0.2:0"})
    port = first.grpc.rsplit(":", 1)[1]
    second = start_greeter(binaries["greeter"], {"SVC_LOG": "warn", "SVC_GRPC_ADDR": f"127.0.0.3:{port}"})
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.2 greeter.test\n")
    dns_port = free_udp_port()
    dns = subprocess.Popen(
        [dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
         f"--port={dns_port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--cache-size=0",
         "--local-ttl=0", "--user=root", "--pid-file=", "--log-facility=-"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(0.5)
        assert dns.poll() is None, dns.stdout.read()
        target = f"dns://127.0.0.1:{dns_port}/greeter.test:{port}"
        run = subprocess.Popen(
            [str(binaries["greeter_client"]), "--target", target, "--rate", "50", "--seconds", "8",
             "--dns-refresh", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert wait_for(lambda: handled(first.metrics) > 20, 10), "no calls reached the first address"
        # The record moves; dnsmasq re-reads its hosts file on SIGHUP.
        hosts.write_text("127.0.0.3 greeter.test\n")
        dns.send_signal(signal.SIGHUP)
        assert wait_for(lambda: handled(second.metrics) > 20, 10), "calls never moved to the new address"
        out, err = run.communicate(timeout=60)
        stats = json.loads(out.strip().splitlines()[-1])
        assert stats["ok"] == stats["calls"], (stats, err)
        before = handled(first.metrics)
        time.sleep(1)
        assert handled(first.metrics) == before, "the old address still gets calls"
    finally:
        dns.terminate()
        first.stop()
        second.stop()


def test_unreachable_targets_fail_fast_and_name_the_address(binaries):
    addr = f"127.0.0.1:{free_tcp_port()}"
    started = time.monotonic()
    r = client(binaries, "--target", addr)
    assert r.returncode != 0
    assert time.monotonic() - started < 5
    assert re.search(rf"no endpoint of {re.escape(addr)} is reachable \({re.escape(addr)}: cannot connect", r.stderr), r.stderr
    r = client(binaries, "--target", "ftp://greeter")
    assert "accepted forms" in r.stderr, r.stderr
    r = client(binaries, "--target", addr, "--policy", "random")
    assert "is not a policy" in r.stderr, r.stderr


class Etcd:
    """A one-member etcd (Debian's etcd-server) on 127.0.0.1, read through
    its own JSON gateway so the test sees the registry as etcd holds it."""

    def __init__(self, data_dir):
        self.port, peer = free_tcp_port(), free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            ["etcd", "--name", "test", "--data-dir", str(data_dir),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"test=http://127.0.0.1:{peer}", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        assert wait_for(self.healthy, 20), "etcd did not start"

    def healthy(self):
        try:
            return json.loads(urllib.request.urlopen(f"{self.url}/health", timeout=2).read())["health"] == "true"
        except OSError:
            return False

    def registered(self, prefix):
        """{key: value} of every key under `prefix`."""
        import base64

        def b64(b):
            return base64.b64encode(b).decode()

        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = json.dumps({"key": b64(prefix.encode()), "range_end": b64(end.encode())}).encode()
        request = urllib.request.Request(f"{self.url}/v3/kv/range", data=body, method="POST")
        reply = json.loads(urllib.request.urlopen(request, timeout=5).read())
        return {
            base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
            for kv in reply.get("kvs", [])
        }

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_servers_register_in_etcd_and_clients_follow_them(binaries, tmp_path):
    etcd = Etcd(tmp_path / "etcd")
    prefix = "greeter.v1.Greeter/"
    env = {"SVC_LOG": "info", "SVC_ETCD_ENDPOINTS": etcd.url, "SVC_ETCD_LEASE_TTL": "3"}
    servers = [start_greeter(binaries["greeter"], env) for _ in range(3)]
    try:
        keys = lambda: set(etcd.registered(prefix))  # noqa: E731
        expected = {prefix + s.grpc for s in servers}
        assert wait_for(lambda: keys() == expected, 10), (keys(), expected)
        # etcd's naming format, which grpc-go's etcd resolver reads too.
        assert etcd.registered(prefix)[prefix + servers[0].grpc] == json.dumps({"Addr": servers[0].grpc}).replace(" ", "")

        run = subprocess.Popen(
            [str(binaries["greeter_client"]), "--target", "etcd:///greeter.v1.Greeter", "--policy", "round_robin",
             "--rate", "100", "--seconds", "10"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, SVC_ETCD_ENDPOINTS=etcd.url),
        )
        assert wait_for(lambda: all(handled(s.metrics) > 20 for s in servers), 10), "calls reached every server"

        # A server started now is found through the watch.
        late = start_greeter(binaries["greeter"], env)
        servers.append(late)
        assert wait_for(lambda: handled(late.metrics) > 20, 10), "the late server got no calls"

        # SIGTERM: deregistered before draining.
        termed = servers[0]
        termed.proc.send_signal(signal.SIGTERM)
        termed.proc.wait(timeout=10)
        assert prefix + termed.grpc not in keys()
        messages = [r.get("msg") for r in termed.logs()]
        assert "deregistered from etcd" in messages and "draining" in messages, messages[-5:]
        assert messages.index("deregistered from etcd") < messages.index("draining"), messages[-5:]

        # SIGKILL: registered until its lease (3 s) expires.
        killed = servers[1]
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait(timeout=5)
        killed_at = time.monotonic()
        assert prefix + killed.grpc in keys(), "gone before its lease expired"
        assert wait_for(lambda: prefix + killed.grpc not in keys(), 10), "the killed server never dropped out"
        dropped_after = time.monotonic() - killed_at
        print(f"etcd: SIGKILLed server dropped out after {dropped_after:.1f} s (lease TTL 3 s)")
        assert dropped_after <= 6

        out, err = run.communicate(timeout=60)
        stats = json.loads(out.strip().splitlines()[-1])
        print(f"etcd discovery run with one server SIGTERMed and one SIGKILLed: {stats}")
        assert stats["ok"] / stats["calls"] >= 0.999, (stats, err)
        assert keys() == {prefix + servers[2].grpc, prefix + late.grpc}
    finally:
        for s in servers:
            s.stop()
        etcd.stop()


def test_etcd_targets_without_endpoints_are_refused_clearly(binaries):
    env = {k: v for k, v in os.environ.items() if k != "SVC_ETCD_ENDPOINTS"}
    r = subprocess.run([str(binaries["greeter_client"]), "--target", "etcd:///greeter.v1.Greeter"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0
    assert "etcd:///greeter.v1.Greeter needs SVC_ETCD_ENDPOINTS" in r.stderr, r.stderr
