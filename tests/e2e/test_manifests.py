"""The generated Kubernetes manifests and Dockerfile, checked by real tools:
strict schema validation for Kubernetes 1.29-1.34 (kubernetes-validate and
kubectl-validate), strict pydantic models, checkov; and a kubelet-style run
of the example binary from its own Deployment."""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import grpc
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

import k8s_tools
from conftest import EXAMPLE, GRPC_HEALTH_PROBE, GRPCURL, REPO, health_probe, run

VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33", "1.34"]
GOLDEN = REPO / "protoc-gen-svc" / "tests" / "golden"

# The checkov findings consciously accepted on the default output; the
# README lists them with the same reasons.
ACCEPTED_CHECKS = {
    # Without deploy.namespace the manifests are namespace-agnostic, so that
    # `kubectl -n` or kustomize's `namespace:` places them; with it, every
    # object carries it (see the maximal case, which passes this check).
    "CKV_K8S_21",
    # An image digest is not known when code is generated; set deploy.image
    # to a reference with @sha256:... to pin one (the maximal case does).
    "CKV_K8S_43",
}
# Kubernetes probes the container over gRPC; a HEALTHCHECK would need a
# shell or a probe binary in the image, which the distroless image omits.
ACCEPTED_DOCKER_CHECKS = {"CKV_DOCKER_2"}


@pytest.fixture(scope="session")
def manifest_dirs(binaries, tmp_path_factory):
    """Every manifest set: the example's committed deploy/, the maximal and
    auth golden sets, and a fresh scaffold's k8s/."""
    scaffold = tmp_path_factory.mktemp("scaffold")
    r = run([binaries["plugin"], "new", "hello-k8s", "--path", scaffold])
    assert r.returncode == 0, r.stderr
    return {
        "example": EXAMPLE / "deploy" / "greeter",
        "maximal": GOLDEN / "maximal_k8s" / "shop",
        "auth": GOLDEN / "auth_k8s" / "vault",
        "scaffold": scaffold / "hello-k8s" / "k8s" / "hello",
    }


