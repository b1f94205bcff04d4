//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use prost::Message;
use protoc_gen_svc::plugin::CodeGeneratorRequest;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crate has a parent").to_path_buf()
}

/// The example's proto directory and file.
pub fn example() -> (PathBuf, PathBuf) {
    let dir = repo().join("examples/01-greeter/proto");
    (dir.clone(), dir.join("greeter/v1/greeter.proto"))
}

/// Raw `FileDescriptorProto`s of an encoded set.
#[derive(Clone, PartialEq, Message)]
pub struct RawSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub file: Vec<Vec<u8>>,
}

/// A request as protoc would send it for `files` (compiled with protox).
pub fn request_for(files: &[PathBuf], includes: &[PathBuf], parameter: &str) -> CodeGeneratorRequest {
    let input = protoc_gen_svc::source::compile(files, includes).expect("fixture compiles");
    CodeGeneratorRequest {
        file_to_generate: input.files_to_generate.clone(),
        parameter: Some(parameter.to_owned()),
        compiler_version: None,
        proto_file: RawSet::decode(input.descriptor_set.as_slice()).expect("set decodes").file,
        source_file_descriptors: Vec::new(),
    }
}

/// Reads every file under `dir` as (relative name, content), sorted.
pub fn read_tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).expect("under dir").to_string_lossy().replace('\\', "/");
                out.push((name, std::fs::read_to_string(&path).expect("utf-8 file")));
            }
        }
    }
    out.sort();
    out
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
