"""Tracing: a span per call with W3C traceparent from a grpcio client,
exported as OTLP/HTTP JSON to a collector stand-in and parsed with the
official OpenTelemetry protobuf definitions (opentelemetry-proto)."""

import base64
import json
import signal
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from conftest import run, start_greeter, wait_for
from test_tls import pki  # noqa: F401 (fixture)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP receiver: keeps every request body sent to /v1/traces."""

    def __init__(self, tls=None):
        bodies = self.bodies = []
        paths = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                paths.append((self.path, self.headers["Content-Type"]))
                bodies.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            # tls: (certificate file, key file) of the collector.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def requests(self):
        """Every export as ExportTraceServiceRequest. OTLP/JSON writes ids
        in hex where protobuf's JSON mapping expects base64: convert, then
        parse strictly (unknown fields are errors)."""
        out = []
        for body in list(self.bodies):
            doc = json.loads(body)
            for rs in doc["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        for key in ("traceId", "spanId", "parentSpanId"):
                            if key in span:
                                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
            out.append(json_format.ParseDict(doc, ExportTraceServiceRequest()))
        return out

    def spans(self):
        found = []
        for request in self.requests():
            for rs in request.resource_spans:
                service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        found.append((service, span))
        return found

    def close(self):
        self.server.shutdown()


def attrs(span):
    out = {}
    for a in span.attributes:
        which = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, which)
    return out



