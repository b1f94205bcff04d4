"""The scaffold's Dockerfile builds the scaffold. There is no Docker daemon
here, so its build is replayed (tests/e2e/dockerfile.py): exactly the files
its COPY lines take after .dockerignore, in a fresh directory, then its RUN
lines in order, with an empty CARGO_HOME and no network (the image has
neither a registry cache nor, while protoc-gen-svc's crates are not on
crates.io, anywhere to fetch them from: the README's vendoring step provides
them). The final stage's ENTRYPOINT, run as its USER, must serve health."""

import os
import re
import shutil
import subprocess
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import REPO, run, wait_for
from dockerfile import ignored, ignore_patterns, replay


def test_scaffold_image_builds_from_its_context_alone_and_serves_health(binaries, tmp_path):
    plugin = binaries["plugin"]
    r = run([plugin, "new", "hello-service", "--path", tmp_path, "--runtime-path", REPO])
    assert r.returncode == 0, r.stderr
    crate = tmp_path / "hello-service"
    host_env = {k: v for k, v in os.environ.items() if not k.startswith("CARGO_TARGET")}
    # As the scaffold's README says: Cargo.lock, then vendor/.
    r = run(["cargo", "generate-lockfile"], cwd=crate, env=host_env, timeout=600)
    assert r.returncode == 0, r.stderr
    r = run(["bash", REPO / "scripts" / "vendor.sh", crate], env=host_env, timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (crate / "vendor" / "config.toml").exists()

    # The machine's cargo settings (pointing at this checkout) stay out of
    # the build context; vendor/ goes in.
    patterns = ignore_patterns(crate)
    assert ignored(".cargo/config.toml", patterns) and ignored("target/debug/x", patterns)
    assert not ignored("vendor/config.toml", patterns) and not ignored("src/main.rs", patterns)

    build_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "CARGO_HOME": str(tmp_path / "cargo-home"),
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", os.path.expanduser("~/.rustup")),
        "CARGO_NET_OFFLINE": "true",
        "CARGO_TERM_COLOR": "never",
    }
    os.makedirs(build_env["HOME"])
    os.makedirs(build_env["CARGO_HOME"])
    stages = replay(crate / "Dockerfile", crate, tmp_path / "replay", build_env)
    build, final = stages["build"], stages["final"]
    assert build.base.startswith("rust:") and final.base.startswith("gcr.io/distroless/cc-debian12")
    assert not (build.path(".") / ".cargo" / "config.toml").read_text().count(str(REPO)), "host paths leaked in"
    assert final.expose == [50051, 9090]
    assert final.user == "10001:10001"
    uid, gid = (int(x) for x in final.user.split(":"))

    # The final image holds the binary alone; run it from a copy that user
    # 10001 can reach, as that user when this test runs as root.
    image = tempfile.mkdtemp(prefix="image-", dir="/tmp")
    try:
        shutil.copytree(final.root, image, dirs_exist_ok=True)
        for dirpath, _, _ in os.walk(image):
            os.chmod(dirpath, 0o755)
        entry = final.entrypoint
        binary = os.path.join(image, entry[0].lstrip("/"))
        assert os.access(binary, os.X_OK), entry

        def as_user():
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        env = {"SVC_GRPC_ADDR": "127.0.0.1:0", "SVC_METRICS_ADDR": "127.0.0.1:0", "SVC_HTTP_ADDR": "127.0.0.1:0"}
        proc = subprocess.Popen([binary, *entry[1:]], env=env, cwd="/", stderr=subprocess.PIPE, text=True,
                                preexec_fn=as_user)
        try:
            line = proc.stderr.readline()
            m = re.match(r"svc: serving hello.v1.Hello on (\S+) \(health and metrics on (\S+)\)", line)
            assert m, line + (proc.stderr.read() if proc.poll() is not None else "")
            with grpc.insecure_channel(m.group(1)) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                for service in ["", "hello.v1.Hello"]:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            if os.geteuid() == 0:
                status = open(f"/proc/{proc.pid}/status").read()
                assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), "runs as the image's USER"
            proc.terminate()
            assert wait_for(lambda: proc.poll() is not None, 30)
            assert proc.returncode == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        shutil.rmtree(image, ignore_errors=True)
