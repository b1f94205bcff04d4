//! Validators: each message's `buf.validate` rules compiled to Rust.
//!
//! For every message of a generated package this writes an
//! `impl Validate` whose body checks the rules with their values as
//! constants and messages formatted at generation time, the way
//! protovalidate's CEL definitions of the standard rules say. Rule paths
//! come from the rules' own descriptors (`buf.validate.FieldRules` and the
//! `*Rules` messages in the request), so they are what protovalidate
//! reports.

use std::collections::HashSet;
use std::fmt::Write as _;

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};

use crate::error::{Diagnostic, Result};
use crate::ident;

mod cel;

const FIELD_EXT: &str = "buf.validate.field";
const MESSAGE_EXT: &str = "buf.validate.message";
const ONEOF_EXT: &str = "buf.validate.oneof";
const PREDEFINED_EXT: &str = "buf.validate.predefined";

/// `buf.validate.Ignore` values.
const IGNORE_IF_ZERO_VALUE: i32 = 1;
const IGNORE_ALWAYS: i32 = 3;

/// The validators of the messages declared in `files` (of package
/// `package`), as Rust items; `generated` names every file whose messages
/// get validators in this run (so nested messages from them can be
/// walked).
pub fn package(
    pool: &DescriptorPool,
    package: &str,
    files: &[String],
    generated: &HashSet<&str>,
    external: &[String],
    descriptor_set: &[u8],
    rt: &str,
) -> Result<String> {
    // Types prost maps elsewhere (the well-known types to prost-types,
    // `extern_path`s) are not ours to implement a trait for.
    if is_external(package, external) {
        return Ok(String::new());
    }
    // Files in name order, so that every front end writes the same code.
    let mut files: Vec<&String> = files.iter().collect();
    files.sort();
    let Some(field_ext) = pool.get_extension_by_name(FIELD_EXT) else {
        // No file imports buf/validate: every message is valid as it is.
        let mut out = String::new();
        for file in files.iter().filter_map(|f| pool.get_file_by_name(f)) {
            for m in all_messages(file.messages()).into_iter().filter(|m| !is_external(m.full_name(), external)) {
                let path = ident::type_path(package, m.full_name());
                let _ = writeln!(
                    out,
                    "impl {rt}::validate::Validate for {path} {{ fn validate_into(&self, _: &mut {rt}::validate::Validator) {{}} }}"
                );
            }
        }
        return Ok(out);
    };
    let cx = Cx {
        rt,
        package,
        generated,
        field_ext,
        message_ext: pool.get_extension_by_name(MESSAGE_EXT),
        oneof_ext: pool.get_extension_by_name(ONEOF_EXT),
        predefined_ext: pool.get_extension_by_name(PREDEFINED_EXT),
        field_rules: pool.get_message_by_name("buf.validate.FieldRules"),
        external,
    };
    let located = |e: crate::Error| locate_all(e, descriptor_set, pool);
    let mut out = String::new();
    // Every message's first problem is reported, not only the first one's.
    let mut problems = Vec::new();
    for file in files.iter().filter_map(|f| pool.get_file_by_name(f)) {
        for m in all_messages(file.messages()).into_iter().filter(|m| !is_external(m.full_name(), external)) {
            match cx.message(&m, file.name()) {
                Ok(code) => out.push_str(&code),
                Err(e) => problems.extend(located(e).diagnostics),
            }
        }
    }
    if !problems.is_empty() {
        return Err(crate::Error { diagnostics: problems });
    }
    Ok(with_fast_checks(&out, rt))
}

/// Gives each `impl Validate` that checks something an `is_valid`: the
/// same checks with every violation turned into `return false` and the
/// path bookkeeping left out, so a valid message is checked without
/// building anything (`validate` runs it first).
fn with_fast_checks(code: &str, rt: &str) -> String {
    use quote::ToTokens;
    use syn::visit_mut::VisitMut;
    let Ok(mut file) = syn::parse_str::<syn::File>(code) else { return code.to_owned() };
    let Ok(validate) = syn::parse_str::<syn::Path>(&format!("{rt}::validate::Validate::is_valid")) else {
        return code.to_owned();
    };
    for item in &mut file.items {
        let syn::Item::Impl(imp) = item else { continue };
        let checks = imp.items.iter().find_map(|i| match i {
            syn::ImplItem::Fn(f) if f.sig.ident == "validate_into" && !f.block.stmts.is_empty() => Some(f.clone()),
            _ => None,
        });
        let Some(checks) = checks else { continue };
        let mut block = checks.block.clone();
        FastChecks { is_valid: &validate }.visit_block_mut(&mut block);
        block.stmts.push(syn::Stmt::Expr(syn::parse_quote!(true), None));
        let attrs = &checks.attrs;
        let fast: syn::ImplItem = syn::parse_quote! {
            #(#attrs)*
            // The checks keep validate_into's shape: names that only
            // built paths, and ifs that only guarded a report.
            #[allow(unused_variables, clippy::collapsible_if, clippy::if_same_then_else)]
            fn is_valid(&self) -> bool #block
        };
        imp.items.push(fast);
    }
    file.into_token_stream().to_string()
}

/// Rewrites a `validate_into` body into an `is_valid` body.
struct FastChecks<'a> {
    is_valid: &'a syn::Path,
}

/// `v.<name>(..)`: a call on the validator.
fn validator_call(e: &syn::Expr) -> Option<String> {
    let syn::Expr::MethodCall(m) = e else { return None };
    let syn::Expr::Path(p) = &*m.receiver else { return None };
    p.path.is_ident("v").then(|| m.method.to_string())
}

impl syn::visit_mut::VisitMut for FastChecks<'_> {
    fn visit_block_mut(&mut self, block: &mut syn::Block) {
        block.stmts.retain(|stmt| match stmt {
            // Path bookkeeping: gone.
            syn::Stmt::Expr(e, _) => !matches!(validator_call(e).as_deref(), Some("enter" | "leave" | "leave_entry")),
            syn::Stmt::Local(l) => !matches!(&l.pat, syn::Pat::Ident(i) if i.ident == "field" || i.ident == "entry"),
            _ => true,
        });
        syn::visit_mut::visit_block_mut(self, block);
    }

    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        if matches!(validator_call(e).as_deref(), Some("violation" | "key_violation" | "error")) {
            *e = syn::parse_quote!(return false);
            return;
        }
        // A CEL rule: holds only when its verdict is `Ok(None)`.
        if let syn::Expr::Match(m) = e
            && let syn::Expr::Call(call) = &*m.expr
            && let syn::Expr::Path(f) = &*call.func
            && f.path.segments.last().is_some_and(|s| s.ident == "verdict")
        {
            let verdict = m.expr.clone();
            *e = syn::parse_quote!(if !matches!(#verdict, Ok(None)) {
                return false;
            });
            return;
        }
        // A nested message: its own fast check.
        if let syn::Expr::Call(call) = e
            && let syn::Expr::Path(f) = &*call.func
            && f.path.segments.last().is_some_and(|s| s.ident == "validate_into")
            && let Some(arg) = call.args.first()
        {
            let is_valid = self.is_valid;
            let arg = arg.clone();
            *e = syn::parse_quote!(if !#is_valid(#arg) { return false; });
            return;
        }
        // `for (i, val) in x.iter().enumerate()`: the index only named paths.
        if let syn::Expr::ForLoop(f) = e
            && let syn::Pat::Tuple(t) = &*f.pat
            && t.elems.len() == 2
            && let syn::Expr::MethodCall(m) = &*f.expr
            && m.method == "enumerate"
        {
            let item = t.elems[1].clone();
            let iter = m.receiver.clone();
            *f.pat = item;
            f.expr = iter;
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }
}

/// The gRPC paths of `package`'s methods whose requests a generated
/// server validates: `validate=true`, no `skip_validation`, and a request
/// type with a validator (generated in this run, or a well-known type the
/// runtime covers).
pub fn validated_methods(
    package: &crate::ir::Package,
    generated_packages: &HashSet<&str>,
    external: &[String],
) -> HashSet<String> {
    const COVERED: &[&str] = &[
        "google.protobuf.Empty",
        "google.protobuf.Any",
        "google.protobuf.Duration",
        "google.protobuf.Timestamp",
        "google.protobuf.FieldMask",
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.BoolValue",
        "google.protobuf.Int32Value",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.FloatValue",
        "google.protobuf.DoubleValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    ];
    let input = |m: &crate::ir::Method| m.input.trim_start_matches('.').to_owned();
    package
        .services
        .iter()
        .flat_map(|s| s.methods.iter())
        .filter(|m| m.policy.validate)
        .filter(|m| {
            let name = input(m);
            COVERED.contains(&name.as_str())
                || (generated_packages.contains(m.input_package.as_str()) && !is_external(&name, external))
        })
        .map(|m| m.path.clone())
        .collect()
}

/// In a server's dispatch (`match req.uri().path() { "/pkg.S/M" => ... }`),
/// the codec of every method in `paths` becomes the runtime's
/// `ValidatingCodec`; in a client's method for one of them, its
/// `ValidatingClientCodec` (which checks requests when the client asks).
pub fn use_validating_codecs(file: &mut syn::File, paths: &HashSet<String>, rt: &str) {
    use syn::visit_mut::VisitMut;
    struct Arms<'a> {
        paths: &'a HashSet<String>,
        codec: syn::Path,
        inside: bool,
    }
    impl VisitMut for Arms<'_> {
        fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
            let was = self.inside;
            if let syn::Pat::Lit(syn::PatLit { lit: syn::Lit::Str(s), .. }) = &arm.pat {
                self.inside = self.paths.contains(&s.value());
            }
            syn::visit_mut::visit_arm_mut(self, arm);
            self.inside = was;
        }
        fn visit_path_mut(&mut self, path: &mut syn::Path) {
            // `…::tonic_prost::ProstCodec::default` → `…::ValidatingCodec::default`.
            if self.inside
                && let Some(at) = path.segments.iter().position(|s| s.ident == "ProstCodec")
            {
                let mut replaced = self.codec.clone();
                replaced.segments.extend(path.segments.iter().skip(at + 1).cloned());
                *path = replaced;
                return;
            }
            syn::visit_mut::visit_path_mut(self, path);
        }
    }
    /// In a generated client (`impl<T> XxxClient<T>`), each method whose
    /// body names a validated path.
    struct Clients<'a> {
        paths: &'a HashSet<String>,
        codec: syn::Path,
    }
    impl VisitMut for Clients<'_> {
        fn visit_item_impl_mut(&mut self, item: &mut syn::ItemImpl) {
            let client = matches!(&*item.self_ty, syn::Type::Path(t)
                if t.path.segments.last().is_some_and(|s| s.ident.to_string().ends_with("Client")));
            if !client {
                return;
            }
            for member in &mut item.items {
                let syn::ImplItem::Fn(f) = member else { continue };
                let mut names = Names { paths: self.paths, found: false };
                names.visit_block_mut(&mut f.block);
                if names.found {
                    Arms { paths: self.paths, codec: self.codec.clone(), inside: true }.visit_block_mut(&mut f.block);
                }
            }
        }
    }
    struct Names<'a> {
        paths: &'a HashSet<String>,
        found: bool,
    }
    impl VisitMut for Names<'_> {
        fn visit_lit_str_mut(&mut self, s: &mut syn::LitStr) {
            self.found |= self.paths.contains(&s.value());
        }
    }
    if paths.is_empty() {
        return;
    }
    let Ok(codec) = syn::parse_str::<syn::Path>(&format!("{rt}::validate::ValidatingCodec")) else { return };
    Arms { paths, codec, inside: false }.visit_file_mut(file);
    let Ok(codec) = syn::parse_str::<syn::Path>(&format!("{rt}::validate::ValidatingClientCodec")) else { return };
    Clients { paths, codec }.visit_file_mut(file);
}

