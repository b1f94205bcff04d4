//! Generates `grpc.testing` (the interop `test.proto`, `messages.proto`
//! and `empty.proto`) with protoc-gen-svc. The protos come from a package,
//! never from this repository: `SVC_INTEROP_PROTO` names the folder holding
//! `grpc/testing/*.proto`; by default `.tools/interop/proto`, where
//! scripts/setup-tools.sh extracts them from the grpc-interop-testing jar.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=SVC_INTEROP_PROTO");
    let root = match std::env::var_os("SVC_INTEROP_PROTO") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../.tools/interop/proto"),
    };
    let test = root.join("grpc/testing/test.proto");
    if !test.is_file() {
        return Err(format!(
            "{} is missing: the interop protos come from the grpc-interop-testing jar; \
             run `bash scripts/setup-tools.sh` (or set SVC_INTEROP_PROTO to a folder holding grpc/testing/test.proto)",
            test.display()
        )
        .into());
    }
    protoc_gen_svc::configure().emit_rerun_if_changed(true).compile(&[test], &[root])?;
    Ok(())
}
