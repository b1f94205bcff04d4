"""protoc (Debian 3.21 and grpcio-tools 3x) and buf (npm) drive the plugin on
the example; every route must reproduce the committed gen/ byte for byte."""

import shutil

from conftest import EXAMPLE, protoc35, protoc321, run, tree

PROTO = "greeter/v1/greeter.proto"


def committed():
    return tree(EXAMPLE / "gen")


def test_protoc_321(binaries, third_party, tmp_path):
    r = protoc321(binaries["plugin"], [f"--svc_out={tmp_path}", "-I", EXAMPLE / "proto", "-I", third_party, PROTO])
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path) == committed()


def test_protoc_35(binaries, third_party, tmp_path):
    r = protoc35(binaries["plugin"], [f"--svc_out={tmp_path}", "-I", EXAMPLE / "proto", "-I", third_party, PROTO])
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path) == committed()


def buf_workspace(tmp_path, third_party, plugin, strategy="all", opts=None):
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE / "proto", ws / "proto")
    shutil.copytree(third_party, ws / "third_party")
    (ws / "buf.yaml").write_text("version: v2\nmodules:\n  - path: proto\n  - path: third_party\n")
    opt = "" if not opts else "    opt:\n" + "".join(f"      - {o}\n" for o in opts)
    (ws / "buf.gen.yaml").write_text(
        f"version: v2\nplugins:\n  - local: {plugin}\n    out: gen\n    strategy: {strategy}\n{opt}"
    )
    return ws


def test_buf_generate_strategy_all(binaries, third_party, buf, tmp_path):
    ws = buf_workspace(tmp_path, third_party, binaries["plugin"])
    r = run([buf, "generate", "proto"], cwd=ws)
    assert r.returncode == 0, r.stderr
    assert tree(ws / "gen") == committed()


def test_buf_generate_code_and_manifests_from_one_config(binaries, third_party, buf, tmp_path):
    # The example's buf.gen.yaml: one entry for the code, one with
    # target=k8s and its own out: for the manifests.
    ws = buf_workspace(tmp_path, third_party, binaries["plugin"])
    config = (EXAMPLE / "buf.gen.yaml").read_text().replace("local: protoc-gen-svc", f"local: {binaries['plugin']}")
    (ws / "buf.gen.yaml").write_text(config)
    r = run([buf, "generate", "proto"], cwd=ws)
    assert r.returncode == 0, r.stderr
    assert tree(ws / "gen") == committed()
    assert tree(ws / "deploy") == tree(EXAMPLE / "deploy")
    assert "greeter/deployment.yaml" in tree(ws / "deploy")


def test_buf_generate_strategy_directory(binaries, third_party, buf, tmp_path):
    # One package per directory: each run emits its package; the include
    # file is disabled because it aggregates every package (see README).
    ws = buf_workspace(tmp_path, third_party, binaries["plugin"], strategy="directory", opts=["include_file="])
    r = run([buf, "generate", "proto"], cwd=ws)
    assert r.returncode == 0, r.stderr
    assert "duplicate" not in r.stderr
    assert tree(ws / "gen") == {"greeter.v1.rs": committed()["greeter.v1.rs"]}


def test_buf_directory_split_package_is_explained(binaries, third_party, buf, tmp_path):
    ws = tmp_path / "split"
    (ws / "proto" / "one").mkdir(parents=True)
    (ws / "proto" / "two").mkdir(parents=True)
    (ws / "proto" / "one" / "a.proto").write_text(
        'syntax = "proto3";\npackage split.v1;\nimport "two/b.proto";\nmessage A { B b = 1; }\n'
    )
    (ws / "proto" / "two" / "b.proto").write_text('syntax = "proto3";\npackage split.v1;\nmessage B { string v = 1; }\n')
    (ws / "buf.yaml").write_text("version: v2\nmodules:\n  - path: proto\n")
    (ws / "buf.gen.yaml").write_text(
        f"version: v2\nplugins:\n  - local: {binaries['plugin']}\n    out: gen\n    strategy: directory\n"
    )
    r = run([buf, "generate"], cwd=ws)
    assert r.returncode != 0
    assert "package split.v1: is split across runs" in r.stderr, r.stderr
    assert "strategy: all" in r.stderr


