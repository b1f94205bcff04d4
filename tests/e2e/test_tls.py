"""TLS and mutual TLS on the example server (SVC_TLS_*), with certificates
minted here by `cryptography`: Python grpcio, grpcurl and grpc_health_probe
connect over TLS; plaintext and unknown-CA clients are refused; mTLS needs a
client certificate; replacing the files switches new connections to the new
certificate while an established connection keeps working."""

import datetime
import ipaddress
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import GRPC_HEALTH_PROBE, GRPCURL, run, start_greeter, wait_for


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer_name, public_key, signer, *, ca=False, server=False, client=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(signer, hashes.SHA256())


def pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class Ca:
    def __init__(self, name):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _cert(name, _name(name), self.key.public_key(), self.key, ca=True)

    def issue(self, cn, **kind):
        key = ec.generate_private_key(ec.SECP256R1())
        return _cert(cn, self.cert.subject, key.public_key(), self.key, **kind), key


@pytest.fixture()
def pki(tmp_path):
    ca, other = Ca("test root"), Ca("another root")
    cert, key = ca.issue("greeter", server=True)
    client_cert, client_key = ca.issue("client-1", client=True)
    files = {
        "ca": tmp_path / "ca.crt",
        "other_ca": tmp_path / "other.crt",
        "cert": tmp_path / "tls.crt",
        "key": tmp_path / "tls.key",
        "client_cert": tmp_path / "client.crt",
        "client_key": tmp_path / "client.key",
    }
    files["ca"].write_bytes(pem(ca.cert))
    files["other_ca"].write_bytes(pem(other.cert))
    files["cert"].write_bytes(pem(cert))
    files["key"].write_bytes(pem(key))
    files["client_cert"].write_bytes(pem(client_cert))
    files["client_key"].write_bytes(pem(client_key))
    return {"ca": ca, "other": other, "files": files, "dir": tmp_path}


def health(addr, root, client=None, timeout=5):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    creds = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=client[1] if client else None, certificate_chain=client[0] if client else None
    )
    with grpc.secure_channel(addr, creds) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status


def tls_env(files, mtls=False):
    env = {"SVC_TLS_CERT_FILE": str(files["cert"]), "SVC_TLS_KEY_FILE": str(files["key"])}
    if mtls:
        env["SVC_TLS_CLIENT_CA_FILE"] = str(files["ca"])
    return env


def test_tls_with_grpcio_grpcurl_and_grpc_health_probe(binaries, stubs, pki):
    pb2, grpc_pb2 = stubs
    f = pki["files"]
    s = start_greeter(binaries["greeter"], tls_env(f))
    try:
        root = f["ca"].read_bytes()
        with grpc.secure_channel(s.grpc, grpc.ssl_channel_credentials(root_certificates=root)) as channel:
            reply = grpc_pb2.GreeterStub(channel).SayHello(pb2.HelloRequest(name="Tls"), timeout=5)
            assert reply.message == "Hello, Tls!"
        # A plaintext client and a client trusting another CA get nowhere.
        with grpc.insecure_channel(s.grpc) as channel:
            with pytest.raises(grpc.RpcError) as err:
                grpc_pb2.GreeterStub(channel).SayHello(pb2.HelloRequest(name="x"), timeout=3)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError):
            health(s.grpc, f["other_ca"].read_bytes(), timeout=3)
        r = run([GRPCURL, "-cacert", f["ca"], "-d", '{"name": "Curl"}', s.grpc, "greeter.v1.Greeter/SayHello"], timeout=60)
        assert r.returncode == 0 and "Hello, Curl!" in r.stdout, r.stderr
        r = run([GRPC_HEALTH_PROBE, f"-addr={s.grpc}", "-tls", f"-tls-ca-cert={f['ca']}"], timeout=30)
        assert r.returncode == 0 and "SERVING" in r.stdout + r.stderr, r.stdout + r.stderr
        # Access records carry the peer address over TLS too.
        time.sleep(0.3)
        calls = [r for r in s.logs() if r.get("msg") == "rpc" and r["method"].endswith("/SayHello")]
        assert calls and all(c["peer"].startswith("127.0.0.1:") for c in calls), calls
    finally:
        s.stop()


