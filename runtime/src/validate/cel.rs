//! The values and operations of CEL (`cel` and `cel_expression` rules,
//! predefined rules), as generated validators call them.
//!
//! protoc-gen-svc parses and type-checks every expression at generation
//! time and writes it as Rust: field selections become field accesses of
//! the prost struct, constants (`rule`, `rules`, literals) are folded in,
//! and what is left is a composition of the functions here over [`Val`].
//! Every function takes and returns a [`Res`], so an error travels up the
//! expression the way CEL says, and `&&`, `||` and the macros absorb it
//! where CEL does (`false && error` is `false`).

use std::cmp::Ordering;
use std::fmt;

use super::format;

/// A CEL value.
#[derive(Debug, Clone)]
pub enum Val {
    /// `null` (also an unset wrapper field).
    Null,
    /// `bool`.
    Bool(bool),
    /// `int` (every signed protobuf integer, enums).
    Int(i64),
    /// `uint`.
    Uint(u64),
    /// `double` (`float` too).
    Double(f64),
    /// `string`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `list`.
    List(Vec<Val>),
    /// `map`, in insertion order.
    Map(Vec<(Val, Val)>),
    /// `google.protobuf.Duration`, in nanoseconds.
    Duration(i128),
    /// `google.protobuf.Timestamp`, in nanoseconds since the Unix epoch.
    Timestamp(i128),
    /// A type (`type(x)`, `int`, `string`, ...), by name.
    Type(&'static str),
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A value, or why there is none.
pub type Res = Result<Val, Error>;

#[inline]
fn err<T>(message: impl Into<String>) -> Result<T, Error> {
    Err(Error(message.into()))
}

#[inline]
fn no_overload<T>(function: &str, args: &[&Val]) -> Result<T, Error> {
    let types: Vec<&str> = args.iter().map(|v| v.type_name()).collect();
    err(format!("no such overload: {function}({})", types.join(", ")))
}

/// The smallest and largest Timestamp (0001-01-01T00:00:00Z and
/// 9999-12-31T23:59:59.999999999Z), in nanoseconds.
const MIN_TIMESTAMP: i128 = -62_135_596_800 * NANOS;
const MAX_TIMESTAMP: i128 = 253_402_300_799 * NANOS + 999_999_999;
const NANOS: i128 = 1_000_000_000;

impl Val {
    /// The CEL name of the value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null_type",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Uint(_) => "uint",
            Val::Double(_) => "double",
            Val::Str(_) => "string",
            Val::Bytes(_) => "bytes",
            Val::List(_) => "list",
            Val::Map(_) => "map",
            Val::Duration(_) => "google.protobuf.Duration",
            Val::Timestamp(_) => "google.protobuf.Timestamp",
            Val::Type(_) => "type",
        }
    }

    /// A Duration of `seconds` and `nanos`.
    pub fn duration(seconds: i64, nanos: i32) -> Val {
        Val::Duration(i128::from(seconds) * NANOS + i128::from(nanos))
    }

    /// A Timestamp of `seconds` and `nanos` since the epoch.
    pub fn timestamp(seconds: i64, nanos: i32) -> Val {
        Val::Timestamp(i128::from(seconds) * NANOS + i128::from(nanos))
    }

    /// The current time (the `now` variable).
    pub fn now() -> Val {
        let (seconds, nanos) = super::now(0);
        Val::timestamp(seconds, nanos)
    }
}

#[inline]
fn duration_checked(nanos: i128) -> Res {
    // CEL durations are those of Go's time.Duration: 64-bit nanoseconds.
    if nanos < i128::from(i64::MIN) || nanos > i128::from(i64::MAX) {
        return err("duration out of range");
    }
    Ok(Val::Duration(nanos))
}

#[inline]
fn timestamp_checked(nanos: i128) -> Res {
    if !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&nanos) {
        return err("timestamp out of range");
    }
    Ok(Val::Timestamp(nanos))
}

/// The boolean an expression gave (for `?:`): an error, or a value that
/// is not a bool, is an error.
#[inline]
pub fn truth(a: Res) -> Result<bool, Error> {
    match a? {
        Val::Bool(b) => Ok(b),
        other => no_overload("_?_:_", &[&other]),
    }
}

/// `a && b`: false if either is false, an error if either is one.
#[inline]
pub fn and(a: Res, b: Res) -> Res {
    if let (Ok(Val::Bool(x)), Ok(Val::Bool(y))) = (&a, &b) {
        return Ok(Val::Bool(*x && *y));
    }
    match (a, b) {
        (Ok(Val::Bool(false)), _) | (_, Ok(Val::Bool(false))) => Ok(Val::Bool(false)),
        (Ok(Val::Bool(true)), Ok(Val::Bool(true))) => Ok(Val::Bool(true)),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(a), Ok(b)) => no_overload("_&&_", &[&a, &b]),
    }
}

/// `a || b`: true if either is true, an error if either is one.
#[inline]
pub fn or(a: Res, b: Res) -> Res {
    if let (Ok(Val::Bool(x)), Ok(Val::Bool(y))) = (&a, &b) {
        return Ok(Val::Bool(*x || *y));
    }
    match (a, b) {
        (Ok(Val::Bool(true)), _) | (_, Ok(Val::Bool(true))) => Ok(Val::Bool(true)),
        (Ok(Val::Bool(false)), Ok(Val::Bool(false))) => Ok(Val::Bool(false)),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(a), Ok(b)) => no_overload("_||_", &[&a, &b]),
    }
}