/// Gives each diagnostic about a field or message the line of the
/// element's options in its file.
fn locate_all(mut e: crate::Error, set: &[u8], pool: &DescriptorPool) -> crate::Error {
    for d in &mut e.diagnostics {
        let (Some(file), None) = (&d.file, d.line) else { continue };
        let element = d.element.split_once(' ').map_or(d.element.as_str(), |(_, name)| name);
        let path: Option<Vec<i32>> = if d.element.starts_with("field ") {
            element
                .rsplit_once('.')
                .and_then(|(m, f)| pool.get_message_by_name(m)?.get_field_by_name(f))
                .map(|f| [f.path(), &[8]].concat())
        } else {
            pool.get_message_by_name(element).map(|m| [m.path(), &[7]].concat())
        };
        if let Some(path) = path {
            let (line, column) = crate::source::locate(set, file, &path);
            d.line = line;
            d.column = column;
        }
    }
    e
}

/// Whether prost maps `name` (a package or a type) to another crate: the
/// well-known types, or an `extern_path` prefix.
fn is_external(name: &str, external: &[String]) -> bool {
    let within = |prefix: &str| name == prefix || name.starts_with(&format!("{prefix}."));
    within("google.protobuf") || external.iter().any(|p| within(p.trim_start_matches('.')))
}

fn all_messages(top: impl Iterator<Item = MessageDescriptor>) -> Vec<MessageDescriptor> {
    let mut out = Vec::new();
    let mut stack: Vec<MessageDescriptor> = top.collect();
    stack.reverse();
    while let Some(m) = stack.pop() {
        if m.is_map_entry() {
            continue;
        }
        let mut children: Vec<MessageDescriptor> = m.child_messages().collect();
        children.reverse();
        stack.extend(children);
        out.push(m);
    }
    out
}

struct Cx<'a> {
    rt: &'a str,
    package: &'a str,
    generated: &'a HashSet<&'a str>,
    field_ext: ExtensionDescriptor,
    message_ext: Option<ExtensionDescriptor>,
    oneof_ext: Option<ExtensionDescriptor>,
    predefined_ext: Option<ExtensionDescriptor>,
    field_rules: Option<MessageDescriptor>,
    external: &'a [String],
}

fn extension(options: &DynamicMessage, ext: &ExtensionDescriptor) -> Option<DynamicMessage> {
    if !options.has_extension(ext) {
        return None;
    }
    options.get_extension(ext).as_message().cloned()
}

/// How a value is held in the prost struct.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// Plain `T` (proto3 implicit presence, proto2 required).
    Plain,
    /// `Option<T>` (explicit presence, messages).
    Optional,
    /// `Option<T>` for a field of IMPLICIT presence in an edition file
    /// lowered to proto2 (see `editions`): unset and zero are the same.
    ImplicitOption,
}

/// Whether `f` is marked `features.field_presence = IMPLICIT` at field
/// level in a proto2 file: an editions field held as `Option<T>`.
fn implicit_in_option(f: &FieldDescriptor) -> bool {
    if f.parent_file().file_descriptor_proto().syntax() != "proto2" {
        return false;
    }
    let options = f.options();
    let Some(features) = options.get_field_by_name("features") else { return false };
    features.as_message().and_then(|m| m.get_field_by_name("field_presence")).and_then(|v| v.as_enum_number())
        == Some(2)
}

/// The plain value of a field `self.{name}` held as `holder`, for zero
/// tests.
fn plain_value(f: &FieldDescriptor, owner: &str, holder: Holder) -> String {
    match (holder, f.kind()) {
        (Holder::ImplicitOption, Kind::String | Kind::Bytes) => format!("{owner}.as_deref().unwrap_or_default()"),
        (Holder::ImplicitOption, _) => format!("{owner}.unwrap_or_default()"),
        _ => owner.to_owned(),
    }
}

fn type_number(f: &FieldDescriptor) -> i32 {
    f.field_descriptor_proto().r#type.unwrap_or(0)
}

fn kind_number(k: &Kind) -> i32 {
    match k {
        Kind::Double => 1,
        Kind::Float => 2,
        Kind::Int64 => 3,
        Kind::Uint64 => 4,
        Kind::Int32 => 5,
        Kind::Fixed64 => 6,
        Kind::Fixed32 => 7,
        Kind::Bool => 8,
        Kind::String => 9,
        Kind::Message(_) => 11,
        Kind::Bytes => 12,
        Kind::Uint32 => 13,
        Kind::Enum(_) => 14,
        Kind::Sfixed32 => 15,
        Kind::Sfixed64 => 16,
        Kind::Sint32 => 17,
        Kind::Sint64 => 18,
    }
}

/// A rule path under construction: `(number, name, type)` steps.
#[derive(Clone, Default)]
struct Steps(Vec<(u32, String, i32)>);

impl Steps {
    fn with(&self, f: &FieldDescriptor) -> Steps {
        let mut s = self.clone();
        s.0.push((f.number(), f.name().to_owned(), type_number(f)));
        s
    }

    /// The step into an extension of a rules message (a predefined rule):
    /// named `[full.name]`, as protovalidate has it.
    fn with_extension(&self, e: &ExtensionDescriptor) -> Steps {
        let mut s = self.clone();
        let t = e.field_descriptor_proto().r#type.unwrap_or(0);
        s.0.push((e.number(), format!("[{}]", e.full_name()), t));
        s
    }

    fn text(&self, rt: &str, index: Option<usize>) -> String {
        let steps: Vec<String> = self.0.iter().map(|(n, name, t)| format!("({n}, {name:?}, {t})")).collect();
        let index = index.map_or("None".to_owned(), |i| format!("Some({i})"));
        format!("&{rt}::validate::Rule {{ steps: &[{}], index: {index} }}", steps.join(", "))
    }
}

