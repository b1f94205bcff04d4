"""HTTP/2 abuse against the generated server, with the Python `h2` package
speaking raw HTTP/2: a flood of locally-reset streams gets GOAWAY
ENHANCE_YOUR_CALM, an oversized message gets RESOURCE_EXHAUSTED, the
annotated MAX_CONCURRENT_STREAMS is advertised, and a legitimate client
keeps working throughout."""

import socket

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from conftest import start_greeter

ENHANCE_YOUR_CALM = 0xB


@pytest.fixture
def served(binaries):
    s = start_greeter(binaries["greeter"])
    yield s
    s.stop()


def h2_connect(addr):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    config = h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8", validate_outbound_headers=False, normalize_outbound_headers=False
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def read_events(sock, conn, until, limit=2000):
    events = []
    for _ in range(limit):
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not data:
            break
        try:
            new = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            break
        events.extend(new)
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                break
        if until(events):
            break
    return events


def grpc_headers(addr, path="/greeter.v1.Greeter/SayHello"):
    return [
        (":method", "POST"), (":scheme", "http"), (":authority", addr), (":path", path),
        ("content-type", "application/grpc"), ("te", "trailers"),
    ]


def legit_call(stubs, addr):
    pb2, grpc_pb2 = stubs
    with grpc.insecure_channel(addr) as channel:
        return grpc_pb2.GreeterStub(channel).SayHello(pb2.HelloRequest(name="legit"), timeout=5).message


def test_max_concurrent_streams_is_advertised(served):
    sock, conn = h2_connect(served.grpc)
    events = read_events(sock, conn, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
    settings = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
    assert settings.changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 128
    sock.close()


def test_local_reset_flood_gets_goaway(served, stubs):
    """Each stream is made to fail on the server side (a request carrying a
    connection-specific header is malformed in HTTP/2, a stream error the
    server answers with RST_STREAM): the MadeYouReset pattern. Past the
    limit the server must close the connection with ENHANCE_YOUR_CALM."""
    sock, conn = h2_connect(served.grpc)
    read_events(sock, conn, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
    raw = bytearray()
    for i in range(1500):
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, grpc_headers(served.grpc) + [("connection", "keep-alive")], end_stream=True)
        raw += conn.data_to_send()
        # Forget the stream locally so h2 keeps opening new ones.
        conn.streams.pop(stream_id, None)
    try:
        sock.sendall(bytes(raw))
    except OSError:
        pass
    goaway = []
    events = read_events(sock, conn, lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev), limit=5000)
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    sock.close()
    assert goaway, "the server closed the connection with GOAWAY"
    assert goaway[0].error_code == ENHANCE_YOUR_CALM, goaway[0]
    assert legit_call(stubs, served.grpc) == "Hello, legit!"


def test_oversized_message_gets_resource_exhausted(served, stubs):
    pb2, grpc_pb2 = stubs
    with grpc.insecure_channel(served.grpc) as channel:
        stub = grpc_pb2.GreeterStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.SayHello(pb2.HelloRequest(name="x" * (5 << 20)), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert legit_call(stubs, served.grpc) == "Hello, legit!"
