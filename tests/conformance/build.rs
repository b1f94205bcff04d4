//! Generates the validators of every message the protovalidate
//! conformance harness tests, from the descriptors the harness itself
//! dumps (`protovalidate-conformance --dump --proto`, path in
//! `SVC_CONFORMANCE_DUMP`), and a registry that decodes and validates a
//! case by its type URL.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use prost::encoding::{WireType, decode_key, decode_varint};

/// The length-delimited fields numbered `number` of an encoded message.
fn fields(mut buf: &[u8], number: u32) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).expect("a key");
        match wire {
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).expect("a length") as usize;
                if tag == number {
                    out.push(&buf[..len]);
                }
                buf = &buf[len..];
            }
            WireType::Varint => {
                decode_varint(&mut buf).expect("a varint");
            }
            WireType::SixtyFourBit => buf = &buf[8..],
            WireType::ThirtyTwoBit => buf = &buf[4..],
            other => panic!("unexpected wire type {other:?}"),
        }
    }
    out
}

/// Re-encodes a message, each field passed through `keep` (tag, raw
/// field bytes including the key) to be kept as is, replaced or dropped.
fn rewrite(mut buf: &[u8], mut each: impl FnMut(u32, &[u8], &[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    while !buf.is_empty() {
        let start = buf;
        let (tag, wire) = decode_key(&mut buf).expect("a key");
        let body: &[u8] = match wire {
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).expect("a length") as usize;
                let b = &buf[..len];
                buf = &buf[len..];
                b
            }
            WireType::Varint => {
                decode_varint(&mut buf).expect("a varint");
                &[]
            }
            WireType::SixtyFourBit => {
                buf = &buf[8..];
                &[]
            }
            WireType::ThirtyTwoBit => {
                buf = &buf[4..];
                &[]
            }
            other => panic!("unexpected wire type {other:?}"),
        };
        let whole = &start[..start.len() - buf.len()];
        if let Some(bytes) = each(tag, whole, body) {
            out.extend_from_slice(&bytes);
        }
    }
    out
}