/// `!a`.
#[inline]
pub fn not(a: Res) -> Res {
    match a? {
        Val::Bool(b) => Ok(Val::Bool(!b)),
        other => no_overload("!_", &[&other]),
    }
}

/// `-a`.
#[inline]
pub fn neg(a: Res) -> Res {
    match a? {
        Val::Int(i) => i.checked_neg().map(Val::Int).ok_or_else(|| Error("integer overflow".into())),
        Val::Double(d) => Ok(Val::Double(-d)),
        Val::Duration(d) => duration_checked(-d),
        other => no_overload("-_", &[&other]),
    }
}

/// CEL equality: numbers compare by value across `int`, `uint` and
/// `double`; lists and maps element by element; values of different
/// types are not equal.
#[inline]
pub fn equal(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(a), Val::Bool(b)) => a == b,
        (Val::Str(a), Val::Str(b)) => a == b,
        (Val::Bytes(a), Val::Bytes(b)) => a == b,
        (Val::Duration(a), Val::Duration(b)) | (Val::Timestamp(a), Val::Timestamp(b)) => a == b,
        (Val::Type(a), Val::Type(b)) => a == b,
        (Val::List(a), Val::List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| equal(a, b)),
        (Val::Map(a), Val::Map(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| equal(k, k2) && equal(v, v2)))
        }
        _ => numeric_order(a, b) == Some(Some(Ordering::Equal)),
    }
}

