//! The descriptors gRPC reflection serves.

use crate::Error;
use crate::codegen::ServiceSpec;

/// The descriptors reflection serves: every service's files and their
/// imports, each once.
pub(super) fn reflection_descriptors(specs: &[&ServiceSpec]) -> Result<prost_types::FileDescriptorSet, Error> {
    use prost::Message;
    let mut files: Vec<prost_types::FileDescriptorProto> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    for spec in specs {
        // Services of one package share their node; packages built apart
        // (two generated crates) may each carry the same imported file.
        for bytes in spec.descriptors.files() {
            if !seen.insert(bytes.as_ptr()) {
                continue;
            }
            let file = prost_types::FileDescriptorProto::decode(bytes)
                .map_err(|e| Error::Reflection(format!("generated descriptors do not decode: {e}")))?;
            if names.insert(file.name().to_owned()) {
                files.push(file);
            }
        }
    }
    Ok(prost_types::FileDescriptorSet { file: files })
}
