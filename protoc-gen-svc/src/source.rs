//! Descriptor front ends: a `CodeGeneratorRequest` from protoc/buf, or .proto
//! sources compiled in process by protox. Both produce an [`Input`]: an
//! encoded `FileDescriptorSet` that keeps custom options (`svc.*`,
//! `buf.validate.*`), plus the names of the files to generate.

use std::path::{Path, PathBuf};

use prost::Message;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver};

use crate::error::{Diagnostic, Error, Result};

/// `svc/options.proto` as shipped with this generator.
pub const OPTIONS_PROTO: &str = include_str!("../proto/svc/options.proto");

/// Third-party .proto files resolvable without vendoring, taken from
/// crates.io packages at build time (see build.rs).
const THIRD_PARTY: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/third_party.rs"));

/// Every .proto file built into the generator: (import path, source).
pub fn bundled_protos() -> impl Iterator<Item = (&'static str, &'static str)> {
    std::iter::once(("svc/options.proto", OPTIONS_PROTO)).chain(THIRD_PARTY.iter().copied())
}

/// Descriptors ready for generation.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Encoded `google.protobuf.FileDescriptorSet`: every file needed, each
    /// after its imports, with extension options intact.
    pub descriptor_set: Vec<u8>,
    /// Names (import paths) of the files to generate code for.
    pub files_to_generate: Vec<String>,
    /// Files read from disk, for `cargo:rerun-if-changed` and macro tracking.
    pub source_paths: Vec<PathBuf>,
}

/// Resolves the generator's built-in .proto files.
struct BundledResolver;

