//! Request validation: the trait generated code implements from the
//! protovalidate (`buf.validate`) rules of each message, the violations it
//! reports, and the helpers that generated code calls.
//!
//! Rules are compiled to straight-line Rust at generation time: a message's
//! `validate` walks its fields, checks each rule with its values as
//! constants, and collects every violation with protovalidate's content
//! (field path, rule path, rule id, message, `for_key`), so that the
//! result is what protovalidate-go or -java would report.

use std::borrow::Cow;
use std::fmt;

pub use regex::Regex;

/// `google.protobuf.FieldDescriptorProto.Type` numbers, as field paths
/// carry them.
#[allow(missing_docs)]
pub mod kind {
    pub const DOUBLE: i32 = 1;
    pub const FLOAT: i32 = 2;
    pub const INT64: i32 = 3;
    pub const UINT64: i32 = 4;
    pub const INT32: i32 = 5;
    pub const FIXED64: i32 = 6;
    pub const FIXED32: i32 = 7;
    pub const BOOL: i32 = 8;
    pub const STRING: i32 = 9;
    pub const GROUP: i32 = 10;
    pub const MESSAGE: i32 = 11;
    pub const BYTES: i32 = 12;
    pub const UINT32: i32 = 13;
    pub const ENUM: i32 = 14;
    pub const SFIXED32: i32 = 15;
    pub const SFIXED64: i32 = 16;
    pub const SINT32: i32 = 17;
    pub const SINT64: i32 = 18;
}

/// A message with validation rules (and every message that reaches one).
pub trait Validate {
    /// Every violation of the message's rules, or `Ok(())`.
    fn validate(&self) -> Result<(), Violations> {
        let mut v = Validator::default();
        self.validate_into(&mut v);
        v.finish()
    }

    /// Checks the message at `v`'s current field path, adding violations
    /// to it. Called by `validate` and by the messages that contain this
    /// one.
    fn validate_into(&self, v: &mut Validator);
}

impl<T: Validate + ?Sized> Validate for Box<T> {
    fn validate_into(&self, v: &mut Validator) {
        (**self).validate_into(v);
    }
}

/// Which element of a repeated or map field a path step points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscript {
    /// A repeated field's index.
    Index(u64),
    /// A map key.
    Bool(bool),
    /// A map key of a signed integer type.
    Int(i64),
    /// A map key of an unsigned integer type.
    Uint(u64),
    /// A string map key.
    String(String),
}

/// One step of a field path: `buf.validate.FieldPathElement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPathElement {
    /// The field's number.
    pub field_number: i32,
    /// The field's name (a group's lowercased, as protovalidate has it).
    pub field_name: Cow<'static, str>,
    /// The field's type (see [`kind`]).
    pub field_type: i32,
    /// For map fields: the key's type.
    pub key_type: Option<i32>,
    /// For map fields: the value's type.
    pub value_type: Option<i32>,
    /// The element or key, when the step goes into one.
    pub subscript: Option<Subscript>,
}

/// A field as generated code describes it, without subscript.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Number.
    pub number: i32,
    /// Name.
    pub name: &'static str,
    /// Type (see [`kind`]).
    pub kind: i32,
    /// For map fields: key and value types.
    pub map: Option<(i32, i32)>,
}

impl Field {
    fn element(&self, subscript: Option<Subscript>) -> FieldPathElement {
        FieldPathElement {
            field_number: self.number,
            field_name: Cow::Borrowed(self.name),
            field_type: self.kind,
            // Key and value types go with a subscript into the map.
            key_type: self.map.filter(|_| subscript.is_some()).map(|m| m.0),
            value_type: self.map.filter(|_| subscript.is_some()).map(|m| m.1),
            subscript,
        }
    }
}

/// One rule step: a field of a rules message (`string`, then `min_len`).
pub type RuleStep = (i32, &'static str, i32);

/// A rule's path as generated code writes it: the steps from
/// `FieldRules` (or `MessageRules`, `OneofRules`) to the rule, with the
/// subscript of a `cel` entry where there is one.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `string.min_len`, `repeated.items.string.min_len`, ...
    pub steps: &'static [RuleStep],
    /// The index into a `cel` list the last step names.
    pub index: Option<u64>,
}

/// One violated rule: `buf.validate.Violation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// From the validated message to the offending field (empty for
    /// message-level rules).
    pub field: Vec<FieldPathElement>,
    /// From the rules message to the rule.
    pub rule: Vec<FieldPathElement>,
    /// The rule's id, e.g. `string.min_len`.
    pub rule_id: Cow<'static, str>,
    /// What is wrong, for people.
    pub message: Cow<'static, str>,
    /// The violation is about a map key, not its value.
    pub for_key: bool,
}

