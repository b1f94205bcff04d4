//! protoc-gen-svc: generates complete Rust gRPC services from annotated
//! .proto files.
//!
//! One engine serves every entry point:
//!
//! - the protoc/buf plugin ([`plugin::execute`]),
//! - `protoc-gen-svc generate` (embedded compiler, no protoc),
//! - the build-script API ([`Builder`], [`configure`]),
//! - the `svc_runtime::proto!` proc-macro ([`macro_support`]).
//!
//! All of them build an [`Input`] (an encoded `FileDescriptorSet` with
//! custom options kept) and call [`generate`], which does no I/O.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     protoc_gen_svc::configure().compile(&["proto/shop/v1/shop.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```

pub mod annotations;
pub mod builder;
pub mod cel;
pub mod editions;
pub mod emit;
pub mod error;
pub mod ident;
pub mod ir;
pub mod macro_support;
pub mod params;
pub mod plugin;
pub mod protoc;
#[cfg(feature = "manifests")]
pub mod scaffold;
pub mod source;
pub mod units;

pub use builder::{Builder, configure};
pub use emit::GeneratedFile;
pub use error::{Diagnostic, Error, Result};
pub use params::{Options, Target};
pub use source::Input;

use std::collections::HashMap;

/// Version of the generator; generated code checks the runtime against it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds the descriptor pool for `input`, with custom options kept, and
/// checks that every name is an identifier.
pub fn descriptor_pool(input: &Input) -> Result<prost_reflect::DescriptorPool> {
    let pool = build_pool(input)?;
    check_names(&pool)?;
    Ok(pool)
}

fn build_pool(input: &Input) -> Result<prost_reflect::DescriptorPool> {
    // The pool is built without source info, which is most of a request's
    // bytes and is read only for comments (prost-build decodes it apart)
    // and for the line numbers of diagnostics (read back when one is due).
    if let Ok(files) = source::set_files(&input.descriptor_set) {
        let stripped: Vec<Vec<u8>> = files.iter().map(|f| source::strip_field(f, source::SOURCE_CODE_INFO)).collect();
        let set = source::encode_set(stripped.iter().map(Vec::as_slice));
        drop(stripped);
        if let Ok(Ok(pool)) = std::panic::catch_unwind(|| prost_reflect::DescriptorPool::decode(set.as_slice())) {
            return Ok(pool);
        }
    }
    // The descriptors are wrong: decode them with source info for an error
    // that names the line. prost-reflect can panic while describing what is
    // wrong with some malformed descriptor sets (found by the property
    // tests); a plugin must answer with an error instead.
    let built = std::panic::catch_unwind(|| {
        prost_reflect::DescriptorPool::decode(input.descriptor_set.as_slice()).map_err(|e| {
            let mut d = Diagnostic::new(
                "descriptors",
                e.to_string(),
                "make sure every import is passed along (protoc/buf do this) and that the files are proto2 or proto3",
            );
            if let Some(file) = e.file() {
                d = d.in_file(file);
            }
            if let Some(loc) = e.line() {
                d.line = Some(loc as u32 + 1);
            }
            Error::one(d)
        })
    });
    built.unwrap_or_else(|_| {
        Err(Error::one(Diagnostic::new(
            "descriptors",
            "are malformed (their checker failed on them)",
            "pass descriptors produced by protoc, buf or protox; if they were, please report this with the .proto files",
        )))
    })
}

/// Rejects names that are not protobuf identifiers. protoc and buf never
/// send them, but a hand-made or corrupt request can, and they would turn
/// into Rust that does not parse.
pub fn check_names(pool: &prost_reflect::DescriptorPool) -> Result<()> {
    fn ident(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }
    let mut errors = Vec::new();
    let mut check = |file: &str, kind: &str, full: &str, name: &str| {
        if !ident(name) {
            errors.push(
                Diagnostic::new(
                    format!("{kind} {full}"),
                    format!("{name:?} is not a valid protobuf identifier"),
                    "use letters, digits and underscores, not starting with a digit",
                )
                .in_file(file),
            );
        }
    };
    for file in pool.files() {
        let f = file.name();
        if !file.package_name().is_empty() {
            for part in file.package_name().split('.') {
                check(f, "package", file.package_name(), part);
            }
        }
        for s in file.services() {
            check(f, "service", s.full_name(), s.name());
            for m in s.methods() {
                check(f, "rpc", m.full_name(), m.name());
            }
        }
    }
    for m in pool.all_messages() {
        let f = m.parent_file();
        check(f.name(), "message", m.full_name(), m.name());
        for field in m.fields() {
            check(f.name(), "field", field.full_name(), field.name());
        }
        for o in m.oneofs() {
            check(f.name(), "oneof", o.full_name(), o.name());
        }
    }
    for e in pool.all_enums() {
        let f = e.parent_file();
        check(f.name(), "enum", e.full_name(), e.name());
        for v in e.values() {
            check(f.name(), "enum value", v.full_name(), v.name());
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Error { diagnostics: errors }) }
}

