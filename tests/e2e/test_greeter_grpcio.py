"""A Python grpcio client calls all four methods of the generated example
server, started on 127.0.0.1:0 as a real process."""

import sys
import time

import grpc
import pytest

from conftest import EXAMPLE, run, start_greeter


@pytest.fixture(scope="module")
def server(binaries):
    served = start_greeter(binaries["greeter"])
    yield served.grpc
    served.stop()


@pytest.fixture
def stub(stubs, server):
    pb2, grpc_pb2 = stubs
    channel = grpc.insecure_channel(server)
    grpc.channel_ready_future(channel).result(timeout=10)
    yield pb2, grpc_pb2.GreeterStub(channel)
    channel.close()


def test_unary(stub):
    pb2, s = stub
    reply, call = s.SayHello.with_call(pb2.HelloRequest(name="Ada"), timeout=5)
    assert reply.message == "Hello, Ada!"
    assert reply.created_at.seconds > 1_700_000_000
    assert call.code() == grpc.StatusCode.OK


def test_server_streaming(stub):
    pb2, s = stub
    replies = list(s.SayHelloStream(pb2.HelloStreamRequest(name="Bo", count=3), timeout=5))
    assert [r.message for r in replies] == ["Hello #1, Bo!", "Hello #2, Bo!", "Hello #3, Bo!"]


def test_client_streaming(stub):
    pb2, s = stub
    reply = s.CollectHellos(iter([pb2.HelloRequest(name=n) for n in ("a", "b", "c")]), timeout=5)
    assert reply.message == "Hello, a, b, c!"


def test_bidi_streaming(stub):
    pb2, s = stub
    replies = [r.message for r in s.Chat(iter([pb2.HelloRequest(name=n) for n in ("x", "y")]), timeout=5)]
    assert replies == ["Hello, x!", "Hello, y!"]


def test_metadata_and_errors(stub):
    pb2, s = stub
    with pytest.raises(grpc.RpcError) as err:
        s.SayHello(pb2.HelloRequest(name=""), timeout=5, metadata=[("x-request-id", "abc")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name: must be at least 1 characters [string.min_len]" in err.value.details()


def details_of(err):
    """The `Violations` and `BadRequest` an INVALID_ARGUMENT carries, decoded
    from `grpc-status-details-bin` by Python's own protobuf."""
    from google.rpc import error_details_pb2, status_pb2
    import buf.validate.validate_pb2 as validate_pb2

    raw = dict(err.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    violations = validate_pb2.Violations()
    bad_request = error_details_pb2.BadRequest()
    assert [d.type_url for d in status.details] == [
        "type.googleapis.com/buf.validate.Violations", "type.googleapis.com/google.rpc.BadRequest"]
    assert status.details[0].Unpack(violations) and status.details[1].Unpack(bad_request)
    return violations, bad_request


def test_invalid_requests_are_refused_before_the_handler_with_violations(stub):
    pb2, s = stub
    # Unary: the proto's `string = {min_len: 1, max_len: 100}` rule.
    with pytest.raises(grpc.RpcError) as err:
        s.SayHello(pb2.HelloRequest(name="x" * 101), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations, bad_request = details_of(err.value)
    (v,) = violations.violations
    assert v.rule_id == "string.max_len" and v.message == "must be at most 100 characters"
    assert [(e.field_number, e.field_name) for e in v.field.elements] == [(1, "name")]
    assert [e.field_name for e in v.rule.elements] == ["string", "max_len"]
    assert [(f.field, f.reason) for f in bad_request.field_violations] == [("name", "string.max_len")]
    # Two bad fields of a server-streaming request: both named.
    with pytest.raises(grpc.RpcError) as err:
        list(s.SayHelloStream(pb2.HelloStreamRequest(name="", count=0), timeout=5))
    violations, bad_request = details_of(err.value)
    assert sorted(v.rule_id for v in violations.violations) == ["string.min_len", "uint32.gte_lte"]
    assert sorted(f.field for f in bad_request.field_violations) == ["count", "name"]
    # A client stream with one bad message among good ones fails on it.
    names = ["a", "", "c"]
    with pytest.raises(grpc.RpcError) as err:
        s.CollectHellos(iter([pb2.HelloRequest(name=n) for n in names]), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.rule_id for v in details_of(err.value)[0].violations] == ["string.min_len"]
    # And a valid one reaches the handler.
    assert s.SayHello(pb2.HelloRequest(name="y" * 100), timeout=5).message == f"Hello, {'y' * 100}!"


def test_deadline_exceeded(stub):
    pb2, s = stub
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        list(s.SayHelloStream(pb2.HelloStreamRequest(name="slow", count=50, interval_ms=200), timeout=0.5))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5


def test_gzip(stubs, server):
    pb2, grpc_pb2 = stubs
    with grpc.insecure_channel(server, compression=grpc.Compression.Gzip) as channel:
        reply = grpc_pb2.GreeterStub(channel).SayHello(pb2.HelloRequest(name="Zed" * 30), timeout=5)
    assert reply.message == f"Hello, {'Zed' * 30}!"


def test_typed_error_carries_error_info(stub):
    """A (svc.errors) value reaches a Python client as google.rpc.ErrorInfo."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    pb2, s = stub
    with pytest.raises(grpc.RpcError) as err:
        s.SayHello(pb2.HelloRequest(name="Voldemort"), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == "the name Voldemort may not be greeted"
    status = rpc_status.from_call(err.value)
    assert status is not None, "grpc-status-details-bin is present"
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1
    assert infos[0].reason == "NAME_BLOCKED"
    assert infos[0].domain == "greeter.example.com"
    assert dict(infos[0].metadata) == {"name": "Voldemort"}
