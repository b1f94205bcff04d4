//! The descriptors gRPC reflection serves, embedded so that each file's bytes
//! appear once in the generated tree however many packages import it.
//!
//! Every generated package gets a `FILE_DESCRIPTORS` static holding its own
//! files and linking to the statics of the packages its files import. Files
//! the build imports but does not generate (the well-known types, option
//! definitions, packages generated elsewhere) go once into a
//! `SHARED_FILE_DESCRIPTORS` static, declared in the package whose name sorts
//! first. Output therefore grows with the input, not with the size of each
//! package's import closure; following the links from any package still
//! reaches every file it depends on.
//!
//! The bytes do not depend on which compiler (protoc, buf, protox) produced
//! the descriptors: the well-known types are this generator's own copy (each
//! compiler ships its own revision; one the generator lacks is left out),
//! source info is dropped (compilers record different locations), every file
//! is re-encoded canonically (compilers order option fields differently), and
//! files come in a canonical dependency order. Types and options, custom ones
//! included, are kept.
//!
//! The statics are written as text after formatting: byte literals are
//! escaped once here and never pass through the token and formatting
//! machinery.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use crate::source::{FileHeader, SOURCE_CODE_INFO, strip_field};

/// Name of the static declared in every package.
pub const PACKAGE_STATIC: &str = "FILE_DESCRIPTORS";
/// Name of the static holding the imports the build does not generate.
pub const SHARED_STATIC: &str = "SHARED_FILE_DESCRIPTORS";

/// Where a file's bytes live.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
enum Node {
    /// The package at this index of [`Plan::packages`].
    Package(usize),
    /// The shared static.
    Shared,
}

/// The statics of one build.
pub struct Plan {
    /// Rendered statics per package name.
    text: HashMap<String, String>,
}

impl Plan {
    /// Encodes the descriptors of `packages` (name, files) and of everything
    /// they import, each file once, and renders the statics.
    pub(crate) fn new(
        pool: &DescriptorPool,
        packages: &[(&str, &[String])],
        by_name: &HashMap<String, (&[u8], FileHeader)>,
        runtime: &str,
    ) -> Plan {
        let mut names: Vec<String> = packages.iter().map(|(n, _)| (*n).to_owned()).collect();
        names.sort();
        names.dedup();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let mut owner: HashMap<&str, Node> = HashMap::new();
        let mut roots: Vec<&str> = Vec::new();
        for (package, files) in packages {
            for file in files.iter() {
                owner.insert(file.as_str(), Node::Package(index[package]));
                roots.push(file.as_str());
            }
        }
        let order = canonical_order(roots, by_name);
        let owner_of = |file: &str| owner.get(file).copied().unwrap_or(Node::Shared);

        let global = DescriptorPool::global();
        let file_desc = pool
            .get_message_by_name("google.protobuf.FileDescriptorProto")
            .or_else(|| global.get_message_by_name("google.protobuf.FileDescriptorProto"));
        // Per node: its files (name, encoded) in canonical order, and the
        // nodes they import.
        let mut files: HashMap<Node, Vec<(&str, Vec<u8>)>> = HashMap::new();
        let mut imports: HashMap<Node, BTreeSet<Node>> = HashMap::new();
        for name in order {
            let node = owner_of(name);
            let encoded = if name.starts_with("google/protobuf/") {
                global.get_file_by_name(name).map(|f| {
                    canonical(
                        file_desc.as_ref(),
                        &strip_field(&f.file_descriptor_proto().encode_to_vec(), SOURCE_CODE_INFO),
                    )
                })
            } else {
                by_name.get(name).map(|(bytes, _)| canonical(file_desc.as_ref(), &strip_field(bytes, SOURCE_CODE_INFO)))
            };
            let Some(encoded) = encoded else { continue };
            files.entry(node).or_default().push((name, encoded));
            if let Some((_, head)) = by_name.get(name) {
                for dep in &head.dependency {
                    let to = owner_of(dep);
                    if to != node {
                        imports.entry(node).or_default().insert(to);
                    }
                }
            }
        }

        let modules: Vec<Vec<String>> = names
            .iter()
            .map(|n| prost_build::Module::from_protobuf_package_name(n).parts().map(str::to_owned).collect())
            .collect();
        // A path to `target`'s static from package `from`'s module: through
        // the package tree, as prost names types of other packages.
        let path = |from: usize, target: Node| -> String {
            let (host, name) = match target {
                Node::Package(i) => (i, PACKAGE_STATIC),
                Node::Shared => (0, SHARED_STATIC),
            };
            if host == from {
                return name.to_owned();
            }
            let mut parts: Vec<String> = vec!["super".to_owned(); modules[from].len()];
            parts.extend(modules[host].iter().cloned());
            parts.push(name.to_owned());
            parts.join("::")
        };
        let mut text: HashMap<String, String> = HashMap::new();
        for (i, package) in names.iter().enumerate() {
            let node = Node::Package(i);
            let links: Vec<String> = imports.get(&node).into_iter().flatten().map(|to| path(i, *to)).collect();
            let doc = format!(
                "Encoded descriptors of the files of package `{package}`, for gRPC reflection; with the statics they link to, they describe the package completely (`encode_set()` gives a `FileDescriptorSet`)."
            );
            let mut out = String::new();
            write_static(
                &mut out,
                &doc,
                PACKAGE_STATIC,
                runtime,
                files.get(&node).map_or(&[][..], Vec::as_slice),
                &links,
            );
            if i == 0 && files.contains_key(&Node::Shared) {
                let links: Vec<String> =
                    imports.get(&Node::Shared).into_iter().flatten().map(|to| path(i, *to)).collect();
                let doc = "Encoded descriptors of the files this build imports without generating them (well-known types, option definitions), shared by every package of the build.";
                out.push('\n');
                write_static(&mut out, doc, SHARED_STATIC, runtime, &files[&Node::Shared], &links);
            }
            text.insert(package.clone(), out);
        }
        Plan { text }
    }

