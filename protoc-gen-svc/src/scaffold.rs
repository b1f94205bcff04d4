//! `protoc-gen-svc new NAME`: a complete service crate — Cargo.toml, a
//! build script using the builder, the proto, `main.rs` serving the first
//! service with `<service>_svc::serve`, handlers that answer UNIMPLEMENTED
//! naming the method, a test that starts the server on 127.0.0.1:0 and calls
//! it, and a README. Computing the files does no I/O beyond reading the
//! proto; the CLI writes them.

use std::path::PathBuf;

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

/// Where the new crate's dependencies come from. Its `Cargo.toml` always
/// asks for the crates.io versions equal to this generator's, so the crate
/// can be moved, committed and shared.
#[derive(Debug, Clone)]
pub enum Dependencies {
    /// The crates.io releases.
    Registry,
    /// The same versions, built from a protoc-gen-svc checkout (its root
    /// directory) through a `[patch.crates-io]` in `.cargo/config.toml`.
    Checkout(PathBuf),
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
        None => (vec![("hello/v1/hello.proto".to_owned(), SAMPLE_PROTO.to_owned())], sample_input()?),
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
    let file = |name: &str, content: String| GeneratedFile { name: name.to_owned(), content };
    files.push(file("Cargo.toml", cargo_toml(name, service)));
    if let Dependencies::Checkout(root) = deps {
        files.push(file(".cargo/config.toml", cargo_config(root)));
    }
    files.push(file("build.rs", build_rs(&roots)));
    files.push(file("src/lib.rs", lib_rs(package, service)));
    files.push(file("src/handlers.rs", handlers_rs(package, service)));
    files.push(file("src/main.rs", main_rs(&crate_name, service)));
    files.push(file("tests/service.rs", test_rs(&crate_name, package, service)));
    files.push(file("examples/client.rs", client_rs(&crate_name, package, service)));
    files.push(file("README.md", readme(name, service)));
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
    let mut ignore = String::from("/target\n");
    if matches!(deps, Dependencies::Checkout(_)) {
        ignore.push_str("# Points cargo at a protoc-gen-svc checkout on this machine (`new --runtime-path`).\n/.cargo/config.toml\n");
    }
    files.push(file(".gitignore", ignore));
    Ok(files)
}

/// The sample proto, compiled.
fn sample_input() -> Result<crate::Input> {
    static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("svc-scaffold-{}-{n}", std::process::id()));
    let file = dir.join("hello/v1/hello.proto");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(file.parent().unwrap_or(&dir))?;
        std::fs::write(&file, SAMPLE_PROTO)
    };
    write().map_err(|e| Diagnostic::new("sample proto", format!("cannot be staged: {e}"), "check the temp dir"))?;
    let input = crate::source::compile(&[&file], &[&dir]);
    let _ = std::fs::remove_dir_all(&dir);
    input
}

/// The runtime features the service's annotations need.
fn runtime_features(service: &ir::Service) -> Vec<&'static str> {
    let mut features = Vec::new();
    if service.settings.auth.is_some() {
        features.push("jwt");
    }
    if service.settings.deploy.tls_secret.is_some() {
        features.push("tls");
    }
    if service.settings.client.compression == "zstd" {
        features.push("zstd");
    }
    if service.methods.iter().any(|m| !m.http.is_empty()) {
        features.push("rest");
    }
    features
}

/// Whether the test has to make an RSA key (the service accepts only RSA
/// algorithms), which is slow without optimization.
fn needs_rsa_test_key(service: &ir::Service) -> bool {
    service
        .settings
        .auth
        .as_ref()
        .is_some_and(|jwt| jwt.algorithms.iter().all(|a| a.starts_with("RS") || a.starts_with("PS")))
}

