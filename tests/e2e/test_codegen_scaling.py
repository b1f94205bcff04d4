"""Generation scales with the input: on a deep-import tree (each file imports
the previous one, so the last file's imports are the whole tree) the output
grows linearly and every file's descriptor is embedded once, and reflection
over a server built from the generated code still resolves every service and
message of the tree (Python's grpcio reflection client, v1alpha, and
grpcurl, v1)."""

import os
import sys

import pytest

from conftest import GRPCURL, REPO, TARGET, protoc321, run, start_greeter

sys.path.insert(0, str(REPO / "bench" / "codegen"))
import corpus  # noqa: E402

FILES = 200
MESSAGES = 8


@pytest.fixture(scope="module")
def generated(binaries, tmp_path_factory):
    work = tmp_path_factory.mktemp("scaling")
    out = {}
    for n in (FILES // 2, FILES):
        tree = work / f"proto{n}"
        names = corpus.write(tree, n, messages=MESSAGES, services=1, shape="deep")
        gen = work / f"gen{n}"
        gen.mkdir()
        r = protoc321(binaries["plugin"], [f"--svc_out={gen}", "-I", tree, "-I", REPO / "proto",
                                           *[tree / name for name in names]])
        assert r.returncode == 0, r.stderr
        out[n] = (names, gen)
    return work, out


def size(directory):
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def test_doubling_the_tree_at_most_doubles_the_output(generated):
    _, out = generated
    small, large = size(out[FILES // 2][1]), size(out[FILES][1])
    assert large <= 2 * small * 1.10, (small, large, large / small)
    # The descriptors of the old design alone grew with the square of the
    # tree; a tree this deep would have given well over 3x.
    assert large >= 1.8 * small, "the larger tree's output is implausibly small"


def test_every_file_is_embedded_once(generated):
    _, out = generated
    names, gen = out[FILES]
    text = "".join(p.read_text() for p in gen.glob("*.rs"))
    for name in [*names, "svc/options.proto", "google/protobuf/timestamp.proto", "google/protobuf/descriptor.proto"]:
        count = text.count(f"        // {name}\n        b\"")
        assert count == 1, f"{name} is embedded {count} times"


@pytest.fixture(scope="module")
def server(generated):
    """A server for the deepest package's service, built from the
    generated code of the whole tree."""
    work, out = generated
    _, gen = out[FILES]
    last = f"pkg{FILES - 1:04d}"
    crate = work / "server"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        f"""[package]
name = "scaling-server"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
svc-runtime = {{ path = "{REPO / 'runtime'}" }}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}
tokio-stream = "0.1"

[workspace]
"""
    )
    (crate / "src" / "main.rs").write_text(
        f"""//! Serves the deepest package's service of the generated tree.
#![deny(warnings)]
// Each package's messages hold a Vec of the previous package's: checking
// that the deepest are `Send` walks a few types per package, 200 packages
// deep, far past rustc's default limit of 128 (code from tonic-prost-build
// needs the same).
#![recursion_limit = "4096"]

mod generated {{
    include!("{gen / 'mod.rs'}");
}}

use std::pin::Pin;

use generated::corpus::{last}::v1::{{Msg0, Msg{MESSAGES - 1}, service0_server::Service0, service0_svc}};
use svc_runtime::tonic::{{self, Request, Response, Status}};
use tokio_stream::Stream;

struct Deepest;

#[tonic::async_trait]
impl Service0 for Deepest {{
    async fn get(&self, request: Request<Msg0>) -> Result<Response<Msg{MESSAGES - 1}>, Status> {{
        Ok(Response::new(Msg{MESSAGES - 1} {{ id: request.into_inner().id, ..Default::default() }}))
    }}

    type ListStream = Pin<Box<dyn Stream<Item = Result<Msg{MESSAGES - 1}, Status>> + Send>>;

    async fn list(&self, _: Request<Msg0>) -> Result<Response<Self::ListStream>, Status> {{
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }}
}}

#[tokio::main]
async fn main() -> Result<(), svc_runtime::server::Error> {{
    service0_svc::serve(Deepest).await
}}
"""
    )
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET / "scaffold"))
    r = run(["cargo", "build", "-q"], cwd=crate, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-8000:]
    served = start_greeter(TARGET / "scaffold" / "debug" / "scaling-server")
    yield served
    served.stop()


def test_reflection_resolves_every_service_and_message(server, generated):
    import grpc
    from google.protobuf import descriptor_pool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(server.grpc) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        for i in range(FILES):
            package = corpus.package(i)
            service = pool.FindServiceByName(f"{package}.Service0")
            assert [m.name for m in service.methods] == ["Get", "List"]
            for m in range(MESSAGES):
                message = pool.FindMessageTypeByName(f"{package}.Msg{m}")
                assert message.fields_by_name["updated_at"].message_type.full_name == "google.protobuf.Timestamp"
                if i > 0:
                    assert message.fields_by_name["upstream0"].message_type.full_name == f"{corpus.package(i - 1)}.Msg{m}"
                assert pool.FindMessageTypeByName(f"{package}.Msg{m}.Part").fields_by_name["weight"]
            # Custom options travel with the descriptors.
            assert pool.FindFileByName(corpus.path(i)).dependencies[1].name == "svc/options.proto"


def test_grpcurl_lists_every_service(server):
    if not GRPCURL.exists():
        pytest.fail(f"grpcurl is not installed at {GRPCURL}; run scripts/setup-tools.sh")
    r = run([GRPCURL, "-plaintext", server.grpc, "list"], timeout=60)
    assert r.returncode == 0, r.stderr
    services = set(r.stdout.split())
    assert {f"{corpus.package(i)}.Service0" for i in range(FILES)} <= services, len(services)
    r = run([GRPCURL, "-plaintext", server.grpc, "describe", f"{corpus.package(0)}.Msg0"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert ".google.protobuf.Timestamp updated_at = 6;" in r.stdout, r.stdout
