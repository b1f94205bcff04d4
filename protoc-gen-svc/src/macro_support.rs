//! What the `svc_runtime::proto!` macro expands to, computed here so the macro crate
//! stays a thin shell and the expansion is testable in process.

use std::path::{Path, PathBuf};

use crate::emit::modfile::{self, Body};
use crate::error::{Diagnostic, Error, Result};
use crate::params::Options;

/// A parsed macro invocation: `svc_runtime::proto!("a.proto", "b.proto"; includes = ["proto"], opt = "k=v,...")`.
#[derive(Debug, Clone, Default)]
pub struct MacroRequest {
    /// Proto files, relative to the crate root or to an include directory.
    pub files: Vec<String>,
    /// Include directories, relative to the crate root.
    pub includes: Vec<String>,
    /// Parameters, written as for `--svc_opt`.
    pub options: String,
}

/// The macro's expansion, as source text, plus the files it read.
#[derive(Debug, Clone)]
pub struct Expansion {
    /// Rust source of the module tree with every package's code inline.
    pub code: String,
    /// Absolute paths of every .proto read, tracked for rebuilds.
    pub tracked: Vec<PathBuf>,
}

/// Computes the expansion for `request`, resolving paths against `root`
/// (the invoking crate's `CARGO_MANIFEST_DIR`).
pub fn expand(request: &MacroRequest, root: &Path) -> Result<Expansion> {
    if request.files.is_empty() {
        return Err(Error::one(Diagnostic::new(
            "svc_runtime::proto!",
            "no .proto file given",
            "write svc_runtime::proto!(\"proto/shop.proto\")",
        )));
    }
    let options = Options::parse(&request.options)?;
    let mut includes: Vec<PathBuf> = request.includes.iter().map(|i| root.join(i)).collect();
    if includes.is_empty() {
        // Default: the directory of each file, so plain imports resolve.
        for f in &request.files {
            let dir = root.join(f).parent().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
            if !includes.contains(&dir) {
                includes.push(dir);
            }
        }
    }
    let files: Vec<PathBuf> = request.files.iter().map(|f| root.join(f)).collect();
    let input = crate::source::compile(&files, &includes)?;
    let pool = crate::descriptor_pool(&input)?;
    let packages = crate::annotations::read_packages(&pool, &input)?;
    let codes = crate::emit::rust::package_code(&pool, &input.descriptor_set, &packages, &options, 1)?;
    let tree: Vec<(Vec<String>, Body<'_>)> =
        codes.iter().map(|p| (p.module.clone(), Body::Inline(p.code.as_str()))).collect();
    let tracked = input.source_paths.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
    Ok(Expansion { code: modfile::render(&tree), tracked })
}