def test_errors_reach_protoc_with_location(binaries, third_party, tmp_path):
    bad = EXAMPLE.parent.parent / "tests" / "protos" / "bad"
    r = protoc35(binaries["plugin"], [f"--svc_out={tmp_path}", "-I", bad, "-I", third_party, "bad_annotations.proto"])
    assert r.returncode != 0
    assert "bad_annotations.proto:9:3: service bad.v1.Bad: port 70000 is out of range" in r.stderr, r.stderr
    assert "panicked" not in r.stderr


def test_unknown_parameter_reaches_protoc(binaries, third_party, tmp_path):
    r = protoc321(
        binaries["plugin"],
        [f"--svc_out={tmp_path}", "--svc_opt=colour=blue", "-I", EXAMPLE / "proto", "-I", third_party, PROTO],
    )
    assert r.returncode != 0
    assert "parameter colour: unknown parameter" in r.stderr, r.stderr


def test_editions_2023_under_protoc_35(binaries, tmp_path):
    adv = EXAMPLE.parent.parent / "tests" / "protos" / "adversarial"
    r = protoc35(binaries["plugin"], [f"--svc_out={tmp_path}", "-I", adv, "editions.proto", "editions_implicit.proto"])
    assert r.returncode == 0, r.stderr
    out = tree(tmp_path)
    explicit = out["adversarial.editions.rs"]
    assert "pub x: ::core::option::Option<i32>" in explicit  # EXPLICIT presence
    assert '#[prost(string, required, tag = "2")]' in explicit  # LEGACY_REQUIRED
    assert "#[prost(group, optional, boxed" in explicit  # DELIMITED
    assert 'packed = "false", tag = "4"' in explicit  # EXPANDED
    implicit = out["adversarial.editions.implicit.rs"]
    assert "pub value: f64," in implicit  # IMPLICIT presence
    assert "pub taken_at: ::core::option::Option<i64>" in implicit  # EXPLICIT override


def test_editions_mixing_implicit_with_required_and_delimited_fields(binaries, third_party, tmp_path):
    # Its own directory: it imports buf/validate, which the adversarial
    # corpus is generated without.
    mixed = EXAMPLE.parent.parent / "tests" / "protos" / "editions"
    r = protoc35(binaries["plugin"], [f"--svc_out={tmp_path}", "-I", mixed, "-I", third_party, "editions_mixed.proto"])
    assert r.returncode == 0, r.stderr
    code = tree(tmp_path)["editions.mixed.rs"]
    assert '#[prost(int32, optional, tag = "1")]' in code  # IMPLICIT, held as Option
    assert '#[prost(string, required, tag = "2")]' in code  # LEGACY_REQUIRED
    assert "#[prost(group, optional, boxed" in code  # DELIMITED
    # The validator reads an unset implicit field as zero, and skips it.
    assert "self.a.unwrap_or_default()" in code, code


def test_empty_request_yields_empty_response(binaries):
    from google.protobuf.compiler import plugin_pb2

    r = run([binaries["plugin"]], input=b"", text=False)
    assert r.returncode == 0
    response = plugin_pb2.CodeGeneratorResponse.FromString(r.stdout)
    assert not response.error
    assert len(response.file) == 0
    assert response.supported_features == 3
    assert (response.minimum_edition, response.maximum_edition) == (998, 1000)


def test_help_on_a_terminal_free_invocation(binaries):
    r = run([binaries["plugin"], "--help"])
    assert r.returncode == 0
    assert "protoc-gen-svc generate" in r.stdout
