//! CEL rules (`cel`, `cel_expression`, predefined rules) compiled to Rust.
//!
//! An expression is parsed and type-checked here, against the descriptors
//! of the message it is about, and written as Rust: `this.a.b` becomes
//! field accesses of the prost structs (an unset message reads as its
//! default, as in CEL), `rule` and `rules` are the constants the
//! descriptors hold, and operators and functions become calls of the
//! runtime's `validate::cel` functions over its `Val`. Every sub-expression
//! evaluates to a `Result`, so errors travel as CEL says; `&&`, `||` and
//! the macros absorb them where CEL does.
//!
//! Messages are never turned into values: a message-typed expression is
//! Rust code of type `Result<&M, cel::Error>`, a repeated message field
//! `Result<&[M], _>`, a map of messages `Result<&Map<K, M>, _>`.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value};

use super::{Cx, Holder, zero_test};
use crate::cel::parse::{self, BinaryOp, Expr, Macro, UnaryOp};

/// The static type of a CEL expression.
#[derive(Clone, Debug)]
pub(super) enum Ty {
    /// Known only at run time (`dyn`, map values of unknown type).
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    Str,
    Bytes,
    Duration,
    Timestamp,
    Type,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// A message (code: `Result<&M, _>`); `dynamic` after `dyn(...)`,
    /// where a missing field is a run-time error.
    Msg {
        desc: MessageDescriptor,
        dynamic: bool,
    },
    /// A repeated message field (code: `Result<&[M], _>`).
    MsgList(MessageDescriptor),
    /// A map field with message values (code: `Result<&Map<K, M>, _>`).
    MsgMap(Kind, MessageDescriptor),
    /// The rules message of a predefined rule (`rules`): a constant.
    Rules(DynamicMessage),
}

impl Ty {
    fn name(&self) -> String {
        match self {
            Ty::Dyn => "dyn".into(),
            Ty::Null => "null_type".into(),
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::Str => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Duration => "google.protobuf.Duration".into(),
            Ty::Timestamp => "google.protobuf.Timestamp".into(),
            Ty::Type => "type".into(),
            Ty::List(t) => format!("list({})", t.name()),
            Ty::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Ty::Msg { desc, .. } => desc.full_name().into(),
            Ty::MsgList(d) => format!("list({})", d.full_name()),
            Ty::MsgMap(k, d) => format!("map({}, {})", scalar_ty(k).map_or("dyn".into(), |t| t.name()), d.full_name()),
            Ty::Rules(m) => m.descriptor().full_name().into(),
        }
    }

    /// Whether the code is a `Result<Val, _>` (not a message reference).
    fn is_value(&self) -> bool {
        !matches!(self, Ty::Msg { .. } | Ty::MsgList(_) | Ty::MsgMap(..) | Ty::Rules(_))
    }

    fn is(&self, allowed: &[&str]) -> bool {
        matches!(self, Ty::Dyn) || allowed.contains(&self.kind_name())
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Ty::Dyn => "dyn",
            Ty::Null => "null",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::Str => "string",
            Ty::Bytes => "bytes",
            Ty::Duration => "duration",
            Ty::Timestamp => "timestamp",
            Ty::Type => "type",
            Ty::List(_) | Ty::MsgList(_) => "list",
            Ty::Map(..) | Ty::MsgMap(..) => "map",
            Ty::Msg { .. } | Ty::Rules(_) => "message",
        }
    }
}

/// Rust code with its CEL type.
#[derive(Clone, Debug)]
pub(super) struct Code {
    rust: String,
    ty: Ty,
}

/// What `this` is: a value (its `Val` built from `val`), or a message, a
/// list of messages or a map of messages that `val` refers to.
pub(super) struct This {
    binding: String,
    code: Code,
    /// The binding and type for the typed path, where `this` has one.
    typed: Option<(String, TTy)>,
}

/// `this` for a value of `kind` at the reference `val` (a field's value,
/// an item, a key or a map value).
pub(super) fn this_value(kind: &Kind, val: &str) -> This {
    let typed = typed_read(kind, &format!("*{val}"), val);
    match (scalar_val(kind, val), scalar_ty(kind), kind) {
        (Some(v), Some(ty), _) => This { binding: v, code: Code { rust: "Ok(svc_this.clone())".into(), ty }, typed },
        (_, _, Kind::Message(desc)) => This {
            binding: val.to_owned(),
            code: Code {
                rust: "Ok::<_, cel::Error>(Some(svc_this))".into(),
                ty: Ty::Msg { desc: desc.clone(), dynamic: false },
            },
            typed: Some((format!("Some({val})"), TTy::Msg(desc.clone()))),
        },
        _ => This { binding: val.to_owned(), code: Code { rust: "Ok(svc_this.clone())".into(), ty: Ty::Dyn }, typed },
    }
}

/// `this` for a whole repeated or map field at the reference `val`.
pub(super) fn this_collection(f: &FieldDescriptor, val: &str) -> This {
    let code = collection_code(f, val);
    if code.ty.is_value() {
        This {
            binding: strip_ok(&code.rust),
            code: Code { rust: "Ok(svc_this.clone())".into(), ty: code.ty },
            typed: None,
        }
    } else {
        This { binding: val.to_owned(), code: collection_code(f, "svc_this"), typed: None }
    }
}

/// `this` for a message (message-level rules), `val` a reference to it.
pub(super) fn this_message(desc: &MessageDescriptor, val: &str) -> This {
    This {
        binding: val.to_owned(),
        code: Code {
            rust: "Ok::<_, cel::Error>(Some(svc_this))".into(),
            ty: Ty::Msg { desc: desc.clone(), dynamic: false },
        },
        typed: Some((format!("Some({val})"), TTy::Msg(desc.clone()))),
    }
}

fn strip_ok(rust: &str) -> String {
    rust.strip_prefix("Ok(").and_then(|r| r.strip_suffix(')')).unwrap_or(rust).to_owned()
}

/// The statement that evaluates one rule and records its outcome at the
/// validator `v`: a violation of `rule_path` with `id` (and `message`,
/// unless the expression gives its own), or an evaluation error.
/// `Err` says why the expression cannot be compiled.
#[allow(clippy::too_many_arguments)]
pub(super) fn rule(
    cx: &Cx<'_>,
    source: &str,
    this: Option<This>,
    rule: Option<(&Value, &Kind, bool, &str)>,
    rules: Option<&DynamicMessage>,
    rule_path: &str,
    id: &str,
    message: &str,
) -> Result<String, String> {
    let ast = parse::parse(source).map_err(|e| format!("CEL expression {source:?} does not parse: {e}"))?;
    let mut c = Compiler { cx, vars: Vec::new(), uses_this: false, uses_now: false, fresh: 0 };
    if let Some(this) = &this {
        c.vars.push(Var { name: "this".into(), code: this.code.clone(), used: false });
    }
    if let Some((value, kind, list, name)) = rule {
        let code = constant(value, kind, list).map_err(|e| format!("the value of predefined rule {name}: {e}"))?;
        c.vars.push(Var { name: "rule".into(), code, used: false });
    }
    if let Some(rules) = rules {
        c.vars.push(Var {
            name: "rules".into(),
            code: Code { rust: String::new(), ty: Ty::Rules(rules.clone()) },
            used: false,
        });
    }
    let code = c.expr(&ast).map_err(|e| format!("CEL expression {source:?}: {e}"))?;
    if !matches!(code.ty, Ty::Bool | Ty::Str | Ty::Dyn) {
        return Err(format!(
            "CEL expression {source:?} gives a {}; a rule must give a bool or a string",
            code.ty.name()
        ));
    }
    c.uses_this = c.vars.iter().any(|v| v.name == "this" && v.used);
    let rt = cx.rt;
    // Statically typed throughout: plain Rust, no `Val`.
    let typed_rule = rule.and_then(|(value, _, list, _)| if list { None } else { typed_constant(value) });
    let mut t = Typed { cx, this: this.as_ref().and_then(|t| t.typed.clone()), rule: typed_rule, used_this: false };
    if let Some(code) = t.expr(&ast) {
        let mut out = String::from("{ ");
        if code.rust.contains("cel::") {
            out.push_str(&format!("use {rt}::validate::cel; "));
        }
        if let (true, Some((binding, _))) = (t.used_this, &t.this) {
            out.push_str(&format!("let svc_this = {binding}; "));
        }
        let violated = |m: &str| format!("v.violation({rule_path}, {id:?}, {m})");
        let body = match (&code.ty, code.fallible) {
            (TTy::Bool, false) => format!("if {} {{ {} }}", negate(&code.rust), violated(&format!("{message:?}"))),
            (TTy::Bool, true) => format!(
                "match {} {{ Ok(true) => {{}} Ok(false) => {}, Err(e) => v.error({rule_path}, {id:?}, e) }}",
                code.rust,
                violated(&format!("{message:?}"))
            ),
            (TTy::Str, false) => {
                format!("let m: &str = {}; if !m.is_empty() {{ {} }}", code.rust, violated("m.to_owned()"))
            }
            (TTy::Str, true) => format!(
                "match {} {{ Ok(\"\") => {{}} Ok(m) => {}, Err(e) => v.error({rule_path}, {id:?}, e) }}",
                code.rust,
                violated("m.to_owned()")
            ),
            _ => String::new(),
        };
        if !body.is_empty() {
            out.push_str(&body);
            out.push_str(" }");
            return Ok(out);
        }
    }
    let mut out = format!("{{ use {rt}::validate::cel; ");
    if let (true, Some(this)) = (c.uses_this, &this) {
        out.push_str(&format!("let svc_this = {}; ", this.binding));
    }
    if c.uses_now {
        out.push_str("let svc_now = cel::Val::now(); ");
    }
    out.push_str(&format!(
        "match cel::verdict({}) {{ Ok(None) => {{}} Ok(Some(m)) => v.violation({rule_path}, {id:?}, if m.is_empty() {{ String::from({message:?}) }} else {{ m }}), Err(e) => v.error({rule_path}, {id:?}, e) }} }}",
        code.rust
    ));
    Ok(out)
}