impl FileResolver for BundledResolver {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        match bundled_protos().find(|(n, _)| *n == name) {
            Some((n, source)) => File::from_source(n, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compiles `files` with the embedded pure-Rust compiler. `includes` are
/// searched first, then the bundled files, then the well-known types.
///
/// The embedded compiler does not parse editions (`edition = "2023"`) yet.
/// When a file it fails on declares an edition, protoc compiles the files
/// instead (`PROTOC`, else `protoc` on `PATH`, as prost-build finds it), and
/// the result goes through the same path as a plugin request, so the output
/// is the same as the plugin's. Without protoc that is an error naming the
/// file and both ways out.
pub fn compile(files: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<Input> {
    let embedded = compile_embedded(files, includes);
    let Err(e) = &embedded else { return embedded };
    match e.diagnostics.iter().find_map(|d| d.file.as_deref().and_then(|f| edition_file(f, files, includes))) {
        Some(edition_file) => crate::protoc::compile(files, includes, &edition_file),
        None => embedded,
    }
}

/// The path of `name` (as an error names it) when that file declares an
/// edition.
fn edition_file(name: &str, files: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Option<PathBuf> {
    let candidates = files
        .iter()
        .map(|f| f.as_ref().to_path_buf())
        .filter(|f| f.ends_with(name))
        .chain(includes.iter().map(|i| i.as_ref().join(name)));
    candidates.filter(|p| p.is_file()).find(|p| std::fs::read_to_string(p).is_ok_and(|t| declares_edition(&t)))
}

/// Whether a .proto source starts with `edition = "..."` (after comments).
pub(crate) fn declares_edition(source: &str) -> bool {
    let mut in_block = false;
    for line in source.lines() {
        let mut rest = line.trim();
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = rest[end + 2..].trim_start();
                        in_block = false;
                    }
                    None => break,
                }
            } else if let Some(after) = rest.strip_prefix("/*") {
                rest = after;
                in_block = true;
            } else {
                break;
            }
        }
        if in_block || rest.is_empty() || rest.starts_with("//") {
            continue;
        }
        return rest.strip_prefix("edition").is_some_and(|r| r.trim_start().starts_with('='));
    }
    false
}

fn compile_embedded(files: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<Input> {
    let mut chain = ChainFileResolver::new();
    for include in includes {
        chain.add(IncludeFileResolver::new(include.as_ref().to_path_buf()));
    }
    chain.add(BundledResolver);
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true).include_source_info(true);
    let mut errors = Vec::new();
    for file in files {
        let file = file.as_ref();
        if let Err(e) = compiler.open_file(file) {
            errors.push(protox_diagnostic(file, &e, includes));
        }
    }
    if !errors.is_empty() {
        return Err(Error { diagnostics: errors });
    }
    // One output file holds a whole package, so imports that share a
    // package with a requested file are generated too.
    let pool = compiler.descriptor_pool();
    let package_of = |name: &str| pool.get_file_by_name(name).map(|f| f.package_name().to_owned()).unwrap_or_default();
    let entries: Vec<(String, String, bool)> =
        compiler.files().map(|f| (f.name().to_owned(), package_of(f.name()), !f.is_import())).collect();
    let files_to_generate = with_package_mates(&entries);
    let source_paths = compiler.files().filter_map(|f| f.path().map(Path::to_path_buf)).collect();
    Ok(Input { descriptor_set: compiler.encode_file_descriptor_set(), files_to_generate, source_paths })
}

/// Names (import paths) of the files to generate: the requested ones, plus
/// imports that share a package with one (one output file holds a whole
/// package). `files` are (name, package, requested) in dependency order.
pub(crate) fn with_package_mates(files: &[(String, String, bool)]) -> Vec<String> {
    let packages: std::collections::HashSet<&str> = files.iter().filter(|f| f.2).map(|f| f.1.as_str()).collect();
    files.iter().filter(|f| f.2 || packages.contains(&f.1.as_str())).map(|f| f.0.clone()).collect()
}

fn protox_diagnostic(file: &Path, e: &protox::Error, includes: &[impl AsRef<Path>]) -> Diagnostic {
    let shown = e.file().map(str::to_owned).unwrap_or_else(|| file.display().to_string());
    let hint = if e.is_file_not_found() {
        let dirs: Vec<String> = includes.iter().map(|i| i.as_ref().display().to_string()).collect();
        format!(
            "check the import path; include directories searched: [{}], then the built-in svc/options.proto, buf/validate, google/api, google/rpc and google/protobuf files",
            dirs.join(", ")
        )
    } else if e.is_parse() {
        "fix the syntax at the reported position".to_owned()
    } else {
        "check that the file is a valid proto2/proto3 file whose imports resolve".to_owned()
    };
    let mut d = Diagnostic::new(format!("file {}", file.display()), e.to_string(), hint).in_file(shown);
    (d.line, d.column) = error_position(e);
    d
}

/// Line and column (1-based) of the first labelled span of a protox error.
fn error_position(e: &protox::Error) -> (Option<u32>, Option<u32>) {
    use miette::Diagnostic as _;
    let Some(source) = e.source_code() else { return (None, None) };
    let Some(label) = e.labels().and_then(|mut labels| labels.next()) else { return (None, None) };
    match source.read_span(label.inner(), 0, 0) {
        Ok(contents) => (Some(contents.line() as u32 + 1), Some(contents.column() as u32 + 1)),
        Err(_) => (None, None),
    }
}

/// Encodes descriptors given as raw `FileDescriptorProto` bytes into a set.
pub fn encode_set<'a>(files: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files {
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(f.len() as u64, &mut out);
        out.extend_from_slice(f);
    }
    out
}

/// The encoded files of a `FileDescriptorSet`, borrowed, without decoding
/// them. Fails on bytes that are not a set.
pub(crate) fn set_files(set: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut files = Vec::new();
    let mut buf = set;
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        match wire {
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).map_err(|e| e.to_string())? as usize;
                if len > buf.len() {
                    return Err("a file's length runs past the end".into());
                }
                if tag == 1 {
                    files.push(&buf[..len]);
                }
                buf = &buf[len..];
            }
            WireType::Varint => {
                decode_varint(&mut buf).map_err(|e| e.to_string())?;
            }
            WireType::SixtyFourBit if buf.len() >= 8 => buf = &buf[8..],
            WireType::ThirtyTwoBit if buf.len() >= 4 => buf = &buf[4..],
            _ => return Err(format!("unexpected wire type {wire:?} for field {tag}")),
        }
    }
    Ok(files)
}