fn cargo_toml(name: &str, service: &ir::Service) -> String {
    let version = crate::VERSION;
    let features = runtime_features(service);
    let runtime = if features.is_empty() {
        format!("\"={version}\"")
    } else {
        let list: Vec<String> = features.iter().map(|f| format!("\"{f}\"")).collect();
        format!("{{ version = \"={version}\", features = [{}] }}", list.join(", "))
    };
    let rsa = if needs_rsa_test_key(service) {
        "\n# The test makes a fresh RSA key (the service accepts only RSA algorithms):\n\
         # optimized, that takes a fraction of a second instead of several.\n\
         [profile.dev.package.num-bigint-dig]\nopt-level = 3\n"
    } else {
        ""
    };
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
# The runtime and the generator go together: generated code checks that their
# versions match. Features: `jwt` (auth), `tls` (TLS, https span export),
# `rest` (HTTP/JSON from google.api.http bindings).
svc-runtime = {runtime}
tokio = {{ version = "1", features = ["rt-multi-thread", "macros"] }}

[build-dependencies]
protoc-gen-svc = {{ version = "={version}", default-features = false }}
{rsa}
[workspace]
"#
    )
}

/// `[patch.crates-io]` entries that build the crate against a checkout.
fn cargo_config(root: &std::path::Path) -> String {
    let path = |dir: &str| toml_string(&root.join(dir).display().to_string());
    format!(
        r#"# Builds this crate against the protoc-gen-svc checkout at {root} instead of
# the crates.io releases (written by `protoc-gen-svc new --runtime-path`).
# Delete this file to use the published crates. Docker builds do not read it:
# see README.md, "Deploying".
[patch.crates-io]
svc-runtime = {{ path = {runtime} }}
protoc-gen-svc = {{ path = {generator} }}
"#,
        root = root.display(),
        runtime = path("runtime"),
        generator = path("protoc-gen-svc"),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn build_rs(roots: &[String]) -> String {
    let call = call_lines(
        4,
        "protoc_gen_svc::configure().compile",
        &[format!("&[{}]", roots.join(", ")), "&[\"proto\"]".into()],
        "?;",
    );
    format!(
        r#"//! Generates the service code from proto/ (no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {{
{call}
    Ok(())
}}
"#
    )
}

/// Longest line rustfmt keeps (its default `max_width`).
const MAX_WIDTH: usize = 100;
/// Widest argument list rustfmt keeps on the call's line (`fn_call_width`).
const CALL_WIDTH: usize = 60;

/// `name(args...)` followed by `tail`, indented by `indent`, laid out as
/// rustfmt does: on one line when it fits, else one argument per line.
fn call_lines(indent: usize, name: &str, args: &[String], tail: &str) -> String {
    let pad = " ".repeat(indent);
    let joined = args.join(", ");
    let one = format!("{pad}{name}({joined}){tail}");
    if one.len() <= MAX_WIDTH && joined.len() <= CALL_WIDTH {
        return one;
    }
    let mut out = format!("{pad}{name}(\n");
    for a in args {
        out.push_str(&format!("{pad}    {a},\n"));
    }
    out.push_str(&format!("{pad}){tail}"));
    out
}

/// `crate::proto::a::b::Type` for a message of `package`, or the runtime's
/// well-known type.
fn rust_type(full_name: &str, package: &str) -> String {
    if full_name == "google.protobuf.Empty" {
        return "()".into();
    }
    if package == "google.protobuf" {
        return format!("svc_runtime::codegen::prost_types::{}", type_path(package, full_name));
    }
    let mut path = vec!["crate".to_owned(), "proto".to_owned()];
    path.extend(package.split('.').filter(|p| !p.is_empty()).map(to_snake));
    path.push(type_path(package, full_name));
    path.join("::")
}

