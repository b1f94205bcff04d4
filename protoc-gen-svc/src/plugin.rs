//! The protoc/buf plugin protocol: `CodeGeneratorRequest` in,
//! `CodeGeneratorResponse` out. Every user error goes into
//! `CodeGeneratorResponse.error`; nothing here panics on bad input.

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::error::{Diagnostic, Error, Result};
use crate::params::Options;
use crate::source::{FileHeader, Input, encode_set};

/// `google.protobuf.compiler.CodeGeneratorRequest`, with files kept as raw
/// bytes so that custom options survive until the descriptor pool is built.
#[derive(Clone, PartialEq, Message)]
pub struct CodeGeneratorRequest {
    #[prost(string, repeated, tag = "1")]
    pub file_to_generate: Vec<String>,
    #[prost(string, optional, tag = "2")]
    pub parameter: Option<String>,
    #[prost(message, optional, tag = "3")]
    pub compiler_version: Option<Version>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub proto_file: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "17")]
    pub source_file_descriptors: Vec<Vec<u8>>,
}

/// `google.protobuf.compiler.Version`.
#[derive(Clone, PartialEq, Message)]
pub struct Version {
    #[prost(int32, optional, tag = "1")]
    pub major: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub minor: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub patch: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub suffix: Option<String>,
}

/// `google.protobuf.compiler.CodeGeneratorResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct CodeGeneratorResponse {
    #[prost(string, optional, tag = "1")]
    pub error: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub supported_features: Option<u64>,
    #[prost(int32, optional, tag = "3")]
    pub minimum_edition: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub maximum_edition: Option<i32>,
    #[prost(message, repeated, tag = "15")]
    pub file: Vec<ResponseFile>,
}

/// `CodeGeneratorResponse.File`.
#[derive(Clone, PartialEq, Message)]
pub struct ResponseFile {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub insertion_point: Option<String>,
    #[prost(string, optional, tag = "15")]
    pub content: Option<String>,
}

/// `FEATURE_PROTO3_OPTIONAL`.
pub const FEATURE_PROTO3_OPTIONAL: u64 = 1;
/// `FEATURE_SUPPORTS_EDITIONS`.
pub const FEATURE_SUPPORTS_EDITIONS: u64 = 2;

/// Runs the plugin on an encoded request and returns the encoded response.
pub fn execute(request: &[u8]) -> Vec<u8> {
    respond(request).encode_to_vec()
}

/// Runs the plugin on an encoded request.
pub fn respond(request: &[u8]) -> CodeGeneratorResponse {
    let mut response = CodeGeneratorResponse {
        supported_features: Some(FEATURE_PROTO3_OPTIONAL | FEATURE_SUPPORTS_EDITIONS),
        minimum_edition: Some(crate::editions::EDITION_PROTO2),
        maximum_edition: Some(crate::editions::EDITION_2023),
        ..Default::default()
    };
    match run(request) {
        Ok(files) => {
            response.file = files
                .into_iter()
                .map(|f| ResponseFile { name: Some(f.name), insertion_point: None, content: Some(f.content) })
                .collect();
        }
        Err(e) => response.error = Some(e.to_string()),
    }
    response
}

fn run(bytes: &[u8]) -> Result<Vec<crate::GeneratedFile>> {
    let request = CodeGeneratorRequest::decode(bytes).map_err(|e| {
        Diagnostic::new(
            "CodeGeneratorRequest",
            format!("cannot be decoded: {e}"),
            "run protoc-gen-svc through protoc or buf, or use `protoc-gen-svc generate` to compile .proto files directly",
        )
    })?;
    let options = Options::parse(request.parameter.as_deref().unwrap_or_default())?;
    let input = input_from_request(&request)?;
    crate::generate(&input, &options)
}

