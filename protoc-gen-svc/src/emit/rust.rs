//! `target=rust`: one self-contained `<package>.rs` per package (prost
//! messages, tonic service traits, servers and clients, service specs, the
//! package's encoded descriptors; see [`super::descriptors`]) plus the
//! include file.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use proc_macro2::TokenStream;
use prost::Message;
use prost_reflect::DescriptorPool;
use quote::quote;

use super::modfile::{self, Body};
use super::{GeneratedFile, descriptors, header, paths, prost_text, spec};
use crate::error::{Diagnostic, Result};
use crate::ir;
use crate::params::Options;
use crate::source::FileHeader;

/// Generated code of one package, before assembly.
pub struct PackageCode {
    /// Module path parts (escaped Rust identifiers).
    pub module: Vec<String>,
    /// File name, e.g. `greeter.v1.rs`.
    pub file_name: String,
    /// Formatted code without the header.
    pub code: String,
}

/// The output files for the packages' code: one per package, plus the
/// include file.
pub fn files(codes: Vec<PackageCode>, options: &Options) -> Result<Vec<GeneratedFile>> {
    let mut modules = Vec::with_capacity(codes.len());
    let mut files = Vec::with_capacity(codes.len() + 1);
    for p in codes {
        let mut content = header();
        content.push_str(&p.code);
        modules.push(p.module);
        files.push(GeneratedFile { name: p.file_name, content });
    }
    if !options.include_file.is_empty() && !files.is_empty() {
        if files.iter().any(|f| f.name == options.include_file) {
            return Err(Diagnostic::new(
                "parameter include_file",
                format!("{:?} is also the name of a package file", options.include_file),
                "choose another include_file name, e.g. include_file=mod.rs",
            )
            .into());
        }
        let tree: Vec<(Vec<String>, Body<'_>)> =
            modules.into_iter().zip(&files).map(|(module, file)| (module, Body::Include(file.name.as_str()))).collect();
        let content = modfile::render(&tree);
        files.push(GeneratedFile { name: options.include_file.clone(), content });
    }
    Ok(files)
}

/// The files of a descriptor set by name, with their headers, undecoded.
pub struct SetFiles<'a> {
    by_name: HashMap<String, (&'a [u8], FileHeader)>,
    /// Names in set order.
    order: Vec<String>,
}

impl<'a> SetFiles<'a> {
    /// Indexes the files of an encoded `FileDescriptorSet`.
    pub fn read(descriptor_set: &'a [u8]) -> Result<SetFiles<'a>> {
        let raw = crate::source::set_files(descriptor_set).map_err(|e| {
            Diagnostic::new(
                "descriptor set",
                format!("cannot be decoded: {e}"),
                "pass descriptors produced by protoc, buf or protox",
            )
        })?;
        let mut by_name = HashMap::with_capacity(raw.len());
        let mut order = Vec::with_capacity(raw.len());
        for bytes in raw {
            let head = FileHeader::decode(bytes).unwrap_or_default();
            let name = head.name.clone().unwrap_or_default();
            order.push(name.clone());
            by_name.insert(name, (bytes, head));
        }
        Ok(SetFiles { by_name, order })
    }
}

/// prost-build's output: message code per module, service code per package.
pub struct ProstCode {
    modules: HashMap<prost_build::Module, String>,
    services: BTreeMap<String, String>,
}

/// Generates each package's code (shared by the file emitter and the macro).
///
/// `threads` bounds the threads formatting packages in parallel; the
/// proc-macro passes 1 (the compiler's token API works on its thread only).
pub fn package_code(
    pool: &DescriptorPool,
    descriptor_set: &[u8],
    packages: &[ir::Package],
    options: &Options,
    threads: usize,
) -> Result<Vec<PackageCode>> {
    let files = SetFiles::read(descriptor_set)?;
    let wanted: Vec<String> = packages.iter().flat_map(|p| p.files.iter().cloned()).collect();
    let prost = prost_code(&files, &wanted, options)?;
    let plan = descriptor_plan(pool, &files, packages, options);
    let validators = validators(pool, descriptor_set, packages, options)?;
    let documents = super::openapi::documents(pool, descriptor_set, packages);
    assemble(prost, plan, validators, &documents, packages, options, threads)
}

/// Each package's validators (`validate=true` with the messages), by
/// package name.
pub fn validators(
    pool: &DescriptorPool,
    descriptor_set: &[u8],
    packages: &[ir::Package],
    options: &Options,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    if !(options.messages && options.validate) {
        return Ok(out);
    }
    let generated: HashSet<&str> = packages.iter().flat_map(|p| p.files.iter().map(String::as_str)).collect();
    let external: Vec<String> = options.extern_paths.iter().map(|(proto, _)| proto.clone()).collect();
    for package in packages {
        let code = super::validate::package(
            pool,
            &package.name,
            &package.files,
            &generated,
            &external,
            descriptor_set,
            &options.runtime_crate,
        )?;
        out.insert(package.name.clone(), code);
    }
    Ok(out)
}

/// Runs prost-build (messages, and tonic-build for services) on `wanted`
/// and everything they import. Needs no descriptor pool, so it can run
/// while one is built.
pub fn prost_code(files: &SetFiles<'_>, wanted: &[String], options: &Options) -> Result<ProstCode> {
    let SetFiles { by_name, order } = files;
    // prost-build derives traits by walking every message a field refers to,
    // so it is given the files to generate and all their imports; only the
    // modules of the requested packages are kept.
    let needed = transitive_imports(wanted, by_name);
    let decode = |keep_source_info: bool| -> Result<Vec<(prost_build::Module, prost_types::FileDescriptorProto)>> {
        let mut requests = Vec::new();
        for name in order.iter().filter(|n| needed.contains(n.as_str())) {
            let Some((bytes, _)) = by_name.get(name.as_str()) else { continue };
            let mut fd = prost_types::FileDescriptorProto::decode(*bytes).map_err(|e| {
                Diagnostic::new(
                    format!("file {name}"),
                    format!("descriptor cannot be decoded: {e}"),
                    "regenerate the descriptors",
                )
                .in_file(name.as_str())
            })?;
            if !keep_source_info {
                fd.source_code_info = None;
            }
            requests.push((prost_build::Module::from_protobuf_package_name(fd.package()), fd));
        }
        Ok(requests)
    };

    let (modules, services) = match run_prost(options, decode(true)?) {
        Ok(out) => out,
        // prost-build panics when source info lacks an element's location
        // (its comments lookup unwraps). Such a request is malformed, but
        // the code can still be generated without comments.
        Err(Panicked(_)) => match run_prost(options, decode(false)?) {
            Ok(out) => out,
            Err(Panicked(why)) => {
                return Err(Diagnostic::new(
                    "prost code generation",
                    format!("prost-build failed on these descriptors ({why})"),
                    "check that the request comes from protoc or buf; if it does, please report this with the .proto files",
                )
                .into());
            }
        },
    };
    let modules = modules.map_err(|e| {
        Diagnostic::new(
            "prost code generation",
            e.to_string(),
            "check the extern_path, type_attribute and field_attribute parameters",
        )
    })?;
    Ok(ProstCode { modules, services })
}

/// The packages' descriptor statics. Descriptors travel with the services,
/// so a messages-only run (server=false, client=false) can be combined with
/// a services-only run (messages=false) in one module.
pub fn descriptor_plan(
    pool: &DescriptorPool,
    files: &SetFiles<'_>,
    packages: &[ir::Package],
    options: &Options,
) -> Option<descriptors::Plan> {
    (options.server || options.client).then(|| {
        let names: Vec<(&str, &[String])> = packages.iter().map(|p| (p.name.as_str(), p.files.as_slice())).collect();
        descriptors::Plan::new(pool, &names, &files.by_name, &options.runtime_crate)
    })
}

/// Assembles each package's code from prost-build's output, the typed
/// errors, the service specs and the descriptor statics.
pub fn assemble(
    prost: ProstCode,
    plan: Option<descriptors::Plan>,
    mut validators: HashMap<String, String>,
    documents: &HashMap<String, String>,
    packages: &[ir::Package],
    options: &Options,
    threads: usize,
) -> Result<Vec<PackageCode>> {
    let rt: TokenStream = options.runtime_crate.parse().unwrap_or_else(|_| quote!(::svc_runtime));
    let rt_text = options.runtime_crate.clone();
    // Each package's code is assembled here, then parsed, rewritten and
    // formatted on `threads` threads (the bulk of the work; packages are
    // independent).
    let ProstCode { mut modules, mut services } = prost;
    let mut bodies = Vec::with_capacity(packages.len());
    for package in packages {
        let module = prost_build::Module::from_protobuf_package_name(&package.name);
        // prost-build's message code is finished as text; the services and
        // the items below go through syn and prettyplease.
        let messages = if options.messages { modules.remove(&module).unwrap_or_default() } else { String::new() };
        let mut body = services.remove(&package.name).unwrap_or_default();
        let mut extra = TokenStream::new();
        let version = crate::VERSION;
        extra.extend(quote! {
            const _: () = #rt::codegen::require_version(#version);
        });
        // Typed errors belong to their enums, so they come with the messages
        // (and not for enums mapped to other crates with extern_path).
        if options.messages {
            for e in &package.error_enums {
                let fq = format!(".{}", e.full_name);
                let external = options
                    .extern_paths
                    .iter()
                    .any(|(proto, _)| fq == *proto || fq.starts_with(&format!("{}.", proto.trim_end_matches('.'))));
                if !external {
                    extra.extend(spec::typed_errors(e, &package.name, &rt));
                }
            }
        }
        // Service specs travel with the services (see the descriptors).
        if options.server || options.client {
            for service in &package.services {
                let document = documents.get(&service.full_name).map(String::as_str);
                extra.extend(spec::service_module(service, &rt, options.server, options.client, document));
            }
        }
        body.push_str(&extra.to_string());
        if let Some(code) = validators.remove(&package.name) {
            body.push_str(&code);
        }
        bodies.push((messages, body));
    }
    drop((modules, services));
    // Methods whose servers validate requests, by package.
    let generated_packages: HashSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let external: Vec<String> = options.extern_paths.iter().map(|(proto, _)| proto.clone()).collect();
    let validated: HashMap<String, HashSet<String>> = if options.messages && options.validate && options.server {
        packages
            .iter()
            .map(|p| (p.name.clone(), super::validate::validated_methods(p, &generated_packages, &external)))
            .collect()
    } else {
        HashMap::new()
    };

    let finish = |i: usize, (messages, body): (String, String)| -> Result<PackageCode> {
        let package = &packages[i];
        let mut file = syn::parse_file(&body).map_err(|e| {
            Diagnostic::new(
                format!("package {}", package.name),
                format!("generated code does not parse: {e}"),
                "this is a protoc-gen-svc bug; please report it with the input .proto",
            )
        })?;
        drop(body);
        paths::rewrite(&mut file, &rt_text);
        if let Some(methods) = validated.get(&package.name) {
            super::validate::use_validating_codecs(&mut file, methods, &rt_text);
        }
        let mut sources = package.files.clone();
        sources.sort();
        let mut code = format!("// source: {}\n", sources.join(", "));
        code.push_str(&prost_text::finish(&messages, &rt_text));
        drop(messages);
        code.push_str(&prettyplease::unparse(&file));
        if let Some(plan) = &plan {
            code.push_str(plan.text(&package.name));
        }
        let module = prost_build::Module::from_protobuf_package_name(&package.name);
        Ok(PackageCode {
            module: module.parts().map(str::to_owned).collect(),
            file_name: if package.name.is_empty() { "_.rs".to_owned() } else { format!("{}.rs", package.name) },
            code,
        })
    };
    parallel(bodies, threads, finish).into_iter().collect()
}

/// Applies `f` to every item (with its index) on up to `threads` threads,
/// keeping the items' order in the results.
fn parallel<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(usize, T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.into_iter().enumerate().map(|(i, item)| f(i, item)).collect();
    }
    let count = items.len();
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let mut results: Vec<Option<R>> = Vec::with_capacity(count);
    results.resize_with(count, || None);
    let done = std::sync::Mutex::new(results);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
                    let Some((i, item)) = next else { break };
                    let r = f(i, item);
                    done.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(r);
                }
            });
        }
    });
    done.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).into_iter().flatten().collect()
}

