//! `google.api.http` bindings: each rule's path template parsed (the
//! grammar of `google/api/http.proto`) and checked against the request and
//! response messages, so that a binding the server could not serve is a
//! generation error with its file and line.

use prost_reflect::{DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};

use super::{At, FileCx, extension, get_msg, get_str};
use crate::ir::{HttpBinding, HttpBody, PathSegment};

pub(super) const HTTP_EXT: &str = "google.api.http";
const HTTP_EXT_NUMBER: i32 = 72_295_728;
/// The `options` field of `MethodDescriptorProto`.
const METHOD_OPTIONS_FIELD: i32 = 4;

const TEMPLATE_HINT: &str = "write a template such as /v1/{name=shelves/*}/books or /v1/things/{id}:cancel (segments: literal, *, **, {field} or {field=pattern}; an optional :verb at the end)";

impl FileCx<'_> {
    /// The checked bindings of `m`: its rule, then its `additional_bindings`.
    pub(super) fn http_bindings(
        &mut self,
        ext: &Option<ExtensionDescriptor>,
        m: &MethodDescriptor,
    ) -> Vec<HttpBinding> {
        let Some(rule) = extension(&m.options(), ext) else { return Vec::new() };
        let path: Vec<i32> = [m.path(), &[METHOD_OPTIONS_FIELD, HTTP_EXT_NUMBER]].concat();
        let at = At { element: format!("rpc {}", m.full_name()), path: &path };
        if m.is_client_streaming() {
            self.error(
                &at,
                "(google.api.http) is set on a client-streaming method",
                "HTTP/JSON serves unary and server-streaming methods; call this one over gRPC and remove the binding",
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        self.binding(&at, m, &rule, true, &mut out);
        for binding in &out {
            let this = format!("{} {:?}", binding.method.to_ascii_lowercase(), binding.template);
            let key = route_key(binding);
            match self.routes.get(&key).cloned() {
                Some((rpc, other)) => self.error(
                    &at,
                    format!("{this} conflicts with {other} of rpc {rpc}: both match the same requests"),
                    "change one template (a literal segment or a :verb tells them apart), or remove one binding",
                ),
                None => {
                    self.routes.insert(key, (m.full_name().to_owned(), this));
                }
            }
        }
        out
    }

    fn binding(
        &mut self,
        at: &At<'_>,
        m: &MethodDescriptor,
        rule: &DynamicMessage,
        top: bool,
        out: &mut Vec<HttpBinding>,
    ) {
        let additional = rule
            .get_field_by_name("additional_bindings")
            .and_then(|v| v.as_list().map(|l| l.iter().filter_map(|b| b.as_message().cloned()).collect::<Vec<_>>()))
            .unwrap_or_default();
        if !top && !additional.is_empty() {
            self.error(
                at,
                "an additional binding has additional_bindings of its own",
                "list every binding in the top rule's additional_bindings; they do not nest",
            );
        }
        if let Some(binding) = self.one_binding(at, m, rule) {
            out.push(binding);
        }
        for b in &additional {
            self.binding(at, m, b, false, out);
        }
    }

    fn one_binding(&mut self, at: &At<'_>, m: &MethodDescriptor, rule: &DynamicMessage) -> Option<HttpBinding> {
        let mut pattern = ["get", "put", "post", "delete", "patch"]
            .into_iter()
            .find_map(|verb| get_str(rule, verb).map(|t| (verb.to_ascii_uppercase(), t)));
        if let Some(custom) = get_msg(rule, "custom") {
            let kind = get_str(&custom, "kind").unwrap_or_default();
            if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_uppercase()) {
                self.error(
                    at,
                    format!("custom.kind {kind:?} is not an HTTP method name"),
                    "write the method in capitals, e.g. HEAD or OPTIONS",
                );
                return None;
            }
            pattern = Some((kind, get_str(&custom, "path").unwrap_or_default()));
        }
        let Some((method, template)) = pattern else {
            self.error(at, "an HTTP rule sets no pattern", "set one of get, put, post, delete, patch or custom");
            return None;
        };
        let described = format!("{} {template:?}", method.to_ascii_lowercase());
        let (path, verb) = match parse_template(&template) {
            Ok(parsed) => parsed,
            Err(problem) => {
                self.error(at, format!("{described}: {problem}"), TEMPLATE_HINT);
                return None;
            }
        };
        let input = m.input();
        let mut bound: Vec<String> = Vec::new();
        let mut ok = true;
        for segment in &path {
            let PathSegment::Field { path: field_path, pattern } = segment else { continue };
            let dotted = field_path.join(".");
            match resolve(&input, field_path) {
                Err(problem) => {
                    self.error(
                        at,
                        format!("{described}: {problem}"),
                        "bind a field of the request message, e.g. {name} or {book.id}",
                    );
                    ok = false;
                }
                Ok(field) => {
                    if field.is_list() || field.is_map() || matches!(field.kind(), Kind::Message(_)) {
                        self.error(
                            at,
                            format!("{described}: {{{dotted}}} is a {}, which a path segment cannot hold", shape(&field)),
                            "bind a string, number, bool or enum field; send the others in the body or as query parameters",
                        );
                        ok = false;
                    } else if spans_segments(pattern) && field.kind() != Kind::String {
                        self.error(
                            at,
                            format!("{described}: {{{dotted}}} matches several segments, so it must be a string field"),
                            "make the field a string, or bind it to a single segment ({field} or {field=*})",
                        );
                        ok = false;
                    }
                }
            }
            if bound.contains(&dotted) {
                self.error(at, format!("{described}: {{{dotted}}} is bound twice"), "bind each field once");
                ok = false;
            }
            bound.push(dotted);
        }
        let body = match get_str(rule, "body").unwrap_or_default().as_str() {
            "" => HttpBody::None,
            "*" => HttpBody::All,
            name => {
                if input.get_field_by_name(name).is_none() {
                    let fields = field_names(&input);
                    self.error(
                        at,
                        format!("{described}: body {name:?} is not a field of {}", input.full_name()),
                        format!(
                            "name a top-level request field ({fields}) or \"*\" for every field the path does not bind"
                        ),
                    );
                    ok = false;
                } else if bound.iter().any(|b| b == name) {
                    // A field inside the body field may be bound (the path
                    // then sets it, as in `{book.name=...}` with body
                    // `book`); the body field itself may not.
                    self.error(
                        at,
                        format!("{described}: body {name:?} is also bound by the path"),
                        "take the field from the path or from the body, not both (a field inside the body field may be bound)",
                    );
                    ok = false;
                }
                HttpBody::Field(name.to_owned())
            }
        };
        if method == "GET" && body != HttpBody::None {
            self.error(
                at,
                format!("{described}: a GET binding has a body"),
                "GET requests carry no body: remove body (fields not in the path become query parameters) or use post",
            );
            ok = false;
        }
        let response_body = get_str(rule, "response_body").filter(|r| !r.is_empty());
        if let Some(name) = &response_body
            && m.output().get_field_by_name(name).is_none()
        {
            let fields = field_names(&m.output());
            self.error(
                at,
                format!("{described}: response_body {name:?} is not a field of {}", m.output().full_name()),
                format!(
                    "name a top-level response field ({fields}), or remove response_body to send the whole response"
                ),
            );
            ok = false;
        }
        ok.then_some(HttpBinding { method, template, path, verb, body, response_body })
    }
}