/// The order of two numbers (`Some(None)` when one is NaN), or `None`
/// when they are not both numbers.
#[inline]
fn numeric_order(a: &Val, b: &Val) -> Option<Option<Ordering>> {
    Some(match (a, b) {
        (Val::Int(a), Val::Int(b)) => Some(a.cmp(b)),
        (Val::Uint(a), Val::Uint(b)) => Some(a.cmp(b)),
        (Val::Double(a), Val::Double(b)) => a.partial_cmp(b),
        (Val::Int(a), Val::Uint(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        (Val::Uint(a), Val::Int(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        (Val::Int(a), Val::Double(b)) => int_double(*a as i128, *b),
        (Val::Uint(a), Val::Double(b)) => int_double(*a as i128, *b),
        (Val::Double(a), Val::Int(b)) => int_double(*b as i128, *a).map(Ordering::reverse),
        (Val::Double(a), Val::Uint(b)) => int_double(*b as i128, *a).map(Ordering::reverse),
        _ => return None,
    })
}

#[inline]
fn int_double(i: i128, d: f64) -> Option<Ordering> {
    if d.is_nan() {
        return None;
    }
    // Exact: compare the integer with the double's floor, then the fraction.
    if d >= 1.8e19 {
        return Some(Ordering::Less);
    }
    if d <= -1.8e19 {
        return Some(Ordering::Greater);
    }
    let floor = d.floor();
    match i.cmp(&(floor as i128)) {
        Ordering::Equal if d > floor => Some(Ordering::Less),
        other => Some(other),
    }
}

/// `a == b`.
#[inline]
pub fn eq(a: Res, b: Res) -> Res {
    Ok(Val::Bool(equal(&a?, &b?)))
}

/// `a != b`.
#[inline]
pub fn ne(a: Res, b: Res) -> Res {
    Ok(Val::Bool(!equal(&a?, &b?)))
}

#[inline]
fn order(function: &str, a: &Val, b: &Val) -> Result<Option<Ordering>, Error> {
    if let Some(o) = numeric_order(a, b) {
        return Ok(o);
    }
    Ok(Some(match (a, b) {
        (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
        (Val::Str(a), Val::Str(b)) => a.cmp(b),
        (Val::Bytes(a), Val::Bytes(b)) => a.cmp(b),
        (Val::Duration(a), Val::Duration(b)) | (Val::Timestamp(a), Val::Timestamp(b)) => a.cmp(b),
        _ => return no_overload(function, &[a, b]),
    }))
}

#[inline(always)]
fn compare(function: &str, a: Res, b: Res, holds: fn(Ordering) -> bool) -> Res {
    // Integers, the common case, without the general comparison.
    if let (Ok(Val::Int(x)), Ok(Val::Int(y))) = (&a, &b) {
        return Ok(Val::Bool(holds(x.cmp(y))));
    }
    if let (Ok(Val::Uint(x)), Ok(Val::Uint(y))) = (&a, &b) {
        return Ok(Val::Bool(holds(x.cmp(y))));
    }
    let (a, b) = (a?, b?);
    Ok(Val::Bool(order(function, &a, &b)?.is_some_and(holds)))
}

/// `a < b`.
#[inline]
pub fn lt(a: Res, b: Res) -> Res {
    compare("_<_", a, b, Ordering::is_lt)
}

/// `a <= b`.
#[inline]
pub fn le(a: Res, b: Res) -> Res {
    compare("_<=_", a, b, Ordering::is_le)
}

/// `a > b`.
#[inline]
pub fn gt(a: Res, b: Res) -> Res {
    compare("_>_", a, b, Ordering::is_gt)
}

/// `a >= b`.
#[inline]
pub fn ge(a: Res, b: Res) -> Res {
    compare("_>=_", a, b, Ordering::is_ge)
}

#[inline]
fn overflow<T>(x: Option<T>) -> Result<T, Error> {
    x.ok_or_else(|| Error("integer overflow".into()))
}

/// `a + b`: numbers, strings, bytes, lists, durations and timestamps.
#[inline]
pub fn add(a: Res, b: Res) -> Res {
    if let (Ok(Val::Int(x)), Ok(Val::Int(y))) = (&a, &b) {
        return overflow(x.checked_add(*y)).map(Val::Int);
    }
    match (a?, b?) {
        (Val::Int(a), Val::Int(b)) => overflow(a.checked_add(b)).map(Val::Int),
        (Val::Uint(a), Val::Uint(b)) => overflow(a.checked_add(b)).map(Val::Uint),
        (Val::Double(a), Val::Double(b)) => Ok(Val::Double(a + b)),
        (Val::Str(a), Val::Str(b)) => Ok(Val::Str(a + &b)),
        (Val::Bytes(mut a), Val::Bytes(b)) => {
            a.extend(b);
            Ok(Val::Bytes(a))
        }
        (Val::List(mut a), Val::List(b)) => {
            a.extend(b);
            Ok(Val::List(a))
        }
        (Val::Duration(a), Val::Duration(b)) => duration_checked(a + b),
        (Val::Timestamp(t), Val::Duration(d)) | (Val::Duration(d), Val::Timestamp(t)) => timestamp_checked(t + d),
        (a, b) => no_overload("_+_", &[&a, &b]),
    }
}

/// `a - b`.
#[inline]
pub fn sub(a: Res, b: Res) -> Res {
    if let (Ok(Val::Int(x)), Ok(Val::Int(y))) = (&a, &b) {
        return overflow(x.checked_sub(*y)).map(Val::Int);
    }
    match (a?, b?) {
        (Val::Int(a), Val::Int(b)) => overflow(a.checked_sub(b)).map(Val::Int),
        (Val::Uint(a), Val::Uint(b)) => overflow(a.checked_sub(b)).map(Val::Uint),
        (Val::Double(a), Val::Double(b)) => Ok(Val::Double(a - b)),
        (Val::Duration(a), Val::Duration(b)) => duration_checked(a - b),
        (Val::Timestamp(a), Val::Timestamp(b)) => duration_checked(a - b),
        (Val::Timestamp(t), Val::Duration(d)) => timestamp_checked(t - d),
        (a, b) => no_overload("_-_", &[&a, &b]),
    }
}

/// `a * b`.
#[inline]
pub fn mul(a: Res, b: Res) -> Res {
    match (a?, b?) {
        (Val::Int(a), Val::Int(b)) => overflow(a.checked_mul(b)).map(Val::Int),
        (Val::Uint(a), Val::Uint(b)) => overflow(a.checked_mul(b)).map(Val::Uint),
        (Val::Double(a), Val::Double(b)) => Ok(Val::Double(a * b)),
        (a, b) => no_overload("_*_", &[&a, &b]),
    }
}

/// `a / b`.
#[inline]
pub fn div(a: Res, b: Res) -> Res {
    match (a?, b?) {
        (Val::Int(_), Val::Int(0)) | (Val::Uint(_), Val::Uint(0)) => err("division by zero"),
        (Val::Int(a), Val::Int(b)) => overflow(a.checked_div(b)).map(Val::Int),
        (Val::Uint(a), Val::Uint(b)) => Ok(Val::Uint(a / b)),
        (Val::Double(a), Val::Double(b)) => Ok(Val::Double(a / b)),
        (a, b) => no_overload("_/_", &[&a, &b]),
    }
}

/// `a % b`.
#[inline]
pub fn rem(a: Res, b: Res) -> Res {
    match (a?, b?) {
        (Val::Int(_), Val::Int(0)) | (Val::Uint(_), Val::Uint(0)) => err("modulus by zero"),
        (Val::Int(a), Val::Int(b)) => overflow(a.checked_rem(b)).map(Val::Int),
        (Val::Uint(a), Val::Uint(b)) => Ok(Val::Uint(a % b)),
        (a, b) => no_overload("_%_", &[&a, &b]),
    }
}

/// `a in b`: an element of a list, a key of a map.
#[inline]
pub fn contained(a: Res, b: Res) -> Res {
    let (a, b) = (a?, b?);
    match &b {
        Val::List(items) => Ok(Val::Bool(items.iter().any(|x| equal(x, &a)))),
        Val::Map(pairs) => Ok(Val::Bool(pairs.iter().any(|(k, _)| equal(k, &a)))),
        _ => no_overload("@in", &[&a, &b]),
    }
}

/// `a[i]`: a list's element, a map's value.
#[inline]
pub fn index(a: Res, i: Res) -> Res {
    let (a, i) = (a?, i?);
    match (&a, &i) {
        (Val::List(items), _) => {
            let at = match i {
                Val::Int(n) => usize::try_from(n).ok(),
                Val::Uint(n) => usize::try_from(n).ok(),
                Val::Double(d) if d.fract() == 0.0 && d >= 0.0 => Some(d as usize),
                _ => return no_overload("_[_]", &[&a, &i]),
            };
            match at.and_then(|n| items.get(n)) {
                Some(v) => Ok(v.clone()),
                None => err(format!("index out of range: {}", display(&i))),
            }
        }
        (Val::Map(pairs), _) => match pairs.iter().find(|(k, _)| equal(k, &i)) {
            Some((_, v)) => Ok(v.clone()),
            None => err(format!("no such key: {}", display(&i))),
        },
        _ => no_overload("_[_]", &[&a, &i]),
    }
}

/// `a.field` on a map (messages are selected in generated code).
#[inline]
pub fn select(a: Res, field: &str) -> Res {
    match a? {
        Val::Map(pairs) => match pairs.into_iter().find(|(k, _)| matches!(k, Val::Str(s) if s == field)) {
            Some((_, v)) => Ok(v),
            None => err(format!("no such key: {field}")),
        },
        other => err(format!("no such field {field:?} on a value of type {}", other.type_name())),
    }
}

/// `has(a.field)` on a map.
#[inline]
pub fn has(a: Res, field: &str) -> Res {
    match a? {
        Val::Map(pairs) => Ok(Val::Bool(pairs.iter().any(|(k, _)| matches!(k, Val::Str(s) if s == field)))),
        other => err(format!("no such field {field:?} on a value of type {}", other.type_name())),
    }
}

/// `size(a)`: characters of a string, bytes, elements, pairs.
#[inline]
pub fn size(a: Res) -> Res {
    let n = match a? {
        Val::Str(s) => s.chars().count(),
        Val::Bytes(b) => b.len(),
        Val::List(l) => l.len(),
        Val::Map(m) => m.len(),
        other => return no_overload("size", &[&other]),
    };
    Ok(Val::Int(n as i64))
}

#[inline]
fn strings(function: &str, a: Res, b: Res, test: fn(&str, &str) -> bool, bytes: fn(&[u8], &[u8]) -> bool) -> Res {
    match (a?, b?) {
        (Val::Str(a), Val::Str(b)) => Ok(Val::Bool(test(&a, &b))),
        (Val::Bytes(a), Val::Bytes(b)) => Ok(Val::Bool(bytes(&a, &b))),
        (a, b) => no_overload(function, &[&a, &b]),
    }
}

/// `a.startsWith(b)` (strings and bytes).
#[inline]
pub fn starts_with(a: Res, b: Res) -> Res {
    strings("startsWith", a, b, |a, b| a.starts_with(b), |a, b| a.starts_with(b))
}

/// `a.endsWith(b)` (strings and bytes).
#[inline]
pub fn ends_with(a: Res, b: Res) -> Res {
    strings("endsWith", a, b, |a, b| a.ends_with(b), |a, b| a.ends_with(b))
}

/// `a.contains(b)` (strings and bytes).
#[inline]
pub fn contains(a: Res, b: Res) -> Res {
    strings("contains", a, b, |a, b| a.contains(b), super::contains_bytes)
}

/// `a.matches(re)` with a pattern compiled once by generated code.
#[inline]
pub fn matches(a: Res, re: &regex::Regex) -> Res {
    match a? {
        Val::Str(s) => Ok(Val::Bool(re.is_match(&s))),
        other => no_overload("matches", &[&other]),
    }
}

/// `a.matches(b)` with a pattern computed at run time.
#[inline]
pub fn matches_dynamic(a: Res, b: Res) -> Res {
    match b? {
        Val::Str(pattern) => match regex::Regex::new(&pattern) {
            Ok(re) => matches(a, &re),
            Err(e) => err(format!("invalid regular expression {pattern:?}: {e}")),
        },
        other => no_overload("matches", &[&other]),
    }
}

#[inline]
fn string_test(function: &str, a: Res, test: impl FnOnce(&str) -> bool) -> Res {
    match a? {
        Val::Str(s) => Ok(Val::Bool(test(&s))),
        other => no_overload(function, &[&other]),
    }
}

/// `a.isEmail()`.
#[inline]
pub fn is_email(a: Res) -> Res {
    string_test("isEmail", a, format::is_email)
}

/// `a.isHostname()`.
#[inline]
pub fn is_hostname(a: Res) -> Res {
    string_test("isHostname", a, format::is_hostname)
}

/// `a.isUri()`.
#[inline]
pub fn is_uri(a: Res) -> Res {
    string_test("isUri", a, super::uri::is_uri)
}

/// `a.isUriRef()`.
#[inline]
pub fn is_uri_ref(a: Res) -> Res {
    string_test("isUriRef", a, super::uri::is_uri_ref)
}

/// `a.isIp()`, `a.isIp(version)` (0: either).
#[inline]
pub fn is_ip(a: Res, version: Option<Res>) -> Res {
    let version = match version.transpose()? {
        None => 0,
        Some(Val::Int(v)) => v,
        Some(other) => return no_overload("isIp", &[&other]),
    };
    string_test("isIp", a, |s| format::is_ip(s, version))
}

/// `a.isIpPrefix()`, with a version, strictness, or both.
#[inline]
pub fn is_ip_prefix(a: Res, version: Option<Res>, strict: Option<Res>) -> Res {
    let version = match version.transpose()? {
        None => 0,
        Some(Val::Int(v)) => v,
        Some(other) => return no_overload("isIpPrefix", &[&other]),
    };
    let strict = match strict.transpose()? {
        None => false,
        Some(Val::Bool(b)) => b,
        Some(other) => return no_overload("isIpPrefix", &[&other]),
    };
    string_test("isIpPrefix", a, |s| format::is_ip_prefix(s, version, strict))
}

/// `a.isHostAndPort(port_required)`.
#[inline]
pub fn is_host_and_port(a: Res, port_required: Res) -> Res {
    match port_required? {
        Val::Bool(required) => string_test("isHostAndPort", a, |s| format::is_host_and_port(s, required)),
        other => no_overload("isHostAndPort", &[&other]),
    }
}

/// `a.unique()`: no element of the list equals another.
#[inline]
pub fn unique(a: Res) -> Res {
    match a? {
        Val::List(items) => {
            Ok(Val::Bool(items.iter().enumerate().all(|(i, x)| items[..i].iter().all(|y| !equal(x, y)))))
        }
        other => no_overload("unique", &[&other]),
    }
}

/// `a.isNan()`.
#[inline]
pub fn is_nan(a: Res) -> Res {
    match a? {
        Val::Double(d) => Ok(Val::Bool(d.is_nan())),
        other => no_overload("isNan", &[&other]),
    }
}

/// `a.isInf()`, `a.isInf(sign)` (positive: +∞ only, negative: −∞ only).
#[inline]
pub fn is_inf(a: Res, sign: Option<Res>) -> Res {
    let sign = match sign.transpose()? {
        None => 0,
        Some(Val::Int(s)) => s,
        Some(other) => return no_overload("isInf", &[&other]),
    };
    match a? {
        Val::Double(d) => Ok(Val::Bool(match sign {
            0 => d.is_infinite(),
            s if s > 0 => d == f64::INFINITY,
            _ => d == f64::NEG_INFINITY,
        })),
        other => no_overload("isInf", &[&other]),
    }
}

/// `int(a)`.
#[inline]
pub fn to_int(a: Res) -> Res {
    match a? {
        Val::Int(i) => Ok(Val::Int(i)),
        Val::Uint(u) => overflow(i64::try_from(u).ok()).map(Val::Int),
        Val::Double(d) => {
            // Go's conversion range: strictly inside ±2^63.
            if d.is_nan() || d <= -9.223_372_036_854_776e18 || d >= 9.223_372_036_854_776e18 {
                err("integer overflow")
            } else {
                Ok(Val::Int(d as i64))
            }
        }
        Val::Str(s) => s.parse().map(Val::Int).map_err(|_| Error(format!("cannot convert {s:?} to int"))),
        Val::Timestamp(t) => Ok(Val::Int(t.div_euclid(NANOS) as i64)),
        other => no_overload("int", &[&other]),
    }
}

/// `uint(a)`.
#[inline]
pub fn to_uint(a: Res) -> Res {
    match a? {
        Val::Uint(u) => Ok(Val::Uint(u)),
        Val::Int(i) => overflow(u64::try_from(i).ok()).map(Val::Uint),
        Val::Double(d) => {
            if d.is_nan() || !(0.0..1.844_674_407_370_955_2e19).contains(&d) {
                err("unsigned integer overflow")
            } else {
                Ok(Val::Uint(d as u64))
            }
        }
        Val::Str(s) => s.parse().map(Val::Uint).map_err(|_| Error(format!("cannot convert {s:?} to uint"))),
        other => no_overload("uint", &[&other]),
    }
}

/// `double(a)`.
#[inline]
pub fn to_double(a: Res) -> Res {
    match a? {
        Val::Double(d) => Ok(Val::Double(d)),
        Val::Int(i) => Ok(Val::Double(i as f64)),
        Val::Uint(u) => Ok(Val::Double(u as f64)),
        Val::Str(s) => s.parse().map(Val::Double).map_err(|_| Error(format!("cannot convert {s:?} to double"))),
        other => no_overload("double", &[&other]),
    }
}

/// `string(a)`.
#[inline]
pub fn to_string(a: Res) -> Res {
    match a? {
        Val::Bytes(b) => match String::from_utf8(b) {
            Ok(s) => Ok(Val::Str(s)),
            Err(_) => err("invalid UTF-8 in bytes, cannot convert to string"),
        },
        Val::List(_) | Val::Map(_) | Val::Null => no_overload("string", &[&Val::Null]),
        other => Ok(Val::Str(display(&other))),
    }
}

/// `bytes(a)`.
#[inline]
pub fn to_bytes(a: Res) -> Res {
    match a? {
        Val::Bytes(b) => Ok(Val::Bytes(b)),
        Val::Str(s) => Ok(Val::Bytes(s.into_bytes())),
        other => no_overload("bytes", &[&other]),
    }
}

/// `bool(a)`.
#[inline]
pub fn to_bool(a: Res) -> Res {
    match a? {
        Val::Bool(b) => Ok(Val::Bool(b)),
        Val::Str(s) => match s.as_str() {
            "true" | "True" | "TRUE" | "t" | "1" => Ok(Val::Bool(true)),
            "false" | "False" | "FALSE" | "f" | "0" => Ok(Val::Bool(false)),
            _ => err(format!("cannot convert {s:?} to bool")),
        },
        other => no_overload("bool", &[&other]),
    }
}

/// `duration(a)`: from Go's duration syntax (`1h30m`, `-1.5s`, `10ms`).
#[inline]
pub fn to_duration(a: Res) -> Res {
    match a? {
        Val::Duration(d) => Ok(Val::Duration(d)),
        Val::Str(s) => match parse_duration(&s) {
            Some(d) => duration_checked(d),
            None => err(format!("cannot parse duration {s:?}")),
        },
        other => no_overload("duration", &[&other]),
    }
}

/// `timestamp(a)`: from RFC 3339 text, or seconds since the epoch.
#[inline]
pub fn to_timestamp(a: Res) -> Res {
    match a? {
        Val::Timestamp(t) => Ok(Val::Timestamp(t)),
        Val::Int(s) => timestamp_checked(i128::from(s) * NANOS),
        Val::Str(s) => match parse_timestamp(&s) {
            Some(t) => timestamp_checked(t),
            None => err(format!("cannot parse timestamp {s:?}")),
        },
        other => no_overload("timestamp", &[&other]),
    }
}

/// `type(a)`.
#[inline]
pub fn type_of(a: Res) -> Res {
    Ok(Val::Type(a?.type_name()))
}

/// Parses Go's duration text into nanoseconds.
fn parse_duration(s: &str) -> Option<i128> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut exact: i128 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." {
            return None;
        }
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS,
            "m" => 60 * NANOS,
            "h" => 3600 * NANOS,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        exact = exact.checked_add(whole.checked_mul(unit)?)?;
        if !fraction.is_empty() {
            let f: f64 = format!("0.{fraction}").parse().ok()?;
            total += f * unit as f64;
        }
    }
    let nanos = exact + total.round() as i128;
    Some(if negative { -nanos } else { nanos })
}

/// Parses RFC 3339 text into nanoseconds since the epoch.
fn parse_timestamp(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut nanos: i128 = 0;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start || end - start > 9 {
            return None;
        }
        let digits = &s[start..end];
        nanos = format!("{digits:0<9}").parse().ok()?;
        at = end;
    }
    let offset: i64 = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b[at + 3] == b':' => {
            let (h, m) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(i128::from(seconds) * NANOS + nanos)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A value as CEL's `string()` and `%s` write it.
#[inline]
pub fn display(v: &Val) -> String {
    match v {
        Val::Null => "null".to_owned(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Uint(u) => u.to_string(),
        Val::Double(d) => double_text(*d),
        Val::Str(s) => s.clone(),
        Val::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Val::List(items) => {
            let parts: Vec<String> = items.iter().map(display).collect();
            format!("[{}]", parts.join(", "))
        }
        Val::Map(pairs) => {
            let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{}: {}", display(k), display(v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
        Val::Duration(d) => duration_text(*d),
        Val::Timestamp(t) => timestamp_text(*t),
        Val::Type(t) => (*t).to_owned(),
    }
}

/// A double as protovalidate's messages print it: the shortest digits
/// that read back, without an exponent; `NaN`, `Infinity`, `-Infinity`.
fn double_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        format!("{d}")
    }
}

fn duration_text(nanos: i128) -> String {
    let seconds = nanos / NANOS;
    let frac = (nanos % NANOS).abs();
    let sign = if nanos < 0 && seconds == 0 { "-" } else { "" };
    if frac == 0 {
        format!("{sign}{seconds}s")
    } else {
        let digits = format!("{frac:09}");
        format!("{sign}{seconds}.{}s", digits.trim_end_matches('0'))
    }
}

fn timestamp_text(nanos: i128) -> String {
    let seconds = nanos.div_euclid(NANOS) as i64;
    let frac = nanos.rem_euclid(NANOS);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// `pattern.format(args)`: `%s`, `%d`, `%f` (and `%.Nf`), `%e`, `%x`,
/// `%X`, `%o`, `%b` and `%%`, as cel-go's strings extension has them.
#[inline]
pub fn format(pattern: Res, args: Res) -> Res {
    let (Val::Str(pattern), Val::List(args)) = (pattern?, args?) else {
        return err("format needs a string and a list");
    };
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            precision = digits.parse().ok();
        }
        let Some(verb) = chars.next() else { return err("format: a lone % at the end") };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else { return err("format: too few arguments") };
        let text = match (verb, arg) {
            ('s', v) => display(v),
            ('d', Val::Int(i)) => i.to_string(),
            ('d', Val::Uint(u)) => u.to_string(),
            ('f', Val::Double(d)) => format!("{d:.*}", precision.unwrap_or(6)),
            ('f', Val::Int(i)) => format!("{:.*}", precision.unwrap_or(6), *i as f64),
            ('f', Val::Uint(u)) => format!("{:.*}", precision.unwrap_or(6), *u as f64),
            ('e', Val::Double(d)) => {
                let text = format!("{d:.*e}", precision.unwrap_or(6));
                match text.split_once('e') {
                    Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
                    Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
                    None => text,
                }
            }
            ('x', Val::Int(i)) if *i < 0 => format!("-{:x}", i.unsigned_abs()),
            ('x', Val::Int(i)) => format!("{i:x}"),
            ('x', Val::Uint(u)) => format!("{u:x}"),
            ('x', Val::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('x', Val::Bytes(b)) => b.iter().map(|b| format!("{b:02x}")).collect(),
            ('X', Val::Int(i)) if *i < 0 => format!("-{:X}", i.unsigned_abs()),
            ('X', Val::Int(i)) => format!("{i:X}"),
            ('X', Val::Uint(u)) => format!("{u:X}"),
            ('X', Val::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
            ('X', Val::Bytes(b)) => b.iter().map(|b| format!("{b:02X}")).collect(),
            ('o', Val::Int(i)) => format!("{i:o}"),
            ('o', Val::Uint(u)) => format!("{u:o}"),
            ('b', Val::Int(i)) => format!("{i:b}"),
            ('b', Val::Uint(u)) => format!("{u:b}"),
            ('b', Val::Bool(b)) => b.to_string(),
            (verb, v) => return err(format!("format: %{verb} does not take a {}", v.type_name())),
        };
        out.push_str(&text);
    }
    Ok(Val::Str(out))
}

/// `[a, b, ...]`.
#[inline]
pub fn list(items: Vec<Res>) -> Res {
    items.into_iter().collect::<Result<Vec<_>, _>>().map(Val::List)
}

/// `{k: v, ...}`.
#[inline]
pub fn map_of(pairs: Vec<(Res, Res)>) -> Res {
    let mut out: Vec<(Val, Val)> = Vec::new();
    for (k, v) in pairs {
        let (k, v) = (k?, v?);
        if out.iter().any(|(seen, _)| equal(seen, &k)) {
            return err(format!("repeated key in a map literal: {}", display(&k)));
        }
        out.push((k, v));
    }
    Ok(Val::Map(out))
}

/// The elements a macro ranges over: a list's elements, a map's keys.
#[inline]
pub fn range(a: Res) -> Result<Vec<Val>, Error> {
    match a? {
        Val::List(items) => Ok(items),
        Val::Map(pairs) => Ok(pairs.into_iter().map(|(k, _)| k).collect()),
        other => no_overload("comprehension", &[&other]),
    }
}

/// `range.all(x, p)`: false if p is false for any element, else an error
/// if p failed for any, else true.
#[inline]
pub fn all<T>(items: impl IntoIterator<Item = T>, mut p: impl FnMut(T) -> Res) -> Res {
    let mut failed = None;
    for x in items {
        match p(x) {
            Ok(Val::Bool(true)) => {}
            Ok(Val::Bool(false)) => return Ok(Val::Bool(false)),
            Ok(other) => failed = failed.or(Some(Error(format!("no such overload: all over {}", other.type_name())))),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    failed.map_or(Ok(Val::Bool(true)), Err)
}

/// `range.exists(x, p)`: true if p is true for any element, else an
/// error if p failed for any, else false.
#[inline]
pub fn exists<T>(items: impl IntoIterator<Item = T>, mut p: impl FnMut(T) -> Res) -> Res {
    let mut failed = None;
    for x in items {
        match p(x) {
            Ok(Val::Bool(true)) => return Ok(Val::Bool(true)),
            Ok(Val::Bool(false)) => {}
            Ok(other) => {
                failed = failed.or(Some(Error(format!("no such overload: exists over {}", other.type_name()))))
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    failed.map_or(Ok(Val::Bool(false)), Err)
}

/// `range.exists_one(x, p)`: p is true for exactly one element.
#[inline]
pub fn exists_one<T>(items: impl IntoIterator<Item = T>, mut p: impl FnMut(T) -> Res) -> Res {
    let mut count = 0;
    for x in items {
        match p(x)? {
            Val::Bool(true) => count += 1,
            Val::Bool(false) => {}
            other => return no_overload("exists_one", &[&other]),
        }
    }
    Ok(Val::Bool(count == 1))
}

/// `range.map(x, e)` and `range.map(x, p, e)`.
#[inline]
pub fn map<T: Clone>(
    items: impl IntoIterator<Item = T>,
    mut keep: impl FnMut(T) -> Res,
    mut e: impl FnMut(T) -> Res,
) -> Res {
    let mut out = Vec::new();
    for x in items {
        match keep(x.clone())? {
            Val::Bool(true) => out.push(e(x)?),
            Val::Bool(false) => {}
            other => return no_overload("map", &[&other]),
        }
    }
    Ok(Val::List(out))
}

/// `range.filter(x, p)` over values.
#[inline]
pub fn filter(items: Vec<Val>, mut p: impl FnMut(Val) -> Res) -> Res {
    let mut out = Vec::new();
    for x in items {
        match p(x.clone())? {
            Val::Bool(true) => out.push(x),
            Val::Bool(false) => {}
            other => return no_overload("filter", &[&other]),
        }
    }
    Ok(Val::List(out))
}

/// `a && b` over typed booleans, errors absorbed as CEL says.
#[inline]
pub fn and_bool(a: Result<bool, Error>, b: Result<bool, Error>) -> Result<bool, Error> {
    match (a, b) {
        (Ok(false), _) | (_, Ok(false)) => Ok(false),
        (Ok(true), Ok(true)) => Ok(true),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// `a || b` over typed booleans, errors absorbed as CEL says.
#[inline]
pub fn or_bool(a: Result<bool, Error>, b: Result<bool, Error>) -> Result<bool, Error> {
    match (a, b) {
        (Ok(true), _) | (_, Ok(true)) => Ok(true),
        (Ok(false), Ok(false)) => Ok(false),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// A checked integer operation's result: `None` is an overflow.
#[inline]
pub fn overflowed<T>(x: Option<T>) -> Result<T, Error> {
    x.ok_or_else(|| Error("integer overflow".into()))
}

/// `a / b` over `int`s.
#[inline]
pub fn int_div(a: i64, b: i64) -> Result<i64, Error> {
    if b == 0 { err("division by zero") } else { overflowed(a.checked_div(b)) }
}

/// `a % b` over `int`s.
#[inline]
pub fn int_rem(a: i64, b: i64) -> Result<i64, Error> {
    if b == 0 { err("modulus by zero") } else { overflowed(a.checked_rem(b)) }
}

/// `a / b` over `uint`s.
#[inline]
pub fn uint_div(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_div(b).ok_or_else(|| Error("division by zero".into()))
}

/// `a % b` over `uint`s.
#[inline]
pub fn uint_rem(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_rem(b).ok_or_else(|| Error("modulus by zero".into()))
}

/// A message field as CEL reads it: an unset one is the message's
/// default.
#[inline]
pub fn or_default<T: Clone + Default>(x: Option<&T>) -> std::borrow::Cow<'_, T> {
    x.map_or_else(|| std::borrow::Cow::Owned(T::default()), std::borrow::Cow::Borrowed)
}

/// `list[i]` for a list of messages.
#[inline]
pub fn item<T>(items: &[T], i: Res) -> Result<&T, Error> {
    let i = i?;
    let at = match &i {
        Val::Int(n) => usize::try_from(*n).ok(),
        Val::Uint(n) => usize::try_from(*n).ok(),
        other => return no_overload("_[_]", &[&Val::List(Vec::new()), other]),
    };
    at.and_then(|n| items.get(n)).ok_or_else(|| Error(format!("index out of range: {}", display(&i))))
}

/// `map[k]` for a map of messages, its keys read as CEL values by `key`.
#[inline]
pub fn entry<'a, K: 'a, T: 'a>(
    pairs: impl IntoIterator<Item = (&'a K, &'a T)>,
    k: Res,
    key: impl Fn(&K) -> Val,
) -> Result<&'a T, Error> {
    let k = k?;
    pairs
        .into_iter()
        .find(|(candidate, _)| equal(&key(candidate), &k))
        .map(|(_, v)| v)
        .ok_or_else(|| Error(format!("no such key: {}", display(&k))))
}

/// What a rule's expression decided: `Ok(None)` when it holds,
/// `Ok(Some(message))` when it does not (an empty message: the rule's
/// own), `Err` when it could not be evaluated. A bool holds when true; a
/// string when empty, and otherwise is the message.
#[inline]
pub fn verdict(result: Res) -> Result<Option<String>, Error> {
    match result? {
        Val::Bool(true) => Ok(None),
        Val::Bool(false) => Ok(Some(String::new())),
        Val::Str(s) if s.is_empty() => Ok(None),
        Val::Str(s) => Ok(Some(s)),
        other => err(format!("the expression gave a {}, not a bool or a string", other.type_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(n: i64) -> Res {
        Ok(Val::Int(n))
    }

    #[test]
    fn errors_are_absorbed_by_and_and_or() {
        let boom = || err::<Val>("boom");
        assert!(matches!(and(boom(), Ok(Val::Bool(false))), Ok(Val::Bool(false))));
        assert!(matches!(or(Ok(Val::Bool(true)), boom()), Ok(Val::Bool(true))));
        assert!(and(boom(), Ok(Val::Bool(true))).is_err());
        assert!(matches!(div(i(1), i(0)), Err(Error(m)) if m == "division by zero"));
        assert!(add(i(i64::MAX), i(1)).is_err());
    }

    #[test]
    fn numbers_compare_across_types() {
        assert!(equal(&Val::Int(1), &Val::Uint(1)));
        assert!(equal(&Val::Double(2.0), &Val::Int(2)));
        assert!(!equal(&Val::Double(f64::NAN), &Val::Double(f64::NAN)));
        assert!(matches!(lt(i(-1), Ok(Val::Uint(0))), Ok(Val::Bool(true))));
        assert!(matches!(lt(Ok(Val::Double(1.5)), i(2)), Ok(Val::Bool(true))));
        assert!(matches!(gt(Ok(Val::Double(1.5)), i(1)), Ok(Val::Bool(true))));
        assert!(lt(i(1), Ok(Val::Str("a".into()))).is_err());
    }

    #[test]
    fn durations_and_timestamps_parse_and_print() {
        assert_eq!(parse_duration("1h30m"), Some(5400 * NANOS));
        assert_eq!(parse_duration("-1.5s"), Some(-1_500_000_000));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(NANOS));
        assert_eq!(parse_timestamp("2000-01-01T00:00:00+01:00"), Some(946_681_200 * NANOS));
        assert_eq!(timestamp_text(946_684_800 * NANOS + 500_000_000), "2000-01-01T00:00:00.5Z");
        assert_eq!(duration_text(-500_000_000), "-0.5s");
    }

    #[test]
    fn format_writes_what_cel_go_writes() {
        let args = Ok(Val::List(vec![Val::Str("a/b".into()), Val::Int(-255), Val::Double(1.5)]));
        let out = format(Ok(Val::Str("%s %x %.2f %%".into())), args).unwrap();
        assert!(matches!(out, Val::Str(s) if s == "a/b -ff 1.50 %"));
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(Ok(Val::Bool(true))), Ok(None));
        assert_eq!(verdict(Ok(Val::Str("bad".into()))), Ok(Some("bad".into())));
        assert!(verdict(i(1)).is_err());
    }
}
