//! Makes the third-party .proto files that annotated protos import
//! (`buf/validate/validate.proto`, `google/api/{annotations,http}.proto`,
//! `google/rpc/{status,error_details}.proto`) available to the embedded
//! compiler without copying them into this repository.
//!
//! Where they come from, first match wins:
//! - `SVC_PROTO_DEPS_DIR`, a directory holding the same relative paths;
//! - `third_party/` in this crate's directory: the published crate carries
//!   them there (`scripts/package.sh` puts them in before `cargo package`), so
//!   a build from crates.io or from a `cargo vendor` directory needs nothing
//!   else, offline included;
//! - in a checkout, the crates.io packages that ship them: declared in a
//!   throw-away manifest under OUT_DIR and located with `cargo metadata`,
//!   which downloads them through the user's cargo configuration and never
//!   compiles them.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate, exact version, path inside the crate, import path)
const SOURCES: &[(&str, &str, &str, &str)] = &[
    ("prost-protovalidate-types", "0.6.0", "proto/buf/validate/validate.proto", "buf/validate/validate.proto"),
    ("etcd-client", "0.21.1", "proto/google/api/annotations.proto", "google/api/annotations.proto"),
    ("etcd-client", "0.21.1", "proto/google/api/http.proto", "google/api/http.proto"),
    ("tonic-types", "0.14.9", "proto/status.proto", "google/rpc/status.proto"),
    ("tonic-types", "0.14.9", "proto/error_details.proto", "google/rpc/error_details.proto"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SVC_PROTO_DEPS_DIR");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bundled =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("third_party");
    let flat = env::var_os("SVC_PROTO_DEPS_DIR")
        .map(PathBuf::from)
        .or_else(|| SOURCES.iter().all(|s| bundled.join(s.3).is_file()).then_some(bundled));
    if let Some(dir) = &flat {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let roots = match &flat {
        Some(dir) => SOURCES.iter().map(|s| (s.0, dir.clone())).collect::<Vec<_>>(),
        None => locate_crates(&out),
    };
    let dest = out.join("third_party");
    let mut table = String::from("&[\n");
    for (krate, _version, inner, import) in SOURCES {
        let root = &roots
            .iter()
            .find(|(name, _)| name == krate)
            .unwrap_or_else(|| panic!("package {krate} was not resolved"))
            .1;
        let from = if flat.is_some() { root.join(import) } else { root.join(inner) };
        let text = fs::read_to_string(&from).unwrap_or_else(|e| {
            panic!(
                "cannot read {} (needed as {import}): {e}; set SVC_PROTO_DEPS_DIR to a directory that holds {import}",
                from.display()
            )
        });
        let to = dest.join(import);
        fs::create_dir_all(to.parent().expect("import path has a parent")).expect("create OUT_DIR subdirectory");
        fs::write(&to, text).expect("write into OUT_DIR");
        writeln!(table, "    ({import:?}, include_str!(concat!(env!(\"OUT_DIR\"), \"/third_party/{import}\"))),")
            .expect("write to String");
    }
    table.push(']');
    fs::write(out.join("third_party.rs"), table).expect("write third_party.rs");
}

/// Resolves the source packages with `cargo metadata` on a manifest of their
/// own and returns each package's root directory.
fn locate_crates(out: &Path) -> Vec<(&'static str, PathBuf)> {
    let dir = out.join("proto-deps");
    fs::create_dir_all(dir.join("src")).expect("create manifest directory");
    let mut manifest = String::from(
        "[package]\nname = \"svc-proto-deps\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n[dependencies]\n",
    );
    let mut seen: Vec<&str> = Vec::new();
    for (krate, version, _, _) in SOURCES {
        if !seen.contains(krate) {
            seen.push(krate);
            writeln!(manifest, "{krate} = {{ version = \"={version}\", default-features = false }}")
                .expect("write to String");
        }
    }
    fs::write(dir.join("Cargo.toml"), manifest).expect("write manifest");
    fs::write(dir.join("src/lib.rs"), "").expect("write lib.rs");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1"]).current_dir(&dir);
    if env::var("CARGO_NET_OFFLINE").is_ok_and(|v| v == "true") {
        cmd.arg("--offline");
    }
    let output = cmd.output().expect("run cargo metadata");
    if !output.status.success() {
        panic!(
            "cargo metadata could not resolve the packages that ship third-party .proto files:\n{}\nSet SVC_PROTO_DEPS_DIR to a directory holding buf/validate/validate.proto, google/api/*.proto and google/rpc/*.proto to build without them.",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let json = String::from_utf8(output.stdout).expect("cargo metadata prints UTF-8");
    let manifests: Vec<PathBuf> = json
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(PathBuf::from)
        .collect();
    seen.iter()
        .map(|krate| {
            let version = SOURCES.iter().find(|s| s.0 == *krate).map(|s| s.1).unwrap_or_default();
            let wanted = [format!("{krate}-{version}"), (*krate).to_string()];
            let root = manifests
                .iter()
                .filter_map(|m| m.parent())
                .find(|dir| dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| wanted.iter().any(|w| w == n)))
                .unwrap_or_else(|| panic!("cargo metadata did not report a source directory for {krate} {version}"));
            (*krate, root.to_path_buf())
        })
        .collect()
}
