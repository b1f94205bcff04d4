//! URI checks behind protovalidate's `isUri` / `isUriRef` CEL functions and
//! the `string.uri` / `string.uri_ref` rules: the RFC 3986 grammar, with
//! RFC 6874 zone identifiers (`%25` + zone) in IPv6 literals.
//!
//! Like protovalidate, every character outside the grammar (any non-ASCII
//! byte included) is rejected, `%` must start a `%HH` triplet, and only the
//! host must percent-decode to valid UTF-8 (RFC 3986 §3.2.2); userinfo, path,
//! query and fragment may encode any bytes. Two narrowings of RFC 3986 follow
//! protovalidate-go: an IPv6 literal cannot end in dotted IPv4 (`[::ffff:1.2.3.4]`
//! is rejected), and `IPvFuture` needs a lowercase `v`. One quirk is not copied:
//! protovalidate-go also accepts as a URI reference a string whose query or
//! fragment is malformed after a valid `scheme:` start (`http://##`), as its
//! parser retries only the tail; here such strings fail, as RFC 3986 and
//! protovalidate-cc have it.

/// Whether `s` is an absolute URI (RFC 3986 `URI`: scheme ":" hier-part [ "?" query ] [ "#" fragment ]),
/// such as `https://example.com/foo?bar#baz` or `urn:isbn:0451450523`. The empty string is not.
#[must_use]
pub fn is_uri(s: &str) -> bool {
    let s = s.as_bytes();
    // No component before the scheme's ":" may contain a ":", so the first one ends it.
    let Some(colon) = s.iter().position(|&c| c == b':') else {
        return false;
    };
    is_scheme(&s[..colon]) && is_after_scheme(&s[colon + 1..], false)
}

/// Whether `s` is a URI reference (RFC 3986 `URI-reference`: a URI or a relative reference),
/// such as `https://example.com`, `//host/path`, `./foo?bar`, `#frag` or the empty string.
#[must_use]
pub fn is_uri_ref(s: &str) -> bool {
    is_uri(s) || is_after_scheme(s.as_bytes(), true)
}

/// `hier-part [ "?" query ] [ "#" fragment ]`, or with `relative` the `relative-part` form.
fn is_after_scheme(s: &[u8], relative: bool) -> bool {
    // "#" occurs only as the fragment's delimiter, "?" before it only as the query's.
    let (rest, fragment) = split_first(s, b'#');
    let (hier, query) = split_first(rest, b'?');
    is_hier_part(hier, relative) && query.is_none_or(is_query_or_fragment) && fragment.is_none_or(is_query_or_fragment)
}

/// `hier-part` (or `relative-part`): "//" authority path-abempty, or a path not starting with "//".
fn is_hier_part(s: &[u8], relative: bool) -> bool {
    if let Some(rest) = s.strip_prefix(b"//") {
        let (authority, path) = rest.split_at(rest.iter().position(|&c| c == b'/').unwrap_or(rest.len()));
        return is_authority(authority) && is_path(path);
    }
    // path-absolute, path-rootless or path-empty; a relative reference's path-noscheme
    // must also keep ":" out of its first segment so it cannot be read as a scheme.
    is_path(s) && !(relative && s.iter().take_while(|&&c| c != b'/').any(|&c| c == b':'))
}