struct Var {
    name: String,
    code: Code,
    used: bool,
}

struct Compiler<'a> {
    cx: &'a Cx<'a>,
    vars: Vec<Var>,
    uses_this: bool,
    uses_now: bool,
    fresh: usize,
}

fn value(rust: String, ty: Ty) -> Result<Code, String> {
    Ok(Code { rust, ty })
}

fn no_overload(function: &str, args: &[&Ty]) -> String {
    let types: Vec<String> = args.iter().map(|t| t.name()).collect();
    format!("found no matching overload for '{function}' applied to '({})'", types.join(", "))
}

impl Compiler<'_> {
    fn expr(&mut self, e: &Expr) -> Result<Code, String> {
        match e {
            Expr::Null => value("Ok(cel::Val::Null)".into(), Ty::Null),
            Expr::Bool(b) => value(format!("Ok(cel::Val::Bool({b}))"), Ty::Bool),
            Expr::Int(i) => value(format!("Ok(cel::Val::Int({}))", int_lit(*i)), Ty::Int),
            Expr::Uint(u) => value(format!("Ok(cel::Val::Uint({u}))"), Ty::Uint),
            Expr::Double(d) => value(format!("Ok(cel::Val::Double({}))", double_lit(*d)), Ty::Double),
            Expr::Str(s) => value(format!("Ok(cel::Val::Str(String::from({s:?})))"), Ty::Str),
            Expr::Bytes(b) => value(format!("Ok(cel::Val::Bytes({}))", bytes_lit(b)), Ty::Bytes),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(operand, field) => {
                let op = self.expr(operand)?;
                self.select(op, field)
            }
            Expr::Has(operand, field) => {
                let op = self.expr(operand)?;
                self.has(op, field)
            }
            Expr::Call { target, function, args } => self.call(target.as_deref(), function, args),
            Expr::Unary(op, a) => {
                let a = self.value_expr(a)?;
                match op {
                    UnaryOp::Not if a.ty.is(&["bool"]) => value(format!("cel::not({})", a.rust), Ty::Bool),
                    UnaryOp::Neg if a.ty.is(&["int", "double", "duration"]) => {
                        value(format!("cel::neg({})", a.rust), a.ty)
                    }
                    UnaryOp::Not => Err(no_overload("!_", &[&a.ty])),
                    UnaryOp::Neg => Err(no_overload("-_", &[&a.ty])),
                }
            }
            Expr::Binary(op, a, b) => self.binary(*op, a, b),
            Expr::Cond(c, a, b) => {
                let c = self.value_expr(c)?;
                if !c.ty.is(&["bool"]) {
                    return Err(no_overload("_?_:_", &[&c.ty]));
                }
                let (a, b) = (self.value_expr(a)?, self.value_expr(b)?);
                let ty = if a.ty.kind_name() == b.ty.kind_name() { a.ty } else { Ty::Dyn };
                value(
                    format!(
                        "match cel::truth({}) {{ Ok(true) => {}, Ok(false) => {}, Err(e) => Err(e) }}",
                        c.rust, a.rust, b.rust
                    ),
                    ty,
                )
            }
            Expr::Index(a, i) => {
                let a = self.expr(a)?;
                let i = self.value_expr(i)?;
                match &a.ty {
                    Ty::MsgList(d) => {
                        let desc = d.clone();
                        value(
                            format!(
                                "match {} {{ Ok(l) => cel::item(l, {}).map(Some), Err(e) => Err(e) }}",
                                a.rust, i.rust
                            ),
                            Ty::Msg { desc, dynamic: false },
                        )
                    }
                    Ty::MsgMap(k, d) => {
                        let desc = d.clone();
                        let key = scalar_val(k, "k").ok_or("a map key of an unsupported type")?;
                        value(
                            format!(
                                "match {} {{ Ok(Some(m)) => cel::entry(m.iter(), {}, |k| {key}).map(Some), Ok(None) => Err(cel::Error(String::from(\"no such key\"))), Err(e) => Err(e) }}",
                                a.rust, i.rust
                            ),
                            Ty::Msg { desc, dynamic: false },
                        )
                    }
                    Ty::List(t) => value(format!("cel::index({}, {})", a.rust, i.rust), (**t).clone()),
                    Ty::Map(_, t) => value(format!("cel::index({}, {})", a.rust, i.rust), (**t).clone()),
                    Ty::Dyn => value(format!("cel::index({}, {})", a.rust, i.rust), Ty::Dyn),
                    other => Err(no_overload("_[_]", &[other, &i.ty])),
                }
            }
            Expr::List(items) => {
                let mut parts = Vec::new();
                let mut elem: Option<Ty> = None;
                for item in items {
                    let c = self.value_expr(item)?;
                    elem = Some(match elem {
                        None => c.ty.clone(),
                        Some(t) if t.kind_name() == c.ty.kind_name() => t,
                        Some(_) => Ty::Dyn,
                    });
                    parts.push(c.rust);
                }
                value(format!("cel::list(vec![{}])", parts.join(", ")), Ty::List(Box::new(elem.unwrap_or(Ty::Dyn))))
            }
            Expr::Map(pairs) => {
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let k = self.value_expr(k)?;
                    if !k.ty.is(&["int", "uint", "bool", "string"]) {
                        return Err(format!("a map key cannot be a {}", k.ty.name()));
                    }
                    let v = self.value_expr(v)?;
                    parts.push(format!("({}, {})", k.rust, v.rust));
                }
                value(format!("cel::map_of(vec![{}])", parts.join(", ")), Ty::Map(Box::new(Ty::Dyn), Box::new(Ty::Dyn)))
            }
            Expr::Struct { name, .. } => Err(format!("building messages ({name}{{...}}) is not supported in rules")),
            Expr::Comprehension { kind, range, var, filter, body } => {
                self.comprehension(*kind, range, var, filter.as_deref(), body)
            }
        }
    }

    /// An expression that must be a value, not a message.
    fn value_expr(&mut self, e: &Expr) -> Result<Code, String> {
        let c = self.expr(e)?;
        if c.ty.is_value() {
            return Ok(c);
        }
        if let Ty::Rules(_) = c.ty {
            return Err("`rules` can only be selected from (rules.field)".into());
        }
        Err(format!("a {} is used as a value; only its fields can be", c.ty.name()))
    }

    fn ident(&mut self, name: &str) -> Result<Code, String> {
        if let Some(v) = self.vars.iter_mut().rev().find(|v| v.name == name) {
            v.used = true;
            return Ok(v.code.clone());
        }
        match name {
            "now" => {
                self.uses_now = true;
                value("Ok(svc_now.clone())".into(), Ty::Timestamp)
            }
            "int" | "uint" | "double" | "bool" | "string" | "bytes" | "list" | "map" | "null_type" | "type" => {
                value(format!("Ok(cel::Val::Type({name:?}))"), Ty::Type)
            }
            _ => Err(format!("undeclared reference to '{name}'")),
        }
    }

    fn select(&mut self, op: Code, field: &str) -> Result<Code, String> {
        match &op.ty {
            Ty::Msg { desc, dynamic } => {
                let Some(f) = desc.get_field_by_name(field) else {
                    if *dynamic {
                        return value(
                            format!(
                                "match {} {{ Ok(_) => Err(cel::Error(String::from({:?}))), Err(e) => Err(e) }}",
                                op.rust,
                                format!("no such field '{field}' in {}", desc.full_name())
                            ),
                            Ty::Dyn,
                        );
                    }
                    return Err(format!("undefined field '{field}' (message {} has no such field)", desc.full_name()));
                };
                let m = self.name("m");
                let inner = self.field_code(desc, &m, &f)?;
                let default = field_default(&f)?;
                let ty = if *dynamic && inner.ty.is_value() { Ty::Dyn } else { inner.ty };
                value(
                    format!(
                        "match {} {{ Ok(Some({m})) => {}, Ok(None) => {default}, Err(e) => Err(e) }}",
                        op.rust, inner.rust
                    ),
                    ty,
                )
            }
            Ty::Rules(rules) => {
                let Some(f) = rules.descriptor().get_field_by_name(field) else {
                    return Err(format!("undefined field '{field}' of {}", rules.descriptor().full_name()));
                };
                constant(&rules.get_field(&f), &f.kind(), f.is_list())
            }
            Ty::Map(_, v) => value(format!("cel::select({}, {field:?})", op.rust), (**v).clone()),
            Ty::Dyn => value(format!("cel::select({}, {field:?})", op.rust), Ty::Dyn),
            other => Err(format!("type '{}' does not support field selection", other.name())),
        }
    }

    fn has(&mut self, op: Code, field: &str) -> Result<Code, String> {
        match &op.ty {
            Ty::Msg { desc, dynamic } => {
                let Some(f) = desc.get_field_by_name(field) else {
                    if *dynamic {
                        return value("Ok(cel::Val::Bool(false))".into(), Ty::Bool);
                    }
                    return Err(format!("undefined field '{field}' (message {} has no such field)", desc.full_name()));
                };
                let m = self.name("m");
                let test = self.has_code(desc, &m, &f)?;
                value(
                    format!(
                        "match {} {{ Ok(Some({m})) => Ok(cel::Val::Bool({test})), Ok(None) => Ok(cel::Val::Bool(false)), Err(e) => Err(e) }}",
                        op.rust
                    ),
                    Ty::Bool,
                )
            }
            Ty::Rules(rules) => {
                let Some(f) = rules.descriptor().get_field_by_name(field) else {
                    return Err(format!("undefined field '{field}' of {}", rules.descriptor().full_name()));
                };
                value(format!("Ok(cel::Val::Bool({}))", rules.has_field(&f)), Ty::Bool)
            }
            Ty::Map(..) | Ty::Dyn => value(format!("cel::has({}, {field:?})", op.rust), Ty::Bool),
            other => Err(format!("type '{}' does not support field selection", other.name())),
        }
    }

    /// A fresh Rust name for a binding of generated code.
    fn name(&mut self, base: &str) -> String {
        self.fresh += 1;
        format!("svc_{base}{}", self.fresh)
    }

    fn binary(&mut self, op: BinaryOp, a: &Expr, b: &Expr) -> Result<Code, String> {
        let (name, function) = match op {
            BinaryOp::Or => ("_||_", "or"),
            BinaryOp::And => ("_&&_", "and"),
            BinaryOp::Eq => ("_==_", "eq"),
            BinaryOp::Ne => ("_!=_", "ne"),
            BinaryOp::Lt => ("_<_", "lt"),
            BinaryOp::Le => ("_<=_", "le"),
            BinaryOp::Gt => ("_>_", "gt"),
            BinaryOp::Ge => ("_>=_", "ge"),
            BinaryOp::In => ("@in", "contained"),
            BinaryOp::Add => ("_+_", "add"),
            BinaryOp::Sub => ("_-_", "sub"),
            BinaryOp::Mul => ("_*_", "mul"),
            BinaryOp::Div => ("_/_", "div"),
            BinaryOp::Rem => ("_%_", "rem"),
        };
        let a = self.expr(a)?;
        let b = self.expr(b)?;
        // Messages: equality, and `key in map`.
        if matches!(op, BinaryOp::Eq | BinaryOp::Ne) && !a.ty.is_value() && !b.ty.is_value() {
            let same = matches!((&a.ty, &b.ty), (Ty::Msg { desc: x, .. }, Ty::Msg { desc: y, .. }) if x == y);
            if !same {
                return Err(no_overload(name, &[&a.ty, &b.ty]));
            }
            let test = if op == BinaryOp::Eq { "x == y" } else { "x != y" };
            return value(
                format!(
                    "match ({}, {}) {{ (Ok(x), Ok(y)) => Ok(cel::Val::Bool({test})), (Err(e), _) | (_, Err(e)) => Err(e) }}",
                    a.rust, b.rust
                ),
                Ty::Bool,
            );
        }
        if op == BinaryOp::In
            && let Ty::MsgMap(k, _) = &b.ty
        {
            let key = scalar_val(k, "k").ok_or("a map key of an unsupported type")?;
            return value(
                format!(
                    "match {} {{ Ok(m) => cel::contained({}, Ok(cel::Val::List(m.into_iter().flat_map(|m| m.keys()).map(|k| {key}).collect()))), Err(e) => Err(e) }}",
                    b.rust, a.rust
                ),
                Ty::Bool,
            );
        }
        if op == BinaryOp::In
            && let Ty::MsgList(_) = &b.ty
        {
            return Err(no_overload(name, &[&a.ty, &b.ty]));
        }
        for c in [&a, &b] {
            if !c.ty.is_value() {
                return Err(no_overload(name, &[&a.ty, &b.ty]));
            }
        }
        let ty = self.binary_type(op, name, &a.ty, &b.ty)?;
        value(format!("cel::{function}({}, {})", a.rust, b.rust), ty)
    }

    /// The type of `a op b`, or why no overload takes them.
    fn binary_type(&self, op: BinaryOp, name: &str, a: &Ty, b: &Ty) -> Result<Ty, String> {
        let (x, y) = (a.kind_name(), b.kind_name());
        let dynamic = x == "dyn" || y == "dyn";
        let numeric = |k: &str| matches!(k, "int" | "uint" | "double");
        let fail = || Err(no_overload(name, &[a, b]));
        match op {
            BinaryOp::Or | BinaryOp::And => {
                if a.is(&["bool"]) && b.is(&["bool"]) {
                    Ok(Ty::Bool)
                } else {
                    fail()
                }
            }
            BinaryOp::Eq | BinaryOp::Ne => Ok(Ty::Bool),
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let ok = dynamic
                    || (numeric(x) && numeric(y))
                    || (x == y && matches!(x, "bool" | "string" | "bytes" | "duration" | "timestamp"));
                if ok { Ok(Ty::Bool) } else { fail() }
            }
            BinaryOp::In => {
                if b.is(&["list", "map"]) {
                    Ok(Ty::Bool)
                } else {
                    fail()
                }
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                if dynamic {
                    return Ok(match (a, b) {
                        (Ty::Dyn, t) | (t, Ty::Dyn) if op != BinaryOp::Sub && !matches!(t, Ty::Timestamp) => t.clone(),
                        _ => Ty::Dyn,
                    });
                }
                let time = |k: &str| matches!(k, "duration" | "timestamp");
                match (op, x, y) {
                    (_, x, y) if x == y && numeric(x) && !(op == BinaryOp::Rem && x == "double") => Ok(a.clone()),
                    (BinaryOp::Add, x, y) if x == y && matches!(x, "string" | "bytes" | "list") => Ok(a.clone()),
                    (BinaryOp::Add, "duration", "duration") | (BinaryOp::Sub, "duration", "duration") => {
                        Ok(Ty::Duration)
                    }
                    (BinaryOp::Add, "timestamp", "duration")
                    | (BinaryOp::Add, "duration", "timestamp")
                    | (BinaryOp::Sub, "timestamp", "duration") => Ok(Ty::Timestamp),
                    (BinaryOp::Sub, "timestamp", "timestamp") => Ok(Ty::Duration),
                    (_, x, y) if time(x) || time(y) => fail(),
                    _ => fail(),
                }
            }
        }
    }

    fn call(&mut self, target: Option<&Expr>, function: &str, args: &[Expr]) -> Result<Code, String> {
        // Global functions of one argument, and size(x).
        if target.is_none() {
            // protovalidate's getField(message, "name"): a selection.
            if let ("getField", [message, Expr::Str(name)]) = (function, args) {
                let op = self.expr(message)?;
                return self.select(op, name);
            }
            let [arg] = args else {
                return match function {
                    "getField" => Err("getField takes a message and a field name as a string literal".into()),
                    "matches" if args.len() == 2 => self.call(Some(&args[0]), "matches", &args[1..]),
                    _ => Err(format!("undeclared reference to '{function}' with {} argument(s)", args.len())),
                };
            };
            let a = self.expr(arg)?;
            let conversion = |allowed: &[&str], ty: Ty, f: &str| -> Result<Code, String> {
                if a.ty.is(allowed) {
                    value(format!("cel::{f}({})", a.rust), ty)
                } else {
                    Err(no_overload(function, &[&a.ty]))
                }
            };
            return match function {
                "size" => self.size(a),
                "int" => conversion(&["int", "uint", "double", "string", "timestamp"], Ty::Int, "to_int"),
                "uint" => conversion(&["int", "uint", "double", "string"], Ty::Uint, "to_uint"),
                "double" => conversion(&["int", "uint", "double", "string"], Ty::Double, "to_double"),
                "string" => conversion(
                    &["int", "uint", "double", "string", "bytes", "bool", "duration", "timestamp"],
                    Ty::Str,
                    "to_string",
                ),
                "bytes" => conversion(&["string", "bytes"], Ty::Bytes, "to_bytes"),
                "bool" => conversion(&["string", "bool"], Ty::Bool, "to_bool"),
                "duration" => conversion(&["string", "duration"], Ty::Duration, "to_duration"),
                "timestamp" => conversion(&["string", "int", "timestamp"], Ty::Timestamp, "to_timestamp"),
                "type" => conversion(
                    &[
                        "null",
                        "bool",
                        "int",
                        "uint",
                        "double",
                        "string",
                        "bytes",
                        "list",
                        "map",
                        "duration",
                        "timestamp",
                        "type",
                    ],
                    Ty::Type,
                    "type_of",
                ),
                "dyn" => Ok(match a.ty {
                    Ty::Msg { desc, .. } => Code { rust: a.rust, ty: Ty::Msg { desc, dynamic: true } },
                    ty if ty.is_value() => Code { rust: a.rust, ty: Ty::Dyn },
                    _ => a,
                }),
                _ => Err(format!("undeclared reference to '{function}'")),
            };
        }
        let target = target.expect("checked above");
        let t = self.expr(target)?;
        if function == "size" && args.is_empty() {
            return self.size(t);
        }
        if !t.ty.is_value() {
            return Err(no_overload(function, &[&t.ty]));
        }
        let mut a = Vec::new();
        for arg in args {
            a.push(self.value_expr(arg)?);
        }
        let sig: Vec<&Ty> = std::iter::once(&t.ty).chain(a.iter().map(|c| &c.ty)).collect();
        let fail = || Err(no_overload(function, &sig));
        let string_like = |c: &Code| c.ty.is(&["string", "bytes"]);
        match (function, a.as_slice()) {
            ("startsWith" | "endsWith" | "contains", [b]) => {
                let same = t.ty.kind_name() == b.ty.kind_name() || matches!(t.ty, Ty::Dyn) || matches!(b.ty, Ty::Dyn);
                if !(string_like(&t) && string_like(b) && same) {
                    return fail();
                }
                let f = match function {
                    "startsWith" => "starts_with",
                    "endsWith" => "ends_with",
                    _ => "contains",
                };
                value(format!("cel::{f}({}, {})", t.rust, b.rust), Ty::Bool)
            }
            ("matches", [b]) => {
                if !(t.ty.is(&["string"]) && b.ty.is(&["string"])) {
                    return fail();
                }
                if let [Expr::Str(pattern)] = args {
                    if let Err(e) = regex::Regex::new(pattern) {
                        return Err(format!("the pattern {pattern:?} does not compile: {e}"));
                    }
                    let rt = self.cx.rt;
                    return value(
                        format!(
                            "{{ static RE: std::sync::LazyLock<{rt}::validate::Regex> = std::sync::LazyLock::new(|| {rt}::validate::Regex::new({pattern:?}).expect(\"checked at generation\")); cel::matches({}, &RE) }}",
                            t.rust
                        ),
                        Ty::Bool,
                    );
                }
                value(format!("cel::matches_dynamic({}, {})", t.rust, b.rust), Ty::Bool)
            }
            ("isEmail" | "isHostname" | "isUri" | "isUriRef", []) => {
                if !t.ty.is(&["string"]) {
                    return fail();
                }
                let f = match function {
                    "isEmail" => "is_email",
                    "isHostname" => "is_hostname",
                    "isUri" => "is_uri",
                    _ => "is_uri_ref",
                };
                value(format!("cel::{f}({})", t.rust), Ty::Bool)
            }
            ("isIp", []) if t.ty.is(&["string"]) => value(format!("cel::is_ip({}, None)", t.rust), Ty::Bool),
            ("isIp", [v]) if t.ty.is(&["string"]) && v.ty.is(&["int"]) => {
                value(format!("cel::is_ip({}, Some({}))", t.rust, v.rust), Ty::Bool)
            }
            ("isIpPrefix", []) if t.ty.is(&["string"]) => {
                value(format!("cel::is_ip_prefix({}, None, None)", t.rust), Ty::Bool)
            }
            ("isIpPrefix", [x]) if t.ty.is(&["string"]) && matches!(x.ty, Ty::Bool) => {
                value(format!("cel::is_ip_prefix({}, None, Some({}))", t.rust, x.rust), Ty::Bool)
            }
            ("isIpPrefix", [x]) if t.ty.is(&["string"]) && x.ty.is(&["int"]) => {
                value(format!("cel::is_ip_prefix({}, Some({}), None)", t.rust, x.rust), Ty::Bool)
            }
            ("isIpPrefix", [x, y]) if t.ty.is(&["string"]) && x.ty.is(&["int"]) && y.ty.is(&["bool"]) => {
                value(format!("cel::is_ip_prefix({}, Some({}), Some({}))", t.rust, x.rust, y.rust), Ty::Bool)
            }
            ("isHostAndPort", [b]) if t.ty.is(&["string"]) && b.ty.is(&["bool"]) => {
                value(format!("cel::is_host_and_port({}, {})", t.rust, b.rust), Ty::Bool)
            }
            ("unique", []) if t.ty.is(&["list"]) => value(format!("cel::unique({})", t.rust), Ty::Bool),
            ("isNan", []) if t.ty.is(&["double"]) => value(format!("cel::is_nan({})", t.rust), Ty::Bool),
            ("isInf", []) if t.ty.is(&["double"]) => value(format!("cel::is_inf({}, None)", t.rust), Ty::Bool),
            ("isInf", [s]) if t.ty.is(&["double"]) && s.ty.is(&["int"]) => {
                value(format!("cel::is_inf({}, Some({}))", t.rust, s.rust), Ty::Bool)
            }
            ("format", [l]) if t.ty.is(&["string"]) && l.ty.is(&["list"]) => {
                value(format!("cel::format({}, {})", t.rust, l.rust), Ty::Str)
            }
            _ => fail(),
        }
    }

    fn size(&mut self, a: Code) -> Result<Code, String> {
        match &a.ty {
            Ty::MsgList(_) => value(
                format!("match {} {{ Ok(l) => Ok(cel::Val::Int(l.len() as i64)), Err(e) => Err(e) }}", a.rust),
                Ty::Int,
            ),
            Ty::MsgMap(..) => value(
                format!(
                    "match {} {{ Ok(m) => Ok(cel::Val::Int(m.map_or(0, |m| m.len()) as i64)), Err(e) => Err(e) }}",
                    a.rust
                ),
                Ty::Int,
            ),
            t if t.is(&["string", "bytes", "list", "map"]) => value(format!("cel::size({})", a.rust), Ty::Int),
            t => Err(no_overload("size", &[t])),
        }
    }

    fn comprehension(
        &mut self,
        kind: Macro,
        range: &Expr,
        var: &str,
        filter: Option<&Expr>,
        body: &Expr,
    ) -> Result<Code, String> {
        let r = self.expr(range)?;
        let param = format!("cel_{var}");
        // The items, the Rust that yields them, and the variable's code.
        let (items, elem) = match &r.ty {
            Ty::MsgList(d) => (
                "items.iter()".to_owned(),
                Code {
                    rust: format!("Ok::<_, cel::Error>(Some({param}))"),
                    ty: Ty::Msg { desc: d.clone(), dynamic: false },
                },
            ),
            Ty::MsgMap(k, _) => {
                let key = scalar_val(k, "k").ok_or("a map key of an unsupported type")?;
                let ty = scalar_ty(k).unwrap_or(Ty::Dyn);
                (
                    format!("items.into_iter().flat_map(|m| m.keys()).map(|k| {key})"),
                    Code { rust: format!("Ok({param}.clone())"), ty },
                )
            }
            Ty::List(t) | Ty::Map(t, _) => {
                ("items".to_owned(), Code { rust: format!("Ok({param}.clone())"), ty: (**t).clone() })
            }
            Ty::Dyn => ("items".to_owned(), Code { rust: format!("Ok({param}.clone())"), ty: Ty::Dyn }),
            other => return Err(format!("cannot range over a {}", other.name())),
        };
        let values = matches!(r.ty, Ty::List(_) | Ty::Map(..) | Ty::Dyn);
        let source = if values { format!("cel::range({})", r.rust) } else { r.rust.clone() };
        self.vars.push(Var { name: var.to_owned(), code: elem, used: false });
        let compiled = (|| -> Result<(Option<Code>, Code), String> {
            let f = filter.map(|f| self.value_expr(f)).transpose()?;
            let b = self.value_expr(body)?;
            Ok((f, b))
        })();
        let used = self.vars.pop().is_some_and(|v| v.used);
        let (f, b) = compiled?;
        let p = if used { param } else { "_".to_owned() };
        let bool_body = |c: &Code| -> Result<(), String> {
            if c.ty.is(&["bool"]) { Ok(()) } else { Err(format!("the macro's predicate gives a {}", c.ty.name())) }
        };
        let call = match kind {
            Macro::All | Macro::Exists | Macro::ExistsOne => {
                bool_body(&b)?;
                let f = match kind {
                    Macro::All => "all",
                    Macro::Exists => "exists",
                    _ => "exists_one",
                };
                (format!("cel::{f}({items}, |{p}| {})", b.rust), Ty::Bool)
            }
            Macro::Map => {
                let keep = match &f {
                    Some(f) => {
                        bool_body(f)?;
                        f.rust.clone()
                    }
                    None => "Ok(cel::Val::Bool(true))".to_owned(),
                };
                let keep_param = if f.is_some() { p.clone() } else { "_".to_owned() };
                (
                    format!("cel::map({items}, |{keep_param}| {keep}, |{p}| {})", b.rust),
                    Ty::List(Box::new(b.ty.clone())),
                )
            }
            Macro::Filter => {
                if !values {
                    return Err("filter over messages is not supported in rules".into());
                }
                bool_body(&b)?;
                let elem_ty = match &r.ty {
                    Ty::List(t) | Ty::Map(t, _) => (**t).clone(),
                    _ => Ty::Dyn,
                };
                (format!("cel::filter({items}, |{p}| {})", b.rust), Ty::List(Box::new(elem_ty)))
            }
        };
        value(format!("match {source} {{ Ok(items) => {}, Err(e) => Err(e) }}", call.0), call.1)
    }

    /// Field `f` of the message `m` (a `&M` of type `desc`) as CEL reads it.
    fn field_code(&mut self, desc: &MessageDescriptor, m: &str, f: &FieldDescriptor) -> Result<Code, String> {
        let name = crate::ident::to_snake(f.name());
        if f.is_list() || f.is_map() {
            return Ok(collection_code(f, &format!("&{m}.{name}")));
        }
        let kind = f.kind();
        // The field's value as an `Option<&T>` when it has presence.
        let held = if let Some(o) = f.containing_oneof().filter(|o| !o.is_synthetic()) {
            if desc.package_name() != self.cx.package {
                return Err(format!(
                    "oneof fields of {} (another package) cannot be read in rules yet",
                    desc.full_name()
                ));
            }
            let module = self.cx.module_of(desc);
            Some(format!(
                "match &{m}.{} {{ Some({module}::{}::{}(x)) => Some(x), _ => None }}",
                crate::ident::to_snake(o.name()),
                crate::ident::to_upper_camel(o.name()),
                crate::ident::to_upper_camel(f.name())
            ))
        } else if matches!(self.cx.holder(f), Holder::Optional | Holder::ImplicitOption) {
            Some(format!("{m}.{name}.as_ref()"))
        } else {
            None
        };
        if let Kind::Message(d) = &kind
            && !is_wrapper_or_time(d.full_name())
        {
            if matches!(
                d.full_name(),
                "google.protobuf.Any"
                    | "google.protobuf.FieldMask"
                    | "google.protobuf.Struct"
                    | "google.protobuf.Value"
                    | "google.protobuf.ListValue"
                    | "google.protobuf.Empty"
            ) {
                return Err(format!("fields of type {} cannot be read in rules yet", d.full_name()));
            }
            let ty = Ty::Msg { desc: d.clone(), dynamic: false };
            return Ok(match held {
                Some(opt) => Code { rust: format!("Ok::<_, cel::Error>({opt})"), ty },
                None => Code { rust: format!("Ok::<_, cel::Error>(Some(&{m}.{name}))"), ty },
            });
        }
        let ty = scalar_ty(&kind).ok_or_else(|| format!("field {} has a type rules cannot read", f.name()))?;
        let conv = scalar_val(&kind, "x").ok_or_else(|| format!("field {} has a type rules cannot read", f.name()))?;
        Ok(match held {
            Some(opt) => {
                let default = match &kind {
                    Kind::Message(d) if is_wrapper(d.full_name()) => "cel::Val::Null".to_owned(),
                    Kind::Message(d) if d.full_name() == "google.protobuf.Duration" => {
                        "cel::Val::duration(0, 0)".into()
                    }
                    Kind::Message(_) => "cel::Val::timestamp(0, 0)".into(),
                    _ => constant_val(&f.default_value())?,
                };
                Code { rust: format!("Ok(match {opt} {{ Some(x) => {conv}, None => {default} }})"), ty }
            }
            None => Code { rust: format!("Ok({})", scalar_place(&kind, &format!("{m}.{name}")).unwrap_or(conv)), ty },
        })
    }

    /// Whether field `f` of `m` is set, as CEL's `has()` says.
    fn has_code(&mut self, desc: &MessageDescriptor, m: &str, f: &FieldDescriptor) -> Result<String, String> {
        let name = crate::ident::to_snake(f.name());
        if f.is_list() || f.is_map() {
            return Ok(format!("!{m}.{name}.is_empty()"));
        }
        if let Some(o) = f.containing_oneof().filter(|o| !o.is_synthetic()) {
            if desc.package_name() != self.cx.package {
                return Err(format!(
                    "oneof fields of {} (another package) cannot be read in rules yet",
                    desc.full_name()
                ));
            }
            let module = self.cx.module_of(desc);
            return Ok(format!(
                "matches!({m}.{}, Some({module}::{}::{}(_)))",
                crate::ident::to_snake(o.name()),
                crate::ident::to_upper_camel(o.name()),
                crate::ident::to_upper_camel(f.name())
            ));
        }
        if f.field_descriptor_proto().label == Some(2) {
            return Ok("true".into());
        }
        Ok(match self.cx.holder(f) {
            Holder::Optional => format!("{m}.{name}.is_some()"),
            h => format!("!({})", zero_test(f, &super::plain_value(f, &format!("{m}.{name}"), h), false)),
        })
    }
}