impl Violation {
    /// The field path as protovalidate prints it: `a.b[2].c["k"]`.
    pub fn field_path(&self) -> String {
        path_text(&self.field)
    }

    /// The rule path as protovalidate prints it: `string.min_len`.
    pub fn rule_path(&self) -> String {
        path_text(&self.rule)
    }
}

fn path_text(elements: &[FieldPathElement]) -> String {
    let mut out = String::new();
    for e in elements {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&e.field_name);
        match &e.subscript {
            None => {}
            Some(Subscript::Index(i)) => out.push_str(&format!("[{i}]")),
            Some(Subscript::Bool(b)) => out.push_str(&format!("[{b}]")),
            Some(Subscript::Int(i)) => out.push_str(&format!("[{i}]")),
            Some(Subscript::Uint(u)) => out.push_str(&format!("[{u}]")),
            Some(Subscript::String(s)) => out.push_str(&format!("[{s:?}]")),
        }
    }
    out
}

/// Every violation of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("validation failed:")?;
        for v in &self.0 {
            let path = v.field_path();
            if path.is_empty() {
                write!(f, "\n - {} [{}]", v.message, v.rule_id)?;
            } else {
                write!(f, "\n - {path}: {} [{}]", v.message, v.rule_id)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Walks a message for generated code: the current field path, and the
/// violations so far.
#[derive(Debug, Default)]
pub struct Validator {
    path: Vec<FieldPathElement>,
    found: Vec<Violation>,
}

impl Validator {
    /// Goes into `field` (at `subscript`, for an element of a repeated or
    /// map field); [`Validator::leave`] comes back.
    pub fn enter(&mut self, field: &Field, subscript: Option<Subscript>) {
        self.path.push(field.element(subscript));
    }

    /// Comes back from the last [`Validator::enter`].
    pub fn leave(&mut self) {
        self.path.pop();
    }

    /// Records a violation of `rule` at the current path.
    pub fn violation(&mut self, rule: &Rule, id: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) {
        self.push(rule, id.into(), message.into(), false);
    }

    /// Records a violation about the map key at the current path.
    pub fn key_violation(
        &mut self,
        rule: &Rule,
        id: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) {
        self.push(rule, id.into(), message.into(), true);
    }

    fn push(&mut self, rule: &Rule, rule_id: Cow<'static, str>, message: Cow<'static, str>, for_key: bool) {
        let mut steps: Vec<FieldPathElement> = rule
            .steps
            .iter()
            .map(|&(number, name, kind)| FieldPathElement {
                field_number: number,
                field_name: Cow::Borrowed(name),
                field_type: kind,
                key_type: None,
                value_type: None,
                subscript: None,
            })
            .collect();
        if let (Some(i), Some(last)) = (rule.index, steps.last_mut()) {
            last.subscript = Some(Subscript::Index(i));
        }
        self.found.push(Violation { field: self.path.clone(), rule: steps, rule_id, message, for_key });
    }

    /// Whether any violation was found.
    pub fn failed(&self) -> bool {
        !self.found.is_empty()
    }

    /// The violations found, if any.
    pub fn finish(self) -> Result<(), Violations> {
        if self.found.is_empty() { Ok(()) } else { Err(Violations(self.found)) }
    }
}

/// Unicode scalar values in `s` (protovalidate counts characters so).
pub fn chars(s: &str) -> u64 {
    s.chars().count() as u64
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether every item of `items` is different from the others (floats
/// compare by value, so NaN never equals itself).
pub fn unique<T: PartialEq>(items: &[T]) -> bool {
    items.iter().enumerate().all(|(i, a)| items[..i].iter().all(|b| a != b))
}

/// The violations as the protobuf messages `buf.validate.Violations`
/// carries, encoded (for a `Status`'s details).
pub fn encode_violations(violations: &Violations) -> Vec<u8> {
    use prost::Message as _;
    wire::Violations::from(violations).encode_to_vec()
}

/// The wire form of the violations (`buf.validate.Violations` and its
/// parts), for the details of an `INVALID_ARGUMENT` status.
pub mod wire {
    use super::Subscript;

    /// `buf.validate.Violations`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Violations {
        /// The violations.
        #[prost(message, repeated, tag = "1")]
        pub violations: Vec<Violation>,
    }

    /// `buf.validate.Violation`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Violation {
        /// Rule id.
        #[prost(string, optional, tag = "2")]
        pub rule_id: Option<String>,
        /// Message.
        #[prost(string, optional, tag = "3")]
        pub message: Option<String>,
        /// For a map key.
        #[prost(bool, optional, tag = "4")]
        pub for_key: Option<bool>,
        /// Field path.
        #[prost(message, optional, tag = "5")]
        pub field: Option<FieldPath>,
        /// Rule path.
        #[prost(message, optional, tag = "6")]
        pub rule: Option<FieldPath>,
    }

    /// `buf.validate.FieldPath`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FieldPath {
        /// Steps.
        #[prost(message, repeated, tag = "1")]
        pub elements: Vec<FieldPathElement>,
    }

    /// `buf.validate.FieldPathElement`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FieldPathElement {
        /// Number.
        #[prost(int32, optional, tag = "1")]
        pub field_number: Option<i32>,
        /// Name.
        #[prost(string, optional, tag = "2")]
        pub field_name: Option<String>,
        /// Type.
        #[prost(int32, optional, tag = "3")]
        pub field_type: Option<i32>,
        /// Map key type.
        #[prost(int32, optional, tag = "4")]
        pub key_type: Option<i32>,
        /// Map value type.
        #[prost(int32, optional, tag = "5")]
        pub value_type: Option<i32>,
        /// Subscript.
        #[prost(oneof = "Sub", tags = "6, 7, 8, 9, 10")]
        pub subscript: Option<Sub>,
    }

    /// `FieldPathElement.subscript`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Sub {
        /// Index.
        #[prost(uint64, tag = "6")]
        Index(u64),
        /// Bool key.
        #[prost(bool, tag = "7")]
        BoolKey(bool),
        /// Signed key.
        #[prost(int64, tag = "8")]
        IntKey(i64),
        /// Unsigned key.
        #[prost(uint64, tag = "9")]
        UintKey(u64),
        /// String key.
        #[prost(string, tag = "10")]
        StringKey(String),
    }

    fn path(elements: &[super::FieldPathElement]) -> Option<FieldPath> {
        (!elements.is_empty()).then(|| FieldPath {
            elements: elements
                .iter()
                .map(|e| FieldPathElement {
                    // A oneof has a name only.
                    field_number: (e.field_number != 0).then_some(e.field_number),
                    field_name: Some(e.field_name.to_string()),
                    field_type: (e.field_type != 0).then_some(e.field_type),
                    key_type: e.key_type,
                    value_type: e.value_type,
                    subscript: e.subscript.as_ref().map(|s| match s {
                        Subscript::Index(i) => Sub::Index(*i),
                        Subscript::Bool(b) => Sub::BoolKey(*b),
                        Subscript::Int(i) => Sub::IntKey(*i),
                        Subscript::Uint(u) => Sub::UintKey(*u),
                        Subscript::String(s) => Sub::StringKey(s.clone()),
                    }),
                })
                .collect(),
        })
    }

    impl From<&super::Violations> for Violations {
        fn from(v: &super::Violations) -> Self {
            Violations {
                violations: v
                    .0
                    .iter()
                    .map(|v| Violation {
                        rule_id: Some(v.rule_id.to_string()),
                        message: Some(v.message.to_string()),
                        for_key: v.for_key.then_some(true),
                        field: path(&v.field),
                        rule: path(&v.rule),
                    })
                    .collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_with_subscripts() {
        let f = Field { number: 1, name: "items", kind: kind::STRING, map: None };
        let g = Field { number: 2, name: "m", kind: kind::MESSAGE, map: Some((kind::STRING, kind::INT32)) };
        let mut v = Validator::default();
        v.enter(&f, Some(Subscript::Index(2)));
        v.violation(
            &Rule { steps: &[(14, "string", kind::MESSAGE), (2, "min_len", kind::UINT64)], index: None },
            "string.min_len",
            "too short",
        );
        v.leave();
        v.enter(&g, Some(Subscript::String("k".into())));
        v.key_violation(&Rule { steps: &[], index: None }, "x", "y");
        v.leave();
        let found = v.finish().unwrap_err();
        assert_eq!(found.0[0].field_path(), "items[2]");
        assert_eq!(found.0[0].rule_path(), "string.min_len");
        assert_eq!(found.0[1].field_path(), "m[\"k\"]");
        assert!(found.0[1].for_key);
        assert!(!encode_violations(&found).is_empty());
    }
}