/// The field at `path` (proto names) from `message` down: every name but
/// the last must be a singular message field.
pub(crate) fn resolve(message: &MessageDescriptor, path: &[String]) -> Result<FieldDescriptor, String> {
    let mut current = message.clone();
    for (i, name) in path.iter().enumerate() {
        let Some(field) = current.get_field_by_name(name) else {
            return Err(format!(
                "{name:?} is not a field of {} (fields: {})",
                current.full_name(),
                field_names(&current)
            ));
        };
        if i + 1 == path.len() {
            return Ok(field);
        }
        match field.kind() {
            Kind::Message(inner) if !field.is_list() && !field.is_map() => current = inner,
            _ => {
                return Err(format!(
                    "{name:?} of {} is a {}, so it has no field {:?}",
                    current.full_name(),
                    shape(&field),
                    path[i + 1]
                ));
            }
        }
    }
    Err("an empty field path".to_owned())
}

fn shape(field: &FieldDescriptor) -> String {
    if field.is_map() {
        return "map".to_owned();
    }
    let kind = match field.kind() {
        Kind::Message(m) => format!("message ({})", m.full_name()),
        Kind::Enum(e) => format!("enum ({})", e.full_name()),
        other => format!("{other:?}").to_ascii_lowercase(),
    };
    if field.is_list() { format!("repeated {kind}") } else { kind }
}

