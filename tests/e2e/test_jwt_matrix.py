"""JWT attack matrix against the generated shop.v1 server (RS256/ES256,
issuer, two audiences, roles claim `groups`), tokens minted by PyJWT."""

import base64
import importlib
import json
import sys
import time

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import REPO, run, start_greeter

MAXIMAL = REPO / "tests" / "protos" / "maximal"
ISSUER = "https://auth.example.com"


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    d = tmp_path_factory.mktemp("keys")
    (d / "public.pem").write_bytes(pem_public(rsa_key))
    return {"rsa": rsa_key, "other": other, "public_file": d / "public.pem", "public_pem": pem_public(rsa_key)}


@pytest.fixture(scope="module")
def shop_stubs(third_party, grpc_tools_include, tmp_path_factory):
    out = tmp_path_factory.mktemp("shop_py")
    r = run(
        [
            sys.executable, "-m", "grpc_tools.protoc", "-I", MAXIMAL, "-I", third_party, "-I", grpc_tools_include,
            f"--python_out={out}", f"--grpc_python_out={out}", "shop.proto", "svc/options.proto",
        ]
    )
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, str(out))
    return importlib.import_module("shop_pb2"), importlib.import_module("shop_pb2_grpc")


@pytest.fixture(scope="module")
def shop(binaries, keys, shop_stubs):
    served = start_greeter(binaries["shop"], {"SVC_JWT_PUBLIC_KEY_FILE": str(keys["public_file"])})
    pb2, grpc_pb2 = shop_stubs
    channel = grpc.insecure_channel(served.grpc)
    grpc.channel_ready_future(channel).result(timeout=10)
    yield pb2, grpc_pb2.ShopStub(channel)
    channel.close()
    served.stop()


def claims(**overrides):
    now = int(time.time())
    c = {"iss": ISSUER, "aud": "shop-api", "exp": now + 300, "sub": "ada", "groups": ["reader"]}
    c.update(overrides)
    return {k: v for k, v in c.items() if v is not None}


def sign(payload, key, alg="RS256", headers=None):
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload):
    enc = lambda d: b64(json.dumps(d).encode())
    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(payload)}."


def hs256_with_public_key(payload, public_pem):
    """The classic confusion attack: HS256 keyed with the RSA public key
    (PyJWT refuses to build it, so it is assembled by hand)."""
    import hashlib
    import hmac

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def call(shop, token, method="GetItem"):
    pb2, stub = shop
    md = [] if token is None else [("authorization", f"Bearer {token}")]
    if method == "GetItem":
        return stub.GetItem(pb2.GetItemRequest(sku="A-1"), metadata=md, timeout=5)
    return stub.PlaceOrder(pb2.PlaceOrderRequest(idempotency_key="k"), metadata=md, timeout=5)


def code_of(shop, token, method="GetItem"):
    try:
        call(shop, token, method)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_valid_token_is_accepted(shop, keys):
    reply = call(shop, sign(claims(), keys["rsa"]))
    assert reply.title == "ada", "the handler sees the verified subject"
    assert code_of(shop, sign(claims(aud="shop-admin"), keys["rsa"])) == grpc.StatusCode.OK


@pytest.mark.parametrize(
    "case",
    [
        "missing", "alg_none", "hs_rs_confusion", "expired", "nbf_future", "string_exp", "missing_exp",
        "wrong_aud", "absent_aud", "wrong_iss", "bad_signature", "unknown_kid", "oversized", "garbage",
        "es256_with_rsa_key_claimed",
    ],
)
def test_attack_is_unauthenticated(shop, keys, case):
    now = int(time.time())
    token = {
        "missing": lambda: None,
        "alg_none": lambda: unsigned(claims()),
        "hs_rs_confusion": lambda: hs256_with_public_key(claims(), keys["public_pem"]),
        "expired": lambda: sign(claims(exp=now - 3600), keys["rsa"]),
        "nbf_future": lambda: sign(claims(nbf=now + 3600), keys["rsa"]),
        "string_exp": lambda: sign(claims(exp=str(now + 300)), keys["rsa"]),
        "missing_exp": lambda: sign(claims(exp=None), keys["rsa"]),
        "wrong_aud": lambda: sign(claims(aud="billing"), keys["rsa"]),
        "absent_aud": lambda: sign(claims(aud=None), keys["rsa"]),
        "wrong_iss": lambda: sign(claims(iss="https://evil.example.com"), keys["rsa"]),
        "bad_signature": lambda: sign(claims(), keys["other"]),
        "unknown_kid": lambda: sign(claims(), keys["other"], headers={"kid": "not-a-known-key"}),
        "oversized": lambda: sign(claims(pad="x" * 9000), keys["rsa"]),
        "garbage": lambda: "not.a.jwt",
        "es256_with_rsa_key_claimed": lambda: sign(claims(), ec.generate_private_key(ec.SECP256R1()), alg="ES256"),
    }[case]()
    assert code_of(shop, token) == grpc.StatusCode.UNAUTHENTICATED


def test_right_token_wrong_role_is_permission_denied(shop, keys):
    assert code_of(shop, sign(claims(groups=["reader"]), keys["rsa"]), "PlaceOrder") == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(shop, sign(claims(groups="buyer"), keys["rsa"]), "PlaceOrder") == grpc.StatusCode.OK


def test_public_method_needs_no_token(shop):
    from google.protobuf import empty_pb2

    pb2, stub = shop
    stub.Ping(empty_pb2.Empty(), timeout=5)


def test_missing_key_stops_start_up(binaries):
    r = run([binaries["shop"]], env={"SVC_GRPC_ADDR": "127.0.0.1:0", "SVC_METRICS_ADDR": "127.0.0.1:0", "PATH": "/usr/bin:/bin"}, timeout=30)
    assert r.returncode != 0
    assert "SVC_JWT_PUBLIC_KEY_FILE: is not set" in r.stderr, r.stderr