/// The names of the files in an encoded `FileDescriptorSet`, in order.
pub fn set_file_names(set: &[u8]) -> Result<Vec<String>> {
    let bad = |why: String| {
        crate::Error::one(Diagnostic::new(
            "descriptor set",
            format!("the bytes are not a FileDescriptorSet: {why}"),
            "pass the output of `buf build -o` or `protoc --descriptor_set_out --include_imports`",
        ))
    };
    let files = set_files(set).map_err(bad)?;
    files
        .iter()
        .map(|f| {
            FileHeader::decode(*f)
                .map_err(|e| bad(e.to_string()))?
                .name
                .ok_or_else(|| bad("a file has no name".to_owned()))
        })
        .collect()
}

/// A descriptor set with its editions files lowered to the proto2/proto3
/// forms the generator reads (as the plugin does with its request).
pub fn lower_editions(set: &[u8]) -> Result<Vec<u8>> {
    let files = set_files(set).map_err(|why| {
        crate::Error::one(Diagnostic::new(
            "descriptor set",
            format!("the bytes are not a FileDescriptorSet: {why}"),
            "pass the output of `buf build -o` or `protoc --descriptor_set_out --include_imports`",
        ))
    })?;
    let mut out: Vec<std::borrow::Cow<'_, [u8]>> = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for bytes in files {
        let header = FileHeader::decode(bytes).unwrap_or_default();
        let name = header.name.as_deref().unwrap_or_default();
        match crate::editions::lower(bytes, header.syntax.as_deref(), name) {
            Ok(Some(lowered)) => out.push(std::borrow::Cow::Owned(lowered)),
            Ok(None) => out.push(std::borrow::Cow::Borrowed(bytes)),
            Err(e) => errors.extend(e.diagnostics),
        }
    }
    if !errors.is_empty() {
        return Err(crate::Error { diagnostics: errors });
    }
    Ok(encode_set(out.iter().map(|f| f.as_ref())))
}

/// The 1-based line and column of the element at `path` (a source-info
/// path) in file `name` of `set`, or of its nearest enclosing element with
/// a location. Decodes the file: meant for diagnostics.
pub(crate) fn locate(set: &[u8], name: &str, path: &[i32]) -> (Option<u32>, Option<u32>) {
    let info = set_files(set)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|bytes| prost_types::FileDescriptorProto::decode(bytes).ok())
        .find(|f| f.name() == name)
        .and_then(|f| f.source_code_info);
    let locations: Vec<prost_types::source_code_info::Location> = info.map(|i| i.location).unwrap_or_default();
    (0..=path.len())
        .rev()
        .find_map(|n| locations.iter().find(|l| l.path == path[..n] && l.span.len() >= 2))
        .map_or((None, None), |l| (Some((l.span[0] + 1) as u32), Some((l.span[1] + 1) as u32)))
}

/// Removes every occurrence of field `number` from an encoded message,
/// leaving all other bytes (unknown fields and extensions included) intact.
/// Input that does not parse is returned unchanged.
pub(crate) fn strip_field(bytes: &[u8], number: u32) -> Vec<u8> {
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

/// Field number of `source_code_info` in `FileDescriptorProto`.
pub(crate) const SOURCE_CODE_INFO: u32 = 9;

/// The few fields of `FileDescriptorProto` read before building a pool.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct FileHeader {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub package: Option<String>,
    #[prost(string, repeated, tag = "3")]
    pub dependency: Vec<String>,
    #[prost(string, optional, tag = "12")]
    pub syntax: Option<String>,
}