/// Builds the generator input from a request: every `proto_file`, with the
/// files to generate replaced by their `source_file_descriptors` version
/// (which keeps source-retention options) when the compiler sends one.
pub fn input_from_request(request: &CodeGeneratorRequest) -> Result<Input> {
    let mut errors = Vec::new();
    let mut headers = Vec::with_capacity(request.proto_file.len());
    for (i, bytes) in request.proto_file.iter().enumerate() {
        match FileHeader::decode(bytes.as_slice()) {
            Ok(h) => headers.push(h),
            Err(e) => {
                errors.push(Diagnostic::new(
                    format!("proto_file[{i}]"),
                    format!("is not a FileDescriptorProto: {e}"),
                    "the compiler sent a corrupt request; re-run protoc or buf",
                ));
                headers.push(FileHeader::default());
            }
        }
    }
    let mut source: HashMap<String, &[u8]> = HashMap::new();
    for bytes in &request.source_file_descriptors {
        if let Ok(h) = FileHeader::decode(bytes.as_slice()) {
            source.insert(h.name.unwrap_or_default(), bytes.as_slice());
        }
    }
    let present: HashSet<&str> = headers.iter().filter_map(|h| h.name.as_deref()).collect();
    for name in &request.file_to_generate {
        if !present.contains(name.as_str()) {
            errors.push(Diagnostic::new(
                format!("file {name}"),
                "is listed in file_to_generate but missing from proto_file",
                "the compiler sent an incomplete request; re-run protoc or buf",
            ));
        }
    }
    check_split_packages(request, &headers, &mut errors);
    if !errors.is_empty() {
        return Err(Error { diagnostics: errors });
    }
    let mut files: Vec<std::borrow::Cow<'_, [u8]>> = Vec::with_capacity(headers.len());
    for (bytes, h) in request.proto_file.iter().zip(&headers) {
        let name = h.name.as_deref().unwrap_or_default();
        let bytes = source.get(name).copied().unwrap_or(bytes.as_slice());
        match crate::editions::lower(bytes, h.syntax.as_deref(), name) {
            Ok(Some(lowered)) => files.push(std::borrow::Cow::Owned(lowered)),
            Ok(None) => files.push(std::borrow::Cow::Borrowed(bytes)),
            Err(e) => errors.extend(e.diagnostics),
        }
    }
    if !errors.is_empty() {
        return Err(Error { diagnostics: errors });
    }
    Ok(Input {
        descriptor_set: encode_set(files.iter().map(|f| f.as_ref())),
        files_to_generate: request.file_to_generate.clone(),
        source_paths: Vec::new(),
    })
}

/// One `<package>.rs` holds a whole package, so every file of a package
/// must be generated in the same run. buf's `strategy: directory` splits a
/// package spread over several directories into several runs; say so
/// instead of letting buf fail on a duplicate output path.
fn check_split_packages(request: &CodeGeneratorRequest, headers: &[FileHeader], errors: &mut Vec<Diagnostic>) {
    let to_generate: HashSet<&str> = request.file_to_generate.iter().map(String::as_str).collect();
    // The first generated file of each package.
    let mut generated: HashMap<&str, &FileHeader> = HashMap::new();
    for h in headers {
        if let (Some(name), Some(package)) = (&h.name, &h.package)
            && to_generate.contains(name.as_str())
        {
            generated.entry(package.as_str()).or_insert(h);
        }
    }
    for h in headers {
        let Some(name) = &h.name else { continue };
        if to_generate.contains(name.as_str()) {
            continue;
        }
        if let Some(g) = h.package.as_deref().and_then(|p| generated.get(p)) {
            let package = h.package.as_deref().unwrap_or_default();
            errors.push(
                Diagnostic::new(
                    format!("package {package}"),
                    format!(
                        "is split across runs: {} is generated but {name} (same package) is not part of this run",
                        g.name.as_deref().unwrap_or_default()
                    ),
                    "protoc-gen-svc writes one file per package: use `strategy: all` in buf.gen.yaml, or pass every file of the package to protoc at once",
                )
                .in_file(g.name.clone().unwrap_or_default()),
            );
        }
    }
}
