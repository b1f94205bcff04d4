//! The include file (`mod.rs` by default) that declares the nested module
//! tree, one module per protobuf package.

use std::collections::BTreeMap;

/// How a package's code is brought into its module.
pub enum Body<'a> {
    /// `include!("<file>");` — for files on disk.
    Include(&'a str),
    /// The code itself, inline — for the proc-macro.
    Inline(&'a str),
}

#[derive(Default)]
struct Node<'a> {
    body: Option<Body<'a>>,
    children: BTreeMap<String, Node<'a>>,
}

/// Lints that code generated from ordinary .proto files trips in user crates
/// that deny warnings; allowed per package module, never crate-wide. Each
/// entry is needed by a case in the compile or corpus tests:
/// - `module_inception`: a nested message named like its parent
///   (`Outer.Inner.Inner`) becomes a module inside a module of that name.
/// - `dead_code`: a binary that includes the code rarely uses every
///   message, client and helper of a package (tonic-build allows it in its
///   modules for the same reason).
pub const ALLOWED_LINTS: &[&str] = &["clippy::module_inception", "dead_code"];

/// Renders the module tree. `packages` holds (module path parts, body).
pub fn render(packages: &[(Vec<String>, Body<'_>)]) -> String {
    let mut root = Node::default();
    for (parts, body) in packages {
        let mut node = &mut root;
        for part in parts {
            node = node.children.entry(part.clone()).or_default();
        }
        node.body = Some(match body {
            Body::Include(f) => Body::Include(f),
            Body::Inline(s) => Body::Inline(s),
        });
    }
    let mut out = super::header();
    write_node(&root, 0, &mut out);
    out
}

fn write_node(node: &Node<'_>, depth: usize, out: &mut String) {
    let pad = "    ".repeat(depth);
    match &node.body {
        Some(Body::Include(file)) => out.push_str(&format!("{pad}include!({file:?});\n")),
        Some(Body::Inline(code)) => {
            for line in code.lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(&format!("{pad}{line}\n"));
                }
            }
        }
        None => {}
    }
    for (name, child) in &node.children {
        if child.body.is_some() {
            out.push_str(&format!("{pad}#[allow({})]\n", ALLOWED_LINTS.join(", ")));
        }
        out.push_str(&format!("{pad}pub mod {name} {{\n"));
        write_node(child, depth + 1, out);
        out.push_str(&format!("{pad}}}\n"));
    }
}