fn field_names(message: &MessageDescriptor) -> String {
    let names: Vec<String> = message.fields().map(|f| f.name().to_owned()).collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// Whether a variable's pattern can match more (or fewer) than one
/// segment, so that its value may hold slashes.
fn spans_segments(pattern: &[PathSegment]) -> bool {
    pattern.len() != 1 || pattern.iter().any(|s| matches!(s, PathSegment::Rest))
}

/// Parses `Template = "/" Segments [ ":" LITERAL ]`, where `Segments =
/// Segment { "/" Segment }`, `Segment = "*" | "**" | LITERAL | Variable`,
/// `Variable = "{" FieldPath [ "=" Segments ] "}"`, `FieldPath = IDENT {
/// "." IDENT }`. Returns the segments and the verb.
pub(crate) fn parse_template(template: &str) -> Result<(Vec<PathSegment>, Option<String>), String> {
    let Some(rest) = template.strip_prefix('/') else {
        return Err("does not start with '/'".to_owned());
    };
    // The verb is what follows the last ':' outside braces, after the
    // last '/'.
    let mut depth = 0i32;
    let mut verb_at = None;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '/' if depth == 0 => verb_at = None,
            ':' if depth == 0 => verb_at = Some(i),
            _ => {}
        }
    }
    let (segments_text, verb) = match verb_at {
        Some(i) => {
            let verb = &rest[i + 1..];
            if verb.is_empty() || !verb.chars().all(is_literal_char) {
                return Err(format!("the verb {verb:?} is not a literal"));
            }
            (&rest[..i], Some(verb.to_owned()))
        }
        None => (rest, None),
    };
    let mut parser = Parser { text: segments_text, at: 0 };
    let segments = parser.segments(false)?;
    if let Some(c) = parser.peek() {
        return Err(format!("{c:?} at character {} is not allowed in a path", parser.column()));
    }
    check_rest_last(&segments)?;
    Ok((segments, verb))
}

/// `**` may only end the template.
fn check_rest_last(segments: &[PathSegment]) -> Result<(), String> {
    let flat: Vec<&PathSegment> = segments
        .iter()
        .flat_map(|s| match s {
            PathSegment::Field { pattern, .. } => pattern.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .collect();
    match flat.iter().position(|s| matches!(s, PathSegment::Rest)) {
        Some(i) if i + 1 != flat.len() => Err("** is not the last segment".to_owned()),
        _ => Ok(()),
    }
}

fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()+,;@".contains(c)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn column(&self) -> usize {
        // Characters of the template, its leading '/' counted.
        self.at + 2
    }

    fn segments(&mut self, in_variable: bool) -> Result<Vec<PathSegment>, String> {
        let mut out = vec![self.segment(in_variable)?];
        while self.peek() == Some('/') {
            self.at += 1;
            out.push(self.segment(in_variable)?);
        }
        Ok(out)
    }

    fn segment(&mut self, in_variable: bool) -> Result<PathSegment, String> {
        let rest = &self.text[self.at..];
        if rest.starts_with("**") {
            self.at += 2;
            return Ok(PathSegment::Rest);
        }
        if rest.starts_with('*') {
            self.at += 1;
            return Ok(PathSegment::Any);
        }
        if rest.starts_with('{') {
            if in_variable {
                return Err(format!("a variable inside a variable at character {}", self.column()));
            }
            return self.variable();
        }
        let len = rest.find(|c: char| !is_literal_char(c)).unwrap_or(rest.len());
        if len == 0 {
            return Err(match rest.chars().next() {
                None | Some('/') => format!("an empty segment at character {}", self.column()),
                Some(c) => format!("{c:?} at character {} is not allowed in a path", self.column()),
            });
        }
        let literal = &rest[..len];
        check_percent(literal).map_err(|p| format!("{p} at character {}", self.column()))?;
        self.at += len;
        Ok(PathSegment::Literal(literal.to_owned()))
    }

    fn variable(&mut self) -> Result<PathSegment, String> {
        let start = self.column();
        self.at += 1;
        let rest = &self.text[self.at..];
        let len = rest.find(['=', '}']).ok_or_else(|| format!("the '{{' at character {start} is not closed"))?;
        let field_path = &rest[..len];
        let path: Vec<String> = field_path.split('.').map(str::to_owned).collect();
        if path.iter().any(|name| !is_ident(name)) {
            return Err(format!(
                "{field_path:?} at character {} is not a field path (names joined by '.')",
                self.column()
            ));
        }
        self.at += len;
        let pattern = if self.peek() == Some('=') {
            self.at += 1;
            self.segments(true)?
        } else {
            vec![PathSegment::Any]
        };
        if self.peek() != Some('}') {
            return Err(format!("the '{{' at character {start} is not closed"));
        }
        self.at += 1;
        Ok(PathSegment::Field { path, pattern })
    }
}

fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_percent(literal: &str) -> Result<(), String> {
    let bytes = literal.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' && !bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err("a '%' not followed by two hex digits".to_owned());
        }
    }
    Ok(())
}

/// The shape two bindings must not share: method, segments with variables
/// replaced by their patterns, and verb.
pub(crate) fn route_key(b: &HttpBinding) -> String {
    fn push(out: &mut String, segments: &[PathSegment]) {
        for s in segments {
            match s {
                PathSegment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                PathSegment::Any => out.push_str("/*"),
                PathSegment::Rest => out.push_str("/**"),
                PathSegment::Field { pattern, .. } => push(out, pattern),
            }
        }
    }
    let mut key = format!("{} ", b.method);
    push(&mut key, &b.path);
    if let Some(verb) = &b.verb {
        key.push(':');
        key.push_str(verb);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> PathSegment {
        PathSegment::Literal(s.to_owned())
    }

    fn field(path: &[&str], pattern: Vec<PathSegment>) -> PathSegment {
        PathSegment::Field { path: path.iter().map(|s| (*s).to_owned()).collect(), pattern }
    }

    #[test]
    fn templates_parse() {
        assert_eq!(parse_template("/v1/things").expect("ok"), (vec![lit("v1"), lit("things")], None));
        assert_eq!(
            parse_template("/v1/{name=shelves/*/books/*}:archive").expect("ok"),
            (
                vec![
                    lit("v1"),
                    field(&["name"], vec![lit("shelves"), PathSegment::Any, lit("books"), PathSegment::Any])
                ],
                Some("archive".to_owned())
            )
        );
        assert_eq!(
            parse_template("/v1/{book.id}/*/**").expect("ok"),
            (
                vec![lit("v1"), field(&["book", "id"], vec![PathSegment::Any]), PathSegment::Any, PathSegment::Rest],
                None
            )
        );
        assert_eq!(
            parse_template("/v1/{path=**}").expect("ok").0,
            vec![lit("v1"), field(&["path"], vec![PathSegment::Rest])]
        );
        assert_eq!(parse_template("/v1:batchGet").expect("ok"), (vec![lit("v1")], Some("batchGet".to_owned())));
        assert_eq!(parse_template("/a%20b").expect("ok").0, vec![lit("a%20b")]);
    }

    #[test]
    fn bad_templates_say_where() {
        for (template, problem) in [
            ("v1/things", "does not start with '/'"),
            ("/v1//things", "an empty segment at character 5"),
            ("/v1/", "an empty segment at character 5"),
            ("/v1/{name", "the '{' at character 5 is not closed"),
            ("/v1/{name=a/{b}}", "a variable inside a variable at character 13"),
            ("/v1/{na-me}", "\"na-me\" at character 6 is not a field path"),
            ("/v1/**/x", "** is not the last segment"),
            ("/v1/{a=**}/x", "** is not the last segment"),
            ("/v1/x:", "the verb \"\" is not a literal"),
            ("/v1/x?y", "'?' at character 6 is not allowed in a path"),
            ("/v1/a%2", "a '%' not followed by two hex digits at character 5"),
            ("/v1/}", "'}' at character 5 is not allowed in a path"),
        ] {
            let error = parse_template(template).expect_err(template);
            assert!(error.contains(problem), "{template}: {error}");
        }
    }

    #[test]
    fn route_keys_ignore_variable_names() {
        let binding = |template: &str| {
            let (path, verb) = parse_template(template).expect("ok");
            HttpBinding {
                method: "GET".to_owned(),
                template: template.to_owned(),
                path,
                verb,
                body: HttpBody::None,
                response_body: None,
            }
        };
        assert_eq!(route_key(&binding("/v1/{id}")), route_key(&binding("/v1/{name}")));
        assert_eq!(route_key(&binding("/v1/{id}")), "GET /v1/*");
        assert_ne!(route_key(&binding("/v1/{id}")), route_key(&binding("/v1/{id}:cancel")));
        assert_eq!(route_key(&binding("/v1/{name=shelves/*}")), "GET /v1/shelves/*");
    }
}
