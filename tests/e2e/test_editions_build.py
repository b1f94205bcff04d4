"""Edition 2023 through the build script: the embedded compiler cannot
parse editions yet, so the builder hands the files to protoc when there is
one (PROTOC or PATH) and generates the same bytes as the plugin; with none,
the build stops with an error naming the file and both ways out."""

import os
import shutil

import pytest

from conftest import PROTOC_CURRENT, REPO, TARGET, run, tree

PROTO_DIR = REPO / "tests" / "protos" / "editions"


def build_script_crate(tmp_path):
    crate = tmp_path / "editions-build"
    shutil.copytree(PROTO_DIR, crate / "proto")
    (crate / "src").mkdir()
    (crate / "Cargo.toml").write_text(
        f"""[package]
name = "editions-build"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
svc-runtime = {{ path = "{REPO / 'runtime'}" }}

[build-dependencies]
protoc-gen-svc = {{ path = "{REPO / 'protoc-gen-svc'}", default-features = false }}

[workspace]
"""
    )
    # The files go where the test can read them (EDITIONS_OUT), and the
    # crate compiles them, so they are also checked to build.
    (crate / "build.rs").write_text(
        """fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::var("EDITIONS_OUT")?;
    println!("cargo:rerun-if-env-changed=EDITIONS_OUT");
    protoc_gen_svc::configure().out_dir(out).compile(&["proto/clock.proto"], &["proto"])?;
    Ok(())
}
"""
    )
    (crate / "src" / "lib.rs").write_text(
        '#![deny(warnings)]\n//! Edition 2023 code.\n#[allow(missing_docs)]\npub mod generated {\n'
        '    include!(concat!(env!("EDITIONS_OUT"), "/mod.rs"));\n}\n'
    )
    return crate


def cargo_build(crate, env):
    env = dict(env, CARGO_TARGET_DIR=str(TARGET / "scaffold"), CARGO_TERM_COLOR="never")
    return run(["cargo", "build", "-q"], cwd=crate, env=env, timeout=1800)


def test_with_protoc_the_build_script_matches_the_plugin(binaries, third_party, grpc_tools_include, tmp_path):
    if not PROTOC_CURRENT.exists():
        pytest.fail(f"{PROTOC_CURRENT} is missing; run scripts/setup-tools.sh")
    crate = build_script_crate(tmp_path)
    out = tmp_path / "via-build-script"
    env = dict(os.environ, PROTOC=str(PROTOC_CURRENT), EDITIONS_OUT=str(out))
    r = cargo_build(crate, env)
    assert r.returncode == 0, r.stderr[-6000:]
    plugin_out = tmp_path / "via-plugin"
    plugin_out.mkdir()
    r = run([PROTOC_CURRENT, f"--plugin=protoc-gen-svc={binaries['plugin']}", f"--svc_out={plugin_out}",
             "-I", PROTO_DIR, "-I", third_party, "-I", grpc_tools_include, "clock.proto"])
    assert r.returncode == 0, r.stderr
    built = tree(out)
    assert built == tree(plugin_out)
    assert "pub mod clock_svc" in built["editions.v1.rs"]
    # Explicit presence (the edition's default) became Option, as protoc's
    # plugin request lowered to proto2 gives it.
    assert "pub zone: ::core::option::Option<" in built["editions.v1.rs"]


def test_without_protoc_the_error_names_the_file_and_both_fixes(tmp_path):
    crate = build_script_crate(tmp_path)
    # Every tool on PATH but protoc: a directory of links to the rest.
    shadow = tmp_path / "bin"
    shadow.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = shadow / name
            if name != "protoc" and not link.exists():
                link.symlink_to(os.path.join(directory, name))
    env = {k: v for k, v in os.environ.items() if k != "PROTOC"}
    env.update(PATH=str(shadow), EDITIONS_OUT=str(tmp_path / "out"))
    r = cargo_build(crate, env)
    assert r.returncode != 0
    assert "file proto/clock.proto: uses protobuf editions" in r.stderr, r.stderr[-4000:]
    assert "no protoc was found (PROTOC or PATH)" in r.stderr
    assert "install protoc 27 or newer" in r.stderr and "protoc-gen-svc as a plugin" in r.stderr
