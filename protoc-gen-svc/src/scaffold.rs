//! `protoc-gen-svc new NAME`: a complete service crate — Cargo.toml, a
//! build script using the builder, the proto, `main.rs` serving the first
//! service with `<service>_svc::serve`, handlers that answer UNIMPLEMENTED
//! naming the method, a test that starts the server on 127.0.0.1:0 and calls
//! it, and a README. Computing the files does no I/O beyond reading the
//! proto; the CLI writes them.

use std::path::{Path, PathBuf};

use crate::emit::GeneratedFile;
use crate::error::{Diagnostic, Result};
use crate::ident::{to_snake, to_upper_camel, type_path};
use crate::ir;

/// The proto used when `new` is given none.
pub const SAMPLE_PROTO: &str = r#"// A sample service; replace it with your own and run `cargo build`.
syntax = "proto3";

package hello.v1;

import "svc/options.proto";

// Says hello.
service Hello {
  option (svc.service) = {
    port: 50051
    metrics_port: 9090
    server { shutdown_grace: "20s" }
  };

  // Greets one person.
  rpc Greet(GreetRequest) returns (GreetReply) {
    option idempotency_level = NO_SIDE_EFFECTS;
    option (svc.method) = { timeout: "2s" };
  }

  // Greets, again and again.
  rpc GreetMany(GreetRequest) returns (stream GreetReply);
}

// Who to greet.
message GreetRequest {
  // Their name.
  string name = 1;
}

// The greeting.
message GreetReply {
  // The text.
  string message = 1;
}
"#;

/// Where the new crate's dependencies come from.
#[derive(Debug, Clone)]
pub enum Dependencies {
    /// Path dependencies on a protoc-gen-svc checkout (its root directory).
    Checkout(PathBuf),
    /// crates.io versions equal to this generator's.
    Registry,
}

impl Dependencies {
    /// A checkout when this binary was built from one that still exists.
    pub fn detect() -> Dependencies {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
        match root {
            Some(r) if r.join("runtime/Cargo.toml").exists() => Dependencies::Checkout(r),
            _ => Dependencies::Registry,
        }
    }
}

/// The proto a scaffold starts from.
#[derive(Debug, Clone)]
pub struct ProtoSource {
    /// Path of the .proto file.
    pub file: PathBuf,
    /// Include directories for its imports.
    pub includes: Vec<PathBuf>,
}

/// Computes the files of a new crate called `name`.
pub fn scaffold(name: &str, proto: Option<&ProtoSource>, deps: &Dependencies) -> Result<Vec<GeneratedFile>> {
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit() || c == '-')
    {
        return Err(Diagnostic::new(
            format!("crate name {name:?}"),
            "is not a valid package name",
            "use letters, digits, '-' and '_', starting with a letter, e.g. `protoc-gen-svc new shop-service`",
        )
        .into());
    }
    let (protos, input) = match proto {
        Some(p) => {
            let input = crate::source::compile(std::slice::from_ref(&p.file), &p.includes)?;
            let mut files = Vec::new();
            for path in &input.source_paths {
                let Some(rel) = p.includes.iter().find_map(|inc| path.strip_prefix(inc).ok()) else { continue };
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Diagnostic::new(
                        format!("file {}", path.display()),
                        format!("cannot be read: {e}"),
                        "check permissions",
                    )
                })?;
                files.push((rel.to_string_lossy().replace('\\', "/"), text));
            }
            (files, input)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("svc-scaffold-{}", std::process::id()));
            let file = dir.join("hello/v1/hello.proto");
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(file.parent().unwrap_or(&dir))?;
                std::fs::write(&file, SAMPLE_PROTO)
            };
            write()
                .map_err(|e| Diagnostic::new("sample proto", format!("cannot be staged: {e}"), "check the temp dir"))?;
            let input = crate::source::compile(&[&file], &[&dir]);
            let _ = std::fs::remove_dir_all(&dir);
            (vec![("hello/v1/hello.proto".to_owned(), SAMPLE_PROTO.to_owned())], input?)
        }
    };
    let packages = crate::read_ir(&input)?;
    let Some((package, service)) = packages.iter().find_map(|p| p.services.first().map(|s| (p, s))) else {
        return Err(Diagnostic::new(
            "proto",
            "declares no service",
            "give a .proto with at least one `service`, or omit --proto for the sample",
        )
        .into());
    };
    let crate_name = name.replace('-', "_");
    let mut files: Vec<GeneratedFile> = protos
        .iter()
        .map(|(rel, text)| GeneratedFile { name: format!("proto/{rel}"), content: text.clone() })
        .collect();
    let roots: Vec<String> = input.files_to_generate.iter().map(|f| format!("\"proto/{f}\"")).collect();
    files.push(GeneratedFile { name: "Cargo.toml".into(), content: cargo_toml(name, deps) });
    files.push(GeneratedFile { name: "build.rs".into(), content: build_rs(&roots) });
    files.push(GeneratedFile { name: "src/lib.rs".into(), content: lib_rs(package, service) });
    files.push(GeneratedFile { name: "src/handlers.rs".into(), content: handlers_rs(package, service) });
    files.push(GeneratedFile { name: "src/main.rs".into(), content: main_rs(&crate_name, package, service) });
    files.push(GeneratedFile { name: "tests/service.rs".into(), content: test_rs(&crate_name, package, service) });
    files.push(GeneratedFile { name: "README.md".into(), content: readme(name, service) });
    // Manifests and Dockerfile for the service the binary serves (with the
    // annotation defaults when the proto does not annotate it).
    let served = ir::Package { services: vec![ir::Service { annotated: true, ..service.clone() }], ..package.clone() };
    let layout = crate::emit::manifests::Layout { bin: Some(name), prefix: "", docker_at_root: true };
    let both = crate::emit::manifests::Targets { k8s: false, docker: true };
    let overrides = crate::emit::templates::Overrides::none();
    files.extend(crate::emit::manifests::emit(std::slice::from_ref(&served), both, &overrides, layout)?);
    let layout = crate::emit::manifests::Layout { bin: Some(name), prefix: "k8s/", docker_at_root: false };
    let k8s = crate::emit::manifests::Targets { k8s: true, docker: false };
    files.extend(crate::emit::manifests::emit(std::slice::from_ref(&served), k8s, &overrides, layout)?);
    for f in files.iter_mut().filter(|f| f.name.ends_with(".rs")) {
        if let Ok(parsed) = syn::parse_file(&f.content) {
            f.content = prettyplease::unparse(&parsed);
        }
    }
    files.push(GeneratedFile { name: ".gitignore".into(), content: "/target\n".into() });
    Ok(files)
}