/// A whole repeated or map field at the reference `r` (`&Vec<T>`,
/// `&Map<K, V>`).
fn collection_code(f: &FieldDescriptor, r: &str) -> Code {
    let kind = f.kind();
    if f.is_map() {
        let Kind::Message(entry) = kind else { return Code { rust: "Ok(cel::Val::Null)".into(), ty: Ty::Dyn } };
        let (k, v) = (entry.map_entry_key_field().kind(), entry.map_entry_value_field().kind());
        if let (Kind::Message(d), false) = (&v, matches!(&v, Kind::Message(d) if is_wrapper_or_time(d.full_name()))) {
            return Code { rust: format!("Ok::<_, cel::Error>(Some({r}))"), ty: Ty::MsgMap(k, d.clone()) };
        }
        let (kc, vc) = (scalar_val(&k, "k").unwrap_or_default(), scalar_val(&v, "x").unwrap_or_default());
        return Code {
            rust: format!("Ok(cel::Val::Map({r}.iter().map(|(k, x)| ({kc}, {vc})).collect()))"),
            ty: Ty::Map(Box::new(scalar_ty(&k).unwrap_or(Ty::Dyn)), Box::new(scalar_ty(&v).unwrap_or(Ty::Dyn))),
        };
    }
    if let Kind::Message(d) = &kind
        && !is_wrapper_or_time(d.full_name())
    {
        return Code { rust: format!("Ok::<_, cel::Error>(&{r}[..])"), ty: Ty::MsgList(d.clone()) };
    }
    let conv = scalar_val(&kind, "x").unwrap_or_default();
    Code {
        rust: format!("Ok(cel::Val::List({r}.iter().map(|x| {conv}).collect()))"),
        ty: Ty::List(Box::new(scalar_ty(&kind).unwrap_or(Ty::Dyn))),
    }
}

