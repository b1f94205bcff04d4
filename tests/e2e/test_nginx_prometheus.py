"""The example server among real infrastructure from Debian's packages:

- behind nginx (`grpc_pass` to an upstream of two replicas, the usual
  load-balancing setup): all four RPC kinds, health checks through the
  proxy, calls spread over both replicas, and one replica drained
  (SIGTERM) under load with no failed call;
- scraped by Prometheus: a PromQL query over its HTTP API returns the
  per-method series of the calls made.

nginx and prometheus are installed by scripts/setup-tools.sh.
"""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import free_tcp_port, health_probe, listening, start_greeter, stop_process, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Nginx:
    """nginx in the foreground with a configuration of its own, in `tmp`."""

    def __init__(self, tmp, upstreams):
        if not os.path.exists(NGINX):
            pytest.fail("nginx is not installed; run scripts/setup-tools.sh")
        self.port = free_tcp_port()
        self.tmp = tmp
        servers = "\n".join(f"    server {addr} max_fails=0;" for addr in upstreams)
        temp = " ".join(f"{kind}_temp_path {tmp}/{kind};" for kind in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
        # The workers run as root only when nginx is started as root (as
        # in CI), so they can write the test's own folder.
        user = "user root;" if os.geteuid() == 0 else ""
        (tmp / "nginx.conf").write_text(
            f"""{user}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 512; }}
http {{
  access_log {tmp}/access.log;
  {temp}
  upstream greeter {{
{servers}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{self.port} http2;
    location / {{
      grpc_pass grpc://greeter;
      grpc_next_upstream error timeout;
    }}
  }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        if not wait_for(lambda: listening(self.port) or self.proc.poll() is not None, 15) or self.proc.poll() is not None:
            out = self.proc.stdout.read().decode(errors="replace") if self.proc.poll() is not None else ""
            pytest.fail(f"nginx did not start: {out}{self.error_log()}")

    def error_log(self):
        path = self.tmp / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self):
        stop_process(self.proc)


def calls_logged(served, method):
    return sum(1 for r in served.logs() if r.get("method", "").endswith("/" + method) and r.get("msg") == "rpc")


@pytest.fixture
def two_replicas(binaries):
    replicas = [start_greeter(binaries["greeter"]) for _ in range(2)]
    yield replicas
    for r in replicas:
        r.stop()


@pytest.fixture
def proxied(two_replicas, tmp_path):
    proxy = Nginx(tmp_path, [r.grpc for r in two_replicas])
    yield proxy, two_replicas
    proxy.stop()


def test_all_four_kinds_and_health_checks_through_nginx_reach_both_replicas(stubs, proxied):
    pb2, pb2_grpc = stubs
    proxy, replicas = proxied
    addr = f"127.0.0.1:{proxy.port}"
    with grpc.insecure_channel(addr) as channel:
        stub = pb2_grpc.GreeterStub(channel)
        for i in range(20):
            assert stub.SayHello(pb2.HelloRequest(name=f"n{i}"), timeout=5).message == f"Hello, n{i}!"
        replies = list(stub.SayHelloStream(pb2.HelloStreamRequest(name="s", count=3), timeout=5))
        assert [r.message for r in replies] == ["Hello #1, s!", "Hello #2, s!", "Hello #3, s!"]
        names = (pb2.HelloRequest(name=n) for n in ["a", "b", "c"])
        assert stub.CollectHellos(names, timeout=5).message == "Hello, a, b, c!"
        chat = stub.Chat(iter([pb2.HelloRequest(name="x"), pb2.HelloRequest(name="y")]), timeout=5)
        assert [r.message for r in chat] == ["Hello, x!", "Hello, y!"]
        # A validation failure keeps its status and details through the proxy.
        with pytest.raises(grpc.RpcError) as err:
            stub.SayHello(pb2.HelloRequest(name=""), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", "greeter.v1.Greeter"]:
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    code, out = health_probe(addr, "greeter.v1.Greeter")
    assert code == 0, out
    assert wait_for(lambda: all(calls_logged(r, "SayHello") > 0 for r in replicas), 5), (
        "nginx sent every call to one replica: "
        + str([calls_logged(r, "SayHello") for r in replicas])
        + proxy.error_log()
    )
    assert sum(calls_logged(r, "SayHello") for r in replicas) == 21


def test_draining_one_replica_behind_nginx_fails_no_call(stubs, proxied):
    pb2, pb2_grpc = stubs
    proxy, (draining, staying) = proxied
    addr = f"127.0.0.1:{proxy.port}"
    failures, done = [], {"unary": 0, "stream": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def unary_load():
        with grpc.insecure_channel(addr) as channel:
            stub = pb2_grpc.GreeterStub(channel)
            while not stop.is_set():
                try:
                    stub.SayHello(pb2.HelloRequest(name="load"), timeout=5)
                    with lock:
                        done["unary"] += 1
                except grpc.RpcError as e:
                    failures.append(f"SayHello: {e.code()} {e.details()}")
                time.sleep(0.01)

    def stream_load():
        with grpc.insecure_channel(addr) as channel:
            stub = pb2_grpc.GreeterStub(channel)
            while not stop.is_set():
                try:
                    got = list(stub.SayHelloStream(pb2.HelloStreamRequest(name="s", count=5, interval_ms=100), timeout=10))
                    if len(got) != 5:
                        failures.append(f"SayHelloStream: {len(got)} of 5 replies")
                    with lock:
                        done["stream"] += 1
                except grpc.RpcError as e:
                    failures.append(f"SayHelloStream: {e.code()} {e.details()}")

    threads = [threading.Thread(target=unary_load) for _ in range(3)] + [
        threading.Thread(target=stream_load) for _ in range(3)
    ]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: calls_logged(draining, "SayHello") > 10 and calls_logged(staying, "SayHello") > 10, 10)
        draining.proc.terminate()  # SIGTERM, as Kubernetes sends it
        draining.proc.wait(timeout=20)
        after = calls_logged(staying, "SayHello")
        time.sleep(1.5)
        served_after = calls_logged(staying, "SayHello") - after
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert draining.proc.returncode == 0, draining.lines[-20:]
    assert failures == [], f"{len(failures)} failed calls, first: {failures[:5]}\n{proxy.error_log()}"
    assert done["unary"] > 50 and done["stream"] >= 3, done
    assert served_after > 20, f"the remaining replica served {served_after} calls after the drain"
    assert any(r.get("msg") == "rpc" and r.get("method", "").endswith("/SayHelloStream") for r in draining.logs())


class Prometheus:
    """A Prometheus server scraping `target` every second."""

    def __init__(self, tmp, target):
        if not os.path.exists(PROMETHEUS):
            pytest.fail("prometheus is not installed; run scripts/setup-tools.sh")
        self.port = free_tcp_port()
        (tmp / "prometheus.yml").write_text(
            f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: greeter
    static_configs:
      - targets: ["{target}"]
"""
        )
        self.log = open(tmp / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.tmp = tmp
        if not wait_for(lambda: self.ready(), 30):
            pytest.fail(f"prometheus did not become ready: {self.output()}")

    def output(self):
        return (self.tmp / "prometheus.log").read_text(errors="replace")[-3000:]

    def get(self, path, **params):
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql):
        answer = self.get("/api/v1/query", query=promql)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def stop(self):
        stop_process(self.proc, timeout=15)
        self.log.close()


def test_prometheus_scrapes_the_per_method_series(binaries, stubs, tmp_path):
    pb2, pb2_grpc = stubs
    served = start_greeter(binaries["greeter"])
    try:
        prometheus = Prometheus(tmp_path, served.metrics)
        try:
            with grpc.insecure_channel(served.grpc) as channel:
                stub = pb2_grpc.GreeterStub(channel)
                for _ in range(7):
                    stub.SayHello(pb2.HelloRequest(name="p"), timeout=5)
                for _ in range(2):
                    with pytest.raises(grpc.RpcError):
                        stub.SayHello(pb2.HelloRequest(name=""), timeout=5)
                list(stub.SayHelloStream(pb2.HelloStreamRequest(name="s", count=2), timeout=5))

            def target_up():
                targets = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
                return any(t["health"] == "up" for t in targets)

            assert wait_for(target_up, 20), prometheus.get("/api/v1/targets")

            def handled():
                rows = prometheus.query('sum by (grpc_method, grpc_code) (grpc_server_handled_total{job="greeter"})')
                return {(r["metric"]["grpc_method"], r["metric"]["grpc_code"]): float(r["value"][1]) for r in rows}

            want = {("SayHello", "OK"): 7.0, ("SayHello", "InvalidArgument"): 2.0, ("SayHelloStream", "OK"): 1.0}
            assert wait_for(lambda: all(handled().get(k) == v for k, v in want.items()), 20), handled()
            # The histogram's series answer a latency query.
            p99 = prometheus.query(
                'histogram_quantile(0.99, sum by (le) (grpc_server_handling_seconds_bucket{grpc_method="SayHello"}))'
            )
            assert len(p99) == 1 and 0 < float(p99[0]["value"][1]) <= 10, p99
            types = prometheus.query('count by (grpc_type) (grpc_server_started_total{grpc_service="greeter.v1.Greeter"})')
            assert {r["metric"]["grpc_type"] for r in types} == {"unary", "server_stream", "client_stream", "bidi_stream"}
        finally:
            prometheus.stop()
    finally:
        served.stop()