/// `authority = [ userinfo "@" ] host [ ":" port ]`.
fn is_authority(s: &[u8]) -> bool {
    // No part of the authority but the userinfo's end contains "@".
    let host_port = match s.iter().position(|&c| c == b'@') {
        Some(at) => {
            if !is_encoded(&s[..at], |c| is_unreserved(c) || is_sub_delim(c) || c == b':') {
                return false;
            }
            &s[at + 1..]
        }
        None => s,
    };
    let (host, port) = if host_port.first() == Some(&b'[') {
        let Some(close) = host_port.iter().position(|&c| c == b']') else {
            return false;
        };
        if !is_ip_literal(&host_port[1..close]) {
            return false;
        }
        host_port.split_at(close + 1)
    } else {
        // A reg-name holds no ":", and an IPv4address is also a reg-name, so one check covers both.
        let (host, port) = host_port.split_at(host_port.iter().position(|&c| c == b':').unwrap_or(host_port.len()));
        if !is_encoded(host, |c| is_unreserved(c) || is_sub_delim(c)) {
            return false;
        }
        (host, port)
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    port_ok && decodes_to_utf8(host)
}

/// The inside of `IP-literal = "[" ( IPv6address / IPv6addrz / IPvFuture ) "]"`.
fn is_ip_literal(s: &[u8]) -> bool {
    if let Some(future) = s.strip_prefix(b"v") {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let (version, rest) = split_first(future, b'.');
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && rest.is_some_and(|rest| {
                !rest.is_empty() && rest.iter().all(|&c| is_unreserved(c) || is_sub_delim(c) || c == b':')
            });
    }
    // IPv6addrz = IPv6address "%25" ZoneID, ZoneID = 1*( unreserved / pct-encoded )
    let (address, zone) = split_first(s, b'%');
    is_ipv6(address)
        && zone.is_none_or(|zone| {
            zone.strip_prefix(b"25").is_some_and(|id| !id.is_empty() && is_encoded(id, is_unreserved))
        })
}

/// `IPv6address` in hex pieces only: eight `h16`s joined by ":", or at most seven around one "::".
fn is_ipv6(s: &[u8]) -> bool {
    // The number of `h16`s in `s` if it is zero or more of them joined by single colons.
    fn pieces(s: &[u8]) -> Option<usize> {
        if s.is_empty() {
            return Some(0);
        }
        let mut count = 0;
        for piece in s.split(|&c| c == b':') {
            if piece.is_empty() || piece.len() > 4 || !piece.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            count += 1;
        }
        Some(count)
    }
    match s.windows(2).position(|w| w == b"::") {
        Some(at) => match (pieces(&s[..at]), pieces(&s[at + 2..])) {
            (Some(head), Some(tail)) => head + tail <= 7,
            _ => false,
        },
        None => pieces(s) == Some(8),
    }
}

/// `path-abempty`, `path-absolute`, `path-rootless` or `path-empty`: `*( pchar / "/" )`.
fn is_path(s: &[u8]) -> bool {
    is_encoded(s, |c| is_pchar(c) || c == b'/')
}

/// `query` and `fragment` share `*( pchar / "/" / "?" )`.
fn is_query_or_fragment(s: &[u8]) -> bool {
    is_encoded(s, |c| is_pchar(c) || c == b'/' || c == b'?')
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &[u8]) -> bool {
    match s {
        [first, rest @ ..] => {
            first.is_ascii_alphabetic()
                && rest.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        }
        [] => false,
    }
}

/// Whether `s` is made of `pct-encoded` triplets and bytes that satisfy `allowed`.
fn is_encoded(mut s: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    loop {
        s = match s {
            [] => return true,
            [b'%', high, low, rest @ ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => rest,
            [c, rest @ ..] if *c != b'%' && allowed(*c) => rest,
            _ => return false,
        };
    }
}

/// Whether `s`, already checked by [`is_encoded`], percent-decodes to valid UTF-8.
fn decodes_to_utf8(s: &[u8]) -> bool {
    if !s.contains(&b'%') {
        return true;
    }
    let mut decoded = Vec::with_capacity(s.len());
    let mut rest = s;
    loop {
        rest = match rest {
            [] => break,
            [b'%', high, low, tail @ ..] => {
                decoded.push((hex_value(*high) << 4) | hex_value(*low));
                tail
            }
            [c, tail @ ..] => {
                decoded.push(*c);
                tail
            }
        };
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// The value of the hex digit `c`.
fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// `pchar` without `pct-encoded`: unreserved / sub-delims / ":" / "@".
fn is_pchar(c: u8) -> bool {
    is_unreserved(c) || is_sub_delim(c) || c == b':' || c == b'@'
}

/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// `sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="`.
fn is_sub_delim(c: u8) -> bool {
    matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// Splits `s` at the first `sep`: the part before it, and the part after it if there is one.
fn split_first(s: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&c| c == sep) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_uri, is_uri_ref};

    /// Inputs and expected `isUri` results from protovalidate conformance v1.2.2
    /// (`library/is_uri` and the `string.uri` cases).
    const URI_CASES: &[(&str, bool)] = &[
        ("https://example.com", true),
        ("https://example.com/foo", true),
        ("https://example.com/foo/bar", true),
        ("https://example.com/foo/bar?baz=quux#frag", true),
        ("https://joe@example.com/foo", true),
        ("", false),
        (" ", false),
        (" https://example.com", false),
        ("https://example.com ", false),
        ("./", false),
        ("//example.com/foo", false),
        (
            "scheme0123456789azAZ+-.://userinfo0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~!$&'()*+,;=::@host!$&'()*+,;=._~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:0123456789/path0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%20!$&'()*+,;=:@%20//foo/?query0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?#fragment0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?/",
            true,
        ),
        ("ftp://example.com", true),
        ("foo0123456789azAZ+-.://example.com", true),
        ("1foo://example.com", false),
        ("-foo://example.com", false),
        (".foo://example.com", false),
        (":foo://example.com", false),
        ("foo%20bar://example.com", false),
        ("foo\x1Fbar://example.com", false),
        ("foo^bar://example.com", false),
        ("https://user@example.com", true),
        ("https://user:password@example.com", true),
        ("https://%61%20%23@example.com", true),
        ("https://%c3%963@example.com", true),
        ("https://%c3x%963@example.com", true),
        ("https://0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~@example.com", true),
        ("https://!$&'()*+,;=@example.com", true),
        ("https://:@example.com", true),
        ("https://:::@example.com", true),
        ("https:///@example.com", true),
        ("https://?@example.com", true),
        ("https://#@example.com", true),
        ("https://[@example.com", false),
        ("https://]@example.com", false),
        ("https://@@example.com", false),
        ("https://%@example.com", false),
        ("https://%2x@example.com", false),
        ("https://0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~!$&'()*+,;=::@example.com", true),
        ("https://\x1F@example.com", false),
        ("https://^@example.com", false),
        ("https://foo", true),
        ("https://!$&'()*+,;=._~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", true),
        ("https://:8080", true),
        ("https://foo%61%20%23", true),
        ("https://foo%c3%96", true),
        ("https://foo%c3x%96", false),
        ("https://foo%", false),
        ("https://foo%2x", false),
        ("https://127.0.0.1", true),
        ("https://256.0.0.1", true),
        ("https://[2001:0db8:85a3:0000:0000:8a2e:0370:7334]", true),
        ("https://2001:0db8:85a3:0000:0000:8a2e:0370:7334", false),
        ("https://[2001::0370::7334]", false),
        ("https://[v1.x]", true),
        ("https://[v1234AF.x]", true),
        ("https://[vF.-!$&'()*+,;=._~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ]", true),
        ("https://[v1x]", false),
        ("https://\x1F.com", false),
        ("https://^.com", false),
        ("https://foo@你好.com", false),
        ("https://[::1%25eth0]", true),
        ("https://[::1%25foo%61%20%23]", true),
        ("https://[::1%25foo%c3%96]", true),
        ("https://[::1%25foo%c3x%96]", false),
        ("https://[::1%25]", false),
        ("https://[::1%eth0]", false),
        ("https://[::1%25foo%]", false),
        ("https://[::1%25foo%2x]", false),
        ("https://example.com:8080", true),
        ("https://example.com:65535", true),
        ("https://example.com:65536", true),
        ("https://example.com:0", true),
        ("https://example.com:1", true),
        ("https://example.com:", true),
        ("https://:", true),
        ("https://example.com:8a", false),
        ("https://example.com:x", false),
        ("https://example.com: 1", false),
        ("https://example.com/foo/bar/", true),
        ("foo:/nz", true),
        ("foo:/nz/a", true),
        ("foo:/nz//segment//segment/", true),
        ("foo:/nz/", true),
        ("foo:/^", false),
        ("foo:/\x1F", false),
        ("foo:/%x", false),
        ("foo:/%61%20%23", true),
        ("foo:/%c3%96", true),
        ("foo:/%c3x%96", true),
        ("foo:/nz/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%20!$&'()*+,;=:@%20", true),
        ("foo:/nz/^", false),
        ("foo:/nz/\x1F", false),
        ("foo:/nz/%x", false),
        ("foo:/nz/%61%20%23", true),
        ("foo:/nz/%c3%96%c3", true),
        ("foo:/nz/%c3x%96", true),
        ("foo:/@%20!$&()*+,;=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~:", true),
        ("foo:/nz?q#f", true),
        ("foo:nz", true),
        ("foo:nz/a", true),
        ("foo:nz//segment//segment/", true),
        ("foo:nz/", true),
        ("foo:^", false),
        ("foo:\x1F", false),
        ("foo:%x", false),
        ("foo:%61%20%23", true),
        ("foo:%c3%96", true),
        ("foo:%c3x%96", true),
        ("foo:@%20!$&()*+,;=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~:", true),
        ("foo:nz/^", false),
        ("foo:nz/\x1F", false),
        ("foo:nz/%x", false),
        ("foo:nz/%61%20%23", true),
        ("foo:nz/%c3%96", true),
        ("foo:nz/%c3x%96", true),
        ("foo:nz/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%20!$&'()*+,;=:@%20", true),
        ("foo:nz?q#f", true),
        ("foo:", true),
        ("foo:?q#f", true),
        ("foo://example.com", true),
        ("foo://example.com/a", true),
        ("foo://example.com/segment//segment/", true),
        ("foo://example.com/", true),
        ("foo://example.com/^", false),
        ("foo://example.com/\x1F", false),
        ("foo://example.com/%x", false),
        ("foo://example.com/%61%20%23", true),
        ("foo://example.com/%c3%96", true),
        ("foo://example.com/%c3x%96", true),
        ("foo://example.com/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%20!$&'()*+,;=:@%20", true),
        ("https://example.com?baz=quux", true),
        ("https://example.com?%61%20%23", true),
        ("https://example.com?%c3%96%c3", true),
        ("https://example.com?%c3x%96", true),
        ("https://example.com?%2x", false),
        ("https://example.com?\x1F", false),
        ("https://example.com?^", false),
        ("https://example.com?!$&'()*+,=", true),
        ("https://example.com?;", true),
        ("https://example.com?:@", true),
        ("https://example.com?/?", true),
        ("https://example.com?a=b&c&&=1&==", true),
        (
            "https://example.com?0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?",
            true,
        ),
        ("https://example.com?#frag", true),
        ("https://example.com#%61%20%23", true),
        ("https://example.com#%c3%96", true),
        ("https://example.com#%c3x%96", true),
        ("https://example.com#%2x", false),
        ("https://example.com#%", false),
        ("https://example.com#!$&'()*+,;=", true),
        ("https://example.com#/?", true),
        ("https://example.com##", false),
        ("https://example.com#^", false),
        ("https://example.com#\x1F", false),
        (
            "https://example.com/#0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?/",
            true,
        ),
        ("A://", true),
        ("https://example.com/foo/bar?baz=quux", true),
        ("urn:isbn:0451450523", true),
        ("urn:isbn:0451450523?baz=%x", false),
        (":isbn:0451450523", false),
        ("!@#$%^&*", false),
        ("/foo/bar?baz=quux", false),
        ("https://example.com/foo/bar?baz=%x", false),
        ("/foo/bar?baz=%x", false),
    ];

    /// Inputs and expected `isUriRef` results from protovalidate conformance v1.2.2
    /// (`library/is_uri_ref` and the `string.uri_ref` cases).
    const URI_REF_CASES: &[(&str, bool)] = &[
        ("./foo", true),
        ("./foo/bar?baz=quux#frag", true),
        ("", true),
        (
            "//userinfo0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~!$&'()*+,;=::@host!$&'()*+,;=._~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:0123456789/path0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%20!$&'()*+,;=:@%20//foo/?query0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?#fragment0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?/",
            true,
        ),
        (" ", false),
        (" ./foo", false),
        ("./foo ", false),
        (":", false),
        ("1foo://example.com", false),
        ("//host", true),
        ("//host/foo?baz=quux#frag", true),
        ("//host/", true),
        ("//host/\x1F", false),
        ("//host/%x", false),
        ("//host/%61%20%23", true),
        ("//host/%c3%96", true),
        ("//host/%c3x%96", true),
        ("//host/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%20!$&()*+,;=:@", true),
        ("//host//", true),
        ("//host/a/b/c", true),
        ("//host/a/b/c/", true),
        ("//host?baz=quux", true),
        ("//host/foo/bar?baz=quux", true),
        ("//host#frag", true),
        ("//host/foo/bar#frag", true),
        ("//host#0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?/", true),
        ("//host##", false),
        ("//host#^", false),
        ("//host#\x1F", false),
        ("//host#%", false),
        ("//host?0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?", true),
        ("//host?^", false),
        ("//host?%", false),
        ("//host?\x1F", false),
        ("//0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~!$&'()*+,;=::@example.com", true),
        ("//host:8080", true),
        ("//127.0.0.1", true),
        ("//[::1]", true),
        ("/", true),
        ("/nz", true),
        ("/:", true),
        ("/^", false),
        ("/\x1F", false),
        ("/%x", false),
        ("/%61%20%23", true),
        ("/%c3%96", true),
        ("/%c3x%96", true),
        ("/@%20!$&()*+,;=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~:", true),
        ("/nz/", true),
        ("/nz/^", false),
        ("/nz/\x1F", false),
        ("/nz/%x", false),
        ("/nz/%61%20%23", true),
        ("/nz/%c3%96", true),
        ("/nz/%c3x%96", true),
        ("/nz/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%20!$&()*+,;=:@", true),
        ("/?baz=quux", true),
        ("/foo/bar?baz=quux", true),
        ("/#frag", true),
        ("/foo/bar#frag", true),
        ("/foo/\x1F", false),
        ("/#0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?/", true),
        ("/##", false),
        ("/#^", false),
        ("/#\x1F", false),
        ("/#%", false),
        ("/?0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?", true),
        ("/?^", false),
        ("/?%", false),
        ("/?\x1F", false),
        ("./foo/bar", true),
        ("*", true),
        ("^", false),
        ("\x1F", false),
        ("%x", false),
        ("%61%20%23", true),
        ("%c3%96", true),
        ("%c3x%96", true),
        ("@%20!$&()*+,;=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~", true),
        ("./", true),
        ("./^", false),
        ("./\x1F", false),
        ("./%x", false),
        ("./%61%20%23", true),
        ("./%c3%96", true),
        ("./%c3x%96", true),
        ("./0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%20!$&'()*+,;=:@%20", true),
        (".///", true),
        ("./a/b/c", true),
        ("./a/b/c/", true),
        (".?baz=quux", true),
        ("./foo/bar?baz=quux", true),
        (".#frag", true),
        ("./foo/bar#frag", true),
        ("./foo/\x1F", false),
        (".#0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?/", true),
        (".##", false),
        (".#^", false),
        (".#\x1F", false),
        (".#%", false),
        (".?0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?", true),
        (".?^", false),
        (".?%", false),
        (".?\x1F", false),
        ("#0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?/", true),
        ("##", false),
        ("#^", false),
        ("#\x1F", false),
        ("#%", false),
        ("?0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~%20!$&'()*+,=;:@?", true),
        ("?^", false),
        ("?%", false),
        ("?\x1F", false),
        ("https://example.com/foo/bar?baz=quux", true),
        ("!@#$%^&*", false),
    ];

    /// Further absolute-URI cases: IP literals, ports, percent-encoding, non-ASCII.
    const MORE_URI_CASES: &[(&str, bool)] = &[
        ("mailto:joe@example.com", true),
        ("urn:oasis:names:specification:docbook:dtd:xml:4.1.2", true),
        ("file:///etc/hosts", true),
        ("a:", true),
        ("foo://", true),
        ("HTTP://EXAMPLE.COM/", true),
        ("http://example.com:99999999999", true),
        ("http://user:pa%20ss@[::1]:443/p?q#f", true),
        ("http://[::]", true),
        ("http://[::ffff:7f00:1]", true),
        ("http://[1:2:3:4:5:6:7:8]", true),
        ("http://[1:2:3:4:5:6:7::]", true),
        ("http://[::1:2:3:4:5:6:7]", true),
        ("http://[0000:00:0:FFFF::abcd]", true),
        ("http://[fe80::1%25en0]:8080/x", true),
        ("http://[fe80::1%25%65n0]", true),
        ("http://[v7.fe80::a+en1]", true),
        ("http://[vAb.:]", true),
        ("http://%E4%BD%A0%E5%A5%BD.com", true),
        ("http://%41%42@h", true),
        ("http://u%FF@h", true),
        ("x:/%FF", true),
        ("x:?%FF#%FF", true),
        ("http://[::ffff:127.0.0.1]", false),
        ("http://[1:2:3:4:5:6:7:8:9]", false),
        ("http://[1:2:3:4:5:6:7]", false),
        ("http://[1:2:3:4:5:6:7:8::]", false),
        ("http://[1::2::3]", false),
        ("http://[:::1]", false),
        ("http://[1:::2]", false),
        ("http://[:1::2]", false),
        ("http://[1::2:]", false),
        ("http://[12345::]", false),
        ("http://[::g]", false),
        ("http://[]", false),
        ("http://[::1", false),
        ("http://::1]", false),
        ("http://[::1]x", false),
        ("http://[::1]:x", false),
        ("http://[::1]]", false),
        ("http://[[::1]]", false),
        ("http://[V1.x]", false),
        ("http://[v.x]", false),
        ("http://[v1.]", false),
        ("http://[vg.x]", false),
        ("http://[v1.%20]", false),
        ("http://[fe80::1%25]", false),
        ("http://[fe80::1%2]", false),
        ("http://[fe80::1%25en 0]", false),
        ("http://[fe80::1%25%FF]", false),
        ("http://[fe80::1%25%E4%BD]", false),
        ("http://%FF.com", false),
        ("http://a%E4%BD.com", false),
        ("http://ex ample.com", false),
        ("http://exämple.com", false),
        ("http://example.com/ä", false),
        ("http://example.com/?ä", false),
        ("http://example.com/#ä", false),
        ("é:x", false),
        ("ä", false),
        ("http://a@b@c", false),
        ("http://example.com:-1", false),
        ("http://a:1:2", false),
        ("http://example.com/%", false),
        ("http://example.com/%G0", false),
        ("http://example.com/%0", false),
        ("http://example.com/a b", false),
        ("http://example.com/a\"b", false),
        ("http://example.com/<>", false),
        ("http://example.com/{}", false),
        ("http://example.com/|", false),
        ("http://example.com/\\", false),
        ("http://example.com/`", false),
        ("http://example.com/\x7F", false),
        ("http://example.com/\0", false),
        ("http://example.com/\n", false),
        ("http:\\\\example.com", false),
        ("//example.com", false),
        ("a", false),
        ("+a:b", false),
    ];

    /// Further relative-reference cases.
    const MORE_URI_REF_CASES: &[(&str, bool)] = &[
        ("//", true),
        ("///", true),
        ("//@", true),
        ("//:", true),
        ("a/b:c", true),
        ("/a:b", true),
        ("../x", true),
        ("?", true),
        ("#", true),
        ("?q", true),
        ("#f", true),
        ("a?b:c#d:e", true),
        ("%E4%BD%A0", true),
        ("a%FF", true),
        ("//[::1]:80", true),
        ("//[fe80::1%25en0]/", true),
        ("a:b", true),
        ("1a:b", false),
        ("a:b c", false),
        ("./:", true),
        ("-:x", false),
        ("//%FF", false),
        ("//a@b@c", false),
        ("//[::ffff:1.2.3.4]", false),
        ("//h:p", false),
        ("ä", false),
        ("a b", false),
        ("[::1]", false),
        ("a[b", false),
        ("%", false),
        ("%4", false),
        ("a#b#c", false),
        // Accepted by protovalidate-go, which re-parses the malformed tail as a relative reference.
        ("http://##", false),
        ("foo:#x#y", false),
        ("foo:?//[::1]", false),
    ];

    #[test]
    fn conformance_is_uri() {
        for &(input, want) in URI_CASES {
            assert_eq!(is_uri(input), want, "is_uri({input:?})");
        }
    }

    #[test]
    fn conformance_is_uri_ref() {
        for &(input, want) in URI_REF_CASES {
            assert_eq!(is_uri_ref(input), want, "is_uri_ref({input:?})");
        }
    }

    #[test]
    fn more_is_uri() {
        for &(input, want) in MORE_URI_CASES {
            assert_eq!(is_uri(input), want, "is_uri({input:?})");
        }
    }

    #[test]
    fn more_is_uri_ref() {
        for &(input, want) in MORE_URI_REF_CASES {
            assert_eq!(is_uri_ref(input), want, "is_uri_ref({input:?})");
        }
    }

    #[test]
    fn every_uri_is_a_uri_ref() {
        let all = [URI_CASES, URI_REF_CASES, MORE_URI_CASES, MORE_URI_REF_CASES];
        for &(input, _) in all.into_iter().flatten() {
            if is_uri(input) {
                assert!(is_uri_ref(input), "is_uri_ref({input:?})");
            }
        }
    }
}