/// Field `f` of a message that is not set (CEL reads the default).
fn field_default(f: &FieldDescriptor) -> Result<String, String> {
    let kind = f.kind();
    if f.is_map() {
        let Kind::Message(entry) = &kind else { return Err("a map without entry".into()) };
        return Ok(match entry.map_entry_value_field().kind() {
            Kind::Message(d) if !is_wrapper_or_time(d.full_name()) => "Ok::<_, cel::Error>(None)".into(),
            _ => "Ok(cel::Val::Map(Vec::new()))".into(),
        });
    }
    if f.is_list() {
        return Ok(match &kind {
            Kind::Message(d) if !is_wrapper_or_time(d.full_name()) => "Ok::<_, cel::Error>(&[][..])".into(),
            _ => "Ok(cel::Val::List(Vec::new()))".into(),
        });
    }
    Ok(match &kind {
        Kind::Message(d) if is_wrapper(d.full_name()) => "Ok(cel::Val::Null)".into(),
        Kind::Message(d) if d.full_name() == "google.protobuf.Duration" => "Ok(cel::Val::duration(0, 0))".into(),
        Kind::Message(d) if d.full_name() == "google.protobuf.Timestamp" => "Ok(cel::Val::timestamp(0, 0))".into(),
        Kind::Message(_) => "Ok::<_, cel::Error>(None)".into(),
        _ => format!("Ok({})", constant_val(&f.default_value())?),
    })
}