fn cargo_toml(name: &str, deps: &Dependencies) -> String {
    let (svc, generator) = match deps {
        Dependencies::Checkout(root) => (
            format!("{{ path = {:?} }}", root.join("runtime").display().to_string()),
            format!("{{ path = {:?} }}", root.join("protoc-gen-svc").display().to_string()),
        ),
        Dependencies::Registry => (format!("\"={}\"", crate::VERSION), format!("\"={}\"", crate::VERSION)),
    };
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
svc = {svc}
tokio = {{ version = "1", features = ["rt-multi-thread", "macros"] }}

[build-dependencies]
protoc-gen-svc = {generator}

[workspace]
"#
    )
}

fn build_rs(roots: &[String]) -> String {
    format!(
        r#"//! Generates the service code from proto/ (no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {{
    protoc_gen_svc::configure().compile(&[{}], &["proto"])?;
    Ok(())
}}
"#,
        roots.join(", ")
    )
}

/// `crate::proto::a::b::Type` for a message of `package`, or the runtime's
/// well-known type.
fn rust_type(full_name: &str, package: &str) -> String {
    if full_name == "google.protobuf.Empty" {
        return "()".into();
    }
    if package == "google.protobuf" {
        return format!("svc::codegen::prost_types::{}", type_path(package, full_name));
    }
    let mut path = vec!["crate".to_owned(), "proto".to_owned()];
    path.extend(package.split('.').filter(|p| !p.is_empty()).map(to_snake));
    path.push(type_path(package, full_name));
    path.join("::")
}

fn module_path(package: &ir::Package) -> String {
    let mut path = vec!["proto".to_owned()];
    path.extend(package.name.split('.').filter(|p| !p.is_empty()).map(to_snake));
    path.join("::")
}

fn lib_rs(package: &ir::Package, service: &ir::Service) -> String {
    format!(
        r#"//! The `{}` service: generated code in [`proto`], your handlers in
//! [`handlers`].

pub mod handlers;

/// Code generated from proto/ by build.rs.
pub mod proto {{
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}}

pub use {}::{};
"#,
        service.full_name,
        module_path(package),
        crate::ident::svc_module(&service.name)
    )
}

