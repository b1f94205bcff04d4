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

pub mod cel;
mod uri;

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
    ///
    /// A rule whose expression cannot be evaluated (a CEL runtime error)
    /// counts as violated here; [`Validate::check`] tells the two apart.
    fn validate(&self) -> Result<(), Violations> {
        if self.is_valid() {
            return Ok(());
        }
        let mut v = Validator::default();
        self.validate_into(&mut v);
        v.finish()
    }

    /// Whether the message keeps every rule (and every rule could be
    /// evaluated): the same checks as [`Validate::validate_into`], without
    /// building a report. Generated code implements it with the checks
    /// alone; `validate` and `check` run it first and walk the message
    /// again only when it fails.
    fn is_valid(&self) -> bool {
        let mut v = Validator::default();
        self.validate_into(&mut v);
        !v.failed()
    }

    /// Like [`Validate::validate`], but a rule that cannot be evaluated is
    /// an [`Failure::Error`], as protovalidate's runtime error is.
    fn check(&self) -> Result<(), Failure> {
        if self.is_valid() {
            return Ok(());
        }
        let mut v = Validator::default();
        self.validate_into(&mut v);
        v.finish_checked()
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

    fn is_valid(&self) -> bool {
        (**self).is_valid()
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

/// Why [`Validate::check`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The message breaks these rules.
    Invalid(Violations),
    /// A rule's expression could not be evaluated (division by zero, a
    /// field a `dyn` value does not have, ...): what went wrong, with the
    /// rule's id and field path.
    Error(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Invalid(v) => v.fmt(f),
            Failure::Error(e) => write!(f, "validation could not be evaluated: {e}"),
        }
    }
}

impl std::error::Error for Failure {}

/// One entered field.
type Step = (&'static Field, Option<Subscript>);

/// Where [`Validator::enter_entry`] went in.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    field: &'static Field,
    depth: usize,
    found: usize,
    errors: usize,
}

/// Path steps a [`Validator`] holds without allocating.
const INLINE_DEPTH: usize = 4;

/// Walks a message for generated code: the current field path, and the
/// violations so far.
#[derive(Debug, Default)]
pub struct Validator {
    /// The fields entered, cheap to push: a violation turns them into
    /// `FieldPathElement`s. The first [`INLINE_DEPTH`] are kept inline, so
    /// that validating a message allocates nothing unless it breaks a rule
    /// or nests deeper.
    inline: [Option<Step>; INLINE_DEPTH],
    deeper: Vec<Step>,
    depth: usize,
    found: Vec<Violation>,
    errors: Vec<Violation>,
}

impl Validator {
    /// The steps entered, outermost first.
    fn steps(&self) -> impl Iterator<Item = &Step> {
        self.inline.iter().take(self.depth).flatten().chain(self.deeper.iter())
    }

    /// Goes into `field` (at `subscript`, for an element of a repeated or
    /// map field); [`Validator::leave`] comes back.
    #[inline]
    pub fn enter(&mut self, field: &'static Field, subscript: Option<Subscript>) {
        match self.inline.get_mut(self.depth) {
            Some(slot) => *slot = Some((field, subscript)),
            None => self.deeper.push((field, subscript)),
        }
        self.depth += 1;
    }

    /// Goes into an entry of the map field `field` whose key is named only
    /// if the entry breaks a rule: [`Validator::leave_entry`] comes back,
    /// building the key's subscript then (so valid maps cost no copies
    /// of their keys).
    #[inline]
    pub fn enter_entry(&mut self, field: &'static Field) -> Entry {
        let entry = Entry { field, depth: self.depth, found: self.found.len(), errors: self.errors.len() };
        self.enter(field, None);
        entry
    }

    /// Comes back from [`Validator::enter_entry`]; `key` gives the
    /// subscript of the violations found inside the entry.
    #[inline]
    pub fn leave_entry(&mut self, entry: Entry, key: impl FnOnce() -> Subscript) {
        self.leave();
        if self.found.len() == entry.found && self.errors.len() == entry.errors {
            return;
        }
        let element = entry.field.element(Some(key()));
        let found = self.found[entry.found..].iter_mut().chain(self.errors[entry.errors..].iter_mut());
        for violation in found {
            if let Some(e) = violation.field.get_mut(entry.depth) {
                *e = element.clone();
            }
        }
    }