fn is_wrapper(name: &str) -> bool {
    matches!(
        name,
        "google.protobuf.BoolValue"
            | "google.protobuf.Int32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.FloatValue"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

fn is_wrapper_or_time(name: &str) -> bool {
    is_wrapper(name) || matches!(name, "google.protobuf.Duration" | "google.protobuf.Timestamp")
}

/// The CEL type of a value of `kind` that CEL reads as a value.
fn scalar_ty(kind: &Kind) -> Option<Ty> {
    Some(match kind {
        Kind::Int32 | Kind::Int64 | Kind::Sint32 | Kind::Sint64 | Kind::Sfixed32 | Kind::Sfixed64 | Kind::Enum(_) => {
            Ty::Int
        }
        Kind::Uint32 | Kind::Uint64 | Kind::Fixed32 | Kind::Fixed64 => Ty::Uint,
        Kind::Float | Kind::Double => Ty::Double,
        Kind::Bool => Ty::Bool,
        Kind::String => Ty::Str,
        Kind::Bytes => Ty::Bytes,
        Kind::Message(d) => match d.full_name() {
            "google.protobuf.Duration" => Ty::Duration,
            "google.protobuf.Timestamp" => Ty::Timestamp,
            name if is_wrapper(name) => scalar_ty(&d.get_field_by_name("value")?.kind())?,
            _ => return None,
        },
    })
}

/// Rust of type `Val` for the value of `kind` at the reference `r` (an
/// identifier); prost holds the wrapper types as their plain values.
fn scalar_val(kind: &Kind, r: &str) -> Option<String> {
    scalar_from(kind, &format!("*{r}"), r)
}

/// Rust of type `Val` for the value of `kind` at the place `p`
/// (`m.field`).
fn scalar_place(kind: &Kind, p: &str) -> Option<String> {
    scalar_from(kind, p, p)
}

/// `copy` reads the value (for numbers and bools), `owner` is what
/// methods are called on (for strings, bytes and messages).
fn scalar_from(kind: &Kind, copy: &str, owner: &str) -> Option<String> {
    Some(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Enum(_) => format!("cel::Val::Int(i64::from({copy}))"),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => format!("cel::Val::Int({copy})"),
        Kind::Uint32 | Kind::Fixed32 => format!("cel::Val::Uint(u64::from({copy}))"),
        Kind::Uint64 | Kind::Fixed64 => format!("cel::Val::Uint({copy})"),
        Kind::Float => format!("cel::Val::Double(f64::from({copy}))"),
        Kind::Double => format!("cel::Val::Double({copy})"),
        Kind::Bool => format!("cel::Val::Bool({copy})"),
        Kind::String => format!("cel::Val::Str({owner}.clone())"),
        Kind::Bytes => format!("cel::Val::Bytes({owner}.to_vec())"),
        Kind::Message(d) => match d.full_name() {
            "google.protobuf.Duration" => format!("cel::Val::duration({owner}.seconds, {owner}.nanos)"),
            "google.protobuf.Timestamp" => format!("cel::Val::timestamp({owner}.seconds, {owner}.nanos)"),
            name if is_wrapper(name) => return scalar_from(&d.get_field_by_name("value")?.kind(), copy, owner),
            _ => return None,
        },
    })
}

/// A constant (a rule's value, a field of `rules`) as code.
fn constant(v: &Value, kind: &Kind, list: bool) -> Result<Code, String> {
    if list {
        let Value::List(items) = v else { return Err("a list was expected".into()) };
        let parts: Vec<String> = items.iter().map(constant_val).collect::<Result<_, _>>()?;
        let elem = scalar_ty(kind).ok_or("a list of messages")?;
        return value(format!("Ok(cel::Val::List(vec![{}]))", parts.join(", ")), Ty::List(Box::new(elem)));
    }
    let ty = scalar_ty(kind).ok_or_else(|| "a message that is not a well-known value type".to_owned())?;
    value(format!("Ok({})", constant_val(v)?), ty)
}

/// A constant as Rust of type `Val`.
fn constant_val(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::Bool(b) => format!("cel::Val::Bool({b})"),
        Value::I32(i) => format!("cel::Val::Int({i})"),
        Value::I64(i) => format!("cel::Val::Int({})", int_lit(*i)),
        Value::EnumNumber(i) => format!("cel::Val::Int({i})"),
        Value::U32(u) => format!("cel::Val::Uint({u})"),
        Value::U64(u) => format!("cel::Val::Uint({u})"),
        Value::F32(f) => format!("cel::Val::Double({})", double_lit(f64::from(*f))),
        Value::F64(f) => format!("cel::Val::Double({})", double_lit(*f)),
        Value::String(s) => format!("cel::Val::Str(String::from({s:?}))"),
        Value::Bytes(b) => format!("cel::Val::Bytes({})", bytes_lit(b)),
        Value::Message(m) => match m.descriptor().full_name() {
            "google.protobuf.Duration" | "google.protobuf.Timestamp" => {
                let s = m.get_field_by_name("seconds").and_then(|v| v.as_i64()).unwrap_or(0);
                let n = m.get_field_by_name("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
                let f = if m.descriptor().full_name().ends_with("Duration") { "duration" } else { "timestamp" };
                format!("cel::Val::{f}({}, {n})", int_lit(s))
            }
            name if is_wrapper(name) => {
                let inner = m.descriptor().get_field_by_name("value").ok_or("a wrapper without value")?;
                constant_val(&m.get_field(&inner))?
            }
            name => return Err(format!("a {name} cannot be a CEL constant")),
        },
        Value::List(items) => {
            let parts: Vec<String> = items.iter().map(constant_val).collect::<Result<_, _>>()?;
            format!("cel::Val::List(vec![{}])", parts.join(", "))
        }
        Value::Map(_) => return Err("a map cannot be a CEL constant here".into()),
    })
}