def all_files(dirs):
    return sorted(p for d in dirs.values() for p in pathlib.Path(d).glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", VERSIONS)
def test_kubernetes_validate_strict(manifest_dirs, version):
    files = all_files(manifest_dirs)
    assert len(files) >= 28
    assert k8s_tools.validate_kubernetes_validate(files, version) == []


def test_pydantic_models_strict(manifest_dirs):
    for name, d in manifest_dirs.items():
        docs = k8s_tools.k8s_documents(d)
        assert docs, name
        assert k8s_tools.validate_pydantic(docs) == [], name


@pytest.mark.parametrize("version", [v for v in VERSIONS if k8s_tools.kubectl_validate_supports(v)])
def test_kubectl_validate(manifest_dirs, version):
    for name, d in manifest_dirs.items():
        errors = k8s_tools.kubectl_validate(d, version)
        assert errors is not None, "kubectl-validate is not installed; run scripts/setup-tools.sh"
        assert errors == [], (name, errors)


def test_validators_catch_mistakes(tmp_path):
    # The validators above would fail on a broken manifest: a misspelt
    # field, a number where a string belongs, an HPA on a removed API.
    good = (EXAMPLE / "deploy" / "greeter" / "deployment.yaml").read_text()
    (tmp_path / "deployment.yaml").write_text(good.replace("readOnlyRootFilesystem", "readOnlyRootFS"))
    hpa = (EXAMPLE / "deploy" / "greeter" / "hpa.yaml").read_text()
    (tmp_path / "hpa.yaml").write_text(hpa.replace("autoscaling/v2", "autoscaling/v2beta2"))
    errors = k8s_tools.validate_kubernetes_validate([tmp_path], "1.29")
    assert any("readOnlyRootFS" in e for e in errors), errors
    assert any("v2beta2" in e for e in errors), errors
    assert k8s_tools.validate_pydantic(k8s_tools.k8s_documents(tmp_path))


def test_checkov_default_output(manifest_dirs):
    passed, failed = k8s_tools.run_checkov(manifest_dirs["example"])
    unexpected = [f for f in failed if f[0] not in ACCEPTED_CHECKS]
    assert unexpected == [], unexpected
    assert passed >= 60, passed
    # The scaffold's manifests (annotation defaults only) pass the same way.
    _, failed = k8s_tools.run_checkov(manifest_dirs["scaffold"])
    assert [f for f in failed if f[0] not in ACCEPTED_CHECKS] == []


def test_checkov_pinned_image_and_namespace_pass_everything(manifest_dirs):
    # The maximal service pins a digest and a namespace, so the two accepted
    # findings disappear; it turns the NetworkPolicy off on purpose, which
    # checkov's graph check CKV2_K8S_6 reports.
    passed, failed = k8s_tools.run_checkov(manifest_dirs["maximal"])
    assert sorted({f[0] for f in failed}) == ["CKV2_K8S_6"], failed
    _, failed = k8s_tools.run_checkov(manifest_dirs["auth"])
    assert [f for f in failed if f[0] not in ACCEPTED_CHECKS] == []


def test_checkov_dockerfile(tmp_path):
    dockerfile = GOLDEN / "example_docker" / "greeter" / "Dockerfile"
    shutil.copy(dockerfile, tmp_path / "Dockerfile")
    env = dict(os.environ, CKV_SKIP_PACKAGE_UPDATE_CHECK="true", BC_SKIP_MAPPING="TRUE")
    r = run(
        [k8s_tools.checkov_path(), "--framework", "dockerfile", "--skip-download", "-d", tmp_path, "--output", "json"],
        env=env,
    )
    import json

    report = json.loads(r.stdout)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert failed <= ACCEPTED_DOCKER_CHECKS, failed
    assert report["summary"]["passed"] >= 20


# --- a kubelet-style run of the example from its own Deployment -----------


def load(path):
    return [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]


def free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


class Pod:
    """The example's container started the way the kubelet starts it: the
    image's entrypoint (the binary) with the container's args and env, no
    service links, volumes at their mount paths (re-rooted under a
    temporary directory, since this is not a container), the pod's UID and
    GID when the test runs as root, and a working directory it cannot write
    (readOnlyRootFilesystem)."""

    def __init__(self, binary, deploy_dir, uid_ok=True, config_override=None, secrets=None):
        docs = {d["kind"]: d for f in pathlib.Path(deploy_dir).glob("*.yaml") for d in load(f)}
        self.deployment = docs["Deployment"]
        pod = self.deployment["spec"]["template"]["spec"]
        assert len(pod["containers"]) == 1
        self.container = c = pod["containers"][0]
        self.pod = pod
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="svc-pod-"))
        volumes = {v["name"]: v for v in pod["volumes"]}
        remap = {}
        for mount in c["volumeMounts"]:
            host = self.root / mount["mountPath"].lstrip("/")
            host.mkdir(parents=True, exist_ok=True)
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                cm = docs["ConfigMap"]
                assert cm["metadata"]["name"] == volume["configMap"]["name"]
                for key, text in cm["data"].items():
                    (host / key).write_text(config_override or text)
            elif "secret" in volume:
                for key, data in (secrets or {})[volume["secret"]["secretName"]].items():
                    (host / key).write_bytes(data)
            elif "emptyDir" in volume:
                os.chmod(host, 0o1777)
            else:
                raise AssertionError(f"volume kind not simulated: {volume}")
            remap[mount["mountPath"]] = str(host)
        for d in [self.root, *self.root.rglob("*")]:
            if d.is_dir() and not (d.stat().st_mode & 0o1000):
                os.chmod(d, 0o755)
            elif d.is_file():
                os.chmod(d, 0o644)
        self.workdir = self.root / "rootfs"
        self.workdir.mkdir()
        os.chmod(self.workdir, 0o555)

        def mapped(value):
            for mount_path, host in remap.items():
                if value.startswith(mount_path + "/") or value == mount_path:
                    return host + value[len(mount_path):]
            return value

        # What a container sees: the image's PATH and HOSTNAME plus the
        # container's env (enableServiceLinks is false: no service vars).
        assert pod["enableServiceLinks"] is False
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": "greeter-0"}
        for e in c.get("env", []):
            self.env[e["name"]] = mapped(e["value"])
        self.argv = [str(binary), *c.get("command", [])[1:], *c.get("args", [])]
        sc = c["securityContext"]
        self.uid, self.gid = sc["runAsUser"], sc["runAsGroup"]
        self.as_pod_user = uid_ok and os.geteuid() == 0
        self.lines = []

    def ports(self):
        """The container's named ports; fails the test if one is taken."""
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        for port in ports.values():
            if not free(port):
                pytest.fail(f"port {port} (from the Deployment) is in use on this machine; free it to run this test")
        return ports

    def start(self):
        def drop():
            os.setgroups([])
            os.setgid(self.gid)
            os.setuid(self.uid)

        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=drop if self.as_pod_user else None,
        )
        threading.Thread(target=lambda: [self.lines.append(line) for line in self.proc.stderr], daemon=True).start()
        return self

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.chmod(self.workdir, 0o755)
        shutil.rmtree(self.root, ignore_errors=True)