    /// Comes back from the last [`Validator::enter`].
    #[inline]
    pub fn leave(&mut self) {
        let Some(depth) = self.depth.checked_sub(1) else { return };
        self.depth = depth;
        match self.inline.get_mut(depth) {
            Some(slot) => *slot = None,
            None => {
                self.deeper.pop();
            }
        }
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
        let field = self.steps().map(|(f, s)| f.element(s.clone())).collect();
        self.found.push(Violation { field, rule: steps, rule_id, message, for_key });
    }

    /// Records that `rule`'s expression could not be evaluated at the
    /// current path.
    pub fn error(&mut self, rule: &Rule, id: impl Into<Cow<'static, str>>, message: impl fmt::Display) {
        let found = std::mem::take(&mut self.found);
        self.push(rule, id.into(), Cow::Owned(format!("could not be evaluated: {message}")), false);
        let error = self.found.pop();
        self.found = found;
        self.errors.extend(error);
    }

    /// Whether any violation (or evaluation error) was found.
    #[inline]
    pub fn failed(&self) -> bool {
        !self.found.is_empty() || !self.errors.is_empty()
    }

    /// The violations found, if any; rules that could not be evaluated
    /// count as violated.
    pub fn finish(mut self) -> Result<(), Violations> {
        self.found.append(&mut self.errors);
        if self.found.is_empty() { Ok(()) } else { Err(Violations(self.found)) }
    }

    /// The violations found, or the first rule that could not be
    /// evaluated.
    pub fn finish_checked(self) -> Result<(), Failure> {
        if let Some(e) = self.errors.first() {
            let path = e.field_path();
            let at = if path.is_empty() { String::new() } else { format!("{path}: ") };
            return Err(Failure::Error(format!("{at}{} [{}]", e.message, e.rule_id)));
        }
        if self.found.is_empty() { Ok(()) } else { Err(Failure::Invalid(Violations(self.found))) }
    }
}

/// Unicode scalar values in `s` (protovalidate counts characters so).
#[inline]
pub fn chars(s: &str) -> u64 {
    s.chars().count() as u64
}