fn int_lit(i: i64) -> String {
    if i == i64::MIN { "i64::MIN".into() } else { i.to_string() }
}

fn double_lit(d: f64) -> String {
    if d.is_nan() {
        "f64::NAN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "f64::INFINITY".into() } else { "f64::NEG_INFINITY".into() }
    } else {
        format!("{d:?}")
    }
}

fn bytes_lit(b: &[u8]) -> String {
    if b.is_empty() {
        "Vec::new()".into()
    } else {
        format!("vec![{}]", b.iter().map(|x| format!("{x}u8")).collect::<Vec<_>>().join(", "))
    }
}

/// A type the typed path represents as a plain Rust value: `bool`, `i64`,
/// `u64`, `f64`, `&str`, `&[u8]`, or a message as `Option<&M>` (`None`
/// for an unset one, which reads as its default).
#[derive(Clone, Debug)]
pub(super) enum TTy {
    Bool,
    Int,
    Uint,
    Double,
    Str,
    Bytes,
    Msg(MessageDescriptor),
}

impl TTy {
    fn same(&self, other: &TTy) -> bool {
        matches!(
            (self, other),
            (TTy::Bool, TTy::Bool)
                | (TTy::Int, TTy::Int)
                | (TTy::Uint, TTy::Uint)
                | (TTy::Double, TTy::Double)
                | (TTy::Str, TTy::Str)
                | (TTy::Bytes, TTy::Bytes)
        )
    }

    /// The value of an unset field of this type.
    fn zero(&self) -> Option<&'static str> {
        Some(match self {
            TTy::Bool => "false",
            TTy::Int => "0i64",
            TTy::Uint => "0u64",
            TTy::Double => "0.0f64",
            TTy::Str => "\"\"",
            TTy::Bytes => "&[][..]",
            TTy::Msg(_) => return None,
        })
    }
}

/// Typed code: Rust of the type's representation, or of `Result<_,
/// cel::Error>` when `fallible`.
struct T {
    rust: String,
    ty: TTy,
    fallible: bool,
}

fn plain(rust: String, ty: TTy) -> Option<T> {
    Some(T { rust, ty, fallible: false })
}

/// Reads a value of `kind` as the typed path represents it: `copy` reads
/// it (numbers, bools), `owner` is what methods are called on.
fn typed_read(kind: &Kind, copy: &str, owner: &str) -> Option<(String, TTy)> {
    Some(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Enum(_) => (format!("i64::from({copy})"), TTy::Int),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => (copy.to_owned(), TTy::Int),
        Kind::Uint32 | Kind::Fixed32 => (format!("u64::from({copy})"), TTy::Uint),
        Kind::Uint64 | Kind::Fixed64 => (copy.to_owned(), TTy::Uint),
        Kind::Float => (format!("f64::from({copy})"), TTy::Double),
        Kind::Double => (copy.to_owned(), TTy::Double),
        Kind::Bool => (copy.to_owned(), TTy::Bool),
        Kind::String => (format!("{owner}.as_str()"), TTy::Str),
        Kind::Bytes => (format!("&{owner}[..]"), TTy::Bytes),
        Kind::Message(d) if is_wrapper(d.full_name()) => {
            return typed_read(&d.get_field_by_name("value")?.kind(), copy, owner);
        }
        Kind::Message(_) => return None,
    })
}