thread_local! {
    /// Set on a thread whose panics are all caught and reported as
    /// diagnostics, so the panic hook stays silent for it.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on this thread with panic messages kept off stderr: prost-build
/// panics on some malformed descriptors, which are caught and answered with
/// an error (whose text carries the panic's message). Panics of other
/// threads are reported as before.
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let out = f();
    QUIET.with(|q| q.set(was));
    out
}

/// A panic inside prost-build, with its message.
struct Panicked(String);

type ProstOutput = (std::io::Result<HashMap<prost_build::Module, String>>, BTreeMap<String, String>);

/// Runs prost-build (messages) with the tonic service collector, catching
/// panics so that a plugin answers with an error instead of crashing.
fn run_prost(
    options: &Options,
    requests: Vec<(prost_build::Module, prost_types::FileDescriptorProto)>,
) -> Result<ProstOutput, Panicked> {
    let services: Rc<RefCell<BTreeMap<String, String>>> = Rc::default();
    let rt = &options.runtime_crate;
    let mut config = prost_build::Config::new();
    config
        .prost_path(format!("{rt}::codegen::prost"))
        .prost_types_path(format!("{rt}::codegen::prost_types"))
        .service_generator(Box::new(ServiceCollector { out: services.clone(), options: options.clone() }))
        // Formatting happens once, on the assembled file.
        .format(false);
    for (proto, rust) in &options.extern_paths {
        config.extern_path(proto, rust);
    }
    for (path, attr) in &options.type_attributes {
        config.type_attribute(path, attr);
    }
    for (path, attr) in &options.field_attributes {
        config.field_attribute(path, attr);
    }
    if !options.bytes.is_empty() {
        config.bytes(&options.bytes);
    }
    if !options.btree_map.is_empty() {
        config.btree_map(&options.btree_map);
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.generate(requests)));
    drop(config);
    match result {
        Ok(modules) => {
            let services = Rc::try_unwrap(services).map(RefCell::into_inner).unwrap_or_else(|rc| rc.borrow().clone());
            Ok((modules, services))
        }
        Err(panic) => Err(Panicked(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown cause".to_owned()),
        )),
    }
}

