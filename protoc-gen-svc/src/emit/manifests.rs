//! Kubernetes manifests (`target=k8s`) and Dockerfiles (`target=docker`)
//! for every service annotated with `(svc.service)`.
//!
//! Every value comes from the IR — the same settings the generated server
//! reads — so ports, probes, grace periods and limits cannot disagree with
//! the code. Each template has one context struct here; the templates
//! themselves only lay the values out.

use std::collections::BTreeMap;

use askama::Template;
use serde::Serialize;

use super::GeneratedFile;
use super::templates::{Manifest, Overrides};
use crate::error::{Diagnostic, Error, Result};
use crate::ir::{Package, Service};
use crate::units::format_duration;

/// Fixed non-root user and group the container runs as, high enough not to
/// collide with host users (and with the base image's own `nonroot`).
pub const UID: u32 = 10001;

/// File name of the server configuration inside its ConfigMap.
pub const CONFIG_FILE: &str = "config.toml";

/// Seconds the kubelet waits past `shutdown_grace` before SIGKILL: time for
/// the process to flush logs and exit after draining.
const EXIT_MARGIN_SECONDS: u64 = 5;

/// Longest service name: the headless Service appends `-headless` and
/// Service names are at most 63 characters.
const MAX_NAME: usize = 63 - "-headless".len();

/// Image tag when `deploy.image` is not set: the version `protoc-gen-svc
/// new` gives a crate. Retag with kustomize (see kustomization.yaml).
pub const DEFAULT_IMAGE_TAG: &str = "0.1.0";

/// Base images of the Dockerfile.
const BUILD_DISTRO: &str = "bookworm";
const RUNTIME_IMAGE: &str = "gcr.io/distroless/cc-debian12:nonroot";

/// What the manifests of one service are made from.
struct Workload<'a> {
    service: &'a Service,
    meta: Meta,
    image: String,
}

/// Kubernetes names, labels and namespace shared by every manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub name: String,
    pub has_namespace: bool,
    pub namespace: String,
    /// Recommended `app.kubernetes.io/*` labels, values YAML-quoted.
    pub labels: Vec<Label>,
    /// The subset that selects the pods (immutable in a Deployment).
    pub selector: Vec<Label>,
}

/// One label; `value` is a quoted YAML scalar.
#[derive(Debug, Clone, Serialize)]
pub struct Label {
    pub key: String,
    pub value: String,
}

/// An environment variable; `value` is a quoted YAML scalar.
#[derive(Debug, Clone, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// One probe: a gRPC health Check, or (with TLS, which kubelet gRPC
/// probes cannot speak) an HTTP GET on the metrics port.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// gRPC (true) or HTTP GET (false).
    pub grpc: bool,
    pub port: u16,
    /// Health service name (quoted) for gRPC; `""` asks about the whole
    /// server.
    pub service: String,
    /// Path (quoted) for HTTP.
    pub path: String,
    pub period: u32,
    pub timeout: u32,
    pub failure_threshold: u32,
}

/// `deployment.yaml`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/deployment.yaml", escape = "none")]
pub struct Deployment {
    pub header: String,
    pub full_name: String,
    pub meta: Meta,
    pub replicas: u32,
    pub revision_history_limit: u32,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub service_account: String,
    pub termination_grace_seconds: u64,
    pub uid: u32,
    pub topology_keys: Vec<String>,
    pub container: String,
    pub image: String,
    pub image_pull_policy: String,
    pub grpc_port: u16,
    pub metrics_port: u16,
    /// The service serves HTTP/JSON (some method has a `google.api.http`
    /// binding) on `http_port`.
    pub has_http: bool,
    pub http_port: u16,
    pub metrics_path: String,
    pub env: Vec<EnvVar>,
    pub startup: Probe,
    pub readiness: Probe,
    pub liveness: Probe,
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub config_map: String,
    pub config_dir: String,
    pub has_jwt_secret: bool,
    pub jwt_secret: String,
    pub jwt_dir: String,
    pub has_tls: bool,
    pub tls_secret: String,
    pub tls_dir: String,
    pub tmp_size_limit: String,
}