def test_spans_follow_traceparent_and_reach_the_collector(binaries, stubs):
    pb2, grpc_pb2 = stubs
    collector = Collector()
    s = start_greeter(binaries["greeter"], {"SVC_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "greeter-test"})
    try:
        with grpc.insecure_channel(s.grpc) as channel:
            g = grpc_pb2.GreeterStub(channel)
            g.SayHello(pb2.HelloRequest(name="traced"), metadata=[("traceparent", f"00-{TRACE}-{PARENT}-01")], timeout=5)
            g.SayHello(pb2.HelloRequest(name="fresh"), timeout=5)
            g.SayHello(pb2.HelloRequest(name="unsampled"), metadata=[("traceparent", f"00-{'1' * 32}-{PARENT}-00")], timeout=5)
            with pytest.raises(grpc.RpcError):
                g.SayHello(pb2.HelloRequest(name=""), timeout=5)
        assert wait_for(lambda: len(collector.spans()) >= 3), collector.bodies
        time.sleep(0.7)  # nothing else (the unsampled call) arrives
        spans = collector.spans()
        logs = [r for r in s.logs() if r.get("msg") == "rpc"]
    finally:
        s.stop()
        collector.close()
    assert collector.paths[0] == ("/v1/traces", "application/json")
    assert len(spans) == 3, spans
    assert {service for service, _ in spans} == {"greeter-test"}
    by_trace = {span.trace_id.hex(): span for _, span in spans}
    traced = by_trace.pop(TRACE)
    assert traced.parent_span_id.hex() == PARENT
    assert traced.name == "greeter.v1.Greeter/SayHello"
    assert traced.kind == Span.SPAN_KIND_SERVER
    assert traced.end_time_unix_nano >= traced.start_time_unix_nano > 0
    a = attrs(traced)
    assert a["rpc.system"] == "grpc" and a["rpc.service"] == "greeter.v1.Greeter" and a["rpc.method"] == "SayHello"
    assert a["rpc.grpc.status_code"] == 0 and a["network.peer.address"] == "127.0.0.1"
    assert traced.status.code == Status.STATUS_CODE_UNSET
    # The other two started their own traces; INVALID_ARGUMENT is the
    # caller's fault, not a server error.
    assert all(not span.parent_span_id for span in by_trace.values())
    assert sorted(attrs(span)["rpc.grpc.status_code"] for span in by_trace.values()) == [0, 3]
    assert all(span.status.code == Status.STATUS_CODE_UNSET for span in by_trace.values())
    assert "1" * 32 not in by_trace
    # Access records carry the same ids.
    record = next(r for r in logs if r["trace_id"] == TRACE)
    assert record["span_id"] == traced.span_id.hex()
    assert any(r["trace_id"] == "1" * 32 for r in logs), "unsampled calls are still logged with their trace"


def test_server_errors_are_error_spans_and_exit_flushes(binaries, stubs):
    pb2, grpc_pb2 = stubs
    collector = Collector()
    s = start_greeter(binaries["greeter"], {"SVC_OTLP_ENDPOINT": collector.url})
    try:
        with grpc.insecure_channel(s.grpc) as channel:
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary("/greeter.v1.Greeter/Nope")(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            grpc_pb2.GreeterStub(channel).SayHello(pb2.HelloRequest(name="last"), timeout=5)
        # SIGTERM straight away: spans still queued are sent before exit.
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=15) == 0
        spans = {span.name: span for _, span in collector.spans()}
        services = {service for service, _ in collector.spans()}
    finally:
        s.stop()
        collector.close()
    assert set(spans) == {"greeter.v1.Greeter/Nope", "greeter.v1.Greeter/SayHello"}, spans
    nope = spans["greeter.v1.Greeter/Nope"]
    assert attrs(nope)["rpc.grpc.status_code"] == 12
    assert nope.status.code == Status.STATUS_CODE_ERROR and nope.status.message == "Unimplemented"
    assert services == {"greeter.v1.Greeter"}, "the resource defaults to the service's full name"


def test_an_unreachable_collector_never_slows_calls(binaries, stubs):
    pb2, grpc_pb2 = stubs
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    s = start_greeter(binaries["greeter"], {"SVC_OTLP_ENDPOINT": closed})
    try:
        with grpc.insecure_channel(s.grpc) as channel:
            g = grpc_pb2.GreeterStub(channel)
            for i in range(20):
                assert g.SayHello(pb2.HelloRequest(name=f"n{i}"), timeout=2).message == f"Hello, n{i}!"
        assert wait_for(lambda: any(r.get("msg") == "span export failed" for r in s.logs()), 10), s.lines
        failures = [r for r in s.logs() if r.get("msg") == "span export failed"]
        assert len(failures) == 1 and failures[0]["endpoint"] == closed + "/v1/traces"
    finally:
        s.stop()


def test_samplers_keep_the_traces_they_are_asked_to(binaries, stubs):
    pb2, grpc_pb2 = stubs
    collector = Collector()
    # New traces: none kept; calls whose caller sampled them: kept.
    env = {"SVC_OTLP_ENDPOINT": collector.url, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}
    s = start_greeter(binaries["greeter"], env)
    try:
        with grpc.insecure_channel(s.grpc) as channel:
            g = grpc_pb2.GreeterStub(channel)
            for i in range(5):
                g.SayHello(pb2.HelloRequest(name=f"new{i}"), timeout=5)
            g.SayHello(pb2.HelloRequest(name="child"), metadata=[("traceparent", f"00-{TRACE}-{PARENT}-01")], timeout=5)
        assert wait_for(lambda: len(collector.spans()) >= 1), collector.bodies
        time.sleep(0.7)  # nothing else arrives
        spans = [span for _, span in collector.spans()]
        logs = [r for r in s.logs() if r.get("msg") == "rpc"]
    finally:
        s.stop()
        collector.close()
    assert [span.trace_id.hex() for span in spans] == [TRACE], spans
    assert len(logs) == 6, "every call is still logged, with its trace id"


def test_a_bad_sampler_stops_start_up(binaries):
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2", "PATH": "/usr/bin:/bin"}
    r = run([binaries["greeter"]], env=env, timeout=30)
    assert r.returncode != 0 and 'OTEL_TRACES_SAMPLER_ARG: "2" is not a ratio between 0 and 1' in r.stderr, r.stderr


def test_spans_reach_an_https_collector_trusted_through_its_ca(binaries, stubs, pki):
    pb2, grpc_pb2 = stubs
    files = pki["files"]
    collector = Collector(tls=(str(files["cert"]), str(files["key"])))
    trusted = start_greeter(binaries["greeter"], {"SVC_OTLP_ENDPOINT": collector.url, "OTEL_EXPORTER_OTLP_CERTIFICATE": str(files["ca"])})
    # Trusting another CA: the collector's certificate is refused.
    wrong = start_greeter(binaries["greeter"], {"SVC_OTLP_ENDPOINT": collector.url, "OTEL_EXPORTER_OTLP_CERTIFICATE": str(files["other_ca"])})
    try:
        for s, name in [(trusted, "secure"), (wrong, "refused")]:
            with grpc.insecure_channel(s.grpc) as channel:
                grpc_pb2.GreeterStub(channel).SayHello(pb2.HelloRequest(name=name), timeout=5)
        assert wait_for(lambda: len(collector.spans()) >= 1), collector.bodies
        assert wait_for(lambda: any(r.get("msg") == "span export failed" for r in wrong.logs()), 10), wrong.lines
        time.sleep(0.7)
        spans = collector.spans()
        failure = next(r for r in wrong.logs() if r.get("msg") == "span export failed")
    finally:
        trusted.stop()
        wrong.stop()
        collector.close()
    assert len(spans) == 1 and spans[0][1].name == "greeter.v1.Greeter/SayHello", spans
    assert "TLS" in failure["problem"] and "certificate" in failure["problem"].lower(), failure


def test_a_bad_otlp_ca_file_stops_start_up(binaries, tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    env = {"SVC_OTLP_ENDPOINT": "https://otel:4318", "OTEL_EXPORTER_OTLP_CERTIFICATE": str(bad), "PATH": "/usr/bin:/bin"}
    r = run([binaries["greeter"]], env=env, timeout=30)
    assert r.returncode != 0 and "OTEL_EXPORTER_OTLP_CERTIFICATE:" in r.stderr and "holds no PEM certificate" in r.stderr, r.stderr


def test_a_bad_endpoint_stops_start_up(binaries):
    r = run([binaries["greeter"]], env={"SVC_OTLP_ENDPOINT": "grpc://otel:4317", "PATH": "/usr/bin:/bin"}, timeout=30)
    assert r.returncode != 0 and "SVC_OTLP_ENDPOINT: \"grpc://otel:4317\" is not an http:// or https:// URL" in r.stderr, r.stderr