/// Names of `files` and everything they import, directly or not.
fn transitive_imports<'a>(files: &'a [String], by_name: &'a HashMap<String, (&[u8], FileHeader)>) -> HashSet<&'a str> {
    let mut needed: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = files.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        if needed.insert(name)
            && let Some((_, head)) = by_name.get(name)
        {
            stack.extend(head.dependency.iter().map(String::as_str));
        }
    }
    needed
}

/// Receives prost-build's services and renders them with tonic-build into a
/// side buffer per package, so messages and services can be emitted apart.
struct ServiceCollector {
    out: Rc<RefCell<BTreeMap<String, String>>>,
    options: Options,
}

impl prost_build::ServiceGenerator for ServiceCollector {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        // prost-build drops modules whose buffer stays empty and then fails
        // to find them when finalizing a package that only has services.
        buf.push_str(prost_text::SERVICE_PLACEHOLDER);
        buf.push('\n');
        let codec = format!("{}::codegen::tonic_prost::ProstCodec", self.options.runtime_crate);
        let adapter = TonicService::new(&service, &codec);
        let mut builder = tonic_build::CodeGenBuilder::new();
        // Clients connect through the runtime's channel (`<service>_svc::Client`),
        // never tonic's transport.
        builder.emit_package(true).build_transport(false).compile_well_known_types(false);
        let mut tokens = TokenStream::new();
        if self.options.client {
            tokens.extend(builder.generate_client(&adapter, "super"));
        }
        if self.options.server {
            tokens.extend(builder.generate_server(&adapter, "super"));
        }
        self.out.borrow_mut().entry(service.package.clone()).or_default().push_str(&tokens.to_string());
    }
}