    /// The statics to append to `package`'s file.
    pub fn text(&self, package: &str) -> &str {
        self.text.get(package).map_or("", String::as_str)
    }
}

/// Renders one `FileDescriptors` static.
fn write_static(out: &mut String, doc: &str, name: &str, runtime: &str, files: &[(&str, Vec<u8>)], links: &[String]) {
    let ty = format!("{runtime}::codegen::FileDescriptors");
    let _ = writeln!(out, "/// {doc}");
    let _ = writeln!(out, "pub static {name}: {ty} = {ty} {{");
    if files.is_empty() {
        out.push_str("    files: &[],\n");
    } else {
        out.push_str("    files: &[\n");
        for (file, bytes) in files {
            let _ = writeln!(out, "        // {}", file.replace(['\n', '\r'], " "));
            out.push_str("        ");
            byte_literal(bytes, out);
            out.push_str(",\n");
        }
        out.push_str("    ],\n");
    }
    if links.is_empty() {
        out.push_str("    imports: &[],\n");
    } else {
        out.push_str("    imports: &[\n");
        for link in links {
            let _ = writeln!(out, "        &{link},");
        }
        out.push_str("    ],\n");
    }
    out.push_str("};\n");
}

/// Appends `bytes` as a Rust byte string literal: printable ASCII as is,
/// common escapes by name, everything else as `\xNN`.
pub fn byte_literal(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("b\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                out.push_str("\\x");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    out.push('"');
}

/// `roots` (sorted by name) and their imports, each after its imports: a
/// depth-first post-order over imports in declaration order, which depends
/// only on the files' contents. Iterative, so a long import chain cannot
/// overflow the stack.
fn canonical_order<'a>(mut roots: Vec<&'a str>, by_name: &'a HashMap<String, (&[u8], FileHeader)>) -> Vec<&'a str> {
    roots.sort_unstable();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for root in roots {
        if !seen.insert(root) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
        while let Some((name, next)) = stack.pop() {
            let deps = by_name.get(name).map_or(&[][..], |(_, head)| head.dependency.as_slice());
            if let Some(dep) = deps.get(next) {
                stack.push((name, next + 1));
                if seen.insert(dep.as_str()) {
                    stack.push((dep.as_str(), 0));
                }
            } else {
                out.push(name);
            }
        }
    }
    out
}

/// Re-encodes a `FileDescriptorProto` with fields, extensions included, in
/// field-number order. Bytes that do not decode are returned unchanged.
fn canonical(desc: Option<&MessageDescriptor>, bytes: &[u8]) -> Vec<u8> {
    match desc.map(|d| DynamicMessage::decode(d.clone(), bytes)) {
        Some(Ok(mut message)) => {
            strip_default_json_names(&mut message);
            super::canonical::encode(&message)
        }
        _ => bytes.to_vec(),
    }
}

/// Clears every field's `json_name` that equals the default one (protoc
/// fills it in for every field; readers derive it when it is absent), so
/// only names set with the `json_name` option take room.
fn strip_default_json_names(file: &mut DynamicMessage) {
    fn fields(owner: &mut DynamicMessage, list: &str) {
        let Some(Value::List(fields)) = owner.get_field_by_name_mut(list) else { return };
        for field in fields {
            let Value::Message(field) = field else { continue };
            let name = field.get_field_by_name("name").and_then(|v| v.as_str().map(default_json_name));
            let json = field.get_field_by_name("json_name").and_then(|v| v.as_str().map(str::to_owned));
            if name.is_some() && name == json {
                field.clear_field_by_name("json_name");
            }
        }
    }
    fn messages(owner: &mut DynamicMessage, list: &str) {
        let Some(Value::List(list)) = owner.get_field_by_name_mut(list) else { return };
        for message in list {
            let Value::Message(message) = message else { continue };
            fields(message, "field");
            fields(message, "extension");
            messages(message, "nested_type");
        }
    }
    fields(file, "extension");
    messages(file, "message_type");
}

/// The JSON name protoc gives a field: underscores dropped, each letter
/// after one capitalised.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_literals_round_trip_through_the_rust_lexer() {
        let bytes: Vec<u8> = (0..=255u8).chain(*b"\"\\\n\r\t\x001").collect();
        let mut text = String::new();
        byte_literal(&bytes, &mut text);
        let lit: syn::LitByteStr = syn::parse_str(&text).expect("a byte string literal");
        assert_eq!(lit.value(), bytes);
        assert!(text.is_ascii());
    }

    #[test]
    fn default_json_names_follow_protoc() {
        assert_eq!(default_json_name("updated_at"), "updatedAt");
        assert_eq!(default_json_name("a__b_c1_d"), "aBC1D");
        assert_eq!(default_json_name("_x"), "X");
        assert_eq!(default_json_name("trailing_"), "trailing");
        assert_eq!(default_json_name("already"), "already");
    }

    #[test]
    fn imports_come_first_and_long_chains_do_not_recurse() {
        let heads: Vec<(String, FileHeader)> = (0..100_000)
            .map(|i| {
                let name = format!("f{i}.proto");
                let dependency = if i == 0 { vec![] } else { vec![format!("f{}.proto", i - 1)] };
                (name.clone(), FileHeader { name: Some(name), dependency, ..Default::default() })
            })
            .collect();
        let by_name: HashMap<String, (&[u8], FileHeader)> = heads.into_iter().map(|(n, h)| (n, (&[][..], h))).collect();
        let order = canonical_order(vec!["f99999.proto", "f5.proto"], &by_name);
        assert_eq!(order.len(), 100_000);
        assert_eq!(order[0], "f0.proto");
        assert_eq!(order[99_999], "f99999.proto");
    }
}