impl Manifest for Deployment {
    const NAME: &'static str = "deployment.yaml";
}

/// `service.yaml` (plus the headless Service when asked for).
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/service.yaml", escape = "none")]
pub struct ServiceManifest {
    pub header: String,
    pub full_name: String,
    pub meta: Meta,
    pub grpc_port: u16,
    pub metrics_port: u16,
    /// The service serves HTTP/JSON (some method has a `google.api.http`
    /// binding) on `http_port`.
    pub has_http: bool,
    pub http_port: u16,
    /// `appProtocol` of the gRPC port: cleartext HTTP/2 or TLS.
    pub grpc_app_protocol: String,
    pub headless: bool,
    pub headless_name: String,
}

impl Manifest for ServiceManifest {
    const NAME: &'static str = "service.yaml";
}

/// One autoscaling metric.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleMetric {
    /// `cpu` or `memory`.
    pub resource: String,
    pub percent: u32,
}

/// `hpa.yaml`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/hpa.yaml", escape = "none")]
pub struct Hpa {
    pub header: String,
    pub meta: Meta,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub metrics: Vec<ScaleMetric>,
}

impl Manifest for Hpa {
    const NAME: &'static str = "hpa.yaml";
}

/// `pdb.yaml`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/pdb.yaml", escape = "none")]
pub struct Pdb {
    pub header: String,
    pub meta: Meta,
    pub min_available: u32,
}

impl Manifest for Pdb {
    const NAME: &'static str = "pdb.yaml";
}

/// `serviceaccount.yaml`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/serviceaccount.yaml", escape = "none")]
pub struct ServiceAccount {
    pub header: String,
    pub meta: Meta,
}

impl Manifest for ServiceAccount {
    const NAME: &'static str = "serviceaccount.yaml";
}

/// `configmap.yaml`: the server's configuration file.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/configmap.yaml", escape = "none")]
pub struct ConfigMap {
    pub header: String,
    pub meta: Meta,
    pub config_map: String,
    pub config_dir: String,
    pub file_name: String,
    /// The file's lines (TOML).
    pub lines: Vec<String>,
}

impl Manifest for ConfigMap {
    const NAME: &'static str = "configmap.yaml";
}

/// `networkpolicy.yaml`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/networkpolicy.yaml", escape = "none")]
pub struct NetworkPolicy {
    pub header: String,
    pub meta: Meta,
    pub grpc_port: u16,
    pub metrics_port: u16,
    /// The service serves HTTP/JSON (some method has a `google.api.http`
    /// binding) on `http_port`.
    pub has_http: bool,
    pub http_port: u16,
}

impl Manifest for NetworkPolicy {
    const NAME: &'static str = "networkpolicy.yaml";
}

/// `servicemonitor.yaml`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/servicemonitor.yaml", escape = "none")]
pub struct ServiceMonitor {
    pub header: String,
    pub meta: Meta,
    pub metrics_path: String,
    pub interval: String,
}

impl Manifest for ServiceMonitor {
    const NAME: &'static str = "servicemonitor.yaml";
}

/// `kustomization.yaml`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "k8s/kustomization.yaml", escape = "none")]
pub struct Kustomization {
    pub header: String,
    pub has_namespace: bool,
    pub namespace: String,
    pub image_name: String,
    pub resources: Vec<String>,
}

impl Manifest for Kustomization {
    const NAME: &'static str = "kustomization.yaml";
}

/// `Dockerfile`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "docker/Dockerfile", escape = "none")]
pub struct Dockerfile {
    pub header: String,
    pub full_name: String,
    pub dockerfile_path: String,
    /// Image reference, unquoted (a shell word).
    pub image: String,
    pub rust_version: String,
    pub build_distro: String,
    pub runtime_image: String,
    /// Cargo binary target to build and run.
    pub bin: String,
    pub uid: u32,
    pub grpc_port: u16,
    pub metrics_port: u16,
    /// The service serves HTTP/JSON (some method has a `google.api.http`
    /// binding) on `http_port`.
    pub has_http: bool,
    pub http_port: u16,
}

impl Manifest for Dockerfile {
    const NAME: &'static str = "Dockerfile";
}