fn handlers_rs(package: &ir::Package, service: &ir::Service) -> String {
    let trait_name = to_upper_camel(&service.name);
    let server_mod = format!("{}_server", crate::ident::tonic_snake(&trait_name));
    let module = module_path(package);
    // Types of the service's own package are written `pb::Type`.
    let local = |full: &str, pkg: &str| {
        if pkg == package.name && pkg != "google.protobuf" {
            format!("pb::{}", type_path(pkg, full))
        } else {
            rust_type(full, pkg)
        }
    };
    let mut methods = String::new();
    for m in &service.methods {
        let input = local(&m.input, &m.input_package);
        let output = local(&m.output, &m.output_package);
        let request =
            if m.client_streaming { format!("Request<Streaming<{input}>>") } else { format!("Request<{input}>") };
        let fn_name = to_snake(&m.name);
        let path = m.path.trim_start_matches('/');
        let body = format!("Err(Status::unimplemented(\"{path} is not implemented yet\"))");
        if m.server_streaming {
            let assoc = format!("{}Stream", m.name);
            methods.push_str(&format!(
                "\n    type {assoc} = Pin<Box<dyn Stream<Item = Result<{output}, Status>> + Send + 'static>>;\n\n    /// `{path}`.\n    async fn {fn_name}(&self, _request: {request}) -> Result<Response<Self::{assoc}>, Status> {{\n        {body}\n    }}\n"
            ));
        } else {
            methods.push_str(&format!(
                "\n    /// `{path}`.\n    async fn {fn_name}(&self, _request: {request}) -> Result<Response<{output}>, Status> {{\n        {body}\n    }}\n"
            ));
        }
    }
    let streaming = service.methods.iter().any(|m| m.server_streaming);
    let client_streaming = service.methods.iter().any(|m| m.client_streaming);
    let mut imports = vec!["Request", "Response", "Status"];
    if client_streaming {
        imports.push("Streaming");
    }
    let stream_imports =
        if streaming { "use std::pin::Pin;\n\nuse svc::tonic::codegen::tokio_stream::Stream;\n" } else { "" };
    format!(
        r#"//! Handlers of `{full}`. Each answers UNIMPLEMENTED until you fill it in.
{stream_imports}use svc::tonic::{{self, {imports}}};

use crate::{module} as pb;
use crate::{module}::{server_mod}::{trait_name};

/// The `{full}` implementation.
#[derive(Debug, Default, Clone)]
pub struct {trait_name}Service;

#[tonic::async_trait]
impl {trait_name} for {trait_name}Service {{{methods}}}
"#,
        full = service.full_name,
        imports = imports.join(", "),
    )
}

fn main_rs(crate_name: &str, _package: &ir::Package, service: &ir::Service) -> String {
    let svc_mod = crate::ident::svc_module(&service.name);
    let trait_name = to_upper_camel(&service.name);
    format!(
        r#"//! Serves `{full}`: gRPC with health and reflection, /metrics, /healthz
//! and /readyz, graceful shutdown. Settings: the annotations, then the
//! SVC_* environment (SVC_GRPC_ADDR, SVC_METRICS_ADDR, ...).

#[tokio::main]
async fn main() -> Result<(), svc::server::Error> {{
    {crate_name}::{svc_mod}::serve({crate_name}::handlers::{trait_name}Service).await
}}
"#,
        full = service.full_name
    )
}

fn test_rs(crate_name: &str, package: &ir::Package, service: &ir::Service) -> String {
    let svc_mod = crate::ident::svc_module(&service.name);
    let trait_name = to_upper_camel(&service.name);
    let client_mod = format!("{}_client", crate::ident::tonic_snake(&trait_name));
    let module = module_path(package);
    if service.settings.auth.is_some() {
        return format!(
            r#"//! The service requires JWT authentication: without a key it must not start.

#[tokio::test]
async fn refuses_to_start_without_a_key() {{
    let config = svc::server::Config {{
        grpc_addr: "127.0.0.1:0".parse().expect("address"),
        metrics_addr: "127.0.0.1:0".parse().expect("address"),
        shutdown_grace: std::time::Duration::from_secs(1),
    }};
    let server = svc::server::Server::with_config(&{crate_name}::{svc_mod}::SERVICE, config);
    assert!(server.bind().await.is_err());
}}
"#
        );
    }
    let Some(m) = service.methods.first() else { return String::new() };
    let input = rust_type(&m.input, &m.input_package).replacen("crate::", &format!("{crate_name}::"), 1);
    let fn_name = to_snake(&m.name);
    let path = m.path.trim_start_matches('/');
    let argument = if m.client_streaming {
        format!("svc::tonic::codegen::tokio_stream::iter(Vec::<{input}>::new())")
    } else if input == "()" {
        "()".to_owned()
    } else {
        format!("{input}::default()")
    };
    format!(
        r#"//! Starts the server on 127.0.0.1:0 and calls it.

use std::time::Duration;

use {crate_name}::{module}::{client_mod}::{trait_name}Client;
use {crate_name}::{svc_mod};

#[tokio::test]
async fn unimplemented_methods_say_which() {{
    let config = svc::server::Config {{
        grpc_addr: "127.0.0.1:0".parse().expect("address"),
        metrics_addr: "127.0.0.1:0".parse().expect("address"),
        shutdown_grace: Duration::from_secs(1),
    }};
    let bound = svc::server::Server::with_config(&{svc_mod}::SERVICE, config).bind().await.expect("bind");
    let addr = format!("http://{{}}", bound.grpc_addr());
    let service = {svc_mod}::server({crate_name}::handlers::{trait_name}Service);
    tokio::spawn(bound.serve(service, std::future::pending()));
    let mut client = {trait_name}Client::connect(addr).await.expect("connect");
    let err = client.{fn_name}({argument}).await.expect_err("not implemented yet");
    assert_eq!(err.code(), svc::tonic::Code::Unimplemented);
    assert_eq!(err.message(), "{path} is not implemented yet");
}}
"#
    )
}

