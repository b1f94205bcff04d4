//! The build-script API, named after tonic-build's:
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     protoc_gen_svc::configure()
//!         .build_client(false)
//!         .compile_protos(&["proto/shop/v1/shop.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! and in the crate: `svc_runtime::include_proto!("shop.v1");` or
//! `include!(concat!(env!("OUT_DIR"), "/mod.rs"));`. No protoc is needed.

use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, Error, Result};
use crate::params::{Options, Target};

/// Configures code generation from a build script.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    options: Options,
    out_dir: Option<PathBuf>,
    emit_rerun: Option<bool>,
}

/// Starts a [`Builder`] with default options (tonic-build's entry point name).
pub fn configure() -> Builder {
    Builder::new()
}

impl Builder {
    /// A builder with default options.
    pub fn new() -> Self {
        Builder::default()
    }

    /// Sets a parameter by its plugin name (`target`, `extern_path`, ...).
    pub fn opt(mut self, key: &str, value: &str) -> Result<Self> {
        self.options.set(key, value)?;
        Ok(self)
    }

    /// Emit server traits and glue (default true).
    pub fn build_server(mut self, yes: bool) -> Self {
        self.options.server = yes;
        self
    }

    /// Emit clients (default true).
    pub fn build_client(mut self, yes: bool) -> Self {
        self.options.client = yes;
        self
    }

    /// Emit prost message types (default true).
    pub fn build_messages(mut self, yes: bool) -> Self {
        self.options.messages = yes;
        self
    }

    /// Emit request validation (default true).
    pub fn validate(mut self, yes: bool) -> Self {
        self.options.validate = yes;
        self
    }

    /// Path under which generated code reaches the runtime (default `::svc_runtime`).
    pub fn runtime_crate(mut self, path: impl Into<String>) -> Self {
        self.options.runtime_crate = path.into();
        self
    }

    /// Maps a proto package or type to an existing Rust path.
    pub fn extern_path(mut self, proto: impl Into<String>, rust: impl Into<String>) -> Self {
        self.options.extern_paths.push((proto.into(), rust.into()));
        self
    }

    /// Adds an attribute to matching messages and enums.
    pub fn type_attribute(mut self, path: impl Into<String>, attribute: impl Into<String>) -> Self {
        self.options.type_attributes.push((path.into(), attribute.into()));
        self
    }

    /// Adds an attribute to matching fields.
    pub fn field_attribute(mut self, path: impl Into<String>, attribute: impl Into<String>) -> Self {
        self.options.field_attributes.push((path.into(), attribute.into()));
        self
    }

    /// Uses `bytes::Bytes` for matching `bytes` fields.
    pub fn bytes(mut self, path: impl Into<String>) -> Self {
        self.options.bytes.push(path.into());
        self
    }

    /// Uses `BTreeMap` for matching map fields.
    pub fn btree_map(mut self, path: impl Into<String>) -> Self {
        self.options.btree_map.push(path.into());
        self
    }

    /// Name of the module-tree file (default `mod.rs`; empty disables it).
    pub fn include_file(mut self, name: impl Into<String>) -> Self {
        self.options.include_file = name.into();
        self
    }

    /// What to emit (default [`Target::Rust`]).
    pub fn target(mut self, target: Target) -> Self {
        self.options.target = target;
        self
    }

    /// Output directory (default `$OUT_DIR`).
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Print `cargo:rerun-if-changed` for every .proto read (default: when
    /// running inside a build script).
    pub fn emit_rerun_if_changed(mut self, yes: bool) -> Self {
        self.emit_rerun = Some(yes);
        self
    }

    /// The options this builder will use.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Compiles `protos`, searching `includes` for imports, and writes the
    /// generated files. Same as [`Builder::compile`].
    pub fn compile_protos(&self, protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<Vec<PathBuf>> {
        self.compile(protos, includes)
    }

    /// Compiles `protos` and writes the generated files; returns their paths.
    pub fn compile(&self, protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<Vec<PathBuf>> {
        let out_dir = self.output_dir()?;
        let input = crate::source::compile(protos, includes)?;
        if self.emit_rerun.unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR").is_some() && std::env::var_os("OUT_DIR").is_some()
        }) {
            for path in &input.source_paths {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            for include in includes {
                println!("cargo:rerun-if-changed={}", include.as_ref().display());
            }
        }
        let files = crate::generate(&input, &self.options)?;
        write_files(&out_dir, &files)
    }
}

impl Builder {
    /// Where files are written: `.out_dir(...)`, else cargo's `OUT_DIR`.
    fn output_dir(&self) -> Result<PathBuf> {
        match &self.out_dir {
            Some(d) => Ok(d.clone()),
            None => std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or_else(|| {
                Error::one(Diagnostic::new(
                    "Builder",
                    "OUT_DIR is not set",
                    "call it from build.rs, or set an output directory with .out_dir(...)",
                ))
            }),
        }
    }

    /// Generates from an encoded `google.protobuf.FileDescriptorSet` (from
    /// `buf build -o`, `protoc --descriptor_set_out --include_imports`, or
    /// another tool) instead of .proto files: code for the files named in
    /// `files` (all of them when empty), which must come after their
    /// imports in the set. Writes the generated files; returns their paths.
    pub fn compile_descriptor_set(&self, descriptor_set: &[u8], files: &[&str]) -> Result<Vec<PathBuf>> {
        let out_dir = self.output_dir()?;
        let names = crate::source::set_file_names(descriptor_set)?;
        let files_to_generate = if files.is_empty() { names } else { files.iter().map(|f| (*f).to_owned()).collect() };
        let descriptor_set = crate::source::lower_editions(descriptor_set)?;
        let input = crate::Input { descriptor_set, files_to_generate, source_paths: Vec::new() };
        let files = crate::generate(&input, &self.options)?;
        write_files(&out_dir, &files)
    }
}

/// Writes generated files under `dir`, creating directories; files whose
/// content is unchanged are not rewritten (keeps mtimes stable for cargo).
pub fn write_files(dir: &Path, files: &[crate::GeneratedFile]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::with_capacity(files.len());
    for f in files {
        let path = dir.join(&f.name);
        let io = |e: std::io::Error| {
            Error::one(Diagnostic::new(
                format!("output {}", path.display()),
                format!("cannot be written: {e}"),
                "check that the output directory exists and is writable",
            ))
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        if std::fs::read(&path).ok().as_deref() != Some(f.content.as_bytes()) {
            std::fs::write(&path, &f.content).map_err(io)?;
        }
        written.push(path);
    }
    Ok(written)
}
