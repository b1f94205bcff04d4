"""`cargo install` of the packaged generator crate (the .crate that
crates.io would get, built from nothing but its own contents) puts a working
plugin on PATH: protoc finds `protoc-gen-svc` there by name and generates
the committed example output."""

import os
import shutil
import tarfile

from conftest import EXAMPLE, REPO, TARGET, run, tree

VERSION = next(
    line.split('"')[1] for line in (REPO / "Cargo.toml").read_text().splitlines() if line.startswith("version = ")
)


def test_cargo_install_from_the_package_gives_a_plugin_on_path(tmp_path, third_party):
    crate_file = TARGET / "package" / f"protoc-gen-svc-{VERSION}.crate"
    if not crate_file.exists():
        r = run(["bash", REPO / "scripts" / "package.sh", "--no-verify"], timeout=1800)
        assert r.returncode == 0, r.stderr[-4000:]
    with tarfile.open(crate_file) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    source = tmp_path / "src" / f"protoc-gen-svc-{VERSION}"
    assert (source / "third_party" / "buf" / "validate" / "validate.proto").exists(), "protos travel in the package"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGO_TARGET")}
    root = tmp_path / "installed"
    r = run(["cargo", "install", "--locked", "--debug", "--path", source, "--root", root,
             "--target-dir", TARGET / "install"], env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    binary = root / "bin" / "protoc-gen-svc"
    r = run([binary, "--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"protoc-gen-svc {VERSION}", r.stdout + r.stderr

    out = tmp_path / "gen"
    out.mkdir()
    path_env = dict(os.environ, PATH=f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
    protoc = shutil.which("protoc")
    r = run([protoc, f"--svc_out={out}", "-I", EXAMPLE / "proto", "-I", third_party, "greeter/v1/greeter.proto"],
            env=path_env)
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(EXAMPLE / "gen")