/// The well-known string formats of protovalidate (`string.email`,
/// `hostname`, `ip`, ... and the CEL functions `isEmail`, `isHostname`,
/// `isIp`, `isIpPrefix`, `isHostAndPort`).
pub mod format {
    pub use super::uri::{is_uri, is_uri_ref};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Bytes of a DNS label (letters, digits, `-`) and of an email's local
    /// part (letters, digits and ``.!#$%&'*+/=?^_`{|}~-``), as one table.
    const LABEL: u8 = 1;
    const ATEXT: u8 = 2;
    const CLASSES: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            if c.is_ascii_alphanumeric() {
                t[b] = LABEL | ATEXT;
            }
            b += 1;
        }
        t[b'-' as usize] = LABEL | ATEXT;
        let extra = b".!#$%&'*+/=?^_`{|}~";
        let mut i = 0;
        while i < extra.len() {
            t[extra[i] as usize] |= ATEXT;
            i += 1;
        }
        t
    };

    /// A DNS name: at most 253 characters, an optional final dot, labels
    /// of 1 to 63 letters, digits and inner hyphens, the last not all
    /// digits.
    #[inline]
    pub fn is_hostname(s: &str) -> bool {
        if s.len() > 253 {
            return false;
        }
        let name = s.strip_suffix('.').unwrap_or(s);
        labels(name.as_bytes()).is_some_and(|last_all_digits| !last_all_digits)
    }

    /// Checks dot-separated DNS labels in one pass; `Some(whether the last
    /// label is all digits)` when every label is valid.
    #[inline]
    fn labels(name: &[u8]) -> Option<bool> {
        let (mut start, mut digits) = (0, true);
        for (i, &b) in name.iter().enumerate() {
            if b == b'.' {
                label_ends(name, start, i)?;
                (start, digits) = (i + 1, true);
            } else if CLASSES[b as usize] & LABEL == 0 {
                return None;
            } else {
                digits &= b.is_ascii_digit();
            }
        }
        label_ends(name, start, name.len())?;
        Some(digits)
    }

    /// `name[start..end]` is 1 to 63 bytes, not starting or ending with `-`.
    #[inline]
    fn label_ends(name: &[u8], start: usize, end: usize) -> Option<()> {
        let len = end - start;
        (len > 0 && len <= 63 && name[start] != b'-' && name[end - 1] != b'-').then_some(())
    }

    /// An email address as the HTML standard defines a valid one: a local
    /// part of letters, digits and ``.!#$%&'*+/=?^_`{|}~-``, `@`, and a
    /// domain of DNS labels.
    #[inline]
    pub fn is_email(s: &str) -> bool {
        let b = s.as_bytes();
        let mut at = 0;
        while at < b.len() && b[at] != b'@' {
            if CLASSES[b[at] as usize] & ATEXT == 0 {
                return false;
            }
            at += 1;
        }
        at > 0 && at < b.len() && labels(&b[at + 1..]).is_some()
    }

    /// An IPv4 address in dotted decimal, without leading zeros.
    #[inline]
    pub fn is_ipv4(s: &str) -> bool {
        s.parse::<Ipv4Addr>().is_ok()
    }

    /// An IPv6 address, optionally with a zone (`fe80::1%eth0`).
    #[inline]
    pub fn is_ipv6(s: &str) -> bool {
        let (addr, zone) = match s.split_once('%') {
            Some((a, z)) => (a, Some(z)),
            None => (s, None),
        };
        zone.is_none_or(|z| !z.is_empty()) && addr.parse::<Ipv6Addr>().is_ok()
    }

    /// An IP address of `version` (4, 6, or 0 for either).
    #[inline]
    pub fn is_ip(s: &str, version: i64) -> bool {
        match version {
            0 => is_ipv4(s) || is_ipv6(s),
            4 => is_ipv4(s),
            6 => is_ipv6(s),
            _ => false,
        }
    }

    /// An address with a prefix length (`10.0.0.0/8`), of `version` (0 for
    /// either); `strict`: the bits past the prefix are zero.
    pub fn is_ip_prefix(s: &str, version: i64, strict: bool) -> bool {
        let Some((addr, len)) = s.split_once('/') else { return false };
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || (len.len() > 1 && len.starts_with('0')) {
            return false;
        }
        let Ok(len) = len.parse::<u32>() else { return false };
        let v4 = || {
            addr.parse::<Ipv4Addr>()
                .is_ok_and(|a| len <= 32 && (!strict || len == 32 || u32::from(a) & (u32::MAX >> len) == 0))
        };
        let v6 = || {
            addr.parse::<Ipv6Addr>()
                .is_ok_and(|a| len <= 128 && (!strict || len == 128 || u128::from(a) & (u128::MAX >> len) == 0))
        };
        match version {
            0 => v4() || v6(),
            4 => v4(),
            6 => v6(),
            _ => false,
        }
    }

    fn is_port(s: &str) -> bool {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && !(s.len() > 1 && s.starts_with('0'))
            && s.parse::<u32>().is_ok_and(|p| p <= 65535)
    }

    /// `host:port` with a hostname, IPv4 address or bracketed IPv6 address;
    /// the port may be left out unless `port_required`.
    pub fn is_host_and_port(s: &str, port_required: bool) -> bool {
        if let Some(rest) = s.strip_prefix('[') {
            let Some(end) = rest.rfind(']') else { return false };
            let (host, after) = (&rest[..end], &rest[end + 1..]);
            return match after {
                "" => !port_required && is_ipv6(host),
                _ => after.strip_prefix(':').is_some_and(|p| is_port(p) && !p.contains(':')) && is_ipv6(host),
            };
        }
        match s.rsplit_once(':') {
            None => !port_required && (is_hostname(s) || is_ipv4(s)),
            Some((host, port)) => (is_hostname(host) || is_ipv4(host)) && is_port(port),
        }
    }

    fn hex(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// A UUID in its 8-4-4-4-12 hexadecimal form.
    #[inline]
    pub fn is_uuid(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    }

    /// A UUID as 32 hexadecimal digits, without hyphens.
    #[inline]
    pub fn is_tuuid(s: &str) -> bool {
        s.len() == 32 && hex(s)
    }

    /// A ULID: 26 characters of Crockford's base32, the first at most 7.
    #[inline]
    pub fn is_ulid(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 26
            && (b'0'..=b'7').contains(&b[0])
            && b.iter().all(|c| c.is_ascii_alphanumeric() && !b"IiLlOoUu".contains(c))
    }

    /// A fully-qualified protobuf name (`a.b.C`), with a leading dot when
    /// `dot`.
    pub fn is_protobuf_name(s: &str, dot: bool) -> bool {
        let name = if dot {
            match s.strip_prefix('.') {
                Some(n) => n,
                None => return false,
            }
        } else {
            s
        };
        !name.is_empty()
            && name.split('.').all(|part| {
                part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
    }

    /// An HTTP header name (`strict`: RFC 7230 token characters, with an
    /// optional leading `:` for HTTP/2 pseudo-headers; else no NUL, CR or
    /// LF).
    pub fn is_header_name(s: &str, strict: bool) -> bool {
        if strict {
            let token = s.strip_prefix(':').unwrap_or(s);
            !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_|~`".contains(&b))
        } else {
            !s.is_empty() && !s.bytes().any(|b| matches!(b, 0 | b'\n' | b'\r'))
        }
    }

    /// An HTTP header value (`strict`: no control characters but tab; else
    /// no NUL, CR or LF).
    pub fn is_header_value(s: &str, strict: bool) -> bool {
        if strict {
            !s.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        } else {
            !s.bytes().any(|b| matches!(b, 0 | b'\n' | b'\r'))
        }
    }
}

/// `(seconds, nanos)` since the Unix epoch of now plus `offset_nanos`, as
/// Timestamp rules compare (`lt_now`, `gt_now`, `within`).
pub fn now(offset_nanos: i128) -> (i64, i32) {
    let now = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let total = now + offset_nanos;
    let seconds = total.div_euclid(1_000_000_000);
    let nanos = total.rem_euclid(1_000_000_000);
    (i64::try_from(seconds).unwrap_or(if seconds < 0 { i64::MIN } else { i64::MAX }), nanos as i32)
}

/// Whether a FieldMask path is `listed`, or lies under a listed path
/// (`a.b` under `a`).
pub fn path_covered(path: &str, listed: &[&str]) -> bool {
    listed.iter().any(|l| path == *l || path.strip_prefix(l).is_some_and(|rest| rest.starts_with('.')))
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
#[inline]
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether every item of `items` is different from the others (floats
/// compare by value, so NaN never equals itself).
#[inline]
pub fn unique<T: PartialEq>(items: &[T]) -> bool {
    items.iter().enumerate().all(|(i, a)| items[..i].iter().all(|b| a != b))
}

/// Details of an `INVALID_ARGUMENT` status are kept under this many bytes
/// (before base64), so that the `grpc-status-details-bin` trailer stays
/// well under the 8 KiB header limits of common proxies.
pub const MAX_DETAILS_BYTES: usize = 4096;

/// The `INVALID_ARGUMENT` status for `violations`: a message naming each
/// (field path, text and rule id), and details carrying
/// `buf.validate.Violations` and `google.rpc.BadRequest` (one
/// `FieldViolation` each). Past [`MAX_DETAILS_BYTES`] the last violations
/// are left out and the message says how many.
pub fn invalid_argument(violations: &Violations) -> tonic::Status {
    use prost::Message as _;
    let all = &violations.0;
    let mut kept = all.len();
    loop {
        let shown = Violations(all[..kept].to_vec());
        let left = all.len() - kept;
        let mut message = shown.to_string();
        if left > 0 {
            message.push_str(&format!(
                "\n ({left} more violation{} left out to keep the status small)",
                if left == 1 { "" } else { "s" }
            ));
        }
        let bad_request = wire::BadRequest {
            field_violations: shown
                .0
                .iter()
                .map(|v| wire::FieldViolation {
                    field: v.field_path(),
                    description: v.message.to_string(),
                    reason: v.rule_id.to_string(),
                })
                .collect(),
        };
        let status = wire::RpcStatus {
            code: tonic::Code::InvalidArgument as i32,
            message: message.clone(),
            details: vec![
                prost_types::Any {
                    type_url: "type.googleapis.com/buf.validate.Violations".to_owned(),
                    value: wire::Violations::from(&shown).encode_to_vec(),
                },
                prost_types::Any {
                    type_url: "type.googleapis.com/google.rpc.BadRequest".to_owned(),
                    value: bad_request.encode_to_vec(),
                },
            ],
        };
        let details = status.encode_to_vec();
        if details.len() <= MAX_DETAILS_BYTES || kept == 0 {
            return tonic::Status::with_details(tonic::Code::InvalidArgument, message, details.into());
        }
        kept = kept * 3 / 4;
    }
}

/// The codec generated servers use for methods that validate: prost's,
/// with every decoded request (each message of a stream) checked before
/// the handler sees it; a message that breaks its rules ends the call with
/// [`invalid_argument`].
#[derive(Debug, Clone)]
pub struct ValidatingCodec<T, U>(tonic_prost::ProstCodec<T, U>);

impl<T, U> Default for ValidatingCodec<T, U> {
    fn default() -> Self {
        ValidatingCodec(tonic_prost::ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for ValidatingCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Validate + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = ValidatingDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ValidatingDecoder(self.0.decoder())
    }
}

/// The decoder of [`ValidatingCodec`].
#[derive(Debug, Clone)]
pub struct ValidatingDecoder<U>(tonic_prost::ProstDecoder<U>);

impl<U: prost::Message + Default + Validate> tonic::codec::Decoder for ValidatingDecoder<U> {
    type Item = U;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<U>, tonic::Status> {
        let item = self.0.decode(buf)?;
        if let Some(message) = &item {
            match message.check() {
                Ok(()) => {}
                Err(Failure::Invalid(violations)) => return Err(invalid_argument(&violations)),
                Err(e @ Failure::Error(_)) => return Err(tonic::Status::internal(e.to_string())),
            }
        }
        Ok(item)
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}

tokio::task_local! {
    /// Set by [`CheckedBody`] around each poll of a request body: the
    /// encoders of [`ValidatingClientCodec`] check what they encode, and
    /// leave the status of an invalid request here (tonic would turn their
    /// error into `INTERNAL`).
    static CHECK_REQUESTS: RefusedRequest;
}

/// The codec generated clients use for methods whose requests have rules:
/// prost's, with each request checked as it is encoded when the client was
/// built with `validate_requests(true)` (the encoder runs inside the
/// client's request body); otherwise exactly prost's.
#[derive(Debug, Clone)]
pub struct ValidatingClientCodec<T, U>(tonic_prost::ProstCodec<T, U>);

impl<T, U> Default for ValidatingClientCodec<T, U> {
    fn default() -> Self {
        ValidatingClientCodec(tonic_prost::ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for ValidatingClientCodec<T, U>
where
    T: prost::Message + Validate + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ValidatingEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ValidatingEncoder(self.0.encoder())
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.0.decoder()
    }
}

/// The encoder of [`ValidatingClientCodec`].
#[derive(Debug, Clone)]
pub struct ValidatingEncoder<T>(tonic_prost::ProstEncoder<T>);

impl<T: prost::Message + Validate> tonic::codec::Encoder for ValidatingEncoder<T> {
    type Item = T;
    type Error = tonic::Status;

    fn encode(&mut self, item: T, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        if let Ok(refused) = CHECK_REQUESTS.try_with(RefusedRequest::clone) {
            let status = match item.check() {
                Ok(()) => None,
                Err(Failure::Invalid(violations)) => Some(invalid_argument(&violations)),
                Err(e @ Failure::Error(_)) => Some(tonic::Status::internal(e.to_string())),
            };
            if let Some(status) = status {
                let message = status.message().to_owned();
                *refused.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                return Err(tonic::Status::invalid_argument(message));
            }
        }
        self.0.encode(item, buf)
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}

/// Where an encoder leaves the status of the request it refused.
#[derive(Clone, Default)]
struct RefusedRequest(std::sync::Arc<std::sync::Mutex<Option<tonic::Status>>>);

pin_project_lite::pin_project! {
    /// A request body whose frames are produced with request validation
    /// on; the status of an invalid request is yielded as the body's
    /// error.
    pub(crate) struct CheckedBody<B> {
        first: Option<http_body::Frame<bytes::Bytes>>,
        refused: RefusedRequest,
        #[pin]
        inner: B,
    }
}

impl<B> CheckedBody<B> {
    pub(crate) fn new(inner: B) -> Self {
        CheckedBody { first: None, refused: RefusedRequest::default(), inner }
    }

    /// `inner` again, `first` (already taken from it) yielded first.
    pub(crate) fn resumed(first: http_body::Frame<bytes::Bytes>, inner: B) -> Self {
        CheckedBody { first: Some(first), refused: RefusedRequest::default(), inner }
    }
}

impl<B> http_body::Body for CheckedBody<B>
where
    B: http_body::Body<Data = bytes::Bytes, Error = tonic::Status>,
{
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        let this = self.project();
        if let Some(frame) = this.first.take() {
            return std::task::Poll::Ready(Some(Ok(frame)));
        }
        let inner = this.inner;
        match CHECK_REQUESTS.sync_scope(this.refused.clone(), || inner.poll_frame(cx)) {
            std::task::Poll::Ready(Some(Err(e))) => {
                let refused = this.refused.0.lock().unwrap_or_else(|e| e.into_inner()).take();
                std::task::Poll::Ready(Some(Err(refused.unwrap_or(e))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.first.is_some() { http_body::SizeHint::default() } else { self.inner.size_hint() }
    }
}

/// Messages the well-known types and `()` stand for carry no rules.
macro_rules! no_rules {
    ($($t:ty),* $(,)?) => {
        $(impl Validate for $t {
            fn validate_into(&self, _: &mut Validator) {}

            fn is_valid(&self) -> bool {
                true
            }
        })*
    };
}

no_rules!(
    (),
    prost_types::Any,
    prost_types::Duration,
    prost_types::Timestamp,
    prost_types::FieldMask,
    prost_types::Struct,
    prost_types::Value,
    prost_types::ListValue,
    prost_types::FileDescriptorSet,
    bool,
    i32,
    i64,
    u32,
    u64,
    f32,
    f64,
    String,
    Vec<u8>,
);

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

    /// `google.rpc.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RpcStatus {
        /// Code.
        #[prost(int32, tag = "1")]
        pub code: i32,
        /// Message.
        #[prost(string, tag = "2")]
        pub message: String,
        /// Details.
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<prost_types::Any>,
    }

    /// `google.rpc.BadRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BadRequest {
        /// One per violation.
        #[prost(message, repeated, tag = "1")]
        pub field_violations: Vec<FieldViolation>,
    }

    /// `google.rpc.BadRequest.FieldViolation`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FieldViolation {
        /// The field path (`items[2].name`).
        #[prost(string, tag = "1")]
        pub field: String,
        /// What is wrong.
        #[prost(string, tag = "2")]
        pub description: String,
        /// The rule id.
        #[prost(string, tag = "3")]
        pub reason: String,
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
    fn well_known_formats() {
        use format::*;
        assert!(is_hostname("example.com") && is_hostname("a-b.c.") && !is_hostname("-a.com") && !is_hostname("a.123"));
        assert!(is_email("a.b+c@example.com") && !is_email("a@") && !is_email("a@-b.com") && !is_email("ab.com"));
        assert!(is_ip("127.0.0.1", 4) && !is_ip("127.0.1.", 4) && !is_ip("0x0.0.0.0", 0) && is_ip("::1%foo", 6));
        assert!(!is_ip("::1%", 6) && !is_ip("12345:2:3:4:5:6:7:8", 0) && is_ip("1:2:3::1", 6));
        assert!(is_ip_prefix("10.0.0.0/8", 4, true) && !is_ip_prefix("10.0.0.1/8", 4, true));
        assert!(is_ip_prefix("10.0.0.1/8", 4, false) && !is_ip_prefix("10.0.0.0/08", 0, false));
        assert!(is_ip_prefix("2001:db8::/32", 6, true) && !is_ip_prefix("2001:db8::1/32", 0, true));
        assert!(is_host_and_port("example.com:443", true) && is_host_and_port("[::1]:80", true));
        assert!(
            !is_host_and_port("example.com", true)
                && !is_host_and_port("a:080", true)
                && !is_host_and_port("a:65536", true)
        );
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000") && !is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(
            is_tuuid("123e4567e89b12d3a456426614174000")
                && is_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAV")
                && !is_ulid("81ARZ3NDEKTSV4RRFFQ69G5FAV")
        );
        assert!(is_protobuf_name("a.b.C", false) && is_protobuf_name(".a.B", true) && !is_protobuf_name("a..b", false));
        assert!(is_header_name(":authority", true) && !is_header_name("a b", true) && is_header_value("a\tb", true));
        assert!(!is_header_value("a\rb", false) && !is_header_value("a\x01", true));
    }

    #[test]
    fn paths_print_with_subscripts() {
        const F: Field = Field { number: 1, name: "items", kind: kind::STRING, map: None };
        const G: Field = Field { number: 2, name: "m", kind: kind::MESSAGE, map: Some((kind::STRING, kind::INT32)) };
        let mut v = Validator::default();
        v.enter(&F, Some(Subscript::Index(2)));
        v.violation(
            &Rule { steps: &[(14, "string", kind::MESSAGE), (2, "min_len", kind::UINT64)], index: None },
            "string.min_len",
            "too short",
        );
        v.leave();
        v.enter(&G, Some(Subscript::String("k".into())));
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
