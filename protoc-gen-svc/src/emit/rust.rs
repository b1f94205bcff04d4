//! `target=rust`: one self-contained `<package>.rs` per package (prost
//! messages, tonic service traits, servers and clients, service specs, the
//! package's encoded descriptors) plus the include file.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use proc_macro2::TokenStream;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use quote::quote;

use super::modfile::{self, Body};
use super::{GeneratedFile, header, paths, spec};
use crate::error::{Diagnostic, Result};
use crate::ir;
use crate::params::Options;
use crate::source::FileHeader;

/// The raw files of a `FileDescriptorSet`, undecoded.
#[derive(Clone, PartialEq, Message)]
struct RawSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// Generated code of one package, before assembly.
pub struct PackageCode {
    /// Module path parts (escaped Rust identifiers).
    pub module: Vec<String>,
    /// File name, e.g. `greeter.v1.rs`.
    pub file_name: String,
    /// Formatted code without the header.
    pub code: String,
}

/// Generates the Rust files for `packages`.
pub fn emit(
    pool: &DescriptorPool,
    descriptor_set: &[u8],
    packages: &[ir::Package],
    options: &Options,
) -> Result<Vec<GeneratedFile>> {
    let codes = package_code(pool, descriptor_set, packages, options)?;
    let mut files: Vec<GeneratedFile> = codes
        .iter()
        .map(|p| GeneratedFile { name: p.file_name.clone(), content: format!("{}{}", header(), p.code) })
        .collect();
    if !options.include_file.is_empty() && !codes.is_empty() {
        let tree: Vec<(Vec<String>, Body<'_>)> =
            codes.iter().map(|p| (p.module.clone(), Body::Include(p.file_name.as_str()))).collect();
        if files.iter().any(|f| f.name == options.include_file) {
            return Err(Diagnostic::new(
                "parameter include_file",
                format!("{:?} is also the name of a package file", options.include_file),
                "choose another include_file name, e.g. include_file=mod.rs",
            )
            .into());
        }
        files.push(GeneratedFile { name: options.include_file.clone(), content: modfile::render(&tree) });
    }
    Ok(files)
}

/// Generates each package's code (shared by the file emitter and the macro).
pub fn package_code(
    pool: &DescriptorPool,
    descriptor_set: &[u8],
    packages: &[ir::Package],
    options: &Options,
) -> Result<Vec<PackageCode>> {
    let raw = RawSet::decode(descriptor_set).map_err(|e| {
        Diagnostic::new(
            "descriptor set",
            format!("cannot be decoded: {e}"),
            "pass descriptors produced by protoc, buf or protox",
        )
    })?;
    let mut by_name: HashMap<String, (&[u8], FileHeader)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for bytes in &raw.file {
        let head = FileHeader::decode(bytes.as_slice()).unwrap_or_default();
        let name = head.name.clone().unwrap_or_default();
        order.push(name.clone());
        by_name.insert(name, (bytes.as_slice(), head));
    }
    let rt: TokenStream = options.runtime_crate.parse().unwrap_or_else(|_| quote!(::svc_runtime));
    let rt_text = options.runtime_crate.clone();

    // prost-build derives traits by walking every message a field refers to,
    // so it is given the files to generate and all their imports; only the
    // modules of the requested packages are kept.
    let wanted: Vec<String> = packages.iter().flat_map(|p| p.files.iter().cloned()).collect();
    let needed = transitive_imports(&wanted, &by_name);
    let mut requests = Vec::new();
    for name in order.iter().filter(|n| needed.contains(n.as_str())) {
        let Some((bytes, _)) = by_name.get(name.as_str()) else { continue };
        let fd = prost_types::FileDescriptorProto::decode(*bytes).map_err(|e| {
            Diagnostic::new(
                format!("file {name}"),
                format!("descriptor cannot be decoded: {e}"),
                "regenerate the descriptors",
            )
            .in_file(name.as_str())
        })?;
        requests.push((prost_build::Module::from_protobuf_package_name(fd.package()), fd));
    }

    let (modules, services) = match run_prost(options, requests.clone()) {
        Ok(out) => out,
        // prost-build panics when source info lacks an element's location
        // (its comments lookup unwraps). Such a request is malformed, but
        // the code can still be generated without comments.
        Err(Panicked(_)) => {
            for (_, fd) in &mut requests {
                fd.source_code_info = None;
            }
            match run_prost(options, requests) {
                Ok(out) => out,
                Err(Panicked(why)) => {
                    return Err(Diagnostic::new(
                        "prost code generation",
                        format!("prost-build failed on these descriptors ({why})"),
                        "check that the request comes from protoc or buf; if it does, please report this with the .proto files",
                    )
                    .into());
                }
            }
        }
    };
    let modules = modules.map_err(|e| {
        Diagnostic::new(
            "prost code generation",
            e.to_string(),
            "check the extern_path, type_attribute and field_attribute parameters",
        )
    })?;

    let mut out = Vec::new();
    for package in packages {
        let module = prost_build::Module::from_protobuf_package_name(&package.name);
        let mut body = String::new();
        if options.messages
            && let Some(code) = modules.get(&module)
        {
            body.push_str(code);
        }
        if let Some(code) = services.get(&package.name) {
            body.push_str(code);
        }
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
        // Descriptors and service specs travel with the services, so a
        // messages-only run (server=false, client=false) can be combined
        // with a services-only run (messages=false) in one module.
        if options.server || options.client {
            extra.extend(service_items(pool, package, &by_name, &rt, options.server));
        }
        body.push_str(&extra.to_string());

        let mut file = syn::parse_file(&body).map_err(|e| {
            Diagnostic::new(
                format!("package {}", package.name),
                format!("generated code does not parse: {e}"),
                "this is a protoc-gen-svc bug; please report it with the input .proto",
            )
        })?;
        paths::rewrite(&mut file, &rt_text);
        let mut sources = package.files.clone();
        sources.sort();
        let mut code = format!("// source: {}\n", sources.join(", "));
        code.push_str(&prettyplease::unparse(&file));
        out.push(PackageCode {
            module: module.parts().map(str::to_owned).collect(),
            file_name: if package.name.is_empty() { "_.rs".to_owned() } else { format!("{}.rs", package.name) },
            code,
        });
    }
    Ok(out)
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

/// The package's `FILE_DESCRIPTOR_SET` and one spec module per service.
fn service_items(
    pool: &DescriptorPool,
    package: &ir::Package,
    by_name: &HashMap<String, (&[u8], FileHeader)>,
    rt: &TokenStream,
    server: bool,
) -> TokenStream {
    let mut extra = TokenStream::new();
    let fds = package_descriptor_set(pool, &package.files, by_name);
    let fds_lit = proc_macro2::Literal::byte_string(&fds);
    let fds_doc = format!(
        " Encoded `google.protobuf.FileDescriptorSet` of package `{}` and its imports (well-known types excepted), for gRPC reflection.",
        package.name
    );
    extra.extend(quote! {
        #[doc = #fds_doc]
        pub const FILE_DESCRIPTOR_SET: &[u8] = #fds_lit;
    });
    for service in &package.services {
        extra.extend(spec::service_module(service, rt, server));
    }
    extra
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

/// Encodes the package's files and their transitive imports, imports first.
fn package_descriptor_set(
    pool: &DescriptorPool,
    files: &[String],
    by_name: &HashMap<String, (&[u8], FileHeader)>,
) -> Vec<u8> {
    // The bytes must not depend on which compiler (protoc, buf, protox)
    // produced the descriptors, so: the well-known types the package imports
    // are this generator's own copy, not the compiler's (each compiler ships
    // its own revision; one the generator lacks is left out), source info is
    // dropped (compilers record different locations), every file is
    // re-encoded canonically (compilers order option fields differently), and
    // files come in a canonical dependency order (compilers pick different
    // topological orders). Types and options, custom ones included, are
    // kept. With its imports in it, the set describes the package completely,
    // which is what reflection serves.
    let global = DescriptorPool::global();
    let file_desc = pool
        .get_message_by_name("google.protobuf.FileDescriptorProto")
        .or_else(|| global.get_message_by_name("google.protobuf.FileDescriptorProto"));
    let encoded: Vec<Vec<u8>> = canonical_order(files, by_name)
        .into_iter()
        .filter_map(|n| {
            if n.starts_with("google/protobuf/") {
                let own = global.get_file_by_name(n)?.file_descriptor_proto().encode_to_vec();
                return Some(canonical(file_desc.as_ref(), &strip_field(&own, 9)));
            }
            by_name.get(n).map(|(bytes, _)| canonical(file_desc.as_ref(), &strip_field(bytes, 9)))
        })
        .collect();
    crate::source::encode_set(encoded.iter().map(Vec::as_slice))
}

/// `files` (sorted by name) and their imports, each after its imports:
/// a depth-first post-order over imports in declaration order, which depends
/// only on the files' contents.
fn canonical_order<'a>(files: &'a [String], by_name: &'a HashMap<String, (&[u8], FileHeader)>) -> Vec<&'a str> {
    fn visit<'a>(
        name: &'a str,
        by_name: &'a HashMap<String, (&[u8], FileHeader)>,
        seen: &mut HashSet<&'a str>,
        out: &mut Vec<&'a str>,
    ) {
        if !seen.insert(name) {
            return;
        }
        if let Some((_, head)) = by_name.get(name) {
            for dep in &head.dependency {
                visit(dep, by_name, seen, out);
            }
        }
        out.push(name);
    }
    let mut roots: Vec<&str> = files.iter().map(String::as_str).collect();
    roots.sort_unstable();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for root in roots {
        visit(root, by_name, &mut seen, &mut out);
    }
    out
}

/// Re-encodes a `FileDescriptorProto` with fields, extensions included, in
/// field-number order. Bytes that do not decode are returned unchanged.
fn canonical(desc: Option<&MessageDescriptor>, bytes: &[u8]) -> Vec<u8> {
    match desc.map(|d| DynamicMessage::decode(d.clone(), bytes)) {
        Some(Ok(message)) => super::canonical::encode(&message),
        _ => bytes.to_vec(),
    }
}

/// Removes every occurrence of field `number` from an encoded message,
/// leaving all other bytes (unknown fields and extensions included) intact.
/// Input that does not parse is returned unchanged.
fn strip_field(bytes: &[u8], number: u32) -> Vec<u8> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut out = Vec::with_capacity(bytes.len());
    let mut buf = bytes;
    while !buf.is_empty() {
        let start = bytes.len() - buf.len();
        let Ok((tag, wire)) = decode_key(&mut buf) else { return bytes.to_vec() };
        let skipped = match wire {
            WireType::Varint => decode_varint(&mut buf).is_ok(),
            WireType::SixtyFourBit if buf.len() >= 8 => {
                buf = &buf[8..];
                true
            }
            WireType::ThirtyTwoBit if buf.len() >= 4 => {
                buf = &buf[4..];
                true
            }
            WireType::LengthDelimited => match decode_varint(&mut buf) {
                Ok(len) if (len as usize) <= buf.len() => {
                    buf = &buf[len as usize..];
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !skipped {
            return bytes.to_vec();
        }
        let end = bytes.len() - buf.len();
        if tag != number {
            out.extend_from_slice(&bytes[start..end]);
        }
    }
    out
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
        buf.push_str(&format!("// service {} is emitted below the messages\n", service.proto_name));
        let codec = format!("{}::codegen::tonic_prost::ProstCodec", self.options.runtime_crate);
        let adapter = TonicService::new(&service, &codec);
        let mut builder = tonic_build::CodeGenBuilder::new();
        builder.emit_package(true).build_transport(true).compile_well_known_types(false);
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
