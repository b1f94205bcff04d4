"""Corpus: every .proto of googleapis-common-protos (PyPI), the well-known
types, and the adversarial set (keywords, recursion, groups, extensions,
editions 2023) generate through protoc 35 and through the embedded compiler,
and the result compiles under #![deny(warnings)] and clippy -D warnings."""

import os
import pathlib
import sys

import pytest

from conftest import REPO, TARGET, protoc35, run, tree

ADVERSARIAL = REPO / "tests" / "protos" / "adversarial"
EDITIONS = {"editions.proto", "editions_implicit.proto"}


def googleapis_root():
    import google.api

    return pathlib.Path(list(google.api.__path__)[0]).parents[1]


def corpus_files(root):
    files = sorted(str(p.relative_to(root)) for p in (root / "google").rglob("*.proto"))
    # google/protobuf is not part of googleapis-common-protos; the
    # well-known types come from grpcio-tools below.
    return [f for f in files if not f.startswith("google/protobuf/")]


def wkt_files(include):
    return sorted(
        str(p.relative_to(include))
        for p in (include / "google" / "protobuf").rglob("*.proto")
        if p.name not in {"unittest.proto"}
    )


@pytest.fixture(scope="module")
def corpus(binaries, grpc_tools_include, tmp_path_factory):
    root = googleapis_root()
    files = corpus_files(root)
    assert len(files) >= 60, files
    wkt = wkt_files(grpc_tools_include)
    assert "google/protobuf/timestamp.proto" in wkt
    work = tmp_path_factory.mktemp("corpus")

    # Route 1: protoc 35 drives the plugin over everything.
    via_protoc = work / "src" / "via_protoc"
    via_protoc.mkdir(parents=True)
    adv = sorted(p.name for p in ADVERSARIAL.glob("*.proto"))
    r = protoc35(
        binaries["plugin"],
        [f"--svc_out={via_protoc}", "-I", root, "-I", grpc_tools_include, *files, *wkt],
    )
    assert r.returncode == 0, r.stderr
    adv_out = work / "src" / "adversarial"
    adv_out.mkdir(parents=True)
    r = protoc35(binaries["plugin"], [f"--svc_out={adv_out}", "-I", ADVERSARIAL, "-I", grpc_tools_include, *adv])
    assert r.returncode == 0, r.stderr

    # Route 2: the embedded compiler (no protoc) over the same non-editions
    # files, without the well-known types; and protoc over exactly those, to
    # compare (packages link to the descriptors of the others of their run,
    # so both runs must generate the same packages).
    via_protox = work / "src" / "via_protox"
    r = run([binaries["plugin"], "generate", "-I", root, "--out", via_protox, *[root / f for f in files]])
    assert r.returncode == 0, r.stderr
    same = work / "same_files_via_protoc"
    same.mkdir()
    r = protoc35(binaries["plugin"], [f"--svc_out={same}", "-I", root, "-I", grpc_tools_include, *files])
    assert r.returncode == 0, r.stderr

    (work / "Cargo.toml").write_text(
        f"""[package]
name = "corpus"
version = "0.0.0"
edition = "2024"
publish = false

[lib]
path = "src/lib.rs"

[dependencies]
svc-runtime = {{ path = "{REPO / 'runtime'}" }}

[workspace]
"""
    )
    (work / "src" / "lib.rs").write_text(
        "//! Generated corpus.\n#![deny(warnings)]\n"
        '#[path = "via_protoc/mod.rs"]\npub mod via_protoc;\n'
        '#[path = "via_protox/mod.rs"]\npub mod via_protox;\n'
        '#[path = "adversarial/mod.rs"]\npub mod adversarial_set;\n'
    )
    return {"work": work, "files": files, "via_protoc": via_protoc, "via_protox": via_protox, "same": same,
            "adv": adv_out}


def test_every_googleapis_package_is_generated(corpus):
    names = tree(corpus["via_protoc"]).keys()
    for expected in ["google.api.rs", "google.rpc.rs", "google.type.rs", "google.longrunning.rs", "mod.rs"]:
        assert expected in names, sorted(names)


def test_protoc_and_embedded_compiler_agree(corpus):
    a, b = tree(corpus["same"]), tree(corpus["via_protox"])
    assert a.keys() == b.keys()
    for name, content in b.items():
        assert a[name] == content, f"{name} differs between protoc and the embedded compiler"


def test_generating_the_well_known_types_changes_only_their_links(corpus):
    # With google.protobuf generated too, the other packages link to its
    # descriptors instead of holding them in the shared static: the code
    # before the descriptors is the same.
    a, b = tree(corpus["via_protoc"]), tree(corpus["same"])
    assert "google.protobuf.rs" in a and "google.protobuf.rs" not in b
    for name, content in b.items():
        if name != "mod.rs":
            cut = "\n/// Encoded descriptors of the files of package"
            assert a[name].split(cut)[0] == content.split(cut)[0], name


def test_adversarial_set_is_generated(corpus):
    names = tree(corpus["adv"]).keys()
    assert {"adversarial.type.async.rs", "adversarial.legacy.rs", "adversarial.editions.rs",
            "adversarial.editions.implicit.rs"} <= set(names), sorted(names)


def cargo(corpus, *args):
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET / "corpus"))
    return run(["cargo", *args], cwd=corpus["work"], env=env, timeout=1800)


def test_corpus_compiles_without_warnings(corpus):
    r = cargo(corpus, "build", "-q")
    assert r.returncode == 0, r.stderr[-8000:]


def test_corpus_is_clippy_clean(corpus):
    r = cargo(corpus, "clippy", "-q", "--", "-D", "warnings")
    assert r.returncode == 0, r.stderr[-8000:]


def test_corpus_docs_build_without_warnings(corpus):
    env_flags = dict(RUSTDOCFLAGS="-D warnings")
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET / "corpus"), **env_flags)
    r = run(["cargo", "doc", "-q", "--no-deps"], cwd=corpus["work"], env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-8000:]


def test_corpus_comments_make_no_failing_doctests(corpus):
    r = cargo(corpus, "test", "-q", "--doc")
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-4000:])
