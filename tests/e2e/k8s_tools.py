"""Offline validators for generated Kubernetes manifests.

An importable helper module for the end-to-end suite (it defines no tests).
Every function works without a cluster and without network access; the tools
are installed by ``scripts/setup-tools.sh``.

Functions, and what each one proves:

``k8s_documents(dir)``
    Every YAML document under ``dir`` as ``(path, doc)``, in a stable order,
    leaving out ``kustomization.yaml`` (a kustomize input, not a Kubernetes
    object).

``validate_kubernetes_validate(paths, version)``
    Schema check with the ``kubernetes-validate`` package (JSON schemas of
    Kubernetes 1.25 to 1.37 are bundled in it) in its *strict* mode: unknown
    fields anywhere are errors, as are wrong types and missing required
    fields.  All errors of a document are reported, not just the first.

``validate_pydantic(docs)``
    Parses each object with the pydantic v2 models of ``cloudcoil``
    (``cloudcoil-models-kubernetes`` for the built-in kinds,
    ``cloudcoil-models-prometheus-operator`` for ``ServiceMonitor`` and
    friends), in strict mode with extra keys forbidden at every depth.

``run_checkov(dir, skip=())``
    Static security analysis with checkov's Kubernetes framework; returns
    the number of passed checks and the failed ones.

``kubectl_validate(dir, version)`` / ``kube_linter(dir)``
    The two Go tools, when installed in ``.tools/go/bin`` (or on ``PATH``);
    ``None`` when absent.

Custom resources (CRDs)
-----------------------
``ServiceMonitor`` (``monitoring.coreos.com``) has no schema in
``kubernetes-validate`` nor in ``kubectl-validate``'s built-in set.  Both
wrappers skip documents whose API group is listed in ``crd_groups``
(default :data:`CRD_GROUPS`) and report any *other* unknown apiVersion/kind
as an error, so a typo such as ``apps/v2`` is never silently accepted.
The CRD objects are still checked strictly by :func:`validate_pydantic`,
since cloudcoil ships prometheus-operator models.

Conventions the strict checks impose on generated YAML
------------------------------------------------------
* Resource quantities (``cpu``, ``memory``, ``ephemeral-storage``) must be
  strings (``"1"``, ``"500m"``, ``"64Mi"``): the API server also accepts a
  bare number, but the pydantic check is strict about types, and quoting
  avoids YAML number surprises.
* ``ConfigMap.data`` values must be strings (the API requires it too).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from typing import Iterable, Sequence

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"
GO_BIN = TOOLS / "go" / "bin"
CHECKOV = TOOLS / "checkov" / "bin" / "checkov"

#: API groups of custom resources the generator emits; the schema
#: validators skip them (no offline schema), validate_pydantic checks them.
CRD_GROUPS: tuple[str, ...] = ("monitoring.coreos.com",)

#: File names (and kinds) that are kustomize inputs, not Kubernetes objects.
KUSTOMIZE_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
KUSTOMIZE_KINDS = frozenset({"Kustomization", "Component"})

#: Versions whose schemas kubectl-validate v0.0.4 (the newest release) has
#: built in.  For any other version it would contact a cluster or GitHub,
#: so :func:`kubectl_validate` refuses them (returns None).
KUBECTL_VALIDATE_VERSIONS = ("1.23", "1.24", "1.25", "1.26", "1.27", "1.28", "1.29", "1.30")

# Environment for checkov: never phone home.  --skip-download (passed on the
# command line) skips the guideline/policy download from the vendor API;
# BC_SKIP_MAPPING does the same for the ID mapping; the update check would
# otherwise ask PyPI for a newer checkov on every run.
CHECKOV_ENV = {
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
    "BC_SKIP_MAPPING": "TRUE",
}


# --------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------


def label(path: os.PathLike | str, doc: dict) -> str:
    """``"deployment.yaml: Deployment/greeter"``, for messages."""
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?"
    kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
    return f"{pathlib.Path(path).name}: {kind}/{name}"


def _load_file(path: pathlib.Path) -> list[tuple[pathlib.Path, dict]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from e
    out = []
    for i, doc in enumerate(docs):
        if doc is None:  # empty document, e.g. a trailing '---'
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: document {i} is a {type(doc).__name__}, not a mapping")
        if doc.get("kind") in KUSTOMIZE_KINDS and str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/"):
            continue
        out.append((path, doc))
    return out


def k8s_documents(directory: os.PathLike | str) -> list[tuple[pathlib.Path, dict]]:
    """All Kubernetes objects in the ``*.yaml``/``*.yml`` files under ``directory``.

    Walks the tree recursively in sorted order; a file may hold several
    documents.  ``kustomization.yaml`` files (and any kustomize
    ``Kustomization``/``Component`` document) are left out, as are empty
    documents.  Raises ``ValueError`` naming the file on invalid YAML or on a
    document that is not a mapping, and ``FileNotFoundError`` when the
    directory does not exist.
    """
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"no such directory: {root}")
    out: list[tuple[pathlib.Path, dict]] = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".yaml", ".yml") or not path.is_file() or path.name in KUSTOMIZE_FILES:
            continue
        out.extend(_load_file(path))
    return out


def _documents_of(paths: Iterable[os.PathLike | str] | os.PathLike | str) -> list[tuple[pathlib.Path, dict]]:
    """Documents of a mix of files and directories (one path or several)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[tuple[pathlib.Path, dict]] = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            out.extend(k8s_documents(p))
        elif p.name in KUSTOMIZE_FILES:
            continue
        else:
            out.extend(_load_file(p))
    return out