/// A scalar constant (a predefined rule's value) for the typed path.
fn typed_constant(v: &Value) -> Option<T> {
    match v {
        Value::Bool(b) => plain(b.to_string(), TTy::Bool),
        Value::I32(i) => plain(format!("{i}i64"), TTy::Int),
        Value::I64(i) => plain(if *i == i64::MIN { "i64::MIN".into() } else { format!("{i}i64") }, TTy::Int),
        Value::EnumNumber(i) => plain(format!("{i}i64"), TTy::Int),
        Value::U32(u) => plain(format!("{u}u64"), TTy::Uint),
        Value::U64(u) => plain(format!("{u}u64"), TTy::Uint),
        Value::F32(f) => plain(typed_double(f64::from(*f)), TTy::Double),
        Value::F64(f) => plain(typed_double(*f), TTy::Double),
        Value::String(s) => plain(format!("{s:?}"), TTy::Str),
        _ => None,
    }
}

fn typed_double(d: f64) -> String {
    if d.is_finite() { format!("{d:?}f64") } else { double_lit(d) }
}

/// The typed path: expressions whose every part has a static scalar type
/// compile to plain Rust; `None` sends the expression to the `Val` path.
struct Typed<'a> {
    cx: &'a Cx<'a>,
    this: Option<(String, TTy)>,
    rule: Option<T>,
    used_this: bool,
}

/// `e` parenthesised if it is not a single term (for operands and
/// method receivers).
fn smart(e: &str) -> String {
    let mut depth = 0i32;
    let mut simple = !e.starts_with(['-', '!', '&', '*']);
    let mut chars = e.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '"' => {
                // Skip a string literal.
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        chars.next();
                    } else if c == '"' {
                        break;
                    }
                }
            }
            ' ' | '|' if depth == 0 => simple = false,
            _ => {}
        }
    }
    if simple { e.to_owned() } else { format!("({e})") }
}

/// `!e`, simplified: a double negation or a constant folded.
fn negate(e: &str) -> String {
    match e {
        "true" => return "false".into(),
        "false" => return "true".into(),
        _ => {}
    }
    if let Some(inner) = e.strip_prefix('!')
        && smart(inner) == inner
    {
        return inner.to_owned();
    }
    if let Some(inner) = e.strip_prefix("!(")
        && let Some(inner) = inner.strip_suffix(')')
        && smart(&format!("({inner})")) == format!("({inner})")
        && !inner.contains(['(', ')'])
    {
        return inner.to_owned();
    }
    format!("!{}", smart(e))
}

/// `Ok` of infallible code, the code itself when fallible.
fn res(t: &T) -> String {
    if t.fallible { t.rust.clone() } else { format!("Ok::<_, cel::Error>({})", t.rust) }
}