/// A message type as the scaffold's code writes it: `pb::Type` for types of
/// the service's own package, a full path otherwise.
fn local_type(full: &str, pkg: &str, package: &ir::Package) -> String {
    if pkg == package.name && pkg != "google.protobuf" {
        format!("pb::{}", type_path(pkg, full))
    } else {
        rust_type(full, pkg)
    }
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

/// `async fn name(&self, param) -> ret {`, on one line when it fits.
fn signature(name: &str, param: &str, ret: &str) -> String {
    let one = format!("    async fn {name}(&self, {param}) -> {ret} {{");
    if one.len() <= MAX_WIDTH {
        one
    } else {
        format!("    async fn {name}(\n        &self,\n        {param},\n    ) -> {ret} {{")
    }
}

fn handlers_rs(package: &ir::Package, service: &ir::Service) -> String {
    let trait_name = to_upper_camel(&service.name);
    let server_mod = format!("{}_server", crate::ident::tonic_snake(&trait_name));
    let module = module_path(package);
    let mut methods = Vec::new();
    for m in &service.methods {
        let input = local_type(&m.input, &m.input_package, package);
        let output = local_type(&m.output, &m.output_package, package);
        let request =
            if m.client_streaming { format!("Request<Streaming<{input}>>") } else { format!("Request<{input}>") };
        let fn_name = to_snake(&m.name);
        let path = m.path.trim_start_matches('/');
        let body = call_lines(8, "Err", &[format!("unimplemented(\"{path}\")")], "");
        let mut text = String::new();
        let ret = if m.server_streaming {
            let assoc = format!("{}Stream", m.name);
            text.push_str(&format!("    type {assoc} = ResponseStream<{output}>;\n\n"));
            format!("Result<Response<Self::{assoc}>, Status>")
        } else {
            format!("Result<Response<{output}>, Status>")
        };
        text.push_str(&format!(
            "    /// `{path}`.\n{}\n{body}\n    }}\n",
            signature(&fn_name, &format!("_request: {request}"), &ret)
        ));
        methods.push(text);
    }
    let streaming = service.methods.iter().any(|m| m.server_streaming);
    let client_streaming = service.methods.iter().any(|m| m.client_streaming);
    let mut imports = vec!["Request", "Response", "Status"];
    if client_streaming {
        imports.push("Streaming");
    }
    let own_types = service.methods.iter().any(|m| {
        (m.input_package == package.name || m.output_package == package.name) && package.name != "google.protobuf"
    });
    let std_imports = if streaming { "use std::pin::Pin;\n\n" } else { "" };
    let stream_import = if streaming { "use svc_runtime::tonic::codegen::tokio_stream::Stream;\n" } else { "" };
    let pb = if own_types { format!("use crate::{module} as pb;\n") } else { String::new() };
    let stream_alias = if streaming {
        "\n/// What a server-streaming method returns: a stream of messages or errors.\n\
         pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;\n"
    } else {
        ""
    };
    let tonic_use = format!("use svc_runtime::tonic::{{self, {}}};", imports.join(", "));
    format!(
        r#"//! Handlers of `{full}`. Each answers UNIMPLEMENTED until you fill it in.

{std_imports}{stream_import}{tonic_use}

{pb}use crate::{module}::{server_mod}::{trait_name};
{stream_alias}
/// The `{full}` implementation.
#[derive(Debug, Default, Clone)]
pub struct {trait_name}Service;

#[tonic::async_trait]
impl {trait_name} for {trait_name}Service {{
{methods}}}

/// The answer of a method that is not written yet.
fn unimplemented(method: &str) -> Status {{
    Status::unimplemented(format!("{{method}} is not implemented yet"))
}}
"#,
        full = service.full_name,
        methods = methods.join("\n"),
    )
}

fn main_rs(crate_name: &str, service: &ir::Service) -> String {
    let svc_mod = crate::ident::svc_module(&service.name);
    let trait_name = to_upper_camel(&service.name);
    let serve = call_lines(
        4,
        &format!("{crate_name}::{svc_mod}::serve"),
        &[format!("{crate_name}::handlers::{trait_name}Service")],
        ".await",
    );
    format!(
        r#"//! Serves `{full}`: gRPC with health and reflection, /metrics, /healthz
//! and /readyz, graceful shutdown. Settings: the annotations, then the
//! SVC_* environment (SVC_GRPC_ADDR, SVC_METRICS_ADDR, ...).

#[tokio::main]
async fn main() -> Result<(), svc_runtime::server::Error> {{
{serve}
}}
"#,
        full = service.full_name
    )
}

/// The simplest request of `m`, as an expression: the default message, or
/// an empty stream of them for methods streaming requests.
fn default_argument(crate_name: &str, package: &ir::Package, m: &ir::Method) -> String {
    let input = local_type(&m.input, &m.input_package, package).replacen("crate::", &format!("{crate_name}::"), 1);
    if m.client_streaming {
        let item = if input == "()" { "()".to_owned() } else { input };
        format!("tokio_stream::iter(Vec::<{item}>::new())")
    } else if input == "()" {
        "()".to_owned()
    } else {
        format!("{input}::default()")
    }
}

/// `examples/client.rs`: every method called once through the generated
/// client, each answer printed.
fn client_rs(crate_name: &str, package: &ir::Package, service: &ir::Service) -> String {
    let svc_mod = format!("pb::{}", crate::ident::svc_module(&service.name));
    let module = module_path(package);
    let mut calls = String::new();
    let mut uses_stream = false;
    for m in &service.methods {
        let argument = default_argument(crate_name, package, m);
        uses_stream |= m.client_streaming;
        let path = m.path.trim_start_matches('/');
        let fn_name = to_snake(&m.name);
        calls.push_str(&format!(
            "    let request = {argument};\n    let answer = client.{fn_name}(request).await;\n{}\n",
            call_lines(4, "println!", &[format!("\"{path}: {{:?}}\""), "answer.map(drop)".into()], ";")
        ));
    }
    let mut uses =
        vec!["use svc_runtime::client::TokenSource;".to_owned(), format!("use {crate_name}::{module} as pb;")];
    if uses_stream {
        uses.push("use svc_runtime::tonic::codegen::tokio_stream;".to_owned());
    }
    uses.sort_by_key(|u| use_order(u));
    let port = service.settings.port;
    format!(
        r#"//! Calls every method of `{full}` once through the generated client
//! (connection pool, balancing, deadlines and retries from the annotations)
//! and prints each answer. Start the server (`cargo run`), then:
//! `cargo run --example client [TARGET]` (default `127.0.0.1:{port}`; any
//! gRPC target, e.g. `dns:///<service>.<namespace>.svc:{port}`). With `SVC_TOKEN`
//! set, calls carry it as their bearer token.

{uses}

#[tokio::main]
async fn main() -> Result<(), svc_runtime::Error> {{
    let default = "127.0.0.1:{port}".to_owned();
    let target = std::env::args().nth(1).unwrap_or(default);
    let mut builder = {svc_mod}::Client::builder(&target);
    if let Ok(token) = std::env::var("SVC_TOKEN") {{
        builder = builder.token(TokenSource::Static(token));
    }}
    let mut client = builder.build().await?;
{calls}    Ok(())
}}
"#,
        full = service.full_name,
        uses = uses.join("\n"),
    )
}

fn test_rs(crate_name: &str, package: &ir::Package, service: &ir::Service) -> String {
    let svc_mod = format!("pb::{}", crate::ident::svc_module(&service.name));
    let trait_name = to_upper_camel(&service.name);
    let module = module_path(package);
    let auth = service.settings.auth.is_some();
    // Every role a method asks for, so the token may call them all.
    let mut roles: Vec<&str> = service.methods.iter().flat_map(|m| m.policy.roles.iter().map(String::as_str)).collect();
    roles.sort_unstable();
    roles.dedup();
    let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    let mut calls = String::new();
    let mut uses_stream = false;
    for m in &service.methods {
        let argument = default_argument(crate_name, package, m);
        uses_stream |= m.client_streaming;
        let path = m.path.trim_start_matches('/');
        let fn_name = to_snake(&m.name);
        let request_line = if auth {
            call_lines(4, "let request = authorized", &[argument, "&token".into()], ";")
        } else {
            format!("    let request = {argument};")
        };
        calls.push_str(&format!(
            "\n{request_line}\n{}\n",
            call_lines(
                4,
                "assert_unimplemented",
                &[format!("client.{fn_name}(request).await"), format!("\"{path}\"")],
                ";"
            )
        ));
    }
    let mut uses = Vec::new();
    if auth {
        uses.push("use svc_runtime::auth::TestIssuer;".to_owned());
    }
    uses.push("use svc_runtime::server::{Config, Server};".to_owned());
    if uses_stream {
        uses.push("use svc_runtime::tonic::codegen::tokio_stream;".to_owned());
    }
    if auth {
        uses.push("use svc_runtime::tonic::metadata::{Ascii, MetadataValue};".to_owned());
        uses.push("use svc_runtime::tonic::{Code, Request, Status};".to_owned());
    } else {
        uses.push("use svc_runtime::tonic::{Code, Status};".to_owned());
    }
    // The crate's own name may equal the `<service>_svc` module's (a crate
    // called `vault-svc`), so the module is reached through `pb`.
    uses.push(format!("use {crate_name}::handlers;"));
    uses.push(format!("use {crate_name}::{module} as pb;"));
    uses.sort_by_key(|u| use_order(u));
    let client = chain_lines(
        4,
        "let mut client = ",
        &[&format!("{svc_mod}::Client::connect(&addr)"), "await", "expect(\"connect\")"],
    );
    let (doc, server, setup, helper) = if auth {
        let bearer =
            call_lines(4, "let bearer = issuer.bearer", &["\"test\"".into(), format!("&[{}]", roles.join(", "))], ";");
        (
            "//! Starts the server on 127.0.0.1:0 and calls every method, with a token\n//! from a key the test makes (the service requires JWT authentication).",
            format!(
                "    let Some(jwt) = {svc_mod}::SERVICE.auth else {{\n        panic!(\"the service is annotated with auth\")\n    }};\n    let issuer = TestIssuer::new(&jwt);\n    let server = Server::with_config(&{svc_mod}::SERVICE, config);\n    let server = server.verifier(issuer.verifier());\n"
            ),
            format!("{bearer}\n    let token: MetadataValue<Ascii> = bearer.parse().expect(\"a token is ASCII\");\n"),
            "\n/// A request carrying `token` as its bearer token.\nfn authorized<T>(message: T, token: &MetadataValue<Ascii>) -> Request<T> {\n    let mut request = Request::new(message);\n    let metadata = request.metadata_mut();\n    metadata.insert(\"authorization\", token.clone());\n    request\n}\n",
        )
    } else {
        (
            "//! Starts the server on 127.0.0.1:0 and calls every method.",
            format!("    let server = Server::with_config(&{svc_mod}::SERVICE, config);\n"),
            String::new(),
            "",
        )
    };
    format!(
        r#"{doc}

use std::time::Duration;

{uses}

#[tokio::test]
async fn every_method_answers_unimplemented() {{
    let config = Config {{
        grpc_addr: "127.0.0.1:0".parse().expect("address"),
        metrics_addr: "127.0.0.1:0".parse().expect("address"),
        http_addr: "127.0.0.1:0".parse().expect("address"),
        shutdown_grace: Duration::from_secs(1),
    }};
{server}    let bound = server.bind().await.expect("bind");
    let addr = bound.grpc_addr().to_string();
    let service = {svc_mod}::server(handlers::{trait_name}Service);
    tokio::spawn(bound.serve(service, std::future::pending()));
{client}
{setup}{calls}}}

/// The handlers answer UNIMPLEMENTED, naming the method, until written. A
/// default request that the proto's `buf.validate` rules refuse never
/// reaches its handler: the server answers INVALID_ARGUMENT listing the
/// violations instead.
fn assert_unimplemented<T>(result: Result<T, Status>, method: &str) {{
    let Err(status) = result else {{
        panic!("{{method}} answered; this test expects UNIMPLEMENTED until it is written")
    }};
    if status.code() == Code::InvalidArgument {{
        assert!(
            status.message().starts_with("validation failed:"),
            "{{method}}: {{status:?}}"
        );
        return;
    }}
    assert_eq!(status.code(), Code::Unimplemented, "{{method}}: {{status:?}}");
    assert_eq!(status.message(), format!("{{method}} is not implemented yet"));
}}
{helper}"#,
        uses = uses.join("\n"),
    )
}

/// The order rustfmt gives `use` lines: path by path segment, a brace
/// group after plain names.
fn use_order(line: &str) -> Vec<String> {
    let path = line.trim_start_matches("use ").trim_end_matches(';');
    let path = path.split(" as ").next().unwrap_or(path);
    path.split("::").map(|seg| if seg.starts_with('{') { format!("~{seg}") } else { seg.to_owned() }).collect()
}

/// `lhs` followed by a method chain (`first.second.third;`), indented by
/// `indent`, laid out as rustfmt does: on one line when the chain is short
/// enough (`chain_width`), else one element per line.
fn chain_lines(indent: usize, lhs: &str, parts: &[&str]) -> String {
    let pad = " ".repeat(indent);
    let chain = parts.join(".");
    let one = format!("{pad}{lhs}{chain};");
    if one.len() <= MAX_WIDTH && chain.len() <= CALL_WIDTH {
        return one;
    }
    let mut out = format!("{pad}{lhs}{}", parts[0]);
    for p in &parts[1..] {
        out.push_str(&format!("\n{pad}    .{p}"));
    }
    out.push(';');
    out
}

fn readme(name: &str, service: &ir::Service) -> String {
    let features = runtime_features(service);
    let features = if features.is_empty() {
        "none (add `jwt` for `auth` annotations, `tls` for TLS or `https://` span export)".to_owned()
    } else {
        features.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
    };
    format!(
        r#"# {name}

The `{full}` gRPC service, generated by protoc-gen-svc.

```sh
cargo run      # serves gRPC on :{port}, metrics and probes on :{metrics}
cargo test     # starts the server on 127.0.0.1:0 and calls every method
cargo run --example client [TARGET]   # calls every method through the generated client
```

- `proto/` holds the service definition; `build.rs` turns it into Rust on every build.
- `src/handlers.rs` holds the handlers; each answers UNIMPLEMENTED until you write it, and
  `tests/service.rs` checks that (change it as you fill them in).
- Runtime features in `Cargo.toml`: {features}.
- Settings come from the `(svc.service)` / `(svc.method)` annotations, then a configuration file
  (`--config FILE` or `SVC_CONFIG`, TOML or YAML), then the environment: `SVC_GRPC_ADDR`,
  `SVC_METRICS_ADDR`, `SVC_LOG`, `SVC_LOG_FORMAT`, `SVC_TLS_CERT_FILE` + `SVC_TLS_KEY_FILE` (TLS;
  add `SVC_TLS_CLIENT_CA_FILE` for mutual TLS), `SVC_OTLP_ENDPOINT` (span export, e.g.
  `http://otel-collector:4318`), `OTEL_TRACES_SAMPLER` + `OTEL_TRACES_SAMPLER_ARG` (which spans
  are recorded, e.g. `parentbased_traceidratio` and `0.1`), and for services with `auth`, `SVC_JWT_SECRET`,
  `SVC_JWT_SECRET_FILE` or `SVC_JWT_PUBLIC_KEY_FILE`.
- Probe it: `grpcurl -plaintext localhost:{port} list`, `curl localhost:{metrics}/metrics`.

## Deploying

`Dockerfile` builds a small non-root image from this directory (run `cargo build` once first, so
`Cargo.lock` exists):

```sh
docker build -t {k8s_name}:0.1.0 .
```

The build takes its crates from crates.io, or, when a `vendor/` directory is present, from there
alone (no network), with `vendor/config.toml` as its cargo configuration:

```sh
cargo vendor vendor > vendor.toml && mv vendor.toml vendor/config.toml
```

The host's `.cargo/` is not sent to the build (`.dockerignore`). A crate made with
`protoc-gen-svc new --runtime-path CHECKOUT` builds against that checkout, whose crates are not on
crates.io: run `CHECKOUT/scripts/vendor.sh .` here instead, which also packages them into
`vendor/`.

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
            "examples/client.rs",
            "README.md",
            "Dockerfile",
            ".dockerignore",
            "k8s/hello/deployment.yaml",
            "k8s/hello/kustomization.yaml",
        ] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        let handlers = &files.iter().find(|f| f.name == "src/handlers.rs").expect("handlers").content;
        assert!(handlers.contains("Err(unimplemented(\"hello.v1.Hello/Greet\"))"), "{handlers}");
        assert!(handlers.contains("type GreetManyStream = ResponseStream<pb::GreetReply>;"), "{handlers}");
        let test = &files.iter().find(|f| f.name == "tests/service.rs").expect("test").content;
        for method in ["greet", "greet_many"] {
            assert!(test.contains(&format!("client.{method}(request).await")), "{method} is called:\n{test}");
        }
        assert!(syn::parse_file(handlers).is_ok(), "{handlers}");
        for f in files.iter().filter(|f| f.name.ends_with(".rs")) {
            assert!(syn::parse_file(&f.content).is_ok(), "{} parses:\n{}", f.name, f.content);
        }
    }

    #[test]
    fn dependencies_are_crates_io_versions_patched_only_for_a_checkout() {
        let content =
            |files: &[GeneratedFile], name: &str| files.iter().find(|f| f.name == name).map(|f| f.content.clone());
        let published = scaffold("hello-service", None, &Dependencies::Registry).expect("scaffold");
        let manifest = content(&published, "Cargo.toml").expect("Cargo.toml");
        assert!(manifest.contains(&format!("svc-runtime = \"={}\"", crate::VERSION)), "{manifest}");
        assert!(
            manifest.contains(&format!(
                "protoc-gen-svc = {{ version = \"={}\", default-features = false }}",
                crate::VERSION
            ))
        );
        assert!(!manifest.contains("path"), "{manifest}");
        assert_eq!(content(&published, ".cargo/config.toml"), None);
        let root = PathBuf::from("/src/protoc-gen-svc");
        let patched = scaffold("hello-service", None, &Dependencies::Checkout(root)).expect("scaffold");
        assert_eq!(content(&patched, "Cargo.toml"), Some(manifest), "the same requirements");
        let config = content(&patched, ".cargo/config.toml").expect("config");
        assert!(
            config.contains("[patch.crates-io]\nsvc-runtime = { path = \"/src/protoc-gen-svc/runtime\" }\n"),
            "{config}"
        );
        assert!(content(&patched, ".gitignore").expect("gitignore").contains("/.cargo/config.toml"));
    }

    #[test]
    fn annotations_turn_runtime_features_on() {
        let packages = crate::read_ir(&sample_input().expect("sample")).expect("ir");
        let mut service = packages[0].services[0].clone();
        assert!(runtime_features(&service).is_empty());
        let jwt = |algorithm: &str| ir::JwtSettings {
            issuer: "https://issuer.test".into(),
            audiences: vec!["api".into()],
            algorithms: vec![algorithm.into()],
            roles_claim: "roles".into(),
            leeway: std::time::Duration::from_secs(30),
        };
        service.settings.auth = Some(jwt("RS256"));
        service.settings.deploy.tls_secret = Some("tls".into());
        assert_eq!(runtime_features(&service), ["jwt", "tls"]);
        assert!(needs_rsa_test_key(&service));
        assert!(cargo_toml("x", &service).contains("[profile.dev.package.num-bigint-dig]"));
        service.settings.auth = Some(jwt("ES256"));
        assert!(!cargo_toml("x", &service).contains("num-bigint-dig"));
    }

    #[test]
    fn long_calls_are_laid_out_as_rustfmt_does() {
        assert_eq!(call_lines(4, "f", &["a".into(), "b".into()], ";"), "    f(a, b);");
        let long = "x".repeat(40);
        assert_eq!(
            call_lines(4, "f", &[long.clone(), long.clone()], ";"),
            format!("    f(\n        {long},\n        {long},\n    );")
        );
        assert_eq!(chain_lines(4, "let c = ", &["a()", "await"]), "    let c = a().await;");
        assert_eq!(chain_lines(0, "", &[&"y".repeat(70), "await"]), format!("{}\n    .await;", "y".repeat(70)));
        let mut uses = vec!["use b::{c, d};", "use b::c::D;", "use b::c as e;", "use a::z;"];
        uses.sort_by_key(|u| use_order(u));
        assert_eq!(uses, ["use a::z;", "use b::c as e;", "use b::c::D;", "use b::{c, d};"]);
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
        assert_eq!(
            rust_type("google.protobuf.Timestamp", "google.protobuf"),
            "svc_runtime::codegen::prost_types::Timestamp"
        );
    }
}