def _as_pairs(docs) -> list[tuple[pathlib.Path, dict]]:
    """Accepts ``[(path, doc)]`` as from k8s_documents, or bare ``[doc]``."""
    out = []
    for i, item in enumerate(docs):
        if isinstance(item, dict):
            out.append((pathlib.Path(f"<doc {i}>"), item))
        else:
            path, doc = item
            out.append((pathlib.Path(path), doc))
    return out


def api_group(doc: dict) -> str:
    """``"apps"`` for ``apps/v1``, ``""`` for the core group ``v1``."""
    api_version = str(doc.get("apiVersion", ""))
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _header_errors(path, doc) -> list[str]:
    errors = []
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc.get(key):
            errors.append(f"{label(path, doc)}: missing or non-string {key}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        errors.append(f"{label(path, doc)}: missing metadata.name")
    return errors


def _loc(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


# --------------------------------------------------------------------------
# kubernetes-validate
# --------------------------------------------------------------------------


def kubernetes_validate_versions() -> list[str]:
    """Kubernetes minor versions (``"1.34"``…) whose schemas the installed
    kubernetes-validate bundles."""
    from kubernetes_validate import utils

    return sorted({utils.major_minor(v) for v in utils.all_versions()}, key=lambda v: tuple(map(int, v.split("."))))


@functools.lru_cache(maxsize=None)
def _kv_validator(version: str, api_version: str, kind: str, strict: bool):
    """A jsonschema validator for one kind, or None when there is no schema."""
    import jsonschema
    from referencing import Registry, Resource
    from kubernetes_validate import utils

    full = next(v for v in utils.all_versions() if utils.major_minor(v) == version)
    schema_dir = f"v{full}-local" + ("-strict" if strict else "")
    # Same file naming as kubernetes_validate.utils.validate:
    # networking.k8s.io/v1 -> networking-v1, v1 -> v1.
    gv = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{gv}.json", version)
    except FileNotFoundError:
        return None
    defs = utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate_kubernetes_validate(
    paths: Iterable[os.PathLike | str] | os.PathLike | str,
    version: str,
    *,
    strict: bool = True,
    crd_groups: Sequence[str] = CRD_GROUPS,
) -> list[str]:
    """Validates the objects in ``paths`` (files and/or directories) against
    the Kubernetes ``version`` (``"1.34"``) schemas of kubernetes-validate.

    ``strict`` (default) rejects unknown fields at any depth.  Returns error
    strings, ``[]`` when everything is valid.  Every error of every document
    is listed as ``"<file>: <Kind>/<name>: <field.path>: <message>"``.

    Documents whose API group is in ``crd_groups`` are skipped (no schema for
    custom resources); any other apiVersion/kind without a schema is an
    error.  kustomization.yaml is skipped.  Raises ``ValueError`` when the
    installed kubernetes-validate has no schemas for ``version`` (no silent
    fallback to another version).
    """
    version = version.lstrip("v")
    version = ".".join(version.split(".")[:2])
    available = kubernetes_validate_versions()
    if version not in available:
        raise ValueError(
            f"kubernetes-validate has no schemas for Kubernetes {version}; it has {', '.join(available)}"
        )
    errors: list[str] = []
    for path, doc in _documents_of(paths):
        head = _header_errors(path, doc)
        if head:
            errors.extend(head)
            continue
        if api_group(doc) in crd_groups:
            continue
        validator = _kv_validator(version, doc["apiVersion"], doc["kind"], strict)
        if validator is None:
            errors.append(
                f"{label(path, doc)}: no schema for apiVersion {doc['apiVersion']} kind {doc['kind']} "
                f"in Kubernetes {version} (a typo, a removed API, or a CRD whose group belongs in crd_groups)"
            )
            continue
        for e in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
            errors.append(f"{label(path, doc)}: {_loc(e.absolute_path)}: {e.message}")
    return errors


# --------------------------------------------------------------------------
# pydantic (cloudcoil models)
# --------------------------------------------------------------------------


def _pydantic_supports_runtime_extra() -> bool:
    import pydantic

    return "extra" in inspect.signature(pydantic.BaseModel.model_validate).parameters


def validate_pydantic(docs, *, skip_groups: Sequence[str] = ()) -> list[str]:
    """Parses each document with cloudcoil's pydantic models, strictly.

    ``docs`` is a list of ``(path, doc)`` (as from :func:`k8s_documents`) or
    of bare dicts.  Each object is validated with
    ``Model.model_validate(doc, strict=True, extra="forbid", by_alias=True,
    by_name=False)``: unknown keys at any depth are errors (cloudcoil's
    models ignore extras by default; pydantic >= 2.12 lets one validation
    call forbid them for every nested model), types are not coerced
    (``replicas: "2"`` fails), and snake_case field names are rejected (only
    the API's camelCase names count).

    Kinds without a model are errors unless their group is in
    ``skip_groups``.  Returns error strings, ``[]`` when all parse.
    """
    if not _pydantic_supports_runtime_extra():
        import pydantic

        raise RuntimeError(
            f"pydantic {pydantic.VERSION} cannot forbid extra keys per call; pydantic>=2.12 is required"
        )
    import pydantic
    from cloudcoil.resources import get_model

    errors: list[str] = []
    for path, doc in _as_pairs(docs):
        head = _header_errors(path, doc)
        if head:
            errors.extend(head)
            continue
        if api_group(doc) in skip_groups:
            continue
        try:
            model = get_model(doc["kind"], api_version=doc["apiVersion"])
        except (KeyError, ValueError):
            errors.append(
                f"{label(path, doc)}: no pydantic model for apiVersion {doc['apiVersion']} kind {doc['kind']}"
            )
            continue
        try:
            model.model_validate(doc, strict=True, extra="forbid", by_alias=True, by_name=False)
        except pydantic.ValidationError as exc:
            for e in exc.errors():
                got = f" (got {e['input']!r})" if e["type"] != "missing" else ""
                errors.append(f"{label(path, doc)}: {_loc(e['loc'])}: {e['msg']}{got}")
    return errors


# --------------------------------------------------------------------------
# checkov
# --------------------------------------------------------------------------


def checkov_path() -> str | None:
    """The checkov executable: the project's venv in .tools, else PATH."""
    if CHECKOV.exists():
        return str(CHECKOV)
    return shutil.which("checkov")


def run_checkov(
    directory: os.PathLike | str,
    skip: Sequence[str] = (),
    *,
    timeout: int = 600,
) -> tuple[int, list[tuple[str, str, str, str]]]:
    """Runs ``checkov --framework kubernetes --skip-download -d DIR --output
    json`` offline and returns ``(passed, failed)``.

    ``passed`` is checkov's count of passed checks; ``failed`` lists
    ``(check_id, check_name, file, resource)`` with ``file`` relative to
    ``directory`` and ``resource`` like ``Deployment.default.greeter``.
    ``skip`` holds check IDs to leave out entirely (``--skip-check``).
    Checks suppressed in the manifests themselves with a
    ``checkov.io/skip1: CKV_K8S_43=reason`` annotation count as neither.

    Raises ``FileNotFoundError`` when checkov is not installed,
    ``RuntimeError`` when it crashes, reports parsing errors, or finds no
    resource although the directory holds Kubernetes documents (checkov
    silently ignores files it cannot parse).
    """
    exe = checkov_path()
    if exe is None:
        raise FileNotFoundError(f"checkov is not installed at {CHECKOV}; run scripts/setup-tools.sh")
    root = pathlib.Path(directory).resolve()
    cmd = [exe, "--framework", "kubernetes", "--skip-download", "--output", "json", "-d", str(root)]
    if skip:
        cmd += ["--skip-check", ",".join(skip)]
    env = {k: v for k, v in os.environ.items() if k not in ("BC_API_KEY", "PRISMA_API_URL")}
    env.update(CHECKOV_ENV)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"checkov exited {r.returncode} without JSON output:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    # One framework gives one report object; several give a list of them.
    reports = report if isinstance(report, list) else [report]
    reports = [x for x in reports if x.get("check_type", "kubernetes") == "kubernetes"]
    passed = 0
    failed: list[tuple[str, str, str, str]] = []
    resources = 0
    for rep in reports:
        summary = rep.get("summary", rep)  # an empty scan prints the bare summary
        passed += int(summary.get("passed", 0))
        resources += int(summary.get("resource_count", 0))
        if summary.get("parsing_errors"):
            raise RuntimeError(f"checkov could not parse: {rep.get('results', {}).get('parsing_errors')}")
        for c in rep.get("results", {}).get("failed_checks", []):
            absolute = c.get("file_abs_path")
            try:
                rel = str(pathlib.Path(absolute).resolve().relative_to(root)) if absolute else None
            except ValueError:
                rel = None
            failed.append((c["check_id"], c["check_name"], rel or c.get("file_path", "").lstrip("/"), c["resource"]))
    if resources == 0 and k8s_documents(root):
        raise RuntimeError(f"checkov found no Kubernetes resource in {root}; stderr:\n{r.stderr[-4000:]}")
    failed.sort()
    return passed, failed


# --------------------------------------------------------------------------
# Go tools (optional)
# --------------------------------------------------------------------------


def _go_tool(name: str) -> str | None:
    local = GO_BIN / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def kubectl_validate_supports(version: str) -> bool:
    """Whether kubectl-validate can check ``version`` offline (built-in schemas)."""
    return ".".join(version.lstrip("v").split(".")[:2]) in KUBECTL_VALIDATE_VERSIONS


def kubectl_validate(
    directory: os.PathLike | str,
    version: str,
    *,
    crd_groups: Sequence[str] = CRD_GROUPS,
    timeout: int = 300,
) -> list[str] | None:
    """Validates the objects under ``directory`` with ``kubectl-validate
    --version VERSION -o json`` (the API server's own schema validation,
    which rejects unknown fields).

    Returns error strings (``[]`` = valid), or ``None`` when the tool is not
    installed or ``version`` is not among its built-in schemas
    (:data:`KUBECTL_VALIDATE_VERSIONS`; any other version would need a
    cluster or GitHub).  kustomization.yaml and documents of ``crd_groups``
    are left out (no built-in schema for custom resources).
    """
    exe = _go_tool("kubectl-validate")
    if exe is None or not kubectl_validate_supports(version):
        return None
    version = ".".join(version.lstrip("v").split(".")[:2])
    docs = [(p, d) for p, d in k8s_documents(directory) if api_group(d) not in crd_groups]
    if not docs:
        return []
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kubectl-validate-") as tmp:
        names = {}
        for i, (path, doc) in enumerate(docs):
            f = pathlib.Path(tmp) / f"{i:03d}.yaml"
            f.write_text(yaml.safe_dump(doc, sort_keys=False))
            names[f.name] = label(path, doc)
        r = subprocess.run(
            [exe, "--version", version, "-o", "json", tmp],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        try:
            report = json.loads(r.stdout)
        except json.JSONDecodeError:
            return [f"kubectl-validate exited {r.returncode} without JSON output: {r.stderr.strip()[-2000:]}"]
        for file, results in sorted(report.items()):
            where = names.get(pathlib.Path(file).name, file)
            for res in results:
                if res.get("status") == "Success":
                    continue
                causes = (res.get("details") or {}).get("causes") or []
                if not causes:
                    errors.append(f"{where}: {res.get('message', res)}")
                for c in causes:
                    field = f"{c['field']}: " if c.get("field") else ""
                    errors.append(f"{where}: {field}{c.get('message', '')}")
    return errors


def kube_linter(directory: os.PathLike | str, *, timeout: int = 300) -> list[str] | None:
    """Runs ``kube-linter lint --format json DIR``; returns one string per
    finding (``[]`` = clean) or ``None`` when kube-linter is not installed.

    kube-linter could not be installed here (the Go module proxy answers 403
    for golang.stackrox.io/kube-linter), so this wrapper has not been run
    against the real tool; it follows kube-linter's documented JSON report
    (``Reports[].{Check, Diagnostic.Message, Object.K8sObject}``).
    """
    exe = _go_tool("kube-linter")
    if exe is None:
        return None
    r = subprocess.run(
        [exe, "lint", "--format", "json", str(directory)],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        return [f"kube-linter exited {r.returncode} without JSON output: {r.stderr.strip()[-2000:]}"]
    out = []
    for rep in report.get("Reports") or []:
        obj = (rep.get("Object") or {}).get("K8sObject") or {}
        kind = (obj.get("GroupVersionKind") or {}).get("Kind", "?")
        file = ((rep.get("Object") or {}).get("Metadata") or {}).get("FilePath", "?")
        msg = (rep.get("Diagnostic") or {}).get("Message", "")
        out.append(f"{pathlib.Path(file).name}: {kind}/{obj.get('Name', '?')}: {rep.get('Check')}: {msg}")
    return out