/// Reads the annotations of the files to generate into the IR.
pub fn read_ir(input: &Input) -> Result<Vec<ir::Package>> {
    let pool = descriptor_pool(input)?;
    annotations::read_packages(&pool, input)
}

/// Generates every output file for `input`. Does no I/O, except reading
/// template overrides when `templates=DIR` is given.
pub fn generate(input: &Input, options: &Options) -> Result<Vec<GeneratedFile>> {
    let mut files = Vec::new();
    let (packages, documents) = if options.emits_rust() {
        let (packages, code, documents) = rust_code(input, options)?;
        files.extend(emit::rust::files(code, options)?);
        (packages, documents)
    } else {
        let pool = descriptor_pool(input)?;
        let packages = annotations::read_packages(&pool, input)?;
        let documents = emit::openapi::documents(&pool, &input.descriptor_set, &packages);
        (packages, documents)
    };
    if matches!(options.target, Target::Openapi | Target::All) {
        files.extend(openapi_files(&packages, &documents, options.target)?);
    }
    let (k8s, docker) =
        (matches!(options.target, Target::K8s | Target::All), matches!(options.target, Target::Docker | Target::All));
    if k8s || docker {
        files.extend(manifests(&packages, k8s, docker, options)?);
    }
    Ok(files)
}

/// The IR and each package's Rust code. prost-build, which needs no
/// descriptor pool, runs on a thread of its own while the pool, the IR and
/// the descriptor statics are built; then the packages are formatted on
/// every core.
#[allow(clippy::type_complexity)]
fn rust_code(
    input: &Input,
    options: &Options,
) -> Result<(Vec<ir::Package>, Vec<emit::rust::PackageCode>, HashMap<String, String>)> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let files = emit::rust::SetFiles::read(&input.descriptor_set)?;
    let (front, prost) = std::thread::scope(|scope| {
        // Its panics on malformed descriptors are caught and reported (or
        // moot, when the pool below fails first): keep them off stderr.
        let prost =
            scope.spawn(|| emit::rust::quietly(|| emit::rust::prost_code(&files, &input.files_to_generate, options)));
        let front = descriptor_pool(input).and_then(|pool| {
            let packages = annotations::read_packages(&pool, input)?;
            let plan = emit::rust::descriptor_plan(&pool, &files, &packages, options);
            let validators = emit::rust::validators(&pool, &input.descriptor_set, &packages, options)?;
            let documents = emit::openapi::documents(&pool, &input.descriptor_set, &packages);
            Ok((packages, plan, validators, documents))
        });
        (front, prost.join())
    });
    // The descriptors' and annotations' errors come first: they say what is
    // wrong with the input, which prost-build's may only echo.
    let (packages, plan, validators, documents) = front?;
    let prost = prost.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    let code = emit::rust::assemble(prost, plan, validators, &documents, &packages, options, threads)?;
    Ok((packages, code, documents))
}

/// `<service-name>/openapi.json` for each service with HTTP bindings.
fn openapi_files(
    packages: &[ir::Package],
    documents: &HashMap<String, String>,
    target: Target,
) -> Result<Vec<GeneratedFile>> {
    let mut files = Vec::new();
    for service in packages.iter().flat_map(|p| &p.services) {
        if let Some(document) = documents.get(&service.full_name) {
            let name = crate::ident::kebab_name(&service.name);
            files.push(GeneratedFile { name: format!("{name}/openapi.json"), content: document.clone() });
        }
    }
    if files.is_empty() && target == Target::Openapi {
        return Err(Error::one(Diagnostic::new(
            "parameter target=openapi",
            "no service of the files to generate has a google.api.http binding",
            "annotate methods with option (google.api.http) = { get: \"/v1/...\" } (import google/api/annotations.proto), or drop target=openapi",
        )));
    }
    Ok(files)
}

/// The Kubernetes manifests and Dockerfiles of `packages`.
#[cfg(feature = "manifests")]
fn manifests(packages: &[ir::Package], k8s: bool, docker: bool, options: &Options) -> Result<Vec<GeneratedFile>> {
    let overrides = match &options.templates {
        Some(dir) => emit::templates::Overrides::load(dir)?,
        None => emit::templates::Overrides::none(),
    };
    emit::manifests::emit(packages, emit::manifests::Targets { k8s, docker }, &overrides, Default::default())
}

/// Without the `manifests` feature there are no templates to render.
#[cfg(not(feature = "manifests"))]
fn manifests(_: &[ir::Package], _: bool, _: bool, options: &Options) -> Result<Vec<GeneratedFile>> {
    Err(Error::one(Diagnostic::new(
        format!("parameter target={}", options.target.name()),
        "asks for Kubernetes manifests or a Dockerfile, but this build of protoc-gen-svc lacks its `manifests` feature",
        "enable it (features = [\"manifests\"] on protoc-gen-svc's line in Cargo.toml), or run the protoc-gen-svc binary",
    )))
}