/// `.dockerignore`.
#[derive(Debug, Clone, Serialize, Template)]
#[template(path = "docker/dockerignore", escape = "none")]
pub struct Dockerignore {
    pub header: String,
    pub entries: Vec<String>,
}

impl Manifest for Dockerignore {
    const NAME: &'static str = "dockerignore";
}

/// Which manifests to emit.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    pub k8s: bool,
    pub docker: bool,
}

/// Where the files go and what the Dockerfile builds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout<'a> {
    /// Cargo binary the Dockerfile builds; default: the service's
    /// Kubernetes name.
    pub bin: Option<&'a str>,
    /// Prefix of every path, e.g. `k8s/` (default: none, so each service
    /// gets `<service-name>/`).
    pub prefix: &'a str,
    /// Write `Dockerfile` and `.dockerignore` at the root of the output (a
    /// crate's build context) instead of `<service-name>/Dockerfile` with
    /// its Dockerfile-specific `Dockerfile.dockerignore`.
    pub docker_at_root: bool,
}

/// Kubernetes name of a service: its simple name in kebab case
/// (`ShopAdmin` → `shop-admin`).
pub fn app_name(service: &Service) -> String {
    crate::ident::kebab_name(&service.name)
}

/// Emits the manifests of every annotated service in `packages`.
pub fn emit(
    packages: &[Package],
    targets: Targets,
    overrides: &Overrides,
    layout: Layout<'_>,
) -> Result<Vec<GeneratedFile>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, &Service> = BTreeMap::new();
    for package in packages {
        for service in package.services.iter().filter(|s| s.annotated) {
            let name = app_name(service);
            if let Some(first) = seen.get(&name) {
                errors.push(
                    Diagnostic::new(
                        format!("service {}", service.full_name),
                        format!("gets the Kubernetes name {name:?}, which {} already has", first.full_name),
                        "generate the two services into different output directories, or rename one",
                    )
                    .in_file(&service.file),
                );
                continue;
            }
            if name.len() > MAX_NAME {
                errors.push(
                    Diagnostic::new(
                        format!("service {}", service.full_name),
                        format!("Kubernetes name {name:?} is longer than {MAX_NAME} characters"),
                        "give the service a shorter name",
                    )
                    .in_file(&service.file),
                );
                continue;
            }
            seen.insert(name.clone(), service);
            let workload = Workload::new(package, service, name);
            let result = (|| -> Result<()> {
                if targets.k8s {
                    files.extend(workload.k8s(overrides, layout)?);
                }
                if targets.docker {
                    files.extend(workload.docker(overrides, layout)?);
                }
                Ok(())
            })();
            if let Err(e) = result {
                errors.extend(e.diagnostics);
            }
        }
    }
    if errors.is_empty() { Ok(files) } else { Err(Error { diagnostics: errors }) }
}

/// `# ` comment text naming the generator.
fn header() -> String {
    format!("@generated by protoc-gen-svc {}. DO NOT EDIT.", crate::VERSION)
}

/// A double-quoted YAML (and TOML) scalar.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `s` is a valid label value (≤63 chars, alphanumeric ends,
/// `-_.` inside).
fn is_label_value(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !s.is_empty()
        && s.len() <= 63
        && alnum(s.chars().next())
        && alnum(s.chars().last())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Image reference without tag or digest.
fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    }
}

/// Tag of an image reference, if it has one.
fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let i = without_digest.rfind(':')?;
    let tag = &without_digest[i + 1..];
    (!tag.contains('/')).then_some(tag)
}