impl Cx<'_> {
    fn message(&self, m: &MessageDescriptor, file: &str) -> Result<String> {
        let rt = self.rt;
        let path = ident::type_path(self.package, m.full_name());
        let mut body = String::new();
        let mut uses_self = false;
        // Fields named by message oneof rules are checked only when set.
        let mut in_oneof_rule: HashSet<String> = HashSet::new();
        // Message rules: `oneof` (at most one of the fields set, or exactly
        // one when required).
        if let Some(rules) = self.message_ext.as_ref().and_then(|e| extension(&m.options(), e))
            && let Some(Value::List(oneofs)) = rules.get_field_by_name("oneof").map(|v| v.into_owned())
        {
            for (i, rule) in oneofs.iter().enumerate() {
                let Some(rule) = rule.as_message() else { continue };
                let names: Vec<String> = match rule.get_field_by_name("fields").map(|v| v.into_owned()) {
                    Some(Value::List(l)) => l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                    _ => Vec::new(),
                };
                let required = rule.get_field_by_name("required").and_then(|v| v.as_bool()).unwrap_or(false);
                let refused = |what: String, fix: &str| -> crate::Error {
                    Diagnostic::new(format!("message {}", m.full_name()), what, fix).in_file(file).into()
                };
                if names.is_empty() {
                    return Err(refused(
                        format!("(buf.validate.message).oneof rule {i} lists no fields"),
                        "name at least one field of the message in `fields`",
                    ));
                }
                if let Some(twice) = names.iter().enumerate().find(|(j, n)| names[..*j].contains(n)).map(|(_, n)| n) {
                    return Err(refused(
                        format!("(buf.validate.message).oneof rule {i} lists {twice} twice"),
                        "name each field once",
                    ));
                }
                in_oneof_rule.extend(names.iter().cloned());
                let mut set = Vec::new();
                for name in &names {
                    let Some(f) = m.get_field_by_name(name) else {
                        return Err(Diagnostic::new(
                            format!("message {}", m.full_name()),
                            format!(
                                "(buf.validate.message).oneof names field {name:?}, which {} does not have",
                                m.name()
                            ),
                            "list fields of this message",
                        )
                        .in_file(file)
                        .into());
                    };
                    set.push(self.is_set(m, &f));
                }
                uses_self = true;
                let count = set.iter().map(|s| format!("usize::from({s})")).collect::<Vec<_>>().join(" + ");
                let count = if count.is_empty() { "0usize".to_owned() } else { count };
                // protovalidate gives message-level rules no rule path.
                let rule_path = format!("&{rt}::validate::Rule {{ steps: &[], index: None }}");
                let list = names.join(", ");
                let _ = writeln!(body, "{{ let set = {count};");
                let _ = writeln!(
                    body,
                    "if set > 1 {{ v.violation({rule_path}, \"message.oneof\", {:?}); }}",
                    format!("only one of {list} can be set")
                );
                if required {
                    let _ = writeln!(
                        body,
                        "if set == 0 {{ v.violation({rule_path}, \"message.oneof\", {:?}); }}",
                        format!("one of {list} must be set")
                    );
                }
                body.push_str("}\n");
            }
        }
        // Message rules: `cel` and `cel_expression`, `this` the message.
        if let Some(rules) = self.message_ext.as_ref().and_then(|e| extension(&m.options(), e)) {
            let element = format!("message {}", m.full_name());
            let code = self.cel_rules(&rules, &|| cel::this_message(m, "self"), &Steps::default(), file, &element)?;
            if !code.is_empty() {
                uses_self = true;
                body.push_str(&code);
            }
        }
        // Oneof rules: `required`.
        for oneof in m.oneofs().filter(|o| !o.is_synthetic()) {
            let Some(rules) = self.oneof_ext.as_ref().and_then(|e| extension(&oneof.options(), e)) else { continue };
            if rules.get_field_by_name("required").and_then(|v| v.as_bool()) == Some(true) {
                uses_self = true;
                let name = ident::to_snake(oneof.name());
                let _ = writeln!(
                    body,
                    "if self.{name}.is_none() {{ v.enter(&{rt}::validate::Field {{ number: 0, name: {:?}, kind: 0, map: None }}, None); v.violation(&{rt}::validate::Rule {{ steps: &[], index: None }}, \"required\", \"exactly one field is required in oneof\"); v.leave(); }}",
                    oneof.name()
                );
            }
        }
        for f in m.fields() {
            let code = self.field(m, &f, file, in_oneof_rule.contains(f.name()))?;
            if !code.is_empty() {
                uses_self = true;
                body.push_str(&code);
            }
        }
        if !uses_self {
            return Ok(format!(
                "impl {rt}::validate::Validate for {path} {{ fn validate_into(&self, _: &mut {rt}::validate::Validator) {{}} }}\n"
            ));
        }
        // Rule values are constants: a bound at a type's extreme makes a
        // comparison that is always false, which is fine here.
        Ok(format!(
            "impl {rt}::validate::Validate for {path} {{\n#[allow(unused_comparisons, clippy::absurd_extreme_comparisons)]\nfn validate_into(&self, v: &mut {rt}::validate::Validator) {{\n{body}}}\n}}\n"
        ))
    }

    /// A boolean expression: whether field `f` of `m` is set (for oneof
    /// message rules).
    fn is_set(&self, m: &MessageDescriptor, f: &FieldDescriptor) -> String {
        let name = ident::to_snake(f.name());
        if let Some(o) = f.containing_oneof().filter(|o| !o.is_synthetic()) {
            let module = self.module_of(m);
            return format!(
                "matches!(self.{}, Some({module}::{}::{}(_)))",
                ident::to_snake(o.name()),
                ident::to_upper_camel(o.name()),
                ident::to_upper_camel(f.name())
            );
        }
        if f.is_list() || f.is_map() {
            return format!("!self.{name}.is_empty()");
        }
        match self.holder(f) {
            Holder::Optional => format!("self.{name}.is_some()"),
            h => format!("!({})", zero_test(f, &plain_value(f, &format!("self.{name}"), h), false)),
        }
    }

    /// The module holding `m`'s nested types (`outer::inner`).
    fn module_of(&self, m: &MessageDescriptor) -> String {
        let path = ident::type_path(self.package, m.full_name());
        let mut parts: Vec<String> = path.split("::").map(str::to_owned).collect();
        if let Some(last) = parts.pop() {
            parts.push(ident::to_snake(m.name()));
            let _ = last;
        }
        parts.join("::")
    }

    fn holder(&self, f: &FieldDescriptor) -> Holder {
        // prost holds proto2 `required` fields, messages included, plainly.
        let required = f.field_descriptor_proto().label == Some(2);
        if required {
            Holder::Plain
        } else if implicit_in_option(f) {
            Holder::ImplicitOption
        } else if matches!(f.kind(), Kind::Message(_)) || f.supports_presence() {
            Holder::Optional
        } else {
            Holder::Plain
        }
    }

    fn field(&self, m: &MessageDescriptor, f: &FieldDescriptor, file: &str, in_oneof_rule: bool) -> Result<String> {
        let rt = self.rt;
        let rules = extension(&f.options(), &self.field_ext);
        let ignore =
            rules.as_ref().and_then(|r| r.get_field_by_name("ignore")).and_then(|v| v.as_enum_number()).unwrap_or(0);
        let ignore = if ignore == 0 && in_oneof_rule { IGNORE_IF_ZERO_VALUE } else { ignore };
        if ignore == IGNORE_ALWAYS {
            return Ok(String::new());
        }
        let required =
            rules.as_ref().and_then(|r| r.get_field_by_name("required")).and_then(|v| v.as_bool()).unwrap_or(false);
        let nested = self.walks(f);
        if rules.is_none() && !nested {
            return Ok(String::new());
        }
        let field_desc = format!(
            "&{rt}::validate::Field {{ number: {}, name: {:?}, kind: {}, map: {} }}",
            f.number(),
            f.name(),
            type_number(f),
            match (f.is_map(), f.kind()) {
                (true, Kind::Message(entry)) => {
                    let k = entry.map_entry_key_field();
                    let v = entry.map_entry_value_field();
                    format!("Some(({}, {}))", kind_number(&k.kind()), kind_number(&v.kind()))
                }
                _ => "None".to_owned(),
            }
        );
        let name = ident::to_snake(f.name());
        let root = Steps::default();
        let mut out = String::new();
        let required_rule = || {
            let steps = self
                .field_rules
                .as_ref()
                .and_then(|d| d.get_field_by_name("required"))
                .map(|r| root.with(&r))
                .unwrap_or_default();
            format!("v.violation({}, \"required\", \"value is required\");", steps.text(rt, None))
        };
        let type_rules = rules.as_ref().and_then(|r| self.type_rules(r));

        // Where the value is, and whether it is there.
        let oneof = f.containing_oneof().filter(|o| !o.is_synthetic());
        if f.is_list() || f.is_map() {
            let mut inner = String::new();
            if let Some((rf, r)) = &type_rules {
                inner.push_str(&self.collection_rules(f, rf, r, file, &root)?);
            } else if nested {
                inner.push_str(&self.collection_rules_plain(f)?);
            }
            if let Some(r) = &rules {
                let element = format!("field {}", f.full_name());
                let code = self.cel_rules(r, &|| cel::this_collection(f, "val"), &root, file, &element)?;
                if !code.is_empty() {
                    let _ = write!(inner, "v.enter(field, None); {code} v.leave();");
                }
            }
            if inner.is_empty() && !required {
                return Ok(String::new());
            }
            let _ = writeln!(out, "{{ let field = {field_desc}; let val = &self.{name};");
            if required {
                // Empty and required: that is the one violation.
                let _ = writeln!(out, "if val.is_empty() {{ v.enter(field, None); {} v.leave(); }}", required_rule());
            }
            let skip_empty = ignore == IGNORE_IF_ZERO_VALUE || required;
            if skip_empty && !inner.is_empty() {
                let _ = writeln!(out, "if !val.is_empty() {{ {inner} }}");
            } else {
                out.push_str(&inner);
            }
            out.push_str("}\n");
            return Ok(out);
        }

        let (open, close) = if let Some(o) = &oneof {
            let module = self.module_of(m);
            (
                format!(
                    "if let Some({module}::{}::{}(val)) = &self.{} {{",
                    ident::to_upper_camel(o.name()),
                    ident::to_upper_camel(f.name()),
                    ident::to_snake(o.name())
                ),
                "}".to_owned(),
            )
        } else {
            match self.holder(f) {
                Holder::Optional => (format!("if let Some(val) = &self.{name} {{"), "}".to_owned()),
                Holder::Plain => (format!("{{ let val = &self.{name};"), "}".to_owned()),
                Holder::ImplicitOption if matches!(f.kind(), Kind::String | Kind::Bytes) => {
                    (format!("{{ let val = &self.{name}.clone().unwrap_or_default();"), "}".to_owned())
                }
                Holder::ImplicitOption => (format!("{{ let val = &self.{name}.unwrap_or_default();"), "}".to_owned()),
            }
        };
        // proto2 `required` (editions LEGACY_REQUIRED): always present in
        // Rust, so `required` holds and zero values are validated.
        let legacy_required = f.field_descriptor_proto().label == Some(2);
        let presence = oneof.is_some() || self.holder(f) == Holder::Optional || legacy_required;
        let mut inner = String::new();
        if let Some((rf, r)) = &type_rules {
            inner.push_str(&self.value_rules(f, &f.kind(), rf, r, "val", file, &root)?);
        }
        if let Some(r) = &rules {
            let element = format!("field {}", f.full_name());
            inner.push_str(&self.cel_rules(r, &|| cel::this_value(&f.kind(), "val"), &root, file, &element)?);
        }
        if nested {
            let _ = write!(inner, "{rt}::validate::Validate::validate_into(val, v);");
        }
        // A proto2 required field is always there: `required` holds.
        if inner.is_empty() && (!required || legacy_required) {
            return Ok(String::new());
        }
        let _ = writeln!(out, "{{ let field = {field_desc};");
        if required && !legacy_required {
            if presence {
                let unset = if let Some(o) = &oneof {
                    let module = self.module_of(m);
                    format!(
                        "!matches!(self.{}, Some({module}::{}::{}(_)))",
                        ident::to_snake(o.name()),
                        ident::to_upper_camel(o.name()),
                        ident::to_upper_camel(f.name())
                    )
                } else {
                    format!("self.{name}.is_none()")
                };
                let _ = writeln!(out, "if {unset} {{ v.enter(field, None); {} v.leave(); }}", required_rule());
            } else {
                let zero = zero_test(f, &plain_value(f, &format!("self.{name}"), self.holder(f)), false);
                let _ = writeln!(out, "if {zero} {{ v.enter(field, None); {} v.leave(); }}", required_rule());
            }
        }
        if !inner.is_empty() {
            out.push_str(&open);
            let body = format!("v.enter(field, None); {inner} v.leave();");
            // A field with presence is checked whenever set, zero or not.
            let skip_zero = !presence && (ignore == IGNORE_IF_ZERO_VALUE || required);
            if skip_zero && !matches!(f.kind(), Kind::Message(_)) {
                let zero = zero_test(f, "(*val)", true);
                let _ = write!(out, "if !({zero}) {{ {body} }}");
            } else {
                out.push_str(&body);
            }
            out.push_str(&close);
        }
        out.push_str("}\n");
        Ok(out)
    }

    /// Whether the field holds messages of a generated file (walked for
    /// their own rules).
    fn walks(&self, f: &FieldDescriptor) -> bool {
        let message = match f.kind() {
            Kind::Message(m) if f.is_map() => match m.map_entry_value_field().kind() {
                Kind::Message(v) => v,
                _ => return false,
            },
            Kind::Message(m) => m,
            _ => return false,
        };
        self.generated.contains(message.parent_file().name()) && !is_external(message.full_name(), self.external)
    }

    /// The `*Rules` message set in `FieldRules.type`, with its field.
    fn type_rules(&self, rules: &DynamicMessage) -> Option<(FieldDescriptor, DynamicMessage)> {
        let desc = rules.descriptor();
        let oneof = desc.oneofs().find(|o| o.name() == "type")?;
        for f in oneof.fields() {
            if rules.has_field(&f) {
                return rules.get_field(&f).as_message().cloned().map(|m| (f, m));
            }
        }
        None
    }

    /// Rules on a repeated or map field: sizes, uniqueness, items, keys
    /// and values.
    fn collection_rules(
        &self,
        f: &FieldDescriptor,
        rf: &FieldDescriptor,
        r: &DynamicMessage,
        file: &str,
        root: &Steps,
    ) -> Result<String> {
        let rt = self.rt;
        let base = root.with(rf);
        let mut out = String::new();
        let get_u64 = |name: &str| -> Option<(u64, FieldDescriptor)> {
            let d = r.descriptor().get_field_by_name(name)?;
            r.has_field(&d).then(|| (r.get_field(&d).as_u64().unwrap_or(0), d))
        };
        let wrong = |what: &str| {
            Err(Diagnostic::new(
                format!("field {}", f.full_name()),
                format!(
                    "{what} rules on a field that is {}",
                    if f.is_map() {
                        "a map"
                    } else if f.is_list() {
                        "repeated"
                    } else {
                        "singular"
                    }
                ),
                "use the rules of the field's type (repeated for lists, map for maps)",
            )
            .in_file(file)
            .into())
        };
        check_bounds(r, &[("min_items", "max_items"), ("min_pairs", "max_pairs")], f, file)?;
        match rf.name() {
            "repeated" if f.is_list() => {
                let mut sizes = String::new();
                if let Some((n, d)) = get_u64("min_items") {
                    let _ = write!(
                        sizes,
                        "if (val.len() as u64) < {n} {{ v.violation({}, \"repeated.min_items\", {:?}); }}",
                        base.with(&d).text(rt, None),
                        format!("must contain at least {n} item(s)")
                    );
                }
                if let Some((n, d)) = get_u64("max_items") {
                    let _ = write!(
                        sizes,
                        "if (val.len() as u64) > {n} {{ v.violation({}, \"repeated.max_items\", {:?}); }}",
                        base.with(&d).text(rt, None),
                        format!("must contain no more than {n} item(s)")
                    );
                }
                if let Some(d) = r.descriptor().get_field_by_name("unique")
                    && r.has_field(&d)
                    && r.get_field(&d).as_bool() == Some(true)
                {
                    let _ = write!(
                        sizes,
                        "if !{rt}::validate::unique(val) {{ v.violation({}, \"repeated.unique\", \"repeated value must contain unique items\"); }}",
                        base.with(&d).text(rt, None)
                    );
                }
                let element = format!("field {}", f.full_name());
                sizes.push_str(&self.predefined(r, &|| cel::this_collection(f, "val"), &base, file, &element)?);
                if !sizes.is_empty() {
                    let _ = write!(out, "v.enter(field, None); {sizes} v.leave();");
                }
                let items = r
                    .descriptor()
                    .get_field_by_name("items")
                    .and_then(|d| r.has_field(&d).then(|| (d.clone(), r.get_field(&d).as_message().cloned())));
                let items_ignored = items
                    .as_ref()
                    .and_then(|(_, r)| r.as_ref())
                    .and_then(|r| r.get_field_by_name("ignore"))
                    .and_then(|v| v.as_enum_number())
                    == Some(IGNORE_ALWAYS);
                let nested = self.walks(f) && !items_ignored;
                let mut each = String::new();
                if let Some((d, Some(item_rules))) = &items {
                    each.push_str(&self.element_rules(f, &f.kind(), item_rules, &base.with(d), file, false)?);
                }
                if nested {
                    let _ = write!(each, "{rt}::validate::Validate::validate_into(val, v);");
                }
                if !each.is_empty() {
                    let _ = write!(
                        out,
                        "for (i, val) in val.iter().enumerate() {{ v.enter(field, Some({rt}::validate::Subscript::Index(i as u64))); {each} v.leave(); }}"
                    );
                }
            }
            "map" if f.is_map() => {
                let mut sizes = String::new();
                if let Some((n, d)) = get_u64("min_pairs") {
                    let _ = write!(
                        sizes,
                        "if (val.len() as u64) < {n} {{ v.violation({}, \"map.min_pairs\", {:?}); }}",
                        base.with(&d).text(rt, None),
                        format!("map must be at least {n} entries")
                    );
                }
                if let Some((n, d)) = get_u64("max_pairs") {
                    let _ = write!(
                        sizes,
                        "if (val.len() as u64) > {n} {{ v.violation({}, \"map.max_pairs\", {:?}); }}",
                        base.with(&d).text(rt, None),
                        format!("map must be at most {n} entries")
                    );
                }
                let element = format!("field {}", f.full_name());
                sizes.push_str(&self.predefined(r, &|| cel::this_collection(f, "val"), &base, file, &element)?);
                if !sizes.is_empty() {
                    let _ = write!(out, "v.enter(field, None); {sizes} v.leave();");
                }
                let Kind::Message(entry) = f.kind() else { return Ok(out) };
                let key_field = entry.map_entry_key_field();
                let value_field = entry.map_entry_value_field();
                let sub = |d: &str| -> Option<(FieldDescriptor, DynamicMessage)> {
                    let d = r.descriptor().get_field_by_name(d)?;
                    if !r.has_field(&d) {
                        return None;
                    }
                    r.get_field(&d).as_message().cloned().map(|m| (d, m))
                };
                let keys = sub("keys");
                let values = sub("values");
                let values_ignored =
                    values.as_ref().and_then(|(_, r)| r.get_field_by_name("ignore")).and_then(|v| v.as_enum_number())
                        == Some(IGNORE_ALWAYS);
                let nested = self.walks(f) && !values_ignored;
                let mut key_code = String::new();
                if let Some((d, key_rules)) = &keys {
                    key_code =
                        self.element_rules(&key_field, &key_field.kind(), key_rules, &base.with(d), file, true)?;
                }
                let mut value_code = String::new();
                if let Some((d, value_rules)) = &values {
                    value_code =
                        self.element_rules(&value_field, &value_field.kind(), value_rules, &base.with(d), file, false)?;
                }
                if nested {
                    let _ = write!(value_code, "{rt}::validate::Validate::validate_into(val, v);");
                }
                if !key_code.is_empty() || !value_code.is_empty() {
                    let subscript = key_subscript(rt, &key_field.kind());
                    let value = if value_code.is_empty() { "_" } else { "val" };
                    let _ = write!(out, "for (key, {value}) in val.iter() {{ let entry = v.enter_entry(field);");
                    if !key_code.is_empty() {
                        let _ = write!(out, "{{ let val = key; {key_code} }}");
                    }
                    out.push_str(&value_code);
                    let _ = write!(out, "v.leave_entry(entry, || {subscript}); }}");
                }
            }
            "repeated" => return wrong("repeated"),
            "map" => return wrong("map"),
            other => return wrong(other),
        }
        Ok(out)
    }

    /// A repeated or map field of messages without rules of its own: each
    /// element walked.
    fn collection_rules_plain(&self, f: &FieldDescriptor) -> Result<String> {
        let rt = self.rt;
        if f.is_map() {
            let Kind::Message(entry) = f.kind() else { return Ok(String::new()) };
            let subscript = key_subscript(rt, &entry.map_entry_key_field().kind());
            return Ok(format!(
                "for (key, val) in val.iter() {{ let entry = v.enter_entry(field); {rt}::validate::Validate::validate_into(val, v); v.leave_entry(entry, || {subscript}); }}"
            ));
        }
        Ok(format!(
            "for (i, val) in val.iter().enumerate() {{ v.enter(field, Some({rt}::validate::Subscript::Index(i as u64))); {rt}::validate::Validate::validate_into(val, v); v.leave(); }}"
        ))
    }

    /// The rules of one element (an item, key or value: `FieldRules`
    /// nested in `items`, `keys`, `values`), `val` a reference to it.
    fn element_rules(
        &self,
        f: &FieldDescriptor,
        kind: &Kind,
        rules: &DynamicMessage,
        base: &Steps,
        file: &str,
        for_key: bool,
    ) -> Result<String> {
        let ignore = rules.get_field_by_name("ignore").and_then(|v| v.as_enum_number()).unwrap_or(0);
        if ignore == IGNORE_ALWAYS {
            return Ok(String::new());
        }
        let mut code = match self.type_rules(rules) {
            Some((rf, r)) => self.value_rules(f, kind, &rf, &r, "val", file, base)?,
            None => String::new(),
        };
        let element = format!("field {}", f.full_name());
        code.push_str(&self.cel_rules(rules, &|| cel::this_value(kind, "val"), base, file, &element)?);
        if code.is_empty() {
            return Ok(code);
        }
        if for_key {
            code = code.replace("v.violation(", "v.key_violation(");
        }
        if ignore == IGNORE_IF_ZERO_VALUE && !matches!(kind, Kind::Message(_)) {
            let zero = zero_test_kind(kind, "(*val)", true);
            code = format!("if !({zero}) {{ {code} }}");
        }
        Ok(code)
    }

    /// Rules on one value (`val`, a reference) of `kind`: the checks of its
    /// `*Rules` message `r` (the field `rf` of `FieldRules`).
    #[allow(clippy::too_many_arguments)]
    fn value_rules(
        &self,
        f: &FieldDescriptor,
        kind: &Kind,
        rf: &FieldDescriptor,
        r: &DynamicMessage,
        val: &str,
        file: &str,
        root: &Steps,
    ) -> Result<String> {
        let base = root.with(rf);
        let expected = match kind {
            Kind::Float => "float",
            Kind::Double => "double",
            Kind::Int32 => "int32",
            Kind::Int64 => "int64",
            Kind::Uint32 => "uint32",
            Kind::Uint64 => "uint64",
            Kind::Sint32 => "sint32",
            Kind::Sint64 => "sint64",
            Kind::Fixed32 => "fixed32",
            Kind::Fixed64 => "fixed64",
            Kind::Sfixed32 => "sfixed32",
            Kind::Sfixed64 => "sfixed64",
            Kind::Bool => "bool",
            Kind::String => "string",
            Kind::Bytes => "bytes",
            Kind::Enum(_) => "enum",
            Kind::Message(m) => match m.full_name() {
                "google.protobuf.Duration" => "duration",
                "google.protobuf.Timestamp" => "timestamp",
                "google.protobuf.Any" => "any",
                "google.protobuf.FieldMask" => "field_mask",
                "google.protobuf.FloatValue" => "float",
                "google.protobuf.DoubleValue" => "double",
                "google.protobuf.Int32Value" => "int32",
                "google.protobuf.Int64Value" => "int64",
                "google.protobuf.UInt32Value" => "uint32",
                "google.protobuf.UInt64Value" => "uint64",
                "google.protobuf.BoolValue" => "bool",
                "google.protobuf.StringValue" => "string",
                "google.protobuf.BytesValue" => "bytes",
                _ => "message",
            },
        };
        if rf.name() != expected {
            return Err(Diagnostic::new(
                format!("field {}", f.full_name()),
                format!("(buf.validate.field).{} rules on a field of type {expected}", rf.name()),
                format!("use (buf.validate.field).{expected} rules, or change the field's type"),
            )
            .in_file(file)
            .into());
        }
        // Wrappers hold their value in `value`.
        // prost holds the wrapper types as `Option` of their value.
        let val_expr = val.to_owned();
        let mut out = String::new();
        let numeric =
            |ty: &str, float: bool| -> Result<String> { Ok(numeric_rules(self.rt, ty, float, r, &base, &val_expr)) };
        match rf.name() {
            "float" => out.push_str(&numeric("f32", true)?),
            "double" => out.push_str(&numeric("f64", true)?),
            "int32" | "sint32" | "sfixed32" => out.push_str(&numeric("i32", false)?),
            "int64" | "sint64" | "sfixed64" => out.push_str(&numeric("i64", false)?),
            "uint32" | "fixed32" => out.push_str(&numeric("u32", false)?),
            "uint64" | "fixed64" => out.push_str(&numeric("u64", false)?),
            "enum" => {
                out.push_str(&numeric("i32", false)?);
                if r.get_field_by_name("defined_only").and_then(|v| v.as_bool()) == Some(true)
                    && let Kind::Enum(e) = kind
                {
                    let mut numbers: Vec<i32> = e.values().map(|v| v.number()).collect();
                    numbers.sort_unstable();
                    numbers.dedup();
                    let list: Vec<String> = numbers.iter().map(i32::to_string).collect();
                    let d = r.descriptor().get_field_by_name("defined_only").expect("defined_only");
                    let _ = write!(
                        out,
                        "if ![{}].contains({val_expr}) {{ v.violation({}, \"enum.defined_only\", \"value must be one of the defined enum values\"); }}",
                        list.join(", "),
                        base.with(&d).text(self.rt, None)
                    );
                }
            }
            "bool" => {
                if let Some(d) = r.descriptor().get_field_by_name("const")
                    && r.has_field(&d)
                {
                    let c = r.get_field(&d).as_bool().unwrap_or(false);
                    let _ = write!(
                        out,
                        "if *{val_expr} != {c} {{ v.violation({}, \"bool.const\", \"must equal {c}\"); }}",
                        base.with(&d).text(self.rt, None)
                    );
                }
            }
            "duration" => {
                out.push_str(&range_rules(self.rt, &Repr::Time { timestamp: false }, false, r, &base, &val_expr))
            }
            "timestamp" => {
                out.push_str(&range_rules(self.rt, &Repr::Time { timestamp: true }, false, r, &base, &val_expr));
                out.push_str(&now_rules(self.rt, r, &base, &val_expr));
            }
            "any" => out.push_str(&any_rules(self.rt, r, &base, &val_expr)),
            "field_mask" => out.push_str(&field_mask_rules(self.rt, r, &base, &val_expr)),
            "string" => out.push_str(&string_rules(self.rt, r, &base, &val_expr, f, file)?),
            "bytes" => out.push_str(&bytes_rules(self.rt, r, &base, &val_expr, f, file)?),
            _ => {}
        }
        let element = format!("field {}", f.full_name());
        out.push_str(&self.predefined(r, &|| cel::this_value(kind, val), &base, file, &element)?);
        Ok(out)
    }

    /// The `cel` and `cel_expression` rules of `rules` (a `FieldRules` or
    /// `MessageRules`), their paths under `base`.
    fn cel_rules(
        &self,
        rules: &DynamicMessage,
        this: &dyn Fn() -> cel::This,
        base: &Steps,
        file: &str,
        element: &str,
    ) -> Result<String> {
        let mut out = String::new();
        let desc = rules.descriptor();
        let message_level = desc.full_name() == "buf.validate.MessageRules";
        let failed = |e: String| -> crate::Error {
            Diagnostic::new(
                element,
                e,
                "correct the expression (CEL: https://cel.dev; protovalidate's functions: https://protovalidate.com)",
            )
            .in_file(file)
            .into()
        };
        if let Some(d) = desc.get_field_by_name("cel")
            && let Value::List(list) = &*rules.get_field(&d)
        {
            for (i, rule) in list.iter().enumerate() {
                let Some(rule) = rule.as_message() else { continue };
                let text = |name: &str| {
                    rule.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
                };
                // protovalidate gives message-level rules no rule path.
                let path = if message_level {
                    Steps::default().text(self.rt, None)
                } else {
                    base.with(&d).text(self.rt, Some(i))
                };
                let code = cel::rule(
                    self,
                    &text("expression"),
                    Some(this()),
                    None,
                    None,
                    &path,
                    &text("id"),
                    &text("message"),
                )
                .map_err(failed)?;
                out.push_str(&code);
            }
        }
        if let Some(d) = desc.get_field_by_name("cel_expression")
            && let Value::List(list) = &*rules.get_field(&d)
        {
            for (i, expression) in list.iter().enumerate() {
                let Some(expression) = expression.as_str() else { continue };
                let path = if message_level {
                    Steps::default().text(self.rt, None)
                } else {
                    base.with(&d).text(self.rt, Some(i))
                };
                let message = format!("{expression:?} returned false");
                let code = cel::rule(self, expression, Some(this()), None, None, &path, expression, &message)
                    .map_err(failed)?;
                out.push_str(&code);
            }
        }
        Ok(out)
    }

    /// Predefined rules: the extensions of the `*Rules` message `r` that
    /// carry `(buf.validate.predefined).cel`, with `rule` their value and
    /// `rules` the message.
    fn predefined(
        &self,
        r: &DynamicMessage,
        this: &dyn Fn() -> cel::This,
        base: &Steps,
        file: &str,
        element: &str,
    ) -> Result<String> {
        let Some(pre) = &self.predefined_ext else { return Ok(String::new()) };
        let mut out = String::new();
        let mut extensions: Vec<(ExtensionDescriptor, Value)> = r.extensions().map(|(e, v)| (e, v.clone())).collect();
        extensions.sort_by_key(|(e, _)| e.number());
        for (ext, value) in extensions {
            let Some(rules) = extension(&ext.options(), pre) else { continue };
            let Some(d) = rules.descriptor().get_field_by_name("cel") else { continue };
            let Value::List(list) = &*rules.get_field(&d) else { continue };
            let path = base.with_extension(&ext);
            for rule in list.iter().filter_map(|r| r.as_message()) {
                let text = |name: &str| {
                    rule.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
                };
                let constant = (&value, &ext.kind(), ext.is_list(), ext.full_name());
                let code = cel::rule(
                    self,
                    &text("expression"),
                    Some(this()),
                    Some(constant),
                    Some(r),
                    &path.text(self.rt, None),
                    &text("id"),
                    &text("message"),
                )
                .map_err(|e| -> crate::Error {
                    Diagnostic::new(
                        element,
                        format!("predefined rule {}: {e}", ext.full_name()),
                        "correct the rule's expression where the extension is declared",
                    )
                    .in_file(file)
                    .into()
                })?;
                out.push_str(&code);
            }
        }
        Ok(out)
    }
}