/// Adapts prost-build's service model to tonic-build's traits.
struct TonicService {
    name: String,
    package: String,
    proto_name: String,
    comments: Vec<String>,
    methods: Vec<TonicMethod>,
}

struct TonicMethod {
    name: String,
    proto_name: String,
    codec: String,
    client_streaming: bool,
    server_streaming: bool,
    comments: Vec<String>,
    deprecated: bool,
    input: String,
    output: String,
}

impl TonicService {
    fn new(s: &prost_build::Service, codec: &str) -> Self {
        TonicService {
            name: s.name.clone(),
            package: s.package.clone(),
            proto_name: s.proto_name.clone(),
            comments: s.comments.leading.clone(),
            methods: s
                .methods
                .iter()
                .map(|m| TonicMethod {
                    name: m.name.clone(),
                    proto_name: m.proto_name.clone(),
                    codec: codec.to_owned(),
                    client_streaming: m.client_streaming,
                    server_streaming: m.server_streaming,
                    comments: m.comments.leading.clone(),
                    deprecated: m.options.deprecated(),
                    input: m.input_type.clone(),
                    output: m.output_type.clone(),
                })
                .collect(),
        }
    }
}

impl tonic_build::Service for TonicService {
    type Comment = String;
    type Method = TonicMethod;

    fn name(&self) -> &str {
        &self.name
    }
    fn package(&self) -> &str {
        &self.package
    }
    fn identifier(&self) -> &str {
        &self.proto_name
    }
    fn methods(&self) -> &[TonicMethod] {
        &self.methods
    }
    fn comment(&self) -> &[String] {
        &self.comments
    }
}

impl tonic_build::Method for TonicMethod {
    type Comment = String;

    fn name(&self) -> &str {
        &self.name
    }
    fn identifier(&self) -> &str {
        &self.proto_name
    }
    fn codec_path(&self) -> &str {
        &self.codec
    }
    fn client_streaming(&self) -> bool {
        self.client_streaming
    }
    fn server_streaming(&self) -> bool {
        self.server_streaming
    }
    fn comment(&self) -> &[String] {
        &self.comments
    }
    fn deprecated(&self) -> bool {
        self.deprecated
    }
    fn request_response_name(&self, proto_path: &str, _compile_well_known_types: bool) -> (TokenStream, TokenStream) {
        (rust_type(&self.input, proto_path), rust_type(&self.output, proto_path))
    }
}

/// Turns a prost-resolved type (relative to the package module) into a path
/// usable from the nested client/server modules.
fn rust_type(ty: &str, proto_path: &str) -> TokenStream {
    let text = if ty == "()" || ty.starts_with("::") || ty.starts_with("crate::") {
        ty.to_owned()
    } else {
        format!("{proto_path}::{ty}")
    };
    text.parse().unwrap_or_else(|_| quote!(()))
}