impl<'a> Workload<'a> {
    fn new(package: &'a Package, service: &'a Service, name: String) -> Workload<'a> {
        let deploy = &service.settings.deploy;
        let image = deploy.image.clone().unwrap_or_else(|| format!("{name}:{DEFAULT_IMAGE_TAG}"));
        let selector = vec![
            Label { key: "app.kubernetes.io/name".into(), value: quote(&name) },
            Label { key: "app.kubernetes.io/instance".into(), value: quote(&name) },
        ];
        let mut labels = selector.clone();
        if let Some(tag) = image_tag(&image).filter(|t| is_label_value(t)) {
            labels.push(Label { key: "app.kubernetes.io/version".into(), value: quote(tag) });
        }
        labels.push(Label { key: "app.kubernetes.io/component".into(), value: quote("grpc-server") });
        if is_label_value(&package.name) {
            labels.push(Label { key: "app.kubernetes.io/part-of".into(), value: quote(&package.name) });
        }
        labels.push(Label { key: "app.kubernetes.io/managed-by".into(), value: quote("protoc-gen-svc") });
        let meta = Meta {
            has_namespace: deploy.namespace.is_some(),
            namespace: deploy.namespace.clone().unwrap_or_default(),
            name,
            labels,
            selector,
        };
        Workload { service, meta, image }
    }

    fn name(&self) -> &str {
        &self.meta.name
    }

    /// Mount point of the ConfigMap. Volumes get sibling directories, never
    /// nested ones: the kubelet cannot create a mount point inside a
    /// read-only ConfigMap volume.
    fn config_dir(&self) -> String {
        format!("/etc/{}/config", self.name())
    }

    fn config_map(&self) -> String {
        format!("{}-config", self.name())
    }

    /// Whether the service serves HTTP/JSON.
    fn has_http(&self) -> bool {
        self.service.methods.iter().any(|m| !m.http.is_empty())
    }

    /// The server's configuration file: the settings it would otherwise
    /// take from the annotations, written out so operators can change them
    /// without rebuilding.
    fn config_lines(&self) -> Vec<String> {
        let s = &self.service.settings;
        let mut lines = vec![
            format!("# Settings of {}; SVC_* environment variables override them.", self.service.full_name),
            format!("grpc_addr = {}", quote(&format!("0.0.0.0:{}", s.port))),
            format!("metrics_addr = {}", quote(&format!("0.0.0.0:{}", s.metrics_port))),
        ];
        if self.has_http() {
            lines.push(format!("http_addr = {}", quote(&format!("0.0.0.0:{}", s.http_port))));
        }
        lines.extend([
            format!("shutdown_grace = {}", quote(&format_duration(s.server.shutdown_grace))),
            format!("log = {}", quote("info")),
            format!("log_format = {}", quote("json")),
        ]);
        lines
    }

    /// Where the JWT key comes from when the service requires tokens:
    /// (secret name, mount dir, variable, file).
    fn jwt_key(&self) -> Option<(String, String, &'static str, &'static str)> {
        let jwt = self.service.settings.auth.as_ref()?;
        let hmac_only = jwt.algorithms.iter().all(|a| a.starts_with("HS"));
        let (variable, file) =
            if hmac_only { ("SVC_JWT_SECRET_FILE", "secret") } else { ("SVC_JWT_PUBLIC_KEY_FILE", "public.pem") };
        Some((format!("{}-jwt", self.name()), format!("/etc/{}/jwt", self.name()), variable, file))
    }

    /// Where the TLS Secret is mounted, when TLS is on.
    fn tls_dir(&self) -> Option<String> {
        self.service.settings.deploy.tls_secret.as_ref().map(|_| format!("/etc/{}/tls", self.name()))
    }

    fn env(&self) -> Vec<EnvVar> {
        let mut env: Vec<EnvVar> = Vec::new();
        let mut set = |name: &str, value: &str| {
            let var = EnvVar { name: name.to_owned(), value: quote(value) };
            match env.iter_mut().find(|e| e.name == name) {
                Some(existing) => *existing = var,
                None => env.push(var),
            }
        };
        set("SVC_CONFIG", &format!("{}/{CONFIG_FILE}", self.config_dir()));
        if let Some((_, dir, variable, file)) = self.jwt_key() {
            set(variable, &format!("{dir}/{file}"));
        }
        if let Some(dir) = self.tls_dir() {
            // The keys of a kubernetes.io/tls Secret.
            set("SVC_TLS_CERT_FILE", &format!("{dir}/tls.crt"));
            set("SVC_TLS_KEY_FILE", &format!("{dir}/tls.key"));
            if self.service.settings.deploy.mtls {
                set("SVC_TLS_CLIENT_CA_FILE", &format!("{dir}/ca.crt"));
            }
        }
        for (name, value) in &self.service.settings.deploy.env {
            set(name, value);
        }
        env
    }

    fn k8s(&self, overrides: &Overrides, layout: Layout<'_>) -> Result<Vec<GeneratedFile>> {
        let s = &self.service.settings;
        let d = &s.deploy;
        let name = self.name().to_owned();
        let meta = self.meta.clone();
        let tls = d.tls_secret.is_some();
        // Over TLS: ready = /readyz (503 while draining), alive = /healthz.
        let probe = |service: &str, path: &str, period, timeout, failure_threshold| Probe {
            grpc: !tls,
            port: if tls { s.metrics_port } else { s.port },
            service: quote(service),
            path: quote(path),
            period,
            timeout,
            failure_threshold,
        };
        let jwt = self.jwt_key();
        let deployment = Deployment {
            header: header(),
            full_name: self.service.full_name.clone(),
            meta: meta.clone(),
            replicas: d.autoscale.min_replicas,
            revision_history_limit: 5,
            max_surge: 1,
            max_unavailable: 0,
            service_account: name.clone(),
            termination_grace_seconds: s.server.shutdown_grace.as_secs()
                + u64::from(s.server.shutdown_grace.subsec_nanos() > 0)
                + EXIT_MARGIN_SECONDS,
            uid: UID,
            topology_keys: vec!["kubernetes.io/hostname".into(), "topology.kubernetes.io/zone".into()],
            container: name.clone(),
            image: quote(&self.image),
            // A digest pins the bytes; a tag can move, so pull it every time
            // (which also re-checks the pull credentials).
            image_pull_policy: if self.image.contains('@') { "IfNotPresent" } else { "Always" }.into(),
            grpc_port: s.port,
            metrics_port: s.metrics_port,
            has_http: self.has_http(),
            http_port: s.http_port,
            metrics_path: quote("/metrics"),
            env: self.env(),
            // Up to a minute to start; ready only while this service serves;
            // restarted when the whole server stops answering.
            startup: probe(&self.service.full_name, "/readyz", 2, 2, 30),
            readiness: probe(&self.service.full_name, "/readyz", 5, 2, 2),
            liveness: probe("", "/healthz", 10, 2, 3),
            cpu_request: quote(&d.cpu_request.text),
            cpu_limit: quote(&d.cpu_limit.text),
            memory_request: quote(&d.memory_request.text),
            memory_limit: quote(&d.memory_limit.text),
            config_map: self.config_map(),
            config_dir: self.config_dir(),
            has_jwt_secret: jwt.is_some(),
            jwt_secret: jwt.as_ref().map(|j| j.0.clone()).unwrap_or_default(),
            jwt_dir: jwt.as_ref().map(|j| j.1.clone()).unwrap_or_default(),
            has_tls: tls,
            tls_secret: d.tls_secret.clone().unwrap_or_default(),
            tls_dir: self.tls_dir().unwrap_or_default(),
            tmp_size_limit: quote("64Mi"),
        };
        let service = ServiceManifest {
            header: header(),
            full_name: self.service.full_name.clone(),
            meta: meta.clone(),
            grpc_port: s.port,
            metrics_port: s.metrics_port,
            has_http: self.has_http(),
            http_port: s.http_port,
            grpc_app_protocol: if tls { "https" } else { "kubernetes.io/h2c" }.into(),
            headless: d.headless_service,
            headless_name: format!("{name}-headless"),
        };
        let mut metrics = Vec::new();
        if let Some(p) = d.autoscale.target_cpu_percent {
            metrics.push(ScaleMetric { resource: "cpu".into(), percent: p });
        }
        if let Some(p) = d.autoscale.target_memory_percent {
            metrics.push(ScaleMetric { resource: "memory".into(), percent: p });
        }
        let hpa = Hpa {
            header: header(),
            meta: meta.clone(),
            min_replicas: d.autoscale.min_replicas,
            max_replicas: d.autoscale.max_replicas,
            metrics,
        };
        let pdb = Pdb { header: header(), meta: meta.clone(), min_available: d.pdb_min_available };
        let account = ServiceAccount { header: header(), meta: meta.clone() };
        let config = ConfigMap {
            header: header(),
            meta: meta.clone(),
            config_map: self.config_map(),
            config_dir: self.config_dir(),
            file_name: CONFIG_FILE.into(),
            lines: self.config_lines(),
        };
        let mut out = vec![
            ("serviceaccount.yaml", overrides.render(&account)?),
            ("configmap.yaml", overrides.render(&config)?),
            ("deployment.yaml", overrides.render(&deployment)?),
            ("service.yaml", overrides.render(&service)?),
            ("hpa.yaml", overrides.render(&hpa)?),
            ("pdb.yaml", overrides.render(&pdb)?),
        ];
        if d.network_policy {
            let policy = NetworkPolicy {
                header: header(),
                meta: meta.clone(),
                grpc_port: s.port,
                metrics_port: s.metrics_port,
                has_http: self.has_http(),
                http_port: s.http_port,
            };
            out.push(("networkpolicy.yaml", overrides.render(&policy)?));
        }
        if d.service_monitor {
            let monitor = ServiceMonitor {
                header: header(),
                meta: meta.clone(),
                metrics_path: quote("/metrics"),
                interval: quote("30s"),
            };
            out.push(("servicemonitor.yaml", overrides.render(&monitor)?));
        }
        let kustomization = Kustomization {
            header: header(),
            has_namespace: meta.has_namespace,
            namespace: meta.namespace.clone(),
            image_name: image_name(&self.image).to_owned(),
            resources: out.iter().map(|(file, _)| (*file).to_owned()).collect(),
        };
        out.push(("kustomization.yaml", overrides.render(&kustomization)?));
        let dir = format!("{}{name}", layout.prefix);
        Ok(out.into_iter().map(|(file, content)| GeneratedFile { name: format!("{dir}/{file}"), content }).collect())
    }

    fn docker(&self, overrides: &Overrides, layout: Layout<'_>) -> Result<Vec<GeneratedFile>> {
        let s = &self.service.settings;
        let name = self.name();
        let (dockerfile_path, ignore_path) = if layout.docker_at_root {
            (format!("{}Dockerfile", layout.prefix), format!("{}.dockerignore", layout.prefix))
        } else {
            let dir = format!("{}{name}", layout.prefix);
            (format!("{dir}/Dockerfile"), format!("{dir}/Dockerfile.dockerignore"))
        };
        let dockerfile = Dockerfile {
            header: header(),
            full_name: self.service.full_name.clone(),
            dockerfile_path: dockerfile_path.clone(),
            image: self.image.clone(),
            rust_version: env!("CARGO_PKG_RUST_VERSION").into(),
            build_distro: BUILD_DISTRO.into(),
            runtime_image: RUNTIME_IMAGE.into(),
            bin: layout.bin.unwrap_or(name).to_owned(),
            uid: UID,
            grpc_port: s.port,
            metrics_port: s.metrics_port,
            has_http: self.has_http(),
            http_port: s.http_port,
        };
        let ignore = Dockerignore {
            header: header(),
            entries: ["target/", ".git/", ".cargo/", ".tools/", "**/*.log", "**/__pycache__/"]
                .map(String::from)
                .to_vec(),
        };
        Ok(vec![
            GeneratedFile { name: dockerfile_path, content: overrides.render(&dockerfile)? },
            GeneratedFile { name: ignore_path, content: overrides.render(&ignore)? },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(quote("\u{1}"), r#""\u0001""#);
    }

    #[test]
    fn image_parts() {
        assert_eq!(image_name("ghcr.io/acme/shop:1.2"), "ghcr.io/acme/shop");
        assert_eq!(image_tag("ghcr.io/acme/shop:1.2"), Some("1.2"));
        assert_eq!(image_name("localhost:5000/shop"), "localhost:5000/shop");
        assert_eq!(image_tag("localhost:5000/shop"), None);
        assert_eq!(image_name("shop@sha256:abc"), "shop");
        assert_eq!(image_tag("shop:1@sha256:abc"), Some("1"));
    }

    #[test]
    fn label_values() {
        assert!(is_label_value("greeter.v1"));
        assert!(is_label_value("0.1.0"));
        assert!(!is_label_value("-x"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
