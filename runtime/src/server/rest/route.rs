//! Matching request paths against the bindings' path templates.

use crate::codegen::{HttpRule, PathSegment};

/// A path the request matched: each bound field (by its proto names) with
/// its percent-decoded value, and how specific the match is (to pick the
/// most specific of several matching bindings).
#[derive(Debug, PartialEq)]
pub(super) struct Match {
    pub(super) fields: Vec<(&'static [&'static str], String)>,
    pub(super) rank: Vec<u8>,
}

/// Matches `path` (without its query) against `rule`'s template.
pub(super) fn matches(rule: &HttpRule, path: &str) -> Option<Match> {
    let mut path = path.strip_prefix('/')?;
    if let Some(verb) = rule.verb {
        path = path.strip_suffix(verb)?.strip_suffix(':')?;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let mut out = Match { fields: Vec::new(), rank: Vec::new() };
    let end = match_segments(rule.path, &segments, &mut out)?;
    if rule.verb.is_some() {
        // `/v1/{name}:cancel` outranks `/v1/{name}` for `/v1/x:cancel`.
        out.rank.push(4);
    }
    (end == segments.len()).then_some(out)
}

/// Matches `pattern` at the start of `segments`; returns how many
/// segments it took.
fn match_segments(pattern: &'static [PathSegment], segments: &[&str], out: &mut Match) -> Option<usize> {
    let mut at = 0;
    for p in pattern {
        match p {
            PathSegment::Literal(l) => {
                if segments.get(at)? != l {
                    return None;
                }
                out.rank.push(3);
                at += 1;
            }
            PathSegment::Any => {
                if segments.get(at)?.is_empty() {
                    return None;
                }
                out.rank.push(2);
                at += 1;
            }
            PathSegment::Rest => {
                // Always last: the rest of the path, possibly nothing.
                out.rank.push(1);
                at = segments.len();
            }
            PathSegment::Field { path, pattern } => {
                let start = at;
                let mut ranked = Match { fields: Vec::new(), rank: Vec::new() };
                if let Some(taken) = match_segments(pattern, &segments[at..], &mut ranked) {
                    at += taken;
                    let raw = segments[start..at].join("/");
                    out.fields.push((path, percent_decode(&raw)?));
                } else {
                    // The value in one segment, its slashes escaped as
                    // %2F (as OpenAPI clients send path parameters).
                    let value = percent_decode(segments.get(at)?)?;
                    let inner: Vec<&str> = value.split('/').collect();
                    if inner.len() < 2 || match_segments(pattern, &inner, &mut ranked)? != inner.len() {
                        return None;
                    }
                    at += 1;
                    out.fields.push((path, value));
                }
                out.rank.extend(ranked.rank);
            }
        }
    }
    Some(at)
}

/// `%XX` decoded; `None` for a malformed escape or text that is not UTF-8.
pub(super) fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `application/x-www-form-urlencoded` pairs of a query string (`+` is a
/// space); `None` when an escape is malformed.
pub(super) fn query_pairs(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(&key.replace('+', " "))?, percent_decode(&value.replace('+', " "))?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::{HttpBody, PathSegment::*};

    const NAME: PathSegment = Field { path: &["name"], pattern: &[Literal("shelves"), Any, Literal("books"), Any] };

    fn rule(path: &'static [PathSegment], verb: Option<&'static str>) -> HttpRule {
        HttpRule { method: "GET", template: "", path, verb, body: HttpBody::None, response_body: None }
    }

    #[test]
    fn templates_match_and_bind() {
        let get = rule(&[Literal("v1"), NAME], None);
        let m = matches(&get, "/v1/shelves/1/books/a%20b").expect("match");
        assert_eq!(m.fields, vec![(&["name"][..], "shelves/1/books/a b".to_owned())]);
        assert_eq!(matches(&get, "/v1/shelves/1/books"), None);
        assert_eq!(matches(&get, "/v1/shelves/1/books/2/x"), None);
        assert_eq!(matches(&get, "/v1/shelves//books/2"), None, "an empty segment is not a value");
        assert_eq!(matches(&get, "/v1/shelves/1/books/%zz"), None);

        let verb = rule(&[Literal("v1"), NAME], Some("move"));
        assert!(matches(&verb, "/v1/shelves/1/books/2:move").is_some());
        assert_eq!(matches(&verb, "/v1/shelves/1/books/2"), None);
        assert_eq!(matches(&verb, "/v1/shelves/1/books/2:copy"), None);

        const REST: PathSegment = Field { path: &["path"], pattern: &[Rest] };
        // Slashes of a value may come percent-encoded, as OpenAPI clients
        // send them.
        let m = matches(&get, "/v1/shelves%2F1%2Fbooks%2Fa%20b").expect("match");
        assert_eq!(m.fields, vec![(&["name"][..], "shelves/1/books/a b".to_owned())]);
        assert_eq!(matches(&get, "/v1/shelves%2F1%2Fbooks"), None);
        assert_eq!(matches(&get, "/v1/other%2F1%2Fbooks%2F2"), None);
        let files = rule(&[Literal("files"), REST], None);
        assert_eq!(matches(&files, "/files/a/b/c").expect("match").fields[0].1, "a/b/c");
        assert_eq!(matches(&files, "/files/").expect("match").fields[0].1, "");
    }

    #[test]
    fn a_matching_verb_ranks_above_a_variable_that_would_take_it() {
        const ID: PathSegment = Field { path: &["id"], pattern: &[Any] };
        let plain = matches(&rule(&[Literal("v1"), ID], None), "/v1/x:stream").expect("match");
        let verb = matches(&rule(&[Literal("v1"), ID], Some("stream")), "/v1/x:stream").expect("match");
        assert_eq!(plain.fields[0].1, "x:stream");
        assert_eq!(verb.fields[0].1, "x");
        assert!(verb.rank > plain.rank);
    }

    #[test]
    fn literals_rank_above_variables() {
        const ID: PathSegment = Field { path: &["id"], pattern: &[Any] };
        let literal = matches(&rule(&[Literal("v1"), Literal("special")], None), "/v1/special").expect("match");
        let variable = matches(&rule(&[Literal("v1"), ID], None), "/v1/special").expect("match");
        assert!(literal.rank > variable.rank);
    }

    #[test]
    fn query_strings() {
        assert_eq!(
            query_pairs("a=1&b=x+y&c=%2F&&d").expect("ok"),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x y".to_owned()),
                ("c".to_owned(), "/".to_owned()),
                ("d".to_owned(), String::new())
            ]
        );
        assert_eq!(query_pairs("a=%G1"), None);
    }
}