def grpc_probe(probe):
    """One probe as the kubelet runs it, within timeoutSeconds: a gRPC
    health Check of the probe's service on its port (True when SERVING),
    or an HTTP GET (True for 2xx/3xx)."""
    if "httpGet" in probe:
        get = probe["httpGet"]
        url = f"http://127.0.0.1:{get['port']}{get['path']}"
        try:
            with urllib.request.urlopen(url, timeout=probe["timeoutSeconds"]) as r:
                return 200 <= r.status < 400
        except OSError:
            return False
    spec = probe["grpc"]
    with grpc.insecure_channel(f"127.0.0.1:{spec['port']}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=spec.get("service", "")), timeout=probe["timeoutSeconds"]
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def kubelet_probes(pod):
    c = pod.container
    # startupProbe: retried every periodSeconds up to failureThreshold.
    startup = c["startupProbe"]
    for _ in range(startup["failureThreshold"]):
        if grpc_probe(startup):
            break
        assert pod.proc.poll() is None, "".join(pod.lines)
        time.sleep(startup["periodSeconds"])
    else:
        raise AssertionError("startup probe never succeeded:\n" + "".join(pod.lines))
    assert grpc_probe(c["readinessProbe"]), "readiness"
    assert grpc_probe(c["livenessProbe"]), "liveness"


def terminate_like_the_kubelet(pod):
    grace = pod.pod["terminationGracePeriodSeconds"]
    started = time.monotonic()
    pod.proc.send_signal(signal.SIGTERM)
    code = pod.proc.wait(timeout=grace)
    elapsed = time.monotonic() - started
    assert code == 0, "".join(pod.lines)
    assert elapsed < grace, elapsed
    assert not any(pod.workdir.iterdir()), "wrote to the read-only root"


def test_the_binary_runs_as_its_deployment_says(binaries):
    pod = Pod(binaries["greeter"], EXAMPLE / "deploy" / "greeter")
    ports = pod.ports()
    c = pod.container
    # Every probe targets the container's gRPC port and the health service.
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[kind]["grpc"]["port"] == ports["grpc"], kind
    pod.start()
    try:
        kubelet_probes(pod)
        # And each probe through grpc_health_probe, with the probe's settings.
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c[kind]
            addr = f"127.0.0.1:{p['grpc']['port']}"
            code, out = health_probe(addr, p["grpc"].get("service", ""), timeout=p["timeoutSeconds"])
            assert (code, out) == (0, "status: SERVING\n"), (kind, out)
        # The metrics port named in the Deployment (and its scrape annotation).
        annotations = pod.deployment["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == ports["metrics"]
        url = f"http://127.0.0.1:{ports['metrics']}{annotations['prometheus.io/path']}"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "grpc_server_started_total" in body
        # The configuration came from the mounted ConfigMap.
        assert pod.env["SVC_CONFIG"].startswith(str(pod.root))
        if pod.as_pod_user:
            assert os.stat(f"/proc/{pod.proc.pid}").st_uid == pod.uid
        # Pod deletion: SIGTERM, then the kubelet waits the grace period.
        terminate_like_the_kubelet(pod)
    finally:
        pod.cleanup()


def test_a_tls_service_runs_as_its_deployment_says(binaries, tmp_path):
    """The maximal service: TLS with client certificates from the Secret
    named in tls_secret, a JWT public key from <name>-jwt, HTTP probes on
    the metrics port (kubelet gRPC probes cannot speak TLS)."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from test_tls import Ca, pem

    deploy = GOLDEN / "maximal_k8s" / "shop"
    ca = Ca("cluster issuer")
    cert, key = ca.issue("shop", server=True)
    client_cert, client_key = ca.issue("caller", client=True)
    signing = ec.generate_private_key(ec.SECP256R1())
    public = signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secrets = {
        "shop-tls": {"tls.crt": pem(cert), "tls.key": pem(key), "ca.crt": pem(ca.cert)},
        "shop-jwt": {"public.pem": public},
    }
    pod = Pod(binaries["shop"], deploy, secrets=secrets)
    ports = pod.ports()
    c = pod.container
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[kind]["httpGet"]["port"] == ports["metrics"], kind
    pod.start()
    try:
        kubelet_probes(pod)
        addr = f"127.0.0.1:{ports['grpc']}"
        # The gRPC port speaks mutual TLS only.
        f = {"ca": tmp_path / "ca.crt", "cert": tmp_path / "c.crt", "key": tmp_path / "c.key"}
        f["ca"].write_bytes(pem(ca.cert))
        f["cert"].write_bytes(pem(client_cert))
        f["key"].write_bytes(pem(client_key))
        tls_args = ["-tls", f"-tls-ca-cert={f['ca']}", f"-tls-client-cert={f['cert']}", f"-tls-client-key={f['key']}"]
        r = run([GRPC_HEALTH_PROBE, f"-addr={addr}", "-service=shop.v1.Shop", *tls_args], timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        r = run([GRPC_HEALTH_PROBE, f"-addr={addr}", "-tls", f"-tls-ca-cert={f['ca']}"], timeout=30)
        assert r.returncode != 0, "a client without a certificate got in"
        # A token signed with the key mounted from the Secret is accepted.
        token = pyjwt.encode(
            {"iss": "https://auth.example.com", "aud": "shop-api", "sub": "ada", "groups": ["reader"], "exp": int(time.time()) + 60},
            signing,
            algorithm="ES256",
        )
        r = run(
            [
                GRPCURL, "-cacert", f["ca"], "-cert", f["cert"], "-key", f["key"],
                "-H", f"authorization: Bearer {token}", "-d", '{"sku": "a-1"}', addr, "shop.v1.Shop/GetItem",
            ],
            timeout=60,
        )
        assert r.returncode == 0 and '"title": "ada"' in r.stdout, r.stdout + r.stderr
        terminate_like_the_kubelet(pod)
    finally:
        pod.cleanup()


def test_a_bad_configmap_stops_the_pod_naming_the_file(binaries):
    pod = Pod(binaries["greeter"], EXAMPLE / "deploy" / "greeter", config_override='grpc_addr = "nowhere"\n')
    pod.start()
    try:
        code = pod.proc.wait(timeout=30)
        time.sleep(0.2)
        text = "".join(pod.lines)
        assert code != 0
        assert "SVC_CONFIG:" in text and "config.toml: grpc_addr:" in text and "nowhere" in text, text
    finally:
        pod.cleanup()
