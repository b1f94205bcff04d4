//! Compiling with protoc, for files the embedded compiler cannot parse
//! (editions). protoc writes a descriptor set that goes through the same
//! path as a plugin request ([`crate::plugin::input_from_request`]: editions
//! lowered, packages checked), so the generated code is byte for byte the
//! plugin's.

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;

use crate::error::{Diagnostic, Error, Result};
use crate::plugin::CodeGeneratorRequest;
use crate::source::{FileHeader, Input};

/// A `FileDescriptorSet` with its files kept as raw bytes (custom options
/// survive).
#[derive(Clone, PartialEq, Message)]
struct RawSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// The protoc to run: `PROTOC`, else `protoc` on `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROTOC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("protoc")).find(|p| p.is_file())
}

/// Compiles `files` with protoc; `edition_file` is the file that needs it
/// (for messages).
pub fn compile(files: &[impl AsRef<Path>], includes: &[impl AsRef<Path>], edition_file: &Path) -> Result<Input> {
    let shown = edition_file.display();
    let Some(protoc) = find() else {
        return Err(Error::one(Diagnostic::new(
            format!("file {shown}"),
            "uses protobuf editions (`edition = ...`), which the embedded compiler cannot parse yet, and no protoc was found (PROTOC or PATH)",
            "install protoc 27 or newer and put it on PATH or in PROTOC, or generate with protoc or buf running protoc-gen-svc as a plugin",
        )));
    };
    let work = Scratch::new().map_err(|e| io_error("a temporary directory for protoc", &e))?;
    // The bundled files (svc/options.proto, buf/validate, google/api,
    // google/rpc) as a last include directory, and the well-known types as a
    // descriptor set: protoc builds from the Maven or GitHub releases do not
    // always ship them.
    let bundled = work.0.join("include");
    for (name, source) in crate::source::bundled_protos() {
        let path = bundled.join(name);
        let written =
            path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, source));
        written.map_err(|e| io_error(&path.display().to_string(), &e))?;
    }
    let wkt = work.0.join("wkt.pb");
    let wkt_set = prost_types::FileDescriptorSet {
        file: prost_reflect::DescriptorPool::global()
            .files()
            .filter(|f| f.name().starts_with("google/protobuf/"))
            .map(|f| f.file_descriptor_proto().clone())
            .collect(),
    };
    std::fs::write(&wkt, wkt_set.encode_to_vec()).map_err(|e| io_error(&wkt.display().to_string(), &e))?;
    let out = work.0.join("out.pb");
    let mut cmd = Command::new(&protoc);
    cmd.arg("--include_imports").arg("--include_source_info");
    cmd.arg(format!("--descriptor_set_in={}", wkt.display()));
    cmd.arg(format!("--descriptor_set_out={}", out.display()));
    for include in includes {
        cmd.arg(format!("-I{}", include.as_ref().display()));
    }
    cmd.arg(format!("-I{}", bundled.display()));
    for file in files {
        cmd.arg(file.as_ref());
    }
    let protoc_shown = protoc.display();
    let output = cmd.output().map_err(|e| {
        Error::one(Diagnostic::new(
            format!("file {shown}"),
            format!("uses protobuf editions, which need protoc, but {protoc_shown} could not be run: {e}"),
            "point PROTOC at a protoc 27 or newer, or generate with protoc or buf running protoc-gen-svc as a plugin",
        ))
    })?;
    if !output.status.success() {
        let version = Command::new(&protoc)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        return Err(Error::one(Diagnostic::new(
            format!("file {shown}"),
            format!(
                "uses protobuf editions; {protoc_shown} ({version}) could not compile the files: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            "fix the errors protoc reports; editions need protoc 27 or newer",
        )));
    }
    let bytes = std::fs::read(&out).map_err(|e| io_error(&out.display().to_string(), &e))?;
    let set = RawSet::decode(bytes.as_slice()).map_err(|e| {
        Error::one(Diagnostic::new("protoc output", format!("is not a descriptor set: {e}"), "check the protoc in use"))
    })?;
    // The requested files, named as protoc names them (relative to the
    // include directory that holds them).
    let requested: std::collections::HashSet<String> =
        files.iter().filter_map(|f| import_name(f.as_ref(), includes)).collect();
    let mut entries = Vec::new();
    for raw in &set.file {
        let header = FileHeader::decode(raw.as_slice()).unwrap_or_default();
        let name = header.name.unwrap_or_default();
        let wanted = requested.contains(&name);
        entries.push((name, header.package.unwrap_or_default(), wanted));
    }
    let request = CodeGeneratorRequest {
        file_to_generate: crate::source::with_package_mates(&entries),
        parameter: None,
        compiler_version: None,
        proto_file: set.file,
        source_file_descriptors: Vec::new(),
    };
    let mut input = crate::plugin::input_from_request(&request)?;
    input.source_paths = entries
        .iter()
        .filter_map(|(name, _, _)| includes.iter().map(|i| i.as_ref().join(name)).find(|p| p.is_file()))
        .collect();
    Ok(input)
}

/// `file`'s name relative to the first include directory that holds it.
fn import_name(file: &Path, includes: &[impl AsRef<Path>]) -> Option<String> {
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let file = absolute(file);
    includes.iter().find_map(|i| {
        let rel = file.strip_prefix(absolute(i.as_ref())).ok()?;
        Some(rel.to_string_lossy().replace('\\', "/"))
    })
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error::one(Diagnostic::new(what.to_owned(), format!("cannot be written or read: {e}"), "check the temp directory"))
}

/// A temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("protoc-gen-svc-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