/// The subscript of the map entry whose key is `key`.
fn key_subscript(rt: &str, kind: &Kind) -> String {
    match kind {
        Kind::Bool => format!("{rt}::validate::Subscript::Bool(*key)"),
        Kind::String => format!("{rt}::validate::Subscript::String(key.clone())"),
        Kind::Uint32 | Kind::Fixed32 => format!("{rt}::validate::Subscript::Uint(u64::from(*key))"),
        Kind::Uint64 | Kind::Fixed64 => format!("{rt}::validate::Subscript::Uint(*key)"),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => format!("{rt}::validate::Subscript::Int(*key)"),
        _ => format!("{rt}::validate::Subscript::Int(i64::from(*key))"),
    }
}

/// Whether the value at `expr` is its type's zero (`deref`: `expr` is a
/// value, not a place).
fn zero_test(f: &FieldDescriptor, expr: &str, deref: bool) -> String {
    zero_test_kind(&f.kind(), expr, deref)
}

fn zero_test_kind(kind: &Kind, expr: &str, _deref: bool) -> String {
    match kind {
        Kind::String | Kind::Bytes => format!("{expr}.is_empty()"),
        Kind::Bool => format!("!{expr}"),
        Kind::Float | Kind::Double => format!("{expr} == 0.0"),
        Kind::Message(_) => "false".to_owned(),
        _ => format!("{expr} == 0"),
    }
}