fn length_delimited(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(tag, WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// `file` with the validation rules of message `path` (names from the
/// package down) removed: its options and its fields' options.
fn without_rules(container: &[u8], path: &[&str], message_tag: u32) -> Vec<u8> {
    rewrite(container, |tag, whole, body| {
        if tag != message_tag || string_field(body, 1).as_deref() != path.first().copied() {
            return Some(whole.to_vec());
        }
        if path.len() > 1 {
            return Some(length_delimited(tag, &without_rules(body, &path[1..], 3)));
        }
        let stripped = rewrite(body, |t, w, b| match t {
            7 => None,
            2 => Some(length_delimited(2, &rewrite(b, |ft, fw, _| (ft != 8).then(|| fw.to_vec())))),
            _ => Some(w.to_vec()),
        });
        Some(length_delimited(tag, &stripped))
    })
}

fn string_field(buf: &[u8], number: u32) -> Option<String> {
    fields(buf, number).first().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SVC_CONFORMANCE_DUMP");
    let dump = std::env::var_os("SVC_CONFORMANCE_DUMP").map(PathBuf::from).expect(
        "SVC_CONFORMANCE_DUMP names the harness's dump (protovalidate-conformance --dump --proto); \
         scripts/conformance.sh sets it",
    );
    println!("cargo:rerun-if-changed={}", dump.display());
    let bytes = std::fs::read(&dump).expect("the dump reads");
    // ResultSet.suites (3) → SuiteResults.fdset (5) → FileDescriptorSet.file (1),
    // kept as raw bytes so extension options survive; each suite's set has
    // every file after its imports, so first-seen order keeps that.
    let mut seen = BTreeSet::new();
    let mut files: Vec<&[u8]> = Vec::new();
    for suite in fields(&bytes, 3) {
        for set in fields(suite, 5) {
            for file in fields(set, 1) {
                let name = string_field(file, 1).expect("a file name");
                if seen.insert(name) {
                    files.push(file);
                }
            }
        }
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let builder = protoc_gen_svc::configure().build_server(false).build_client(false).out_dir(&out);
    // Files the generator refuses (it names them) are left out, with the
    // files that import them, and reported: their cases fail as unknown
    // types rather than hiding the rest.
    let mut left_out: BTreeSet<String> = BTreeSet::new();
    // Messages whose rules the generator rejects: the harness expects a
    // compilation error for them; their rules are removed so the rest of
    // their file is generated.
    let mut rejected: Vec<(String, String)> = Vec::new();
    let mut owned: Vec<Vec<u8>> = files.iter().map(|f| f.to_vec()).collect();
    let (files, names) = loop {
        let files: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let kept: Vec<&[u8]> = files
            .iter()
            .copied()
            .filter(|f| {
                let name = string_field(f, 1).unwrap_or_default();
                let imports: Vec<String> =
                    fields(f, 3).iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect();
                !left_out.contains(&name) && !imports.iter().any(|i| left_out.contains(i))
            })
            .collect();
        let set = protoc_gen_svc::source::encode_set(kept.iter().copied());
        let names: Vec<String> = kept.iter().filter_map(|f| string_field(f, 1)).collect();
        let wanted: Vec<&str> =
            names.iter().map(String::as_str).filter(|n| !n.starts_with("google/protobuf/")).collect();
        match builder.compile_descriptor_set(&set, &wanted) {
            Ok(_) => break (kept.iter().map(|f| f.to_vec()).collect::<Vec<Vec<u8>>>(), names),
            Err(e) => {
                let mut progressed = false;
                for d in &e.diagnostics {
                    let Some(file) = &d.file else { continue };
                    let element = &d.element;
                    let message = if let Some(f) = element.strip_prefix("field ") {
                        f.rsplit_once('.').map(|(m, _)| m.to_owned())
                    } else {
                        element.strip_prefix("message ").map(str::to_owned)
                    };
                    let Some(message) = message else { continue };
                    if rejected.iter().any(|(m, _)| *m == message) {
                        continue;
                    }
                    let Some(i) = owned.iter().position(|f| string_field(f, 1).as_deref() == Some(file.as_str()))
                    else {
                        continue;
                    };
                    let package = string_field(&owned[i], 2).unwrap_or_default();
                    let local = message.strip_prefix(&format!("{package}.")).unwrap_or(&message).to_owned();
                    let path: Vec<&str> = local.split('.').collect();
                    owned[i] = without_rules(&owned[i], &path, 4);
                    rejected.push((message.clone(), format!("{}: {}", d.element, d.message)));
                    progressed = true;
                }
                if progressed {
                    continue;
                }
                let refused: Vec<String> = e.diagnostics.iter().filter_map(|d| d.file.clone()).collect();
                if refused.is_empty() || refused.iter().all(|f| left_out.contains(f)) {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
                for (file, d) in e.diagnostics.iter().filter_map(|d| d.file.as_ref().map(|f| (f, d))) {
                    if left_out.insert(file.clone()) {
                        println!("cargo:warning=left out {file}: {}", d.message);
                    }
                }
            }
        }
    };
    let wanted: Vec<&str> = names.iter().map(String::as_str).filter(|n| !n.starts_with("google/protobuf/")).collect();
    // The registry: every message of the generated files by full name.
    let mut registry = String::from(
        "/// Decodes `bytes` as the message named by `type_url` and validates it;\n\
         /// `None` for a type this executor does not know.\n\
         pub fn validate(type_url: &str, bytes: &[u8]) -> Option<Result<Result<(), crate::Failure>, prost::DecodeError>> {\n\
         use crate::rejected;\n\
         let name = type_url.rsplit('/').next().unwrap_or(type_url);\n\
         match name {\n",
    );
    for (message, why) in &rejected {
        let _ = writeln!(registry, "{message:?} => Some(Ok(Err(rejected({why:?})))),");
    }
    for file in files.iter().filter(|f| string_field(f, 1).is_some_and(|n| wanted.contains(&n.as_str()))) {
        let package = string_field(file, 2).unwrap_or_default();
        let module: Vec<String> =
            package.split('.').filter(|p| !p.is_empty()).map(protoc_gen_svc::ident::to_snake).collect();
        let mut stack: Vec<(String, &[u8])> = fields(file, 4).into_iter().map(|m| (package.clone(), m)).collect();
        while let Some((scope, message)) = stack.pop() {
            let name = string_field(message, 1).expect("a message name");
            let full = if scope.is_empty() { name.clone() } else { format!("{scope}.{name}") };
            // Map entries (options.map_entry) are not types of their own.
            let options = fields(message, 7);
            let map_entry = options.first().is_some_and(|o| o.windows(2).any(|w| w == [0x38, 0x01]));
            if map_entry {
                continue;
            }
            for nested in fields(message, 3) {
                stack.push((full.clone(), nested));
            }
            let path = protoc_gen_svc::ident::type_path(&package, &full);
            let mut rust = String::from("crate::pb");
            for m in &module {
                rust.push_str("::");
                rust.push_str(m);
            }
            if rejected.iter().any(|(m, _)| *m == full) {
                continue;
            }
            let _ = writeln!(
                registry,
                "{full:?} => Some(<{rust}::{path} as prost::Message>::decode(bytes).map(|m| crate::checked(svc_runtime::validate::Validate::check(&m)))),"
            );
        }
    }
    // Well-known types sent as cases themselves: prost-types' (or Rust's)
    // own, with the runtime's validators (they carry no rules).
    for (name, rust) in [
        ("google.protobuf.Any", "prost_types::Any"),
        ("google.protobuf.Duration", "prost_types::Duration"),
        ("google.protobuf.Timestamp", "prost_types::Timestamp"),
        ("google.protobuf.FieldMask", "prost_types::FieldMask"),
        ("google.protobuf.Struct", "prost_types::Struct"),
        ("google.protobuf.Value", "prost_types::Value"),
        ("google.protobuf.ListValue", "prost_types::ListValue"),
        ("google.protobuf.Empty", "()"),
    ] {
        let _ = writeln!(
            registry,
            "{name:?} => Some(<{rust} as prost::Message>::decode(bytes).map(|m| crate::checked(svc_runtime::validate::Validate::check(&m)))),"
        );
    }
    registry.push_str("_ => None,\n}\n}\n");
    std::fs::write(out.join("registry.rs"), registry).expect("the registry writes");
}