fn readme(name: &str, service: &ir::Service) -> String {
    format!(
        r#"# {name}

The `{full}` gRPC service, generated by protoc-gen-svc.

```sh
cargo run      # serves gRPC on :{port}, metrics and probes on :{metrics}
cargo test     # starts the server on 127.0.0.1:0 and calls it
```

- `proto/` holds the service definition; `build.rs` turns it into Rust on every build.
- `src/handlers.rs` holds the handlers; each answers UNIMPLEMENTED until you write it.
- Settings come from the `(svc.service)` / `(svc.method)` annotations, then a configuration file
  (`--config FILE` or `SVC_CONFIG`, TOML or YAML), then the environment: `SVC_GRPC_ADDR`,
  `SVC_METRICS_ADDR`, `SVC_LOG`, `SVC_LOG_FORMAT`, `SVC_TLS_CERT_FILE` + `SVC_TLS_KEY_FILE` (TLS;
  add `SVC_TLS_CLIENT_CA_FILE` for mutual TLS), `SVC_OTLP_ENDPOINT` (span export, e.g.
  `http://otel-collector:4318`), `OTEL_TRACES_SAMPLER` + `OTEL_TRACES_SAMPLER_ARG` (which spans
  are recorded, e.g. `parentbased_traceidratio` and `0.1`), and for services with `auth`, `SVC_JWT_SECRET`,
  `SVC_JWT_SECRET_FILE` or `SVC_JWT_PUBLIC_KEY_FILE`.
- Probe it: `grpcurl -plaintext localhost:{port} list`, `curl localhost:{metrics}/metrics`.

## Deploying

`Dockerfile` builds a small non-root image (run `cargo build` once first, so `Cargo.lock` exists;
the build needs the dependencies from a registry, not from local paths):

```sh
docker build -t {k8s_name}:0.1.0 .
```

`k8s/{k8s_name}/` holds the Kubernetes manifests, derived from the same annotations as the server
(ports, probes, grace period, resources): `kubectl apply -k k8s/{k8s_name}`. Regenerate them after
changing the annotations with `protoc-gen-svc generate -I proto --opt target=k8s -o k8s proto/...`.
"#,
        k8s_name = crate::emit::manifests::app_name(service),
        full = service.full_name,
        port = service.settings.port,
        metrics = service.settings.metrics_port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_scaffold_has_every_file() {
        let files = scaffold("hello-service", None, &Dependencies::Registry).expect("scaffold");
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        for expected in [
            "proto/hello/v1/hello.proto",
            "Cargo.toml",
            "build.rs",
            "src/lib.rs",
            "src/handlers.rs",
            "src/main.rs",
            "tests/service.rs",
            "README.md",
            "Dockerfile",
            ".dockerignore",
            "k8s/hello/deployment.yaml",
            "k8s/hello/kustomization.yaml",
        ] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        let handlers = &files.iter().find(|f| f.name == "src/handlers.rs").expect("handlers").content;
        assert!(handlers.contains("hello.v1.Hello/Greet is not implemented yet"));
        assert!(handlers.contains("type GreetManyStream"));
        assert!(syn::parse_file(handlers).is_ok(), "{handlers}");
        for f in files.iter().filter(|f| f.name.ends_with(".rs")) {
            assert!(syn::parse_file(&f.content).is_ok(), "{} parses:\n{}", f.name, f.content);
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "1abc", "-x", "a b", "a/b"] {
            assert!(scaffold(bad, None, &Dependencies::Registry).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn types_resolve_to_crate_paths() {
        assert_eq!(rust_type("greeter.v1.HelloRequest", "greeter.v1"), "crate::proto::greeter::v1::HelloRequest");
        assert_eq!(rust_type("a.Outer.Inner", "a"), "crate::proto::a::outer::Inner");
        assert_eq!(rust_type("google.protobuf.Empty", "google.protobuf"), "()");
        assert_eq!(rust_type("google.protobuf.Timestamp", "google.protobuf"), "svc::codegen::prost_types::Timestamp");
    }
}