fn get(r: &DynamicMessage, name: &str) -> Option<(FieldDescriptor, Value)> {
    let d = r.descriptor().get_field_by_name(name)?;
    if d.is_list() {
        let v = r.get_field(&d).into_owned();
        return match &v {
            Value::List(l) if !l.is_empty() => Some((d, v)),
            _ => None,
        };
    }
    r.has_field(&d).then(|| (d.clone(), r.get_field(&d).into_owned()))
}

/// A rule value as a Rust literal of type `ty`.
fn literal(v: &Value, ty: &str) -> String {
    match v {
        Value::F32(x) => float_literal(f64::from(*x), "f32"),
        Value::F64(x) => float_literal(*x, ty),
        Value::I32(x) => format!("{x}{ty}"),
        Value::I64(x) => format!("{x}{ty}"),
        Value::U32(x) => format!("{x}{ty}"),
        Value::U64(x) => format!("{x}{ty}"),
        Value::EnumNumber(x) => format!("{x}{ty}"),
        Value::Bool(b) => b.to_string(),
        _ => "0".to_owned(),
    }
}

fn float_literal(x: f64, ty: &str) -> String {
    if x.is_nan() {
        format!("{ty}::NAN")
    } else if x.is_infinite() {
        format!("{}{ty}::INFINITY", if x < 0.0 { "-" } else { "" })
    } else if ty == "f32" {
        format!("{:?}f32", x as f32)
    } else {
        format!("{x:?}f64")
    }
}