impl Typed<'_> {
    fn expr(&mut self, e: &Expr) -> Option<T> {
        match e {
            Expr::Bool(b) => plain(b.to_string(), TTy::Bool),
            Expr::Int(i) => plain(if *i == i64::MIN { "i64::MIN".into() } else { format!("{i}i64") }, TTy::Int),
            Expr::Uint(u) => plain(format!("{u}u64"), TTy::Uint),
            Expr::Double(d) => plain(typed_double(*d), TTy::Double),
            Expr::Str(s) => plain(format!("{s:?}"), TTy::Str),
            Expr::Bytes(b) => plain(format!("&{}[..]", bytes_array(b)), TTy::Bytes),
            Expr::Ident(name) if name == "this" => {
                let (_, ty) = self.this.clone()?;
                self.used_this = true;
                plain("svc_this".into(), ty)
            }
            Expr::Ident(name) if name == "rule" => {
                let r = self.rule.as_ref()?;
                plain(r.rust.clone(), r.ty.clone())
            }
            Expr::Select(operand, field) => {
                let op = self.expr(operand)?;
                let (TTy::Msg(desc), false) = (&op.ty, op.fallible) else { return None };
                let f = desc.get_field_by_name(field)?;
                self.select(&op.rust, desc, &f)
            }
            Expr::Has(operand, field) => {
                let op = self.expr(operand)?;
                let (TTy::Msg(desc), false) = (&op.ty, op.fallible) else { return None };
                let f = desc.get_field_by_name(field)?;
                let mut c = Compiler { cx: self.cx, vars: Vec::new(), uses_this: false, uses_now: false, fresh: 0 };
                let test = c.has_code(desc, "m", &f).ok()?;
                plain(format!("{}.is_some_and(|m| {test})", op.rust), TTy::Bool)
            }
            Expr::Unary(UnaryOp::Not, a) => {
                let a = self.expr(a)?;
                if !matches!(a.ty, TTy::Bool) {
                    return None;
                }
                Some(if a.fallible {
                    T { rust: format!("{}.map(|b| !b)", a.rust), ty: TTy::Bool, fallible: true }
                } else {
                    T { rust: negate(&a.rust), ty: TTy::Bool, fallible: false }
                })
            }
            Expr::Unary(UnaryOp::Neg, a) => {
                let a = self.expr(a)?;
                match (&a.ty, a.fallible) {
                    (TTy::Double, false) => plain(format!("-{}", smart(&a.rust)), TTy::Double),
                    (TTy::Int, false) => Some(T {
                        rust: format!("cel::overflowed({}.checked_neg())", smart(&a.rust)),
                        ty: TTy::Int,
                        fallible: true,
                    }),
                    _ => None,
                }
            }
            Expr::Binary(op, a, b) => self.binary(*op, a, b),
            Expr::Cond(c, a, b) => {
                let (c, a, b) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                if !matches!(c.ty, TTy::Bool) || !a.ty.same(&b.ty) {
                    return None;
                }
                let ty = a.ty.clone();
                if !(c.fallible || a.fallible || b.fallible) {
                    return plain(format!("if {} {{ {} }} else {{ {} }}", c.rust, a.rust, b.rust), ty);
                }
                Some(T {
                    rust: format!(
                        "match {} {{ Ok(true) => {}, Ok(false) => {}, Err(e) => Err(e) }}",
                        res(&c),
                        res(&a),
                        res(&b)
                    ),
                    ty,
                    fallible: true,
                })
            }
            Expr::Call { target, function, args } => self.call(target.as_deref(), function, args),
            _ => None,
        }
    }

    /// Field `f` of the message `m` (an `Option<&M>`).
    fn select(&mut self, m: &str, desc: &MessageDescriptor, f: &FieldDescriptor) -> Option<T> {
        if f.is_list() || f.is_map() || f.containing_oneof().is_some_and(|o| !o.is_synthetic()) {
            return None;
        }
        let name = crate::ident::to_snake(f.name());
        let kind = f.kind();
        let holder = self.cx.holder(f);
        if let Kind::Message(sub) = &kind {
            if is_wrapper_or_time(sub.full_name()) || sub.full_name().starts_with("google.protobuf.") {
                return None;
            }
            let _ = desc;
            let rust = match holder {
                Holder::Plain => format!("{m}.map(|m| &m.{name})"),
                _ => format!("{m}.and_then(|m| m.{name}.as_ref())"),
            };
            return plain(rust, TTy::Msg(sub.clone()));
        }
        let (read, ty) = match holder {
            Holder::Plain => typed_read(&kind, &format!("m.{name}"), &format!("m.{name}"))?,
            Holder::Optional | Holder::ImplicitOption => {
                let default = f.default_value();
                match &kind {
                    Kind::String => {
                        let d = default.as_str().unwrap_or_default().to_owned();
                        (format!("m.{name}.as_deref().unwrap_or({d:?})"), TTy::Str)
                    }
                    Kind::Bytes => {
                        let d = default.as_bytes().map(|b| b.to_vec()).unwrap_or_default();
                        (format!("m.{name}.as_deref().unwrap_or(&{}[..])", bytes_array(&d)), TTy::Bytes)
                    }
                    _ => {
                        let raw = raw_default(&default)?;
                        typed_read(&kind, &format!("m.{name}.unwrap_or({raw})"), "")?
                    }
                }
            }
        };
        let zero = ty.zero()?;
        plain(format!("{m}.map_or({zero}, |m| {read})"), ty)
    }

    fn binary(&mut self, op: BinaryOp, a: &Expr, b: &Expr) -> Option<T> {
        let (a, b) = (self.expr(a)?, self.expr(b)?);
        if matches!(a.ty, TTy::Msg(_)) || matches!(b.ty, TTy::Msg(_)) {
            return None;
        }
        let either = a.fallible || b.fallible;
        // `f(x, y)` over plain operands, as infallible (`Ok(..)`) or
        // fallible Rust.
        let combine = |f: String, ty: TTy, fallible_op: bool| -> Option<T> {
            if !either {
                let f = f
                    .replace("{xa}", &a.rust)
                    .replace("{ya}", &b.rust)
                    .replace("{x}", &smart(&a.rust))
                    .replace("{y}", &smart(&b.rust));
                return Some(T { rust: f, ty, fallible: fallible_op });
            }
            let inner = f.replace("{xa}", "x").replace("{ya}", "y").replace("{x}", "x").replace("{y}", "y");
            let inner = if fallible_op { inner } else { format!("Ok({inner})") };
            Some(T {
                rust: format!(
                    "match ({}, {}) {{ (Ok(x), Ok(y)) => {inner}, (Err(e), _) | (_, Err(e)) => Err(e) }}",
                    res(&a),
                    res(&b)
                ),
                ty,
                fallible: true,
            })
        };
        match op {
            BinaryOp::And | BinaryOp::Or => {
                if !matches!((&a.ty, &b.ty), (TTy::Bool, TTy::Bool)) {
                    return None;
                }
                let word = if op == BinaryOp::And { "and" } else { "or" };
                // A constant side decides, or leaves the other (CEL absorbs
                // the other's error where the constant decides).
                let and = op == BinaryOp::And;
                for (k, other) in [(&a, &b), (&b, &a)] {
                    match (k.rust.as_str(), k.fallible, and) {
                        ("true", false, true) | ("false", false, false) => {
                            return Some(T { rust: other.rust.clone(), ty: TTy::Bool, fallible: other.fallible });
                        }
                        ("false", false, true) => return plain("false".into(), TTy::Bool),
                        ("true", false, false) => return plain("true".into(), TTy::Bool),
                        _ => {}
                    }
                }
                if !either {
                    let sym = if op == BinaryOp::And { "&&" } else { "||" };
                    return plain(format!("{} {sym} {}", smart(&a.rust), smart(&b.rust)), TTy::Bool);
                }
                Some(T { rust: format!("cel::{word}_bool({}, {})", res(&a), res(&b)), ty: TTy::Bool, fallible: true })
            }
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                if !a.ty.same(&b.ty) {
                    return None;
                }
                let sym = match op {
                    BinaryOp::Eq => "==",
                    BinaryOp::Ne => "!=",
                    BinaryOp::Lt => "<",
                    BinaryOp::Le => "<=",
                    BinaryOp::Gt => ">",
                    _ => ">=",
                };
                combine(format!("{{x}} {sym} {{y}}"), TTy::Bool, false)
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                if !a.ty.same(&b.ty) {
                    return None;
                }
                let ty = a.ty.clone();
                let (sym, checked) = match op {
                    BinaryOp::Add => ("+", "checked_add"),
                    BinaryOp::Sub => ("-", "checked_sub"),
                    BinaryOp::Mul => ("*", "checked_mul"),
                    BinaryOp::Div => ("/", "div"),
                    _ => ("%", "rem"),
                };
                match (&ty, op) {
                    (TTy::Double, BinaryOp::Rem) => None,
                    (TTy::Double, _) => combine(format!("{{x}} {sym} {{y}}"), ty, false),
                    (TTy::Int | TTy::Uint, BinaryOp::Div | BinaryOp::Rem) => {
                        let kind = if matches!(ty, TTy::Int) { "int" } else { "uint" };
                        combine(format!("cel::{kind}_{checked}({{xa}}, {{ya}})"), ty, true)
                    }
                    (TTy::Int | TTy::Uint, _) => combine(format!("cel::overflowed({{x}}.{checked}({{ya}}))"), ty, true),
                    _ => None,
                }
            }
            BinaryOp::In => None,
        }
    }

    fn call(&mut self, target: Option<&Expr>, function: &str, args: &[Expr]) -> Option<T> {
        let rt = self.cx.rt;
        let (t, args) = match (target, args) {
            (Some(t), args) => (self.expr(t)?, args),
            (None, [first, rest @ ..]) => (self.expr(first)?, rest),
            _ => return None,
        };
        if t.fallible {
            return None;
        }
        let mut a = Vec::new();
        for arg in args {
            let c = self.expr(arg)?;
            if c.fallible {
                return None;
            }
            a.push(c);
        }
        let arg = t.rust.clone();
        let x = &smart(&t.rust);
        match (function, &t.ty, a.as_slice()) {
            ("size", TTy::Str, []) => plain(format!("({rt}::validate::chars({arg}) as i64)"), TTy::Int),
            ("size", TTy::Bytes, []) => plain(format!("({x}.len() as i64)"), TTy::Int),
            ("startsWith", TTy::Str | TTy::Bytes, [y]) if y.ty.same(&t.ty) => {
                plain(format!("{x}.starts_with({})", y.rust), TTy::Bool)
            }
            ("endsWith", TTy::Str | TTy::Bytes, [y]) if y.ty.same(&t.ty) => {
                plain(format!("{x}.ends_with({})", y.rust), TTy::Bool)
            }
            ("contains", TTy::Str, [y]) if matches!(y.ty, TTy::Str) => {
                plain(format!("{x}.contains({})", y.rust), TTy::Bool)
            }
            ("contains", TTy::Bytes, [y]) if matches!(y.ty, TTy::Bytes) => {
                plain(format!("{rt}::validate::contains_bytes({arg}, {})", y.rust), TTy::Bool)
            }
            ("matches", TTy::Str, [_]) => {
                let [Expr::Str(pattern)] = args else { return None };
                regex::Regex::new(pattern).ok()?;
                plain(
                    format!(
                        "{{ static RE: std::sync::LazyLock<{rt}::validate::Regex> = std::sync::LazyLock::new(|| {rt}::validate::Regex::new({pattern:?}).expect(\"checked at generation\")); RE.is_match({arg}) }}"
                    ),
                    TTy::Bool,
                )
            }
            ("isEmail" | "isHostname" | "isUri" | "isUriRef", TTy::Str, []) => {
                let f = match function {
                    "isEmail" => "is_email",
                    "isHostname" => "is_hostname",
                    "isUri" => "is_uri",
                    _ => "is_uri_ref",
                };
                plain(format!("{rt}::validate::format::{f}({arg})"), TTy::Bool)
            }
            ("isIp", TTy::Str, []) => plain(format!("{rt}::validate::format::is_ip({arg}, 0)"), TTy::Bool),
            ("isIp", TTy::Str, [v]) if matches!(v.ty, TTy::Int) => {
                plain(format!("{rt}::validate::format::is_ip({arg}, {})", v.rust), TTy::Bool)
            }
            ("isIpPrefix", TTy::Str, []) => {
                plain(format!("{rt}::validate::format::is_ip_prefix({arg}, 0, false)"), TTy::Bool)
            }
            ("isIpPrefix", TTy::Str, [v]) if matches!(v.ty, TTy::Int) => {
                plain(format!("{rt}::validate::format::is_ip_prefix({arg}, {}, false)", v.rust), TTy::Bool)
            }
            ("isIpPrefix", TTy::Str, [s]) if matches!(s.ty, TTy::Bool) => {
                plain(format!("{rt}::validate::format::is_ip_prefix({arg}, 0, {})", s.rust), TTy::Bool)
            }
            ("isIpPrefix", TTy::Str, [v, s]) if matches!(v.ty, TTy::Int) && matches!(s.ty, TTy::Bool) => {
                plain(format!("{rt}::validate::format::is_ip_prefix({arg}, {}, {})", v.rust, s.rust), TTy::Bool)
            }
            ("isHostAndPort", TTy::Str, [b]) if matches!(b.ty, TTy::Bool) => {
                plain(format!("{rt}::validate::format::is_host_and_port({arg}, {})", b.rust), TTy::Bool)
            }
            ("isNan", TTy::Double, []) => plain(format!("{x}.is_nan()"), TTy::Bool),
            ("isInf", TTy::Double, []) => plain(format!("{x}.is_infinite()"), TTy::Bool),
            ("int", TTy::Int, []) | ("uint", TTy::Uint, []) | ("double", TTy::Double, []) => {
                plain(arg.clone(), t.ty.clone())
            }
            ("double", TTy::Int | TTy::Uint, []) => plain(format!("({x} as f64)"), TTy::Double),
            ("int", TTy::Uint, []) => {
                Some(T { rust: format!("cel::overflowed(i64::try_from({arg}).ok())"), ty: TTy::Int, fallible: true })
            }
            ("uint", TTy::Int, []) => {
                Some(T { rust: format!("cel::overflowed(u64::try_from({arg}).ok())"), ty: TTy::Uint, fallible: true })
            }
            _ => None,
        }
    }
}

/// A proto2 default (or zero) as a literal of the field's Rust type.
fn raw_default(v: &Value) -> Option<String> {
    Some(match v {
        Value::Bool(b) => b.to_string(),
        Value::I32(i) => format!("{i}i32"),
        Value::I64(i) => {
            if *i == i64::MIN {
                "i64::MIN".into()
            } else {
                format!("{i}i64")
            }
        }
        Value::EnumNumber(i) => format!("{i}i32"),
        Value::U32(u) => format!("{u}u32"),
        Value::U64(u) => format!("{u}u64"),
        Value::F32(f) if f.is_finite() => format!("{f:?}f32"),
        Value::F64(f) if f.is_finite() => format!("{f:?}f64"),
        _ => return None,
    })
}

fn bytes_array(b: &[u8]) -> String {
    format!("[{}]", b.iter().map(|x| format!("{x}u8")).collect::<Vec<_>>().join(", "))
}