def test_mutual_tls_requires_a_client_certificate(binaries, pki):
    f = pki["files"]
    s = start_greeter(binaries["greeter"], tls_env(f, mtls=True))
    try:
        root = f["ca"].read_bytes()
        client = (f["client_cert"].read_bytes(), f["client_key"].read_bytes())
        assert health(s.grpc, root, client) == 1  # SERVING
        with pytest.raises(grpc.RpcError):
            health(s.grpc, root, timeout=3)
        # A certificate from a CA the server does not trust is refused too.
        stranger, stranger_key = pki["other"].issue("stranger", client=True)
        with pytest.raises(grpc.RpcError):
            health(s.grpc, root, (pem(stranger), pem(stranger_key)), timeout=3)
        r = run(
            [
                GRPC_HEALTH_PROBE, f"-addr={s.grpc}", "-tls", f"-tls-ca-cert={f['ca']}",
                f"-tls-client-cert={f['client_cert']}", f"-tls-client-key={f['client_key']}",
            ],
            timeout=30,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        # The example's HTTP bindings are not served beside mTLS: plain
        # HTTP would let calls around the client-certificate check.
        assert s.http is None
        assert wait_for(lambda: any("bindings are not served" in rec.get("msg", "") for rec in s.logs()), 5), s.lines
    finally:
        s.stop()


def test_certificates_reload_without_dropping_connections(binaries, stubs, pki):
    pb2, grpc_pb2 = stubs
    f = pki["files"]
    s = start_greeter(binaries["greeter"], tls_env(f))
    try:
        old_root = f["ca"].read_bytes()
        kept = grpc.secure_channel(s.grpc, grpc.ssl_channel_credentials(root_certificates=old_root))
        stub = grpc_pb2.GreeterStub(kept)
        assert stub.SayHello(pb2.HelloRequest(name="before"), timeout=5).message == "Hello, before!"
        # Rotate to a certificate from another CA, as a renewed Secret would.
        new_cert, new_key = pki["other"].issue("greeter", server=True)
        for path, data in ((f["key"], pem(new_key)), (f["cert"], pem(new_cert))):
            tmp = path.with_suffix(".next")
            tmp.write_bytes(data)
            tmp.replace(path)
        new_root = pem(pki["other"].cert)
        deadline = time.monotonic() + 15
        while True:
            try:
                assert health(s.grpc, new_root, timeout=2) == 1
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "new certificate never served:\n" + "\n".join(s.lines)
                time.sleep(0.5)
        # New connections trusting only the old CA are refused now ...
        with pytest.raises(grpc.RpcError):
            health(s.grpc, old_root, timeout=3)
        # ... while the connection made before the rotation keeps working.
        assert stub.SayHello(pb2.HelloRequest(name="after"), timeout=5).message == "Hello, after!"
        kept.close()
        # Records reach stderr within 200 ms (see runtime/src/log.rs).
        reloaded = lambda: any(r.get("msg") == "TLS certificate reloaded" for r in s.logs())  # noqa: E731
        assert wait_for(reloaded, 5), s.lines
    finally:
        s.stop()


def test_bad_tls_settings_stop_start_up(binaries, pki):
    f = pki["files"]
    cases = [
        ({"SVC_TLS_CERT_FILE": str(f["cert"])}, "SVC_TLS_CERT_FILE: is set but SVC_TLS_KEY_FILE is not"),
        ({"SVC_TLS_CERT_FILE": str(f["cert"]), "SVC_TLS_KEY_FILE": str(f["client_key"])}, "does not fit the certificate"),
        ({"SVC_TLS_CERT_FILE": str(f["key"]), "SVC_TLS_KEY_FILE": str(f["key"])}, "holds no PEM certificate"),
        ({**tls_env(f), "SVC_TLS_CLIENT_CA_FILE": str(pki["dir"] / "none.crt")}, "SVC_TLS_CLIENT_CA_FILE: cannot read"),
    ]
    for env, message in cases:
        r = run([binaries["greeter"]], env={**env, "PATH": "/usr/bin:/bin"}, timeout=30)
        assert r.returncode != 0 and message in r.stderr, (env, r.stderr)