/// A rule value as CEL's `%s` formats it in protovalidate's messages.
fn cel_text(v: &Value) -> String {
    match v {
        Value::F32(x) => cel_double(f64::from(*x)),
        Value::F64(x) => cel_double(*x),
        Value::I32(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::EnumNumber(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::List(items) => format!("[{}]", items.iter().map(cel_text).collect::<Vec<_>>().join(", ")),
        _ => String::new(),
    }
}

/// A double as CEL's `%s` prints it: the shortest digits that read
/// back, never with an exponent (`10`, `0.5`, `100000000000000000000`),
/// `NaN`, `Infinity`, `-Infinity`. A float is widened first, so `0.1f`
/// prints `0.10000000149011612`, as protovalidate-go does.
fn cel_double(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity".to_owned() } else { "-Infinity".to_owned() }
    } else {
        format!("{x}")
    }
}

/// const, ranges, in, not_in (and finite for floats) on `val`.
fn numeric_rules(rt: &str, ty: &str, float: bool, r: &DynamicMessage, base: &Steps, val: &str) -> String {
    range_rules(rt, &Repr::Number(ty), float, r, base, val)
}

/// How the values a range rule compares are written.
enum Repr<'a> {
    /// A number of Rust type `ty`.
    Number(&'a str),
    /// A Duration or Timestamp, compared as `(seconds, nanos)`.
    Time { timestamp: bool },
}

/// `(seconds, nanos)` of a Duration or Timestamp rule value.
fn seconds_nanos(v: &Value) -> (i64, i32) {
    match v {
        Value::Message(m) => (
            m.get_field_by_name("seconds").and_then(|v| v.as_i64()).unwrap_or(0),
            m.get_field_by_name("nanos").and_then(|v| v.as_i32()).unwrap_or(0),
        ),
        _ => (0, 0),
    }
}

/// A Duration as CEL's `%s` prints it: seconds with the shortest
/// fraction, then `s` (`0s`, `1.5s`, `0.000001s`).
fn duration_text(seconds: i64, nanos: i32) -> String {
    let value = seconds as f64 + f64::from(nanos) / 1e9;
    format!("{}s", cel_double(value))
}

/// A Timestamp as CEL's `%s` prints it: RFC 3339 in UTC, the fraction
/// without trailing zeros.
fn timestamp_text(seconds: i64, nanos: i32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60);
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// const, ranges and in/not_in on `val` (a reference), written per `repr`.
fn range_rules(rt: &str, repr: &Repr<'_>, float: bool, r: &DynamicMessage, base: &Steps, val: &str) -> String {
    let literal = |v: &Value| match repr {
        Repr::Number(ty) => literal(v, ty),
        Repr::Time { .. } => {
            let (s, n) = seconds_nanos(v);
            format!("({s}i64, {n}i32)")
        }
    };
    let cel_text = |v: &Value| match (repr, v) {
        (Repr::Number(_), v) => cel_text(v),
        (Repr::Time { timestamp }, Value::List(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| {
                    let (s, n) = seconds_nanos(i);
                    if *timestamp { timestamp_text(s, n) } else { duration_text(s, n) }
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
        (Repr::Time { timestamp }, v) => {
            let (s, n) = seconds_nanos(v);
            if *timestamp { timestamp_text(s, n) } else { duration_text(s, n) }
        }
    };
    let family = r.descriptor().name().trim_end_matches("Rules").to_ascii_lowercase();
    let family = if family == "fieldmask" { "field_mask".to_owned() } else { family };
    let mut out = String::new();
    let (x, contains_arg) = match repr {
        Repr::Number(_) => (format!("(*{val})"), val.to_owned()),
        Repr::Time { .. } => (format!("({val}.seconds, {val}.nanos)"), format!("&({val}.seconds, {val}.nanos)")),
    };
    let nan = |cond: String| if float { format!("{x}.is_nan() || {cond}") } else { cond };
    if let Some((d, c)) = get(r, "const") {
        let _ = write!(
            out,
            "if {x} != {} {{ v.violation({}, \"{family}.const\", {:?}); }}",
            literal(&c),
            base.with(&d).text(rt, None),
            format!("must equal {}", cel_text(&c))
        );
    }
    let lt = get(r, "lt");
    let lte = get(r, "lte");
    let gt = get(r, "gt");
    let gte = get(r, "gte");
    let upper = lt.as_ref().map(|(d, v)| (d, v, true)).or(lte.as_ref().map(|(d, v)| (d, v, false)));
    let lower = gt.as_ref().map(|(d, v)| (d, v, true)).or(gte.as_ref().map(|(d, v)| (d, v, false)));
    let num = |v: &Value| -> f64 {
        match v {
            Value::Message(_) => {
                let (s, n) = seconds_nanos(v);
                s as f64 + f64::from(n) / 1e9
            }
            Value::F32(x) => f64::from(*x),
            Value::F64(x) => *x,
            Value::I32(x) => f64::from(*x),
            Value::I64(x) => *x as f64,
            Value::U32(x) => f64::from(*x),
            Value::U64(x) => *x as f64,
            _ => 0.0,
        }
    };
    match (lower, upper) {
        (None, Some((d, u, strict))) => {
            let (op, id, words) =
                if strict { (">=", "lt", "less than") } else { (">", "lte", "less than or equal to") };
            let _ = write!(
                out,
                "if {} {{ v.violation({}, \"{family}.{id}\", {:?}); }}",
                nan(format!("{x} {op} {}", literal(u))),
                base.with(d).text(rt, None),
                format!("must be {words} {}", cel_text(u))
            );
        }
        (Some((d, l, strict)), None) => {
            let (op, id, words) =
                if strict { ("<=", "gt", "greater than") } else { ("<", "gte", "greater than or equal to") };
            let _ = write!(
                out,
                "if {} {{ v.violation({}, \"{family}.{id}\", {:?}); }}",
                nan(format!("{x} {op} {}", literal(l))),
                base.with(d).text(rt, None),
                format!("must be {words} {}", cel_text(l))
            );
        }
        (Some((d, l, lstrict)), Some((_, u, ustrict))) => {
            let lname = if lstrict { "gt" } else { "gte" };
            let uname = if ustrict { "lt" } else { "lte" };
            let lwords = if lstrict { "greater than" } else { "greater than or equal to" };
            let uwords = if ustrict { "less than" } else { "less than or equal to" };
            let (lo, hi) = (literal(l), literal(u));
            // Outside [lower, upper] (or inside the gap, when upper < lower).
            let below = if lstrict { format!("{x} <= {lo}") } else { format!("{x} < {lo}") };
            let above = if ustrict { format!("{x} >= {hi}") } else { format!("{x} > {hi}") };
            let exclusive = num(u) < num(l);
            let (cond, id, words) = if !exclusive {
                (format!("{above} || {below}"), format!("{family}.{lname}_{uname}"), "and")
            } else {
                let in_gap_low = if ustrict { format!("{hi} <= {x}") } else { format!("{hi} < {x}") };
                let in_gap_high = if lstrict { format!("{x} <= {lo}") } else { format!("{x} < {lo}") };
                // Parenthesised only after a NaN test (`x.is_nan() || (..)`).
                let gap = if float {
                    format!("({in_gap_low} && {in_gap_high})")
                } else {
                    format!("{in_gap_low} && {in_gap_high}")
                };
                (gap, format!("{family}.{lname}_{uname}_exclusive"), "or")
            };
            let _ = write!(
                out,
                "if {} {{ v.violation({}, {id:?}, {:?}); }}",
                nan(cond),
                base.with(d).text(rt, None),
                format!("must be {lwords} {} {words} {uwords} {}", cel_text(l), cel_text(u))
            );
        }
        (None, None) => {}
    }
    for (name, negate, words) in [("in", true, "must be in list"), ("not_in", false, "must not be in list")] {
        if let Some((d, Value::List(items))) = get(r, name) {
            let lits: Vec<String> = items.iter().map(&literal).collect();
            let contains = format!("[{}].contains({contains_arg})", lits.join(", "));
            let cond = if negate { format!("!{contains}") } else { contains };
            let _ = write!(
                out,
                "if {cond} {{ v.violation({}, \"{family}.{name}\", {:?}); }}",
                base.with(&d).text(rt, None),
                format!("{words} {}", cel_text(&Value::List(items.clone())))
            );
        }
    }
    if float && let Some((d, Value::Bool(true))) = get(r, "finite") {
        let _ = write!(
            out,
            "if !{x}.is_finite() {{ v.violation({}, \"{family}.finite\", \"must be finite\"); }}",
            base.with(&d).text(rt, None)
        );
    }
    out
}

fn strings_of(v: &Value) -> Vec<String> {
    match v {
        Value::List(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn str_array(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", parts.join(", "))
}

/// `in` / `not_in` on an Any's type URL (the Any is not unpacked).
fn any_rules(rt: &str, r: &DynamicMessage, base: &Steps, val: &str) -> String {
    let mut out = String::new();
    let url = format!("{val}.type_url.as_str()");
    if let Some((d, list)) = get(r, "in") {
        let _ = write!(
            out,
            "if !{}.contains(&{url}) {{ v.violation({}, \"any.in\", \"type URL must be in the allow list\"); }}",
            str_array(&strings_of(&list)),
            base.with(&d).text(rt, None)
        );
    }
    if let Some((d, list)) = get(r, "not_in") {
        let _ = write!(
            out,
            "if {}.contains(&{url}) {{ v.violation({}, \"any.not_in\", \"type URL must not be in the block list\"); }}",
            str_array(&strings_of(&list)),
            base.with(&d).text(rt, None)
        );
    }
    out
}

/// `const`, `in` and `not_in` on a FieldMask's paths (a path is in a list
/// when it is listed or lies under a listed one).
fn field_mask_rules(rt: &str, r: &DynamicMessage, base: &Steps, val: &str) -> String {
    let mut out = String::new();
    if let Some((d, Value::Message(c))) = get(r, "const") {
        let paths = c.get_field_by_name("paths").map(|v| strings_of(&v)).unwrap_or_default();
        let _ = write!(
            out,
            "if {val}.paths.iter().map(String::as_str).ne({}) {{ v.violation({}, \"field_mask.const\", {:?}); }}",
            str_array(&paths),
            base.with(&d).text(rt, None),
            format!("must equal paths [{}]", paths.join(", "))
        );
    }
    for (name, negate, words) in
        [("in", false, "must only contain paths in"), ("not_in", true, "must not contain any paths in")]
    {
        if let Some((d, list)) = get(r, name) {
            let list = strings_of(&list);
            let covered = format!("{rt}::validate::path_covered(p, &{})", str_array(&list));
            let bad = if negate {
                format!("{val}.paths.iter().any(|p| {covered})")
            } else {
                format!("{val}.paths.iter().any(|p| !{covered})")
            };
            let _ = write!(
                out,
                "if {bad} {{ v.violation({}, \"field_mask.{name}\", {:?}); }}",
                base.with(&d).text(rt, None),
                format!("{words} [{}]", list.join(", "))
            );
        }
    }
    out
}

/// `lt_now`, `gt_now` and `within` on a Timestamp, against the clock when
/// the message is validated.
fn now_rules(rt: &str, r: &DynamicMessage, base: &Steps, val: &str) -> String {
    let mut out = String::new();
    let at = |d: &FieldDescriptor| base.with(d).text(rt, None);
    let this = format!("({val}.seconds, {val}.nanos)");
    if let Some((d, Value::Bool(true))) = get(r, "lt_now") {
        let _ = write!(
            out,
            "if {this} > {rt}::validate::now(0) {{ v.violation({}, \"timestamp.lt_now\", \"must be less than now\"); }}",
            at(&d)
        );
    }
    if let Some((d, Value::Bool(true))) = get(r, "gt_now") {
        let _ = write!(
            out,
            "if {this} < {rt}::validate::now(0) {{ v.violation({}, \"timestamp.gt_now\", \"must be greater than now\"); }}",
            at(&d)
        );
    }
    if let Some((d, within)) = get(r, "within") {
        let (s, n) = seconds_nanos(&within);
        let nanos = i128::from(s) * 1_000_000_000 + i128::from(n);
        let _ = write!(
            out,
            "if {this} < {rt}::validate::now(-{nanos}) || {this} > {rt}::validate::now({nanos}) {{ v.violation({}, \"timestamp.within\", {:?}); }}",
            at(&d),
            format!("must be within {} of now", duration_text(s, n))
        );
    }
    out
}

fn string_rules(
    rt: &str,
    r: &DynamicMessage,
    base: &Steps,
    val: &str,
    f: &FieldDescriptor,
    file: &str,
) -> Result<String> {
    check_bounds(r, &[("min_len", "max_len"), ("min_bytes", "max_bytes")], f, file)?;
    let mut out = String::new();
    let s = format!("{val}.as_str()");
    let at = |d: &FieldDescriptor| base.with(d).text(rt, None);
    if let Some((d, c)) = get(r, "const") {
        let c = c.as_str().unwrap_or_default().to_owned();
        let _ = write!(
            out,
            "if {s} != {c:?} {{ v.violation({}, \"string.const\", {:?}); }}",
            at(&d),
            format!("must equal `{c}`")
        );
    }
    let sizes = [
        ("len", "!=", "must be {} characters", true),
        ("min_len", "<", "must be at least {} characters", true),
        ("max_len", ">", "must be at most {} characters", true),
        ("len_bytes", "!=", "must be {} bytes", false),
        ("min_bytes", "<", "must be at least {} bytes", false),
        ("max_bytes", ">", "must be at most {} bytes", false),
    ];
    for (name, op, words, chars) in sizes {
        if let Some((d, n)) = get(r, name) {
            let n = n.as_u64().unwrap_or(0);
            let bytes = format!("({s}.len() as u64)");
            // A string of b bytes has between b/4 and b characters: they
            // are counted only when the byte length cannot decide.
            let count = format!("{rt}::validate::chars({s})");
            let broken = match (chars, op) {
                (false, _) => format!("{bytes} {op} {n}"),
                (true, "<") => format!("{bytes} < {n} || ({bytes} < {} && {count} < {n})", n.saturating_mul(4)),
                (true, ">") => format!("{bytes} > {n} && {count} > {n}"),
                (true, _) => format!("{bytes} < {n} || {bytes} > {} || {count} != {n}", n.saturating_mul(4)),
            };
            let _ = write!(
                out,
                "if {broken} {{ v.violation({}, \"string.{name}\", {:?}); }}",
                at(&d),
                words.replace("{}", &n.to_string())
            );
        }
    }
    if let Some((d, p)) = get(r, "pattern") {
        let p = p.as_str().unwrap_or_default().to_owned();
        if let Err(e) = regex::Regex::new(&p) {
            return Err(Diagnostic::new(
                format!("field {}", f.full_name()),
                format!("string.pattern {p:?} does not compile: {}", regex_problem(&e)),
                "write the pattern in RE2 syntax",
            )
            .in_file(file)
            .into());
        }
        if let Some(matches) = simple_pattern(&p, &s) {
            // Anchored classes and literals: matched by a loop over the
            // characters, without the regex engine.
            let _ = write!(
                out,
                "if !{matches} {{ v.violation({}, \"string.pattern\", {:?}); }}",
                at(&d),
                format!("does not match regex pattern `{p}`")
            );
        } else {
            let _ = write!(
                out,
                "{{ static RE: std::sync::LazyLock<{rt}::validate::Regex> = std::sync::LazyLock::new(|| {rt}::validate::Regex::new({p:?}).expect(\"checked at generation\")); if !RE.is_match({s}) {{ v.violation({}, \"string.pattern\", {:?}); }} }}",
                at(&d),
                format!("does not match regex pattern `{p}`")
            );
        }
    }
    for (name, test, words) in [
        ("prefix", "starts_with", "does not have prefix"),
        ("suffix", "ends_with", "does not have suffix"),
        ("contains", "contains", "does not contain substring"),
    ] {
        if let Some((d, c)) = get(r, name) {
            let c = c.as_str().unwrap_or_default().to_owned();
            let _ = write!(
                out,
                "if !{s}.{test}({c:?}) {{ v.violation({}, \"string.{name}\", {:?}); }}",
                at(&d),
                format!("{words} `{c}`")
            );
        }
    }
    if let Some((d, c)) = get(r, "not_contains") {
        let c = c.as_str().unwrap_or_default().to_owned();
        let _ = write!(
            out,
            "if {s}.contains({c:?}) {{ v.violation({}, \"string.not_contains\", {:?}); }}",
            at(&d),
            format!("contains substring `{c}`")
        );
    }
    // Well-known formats: an empty value has an id of its own.
    let formats: [(&str, String, &str); 18] = [
        ("email", format!("{rt}::validate::format::is_email({s})"), "email address"),
        ("uri", format!("{rt}::validate::format::is_uri({s})"), "URI"),
        ("hostname", format!("{rt}::validate::format::is_hostname({s})"), "hostname"),
        ("ip", format!("{rt}::validate::format::is_ip({s}, 0)"), "IP address"),
        ("ipv4", format!("{rt}::validate::format::is_ip({s}, 4)"), "IPv4 address"),
        ("ipv6", format!("{rt}::validate::format::is_ip({s}, 6)"), "IPv6 address"),
        (
            "address",
            format!("({rt}::validate::format::is_hostname({s}) || {rt}::validate::format::is_ip({s}, 0))"),
            "hostname, or ip address",
        ),
        ("uuid", format!("{rt}::validate::format::is_uuid({s})"), "UUID"),
        ("tuuid", format!("{rt}::validate::format::is_tuuid({s})"), "trimmed UUID"),
        ("ip_with_prefixlen", format!("{rt}::validate::format::is_ip_prefix({s}, 0, false)"), "IP prefix"),
        (
            "ipv4_with_prefixlen",
            format!("{rt}::validate::format::is_ip_prefix({s}, 4, false)"),
            "IPv4 address with prefix length",
        ),
        (
            "ipv6_with_prefixlen",
            format!("{rt}::validate::format::is_ip_prefix({s}, 6, false)"),
            "IPv6 address with prefix length",
        ),
        ("ip_prefix", format!("{rt}::validate::format::is_ip_prefix({s}, 0, true)"), "IP prefix"),
        ("ipv4_prefix", format!("{rt}::validate::format::is_ip_prefix({s}, 4, true)"), "IPv4 prefix"),
        ("ipv6_prefix", format!("{rt}::validate::format::is_ip_prefix({s}, 6, true)"), "IPv6 prefix"),
        ("ulid", format!("{rt}::validate::format::is_ulid({s})"), "ULID"),
        (
            "protobuf_fqn",
            format!("{rt}::validate::format::is_protobuf_name({s}, false)"),
            "fully-qualified Protobuf name",
        ),
        (
            "protobuf_dot_fqn",
            format!("{rt}::validate::format::is_protobuf_name({s}, true)"),
            "fully-qualified Protobuf name with a leading dot",
        ),
    ];
    if let Some((d, Value::Bool(true))) = get(r, "uri_ref") {
        let _ = write!(
            out,
            "if !{rt}::validate::format::is_uri_ref({s}) {{ v.violation({}, \"string.uri_ref\", \"must be a valid URI Reference\"); }}",
            at(&d)
        );
    }
    for (name, test, what) in &formats {
        if let Some((d, Value::Bool(true))) = get(r, name) {
            let _ = write!(
                out,
                "if {s}.is_empty() {{ v.violation({}, \"string.{name}_empty\", \"value is empty, which is not a valid {what}\"); }} else if !{test} {{ v.violation({}, \"string.{name}\", \"must be a valid {what}\"); }}",
                at(&d),
                at(&d)
            );
        }
    }
    if let Some((d, Value::Bool(true))) = get(r, "host_and_port") {
        let _ = write!(
            out,
            "if {s}.is_empty() {{ v.violation({}, \"string.host_and_port_empty\", \"value is empty, which is not a valid host and port pair\"); }} else if !{rt}::validate::format::is_host_and_port({s}, true) {{ v.violation({}, \"string.host_and_port\", \"must be a valid host (hostname or IP address) and port pair\"); }}",
            at(&d),
            at(&d)
        );
    }
    if let Some((d, Value::EnumNumber(known))) = get(r, "well_known_regex") {
        let strict = get(r, "strict").and_then(|(_, v)| v.as_bool()).unwrap_or(true);
        match known {
            1 => {
                let _ = write!(
                    out,
                    "if {s}.is_empty() {{ v.violation({}, \"string.well_known_regex.header_name_empty\", \"value is empty, which is not a valid HTTP header name\"); }} else if !{rt}::validate::format::is_header_name({s}, {strict}) {{ v.violation({}, \"string.well_known_regex.header_name\", \"must be a valid HTTP header name\"); }}",
                    at(&d),
                    at(&d)
                );
            }
            2 => {
                let _ = write!(
                    out,
                    "if !{rt}::validate::format::is_header_value({s}, {strict}) {{ v.violation({}, \"string.well_known_regex.header_value\", \"must be a valid HTTP header value\"); }}",
                    at(&d)
                );
            }
            _ => {}
        }
    }
    for (name, negate, words) in [("in", true, "must be in list"), ("not_in", false, "must not be in list")] {
        if let Some((d, Value::List(items))) = get(r, name) {
            let lits: Vec<String> = items.iter().map(|i| format!("{:?}", i.as_str().unwrap_or_default())).collect();
            let contains = format!("[{}].contains(&{s})", lits.join(", "));
            let cond = if negate { format!("!{contains}") } else { contains };
            let _ = write!(
                out,
                "if {cond} {{ v.violation({}, \"string.{name}\", {:?}); }}",
                at(&d),
                format!("{words} {}", cel_text(&Value::List(items.clone())))
            );
        }
    }
    Ok(out)
}

/// The regex crate's error on one line: its last line says what is wrong.
/// A pattern anchored at both ends whose items are characters or
/// character classes, each repeated a fixed number of times except the
/// last (`^[a-z][a-z0-9_]*$`, `^[A-Z]{2}$`, `^[0-9]+$`): a boolean
/// expression over the `&str` expression `s` that matches as the regex
/// crate would, with one pass over the characters. `None` for anything
/// else (the regex crate then does the matching).
fn simple_pattern(pattern: &str, s: &str) -> Option<String> {
    use regex_syntax::hir::{Class, HirKind, Look};
    let hir = regex_syntax::parse(pattern).ok()?;
    let HirKind::Concat(items) = hir.kind() else { return None };
    let (first, rest) = items.split_first()?;
    let (last, middle) = rest.split_last()?;
    if !matches!(first.kind(), HirKind::Look(Look::Start)) || !matches!(last.kind(), HirKind::Look(Look::End)) {
        return None;
    }
    // Each step: a char pattern, and how many times it repeats.
    let class_pattern = |class: &Class| -> Option<String> {
        let Class::Unicode(u) = class else { return None };
        let ranges = u.ranges();
        if ranges.is_empty() || ranges.len() > 16 {
            return None;
        }
        let arms: Vec<String> = ranges
            .iter()
            .map(|r| {
                if r.start() == r.end() {
                    format!("{:?}", r.start())
                } else {
                    format!("{:?}..={:?}", r.start(), r.end())
                }
            })
            .collect();
        Some(arms.join(" | "))
    };
    let mut steps: Vec<(String, u32, Option<u32>)> = Vec::new();
    for item in middle {
        match item.kind() {
            HirKind::Literal(lit) => {
                for c in std::str::from_utf8(&lit.0).ok()?.chars() {
                    steps.push((format!("{c:?}"), 1, Some(1)));
                }
            }
            HirKind::Class(class) => steps.push((class_pattern(class)?, 1, Some(1))),
            HirKind::Repetition(rep) if rep.greedy => {
                let HirKind::Class(class) = rep.sub.kind() else { return None };
                steps.push((class_pattern(class)?, rep.min, rep.max));
            }
            _ => return None,
        }
    }
    let (open_last, fixed) = steps.split_last()?;
    if fixed.iter().any(|(_, min, max)| Some(*min) != *max) || fixed.iter().map(|(_, min, _)| *min).sum::<u32>() > 64 {
        return None;
    }
    let mutable = if fixed.is_empty() { "" } else { "mut " };
    let mut code = format!("'m: {{ let {mutable}cs = {s}.chars();");
    for (pattern, n, _) in fixed {
        for _ in 0..*n {
            code.push_str(&format!(" let Some({pattern}) = cs.next() else {{ break 'm false }};"));
        }
    }
    let (pattern, min, max) = open_last;
    let bound = |n: &Option<u32>| n.map_or(String::new(), |n| format!(" && n <= {n}"));
    code.push_str(&format!(
        " let mut n = 0u32; for c in cs {{ if !matches!(c, {pattern}) {{ break 'm false; }} n += 1; }} n >= {min}{} }}",
        bound(max)
    ));
    Some(code)
}

fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().last().unwrap_or(&text).trim_start_matches("error: ").to_owned()
}

/// A lower bound above the upper one can never hold: a generation error.
fn check_bounds(r: &DynamicMessage, bounds: &[(&str, &str)], f: &FieldDescriptor, file: &str) -> Result<()> {
    for (min, max) in bounds {
        if let (Some((_, lo)), Some((_, hi))) = (get(r, min), get(r, max)) {
            let (lo, hi) = (lo.as_u64().unwrap_or(0), hi.as_u64().unwrap_or(u64::MAX));
            if lo > hi {
                let family = r.descriptor().name().trim_end_matches("Rules").to_ascii_lowercase();
                return Err(Diagnostic::new(
                    format!("field {}", f.full_name()),
                    format!("{family}.{min} ({lo}) is greater than {family}.{max} ({hi}), so no value can be valid"),
                    format!("lower {min} or raise {max}"),
                )
                .in_file(file)
                .into());
            }
        }
    }
    Ok(())
}

fn bytes_literal(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(|x| format!("{x}u8")).collect();
    format!("[{}]", parts.join(", "))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bytes_rules(
    rt: &str,
    r: &DynamicMessage,
    base: &Steps,
    val: &str,
    f: &FieldDescriptor,
    file: &str,
) -> Result<String> {
    check_bounds(r, &[("min_len", "max_len")], f, file)?;
    let mut out = String::new();
    let b = "bytes".to_owned();
    let at = |d: &FieldDescriptor| base.with(d).text(rt, None);
    let bytes_of = |v: &Value| -> Vec<u8> {
        match v {
            Value::Bytes(b) => b.to_vec(),
            _ => Vec::new(),
        }
    };
    if let Some((d, c)) = get(r, "const") {
        let c = bytes_of(&c);
        let _ = write!(
            out,
            "if {b} != &{}[..] {{ v.violation({}, \"bytes.const\", {:?}); }}",
            bytes_literal(&c),
            at(&d),
            format!("must be {}", hex(&c))
        );
    }
    for (name, op, words) in [
        ("len", "!=", "must be {} bytes"),
        ("min_len", "<", "must be at least {} bytes"),
        ("max_len", ">", "must be at most {} bytes"),
    ] {
        if let Some((d, n)) = get(r, name) {
            let n = n.as_u64().unwrap_or(0);
            let _ = write!(
                out,
                "if ({b}.len() as u64) {op} {n} {{ v.violation({}, \"bytes.{name}\", {:?}); }}",
                at(&d),
                words.replace("{}", &n.to_string())
            );
        }
    }
    if let Some((d, p)) = get(r, "pattern") {
        let p = p.as_str().unwrap_or_default().to_owned();
        if let Err(e) = regex::Regex::new(&p) {
            return Err(Diagnostic::new(
                format!("field {}", f.full_name()),
                format!("bytes.pattern {p:?} does not compile: {}", regex_problem(&e)),
                "write the pattern in RE2 syntax",
            )
            .in_file(file)
            .into());
        }
        let _ = write!(
            out,
            "{{ static RE: std::sync::LazyLock<{rt}::validate::Regex> = std::sync::LazyLock::new(|| {rt}::validate::Regex::new({p:?}).expect(\"checked at generation\")); match std::str::from_utf8({b}) {{ Ok(s) if RE.is_match(s) => {{}} Ok(_) => v.violation({}, \"bytes.pattern\", {:?}), Err(_) => v.error({}, \"bytes.pattern\", \"value must be valid UTF-8 to apply regexp\") }} }}",
            at(&d),
            format!("must match regex pattern `{p}`"),
            at(&d),
        );
    }
    for (name, test, words) in
        [("prefix", "starts_with", "does not have prefix"), ("suffix", "ends_with", "does not have suffix")]
    {
        if let Some((d, c)) = get(r, name) {
            let c = bytes_of(&c);
            let _ = write!(
                out,
                "if !{b}.{test}(&{}) {{ v.violation({}, \"bytes.{name}\", {:?}); }}",
                bytes_literal(&c),
                at(&d),
                format!("{words} {}", hex(&c))
            );
        }
    }
    if let Some((d, c)) = get(r, "contains") {
        let c = bytes_of(&c);
        let _ = write!(
            out,
            "if !{rt}::validate::contains_bytes({b}, &{}) {{ v.violation({}, \"bytes.contains\", {:?}); }}",
            bytes_literal(&c),
            at(&d),
            format!("does not contain {}", hex(&c))
        );
    }
    for (name, negate, words) in [("in", true, "must be in list"), ("not_in", false, "must not be in list")] {
        if let Some((d, Value::List(items))) = get(r, name) {
            let lits: Vec<String> = items.iter().map(|i| format!("&{}[..]", bytes_literal(&bytes_of(i)))).collect();
            let contains = format!("[{}].contains(&{b})", lits.join(", "));
            let cond = if negate { format!("!{contains}") } else { contains };
            let _ = write!(
                out,
                "if {cond} {{ v.violation({}, \"bytes.{name}\", {:?}); }}",
                at(&d),
                format!("{words} {}", cel_text(&Value::List(items.clone())))
            );
        }
    }
    for (name, sizes, what) in [
        ("ip", "4 | 16", "IP address"),
        ("ipv4", "4", "IPv4 address"),
        ("ipv6", "16", "IPv6 address"),
        ("uuid", "16", "UUID"),
    ] {
        if let Some((d, Value::Bool(true))) = get(r, name) {
            let _ = write!(
                out,
                "if {b}.is_empty() {{ v.violation({}, \"bytes.{name}_empty\", \"value is empty, which is not a valid {what}\"); }} else if !matches!({b}.len(), {sizes}) {{ v.violation({}, \"bytes.{name}\", \"must be a valid {what}\"); }}",
                at(&d),
                at(&d)
            );
        }
    }
    if out.is_empty() {
        return Ok(out);
    }
    Ok(format!("{{ let bytes: &[u8] = &{val}[..]; {out} }}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_read_as_cel_prints_them() {
        assert_eq!(cel_double(1.5), "1.5");
        assert_eq!(cel_double(10.0), "10");
        assert_eq!(cel_double(-0.5), "-0.5");
        assert_eq!(cel_double(1e20), "100000000000000000000");
        assert_eq!(cel_double(f64::from(0.1f32)), "0.10000000149011612");
        assert_eq!(cel_double(-0.0), "-0");
        assert_eq!(duration_text(0, 1000), "0.000001s");
        assert_eq!(duration_text(-1, -500_000_000), "-1.5s");
        assert_eq!(duration_text(3600, 0), "3600s");
        assert_eq!(timestamp_text(7, 0), "1970-01-01T00:00:07Z");
        assert_eq!(timestamp_text(0, 1_000_000), "1970-01-01T00:00:00.001Z");
        assert_eq!(timestamp_text(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(timestamp_text(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(cel_double(f64::NAN), "NaN");
    }
}
