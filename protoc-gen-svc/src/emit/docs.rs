//! Turns proto comments into rustdoc that never fails `cargo test` or
//! `cargo doc -D warnings`: code blocks become `text` blocks (proto comments
//! hold proto, shell or JSON snippets, never Rust doctests), stray brackets
//! are escaped so they are not read as intra-doc links, googleapis-style
//! cross references (`[Text][pkg.Type]`) become plain text, bare URLs are
//! wrapped in `<>`, `<words>` that are not HTML are escaped, and list
//! continuation lines are indented to their item's text (clippy's
//! `doc_lazy_continuation` and `doc_overindented_list_items`).

/// A line of output: Markdown text still to be escaped, or verbatim.
enum Line {
    Text(String),
    Verbatim(String),
}

/// Sanitizes one item's documentation (the joined `#[doc]` lines).
pub fn sanitize(lines: &[String]) -> Vec<String> {
    let min_indent = lines.iter().filter(|l| !l.trim().is_empty()).map(|l| indent(l)).min().unwrap_or(0);
    let mut out: Vec<Line> = Vec::with_capacity(lines.len() + 4);
    let mut fence: Option<String> = None;
    let mut in_indented = false;
    let mut prev_blank = true;
    // Relative indent of the text of the list item being continued.
    let mut list_indent: Option<usize> = None;
    for line in lines {
        let relative = indent(line).saturating_sub(min_indent);
        let trimmed = line.trim_start();
        if let Some(marker) = &fence {
            if trimmed.starts_with(marker.as_str()) && trimmed[marker.len()..].trim().is_empty() {
                fence = None;
            }
            out.push(Line::Verbatim(line.clone()));
            prev_blank = false;
            continue;
        }
        if in_indented {
            if line.trim().is_empty() || relative >= 4 {
                out.push(Line::Verbatim(dedent(line, min_indent + 4)));
                continue;
            }
            // The block ended: close it before trailing blank lines.
            let blanks = close_indented(&mut out);
            out.extend(std::iter::repeat_with(|| Line::Verbatim(String::new())).take(blanks));
            in_indented = false;
            prev_blank = blanks > 0;
        }
        if let Some(marker) = fence_marker(trimmed) {
            let info = trimmed[marker.len()..].trim();
            let lead = &line[..line.len() - trimmed.len()];
            let is_rust = info.is_empty() || info.split(',').any(|t| t.trim() == "rust");
            if is_rust {
                out.push(Line::Verbatim(format!("{lead}{marker}text")));
            } else {
                out.push(Line::Verbatim(line.clone()));
            }
            fence = Some(marker);
            prev_blank = false;
            continue;
        }
        if relative >= 4 && prev_blank && list_indent.is_none() {
            out.push(Line::Verbatim(" ```text".to_owned()));
            out.push(Line::Verbatim(dedent(line, min_indent + 4)));
            in_indented = true;
            continue;
        }
        if line.trim().is_empty() {
            prev_blank = true;
            out.push(Line::Verbatim(line.clone()));
            continue;
        }
        let pad = " ".repeat(min_indent);
        if let Some(width) = list_item_width(trimmed) {
            list_indent = Some(relative + width);
            out.push(Line::Text(line.clone()));
        } else if let Some(content) = list_indent.filter(|c| !prev_blank || relative >= *c) {
            out.push(Line::Text(format!("{pad}{}{trimmed}", " ".repeat(content))));
        } else {
            list_indent = None;
            out.push(Line::Text(line.clone()));
        }
        prev_blank = false;
    }
    if in_indented {
        close_indented(&mut out);
    }
    if let Some(marker) = fence {
        out.push(Line::Verbatim(format!(" {marker}")));
    }
    // Escape each paragraph (run of text lines) as a whole: links, code spans
    // and cross references may span lines.
    let mut result = Vec::with_capacity(out.len());
    let mut paragraph: Vec<String> = Vec::new();
    for line in out {
        match line {
            Line::Text(t) => paragraph.push(t),
            Line::Verbatim(v) => {
                result.extend(escape_paragraph(&std::mem::take(&mut paragraph)));
                result.push(v);
            }
        }
    }
    result.extend(escape_paragraph(&paragraph));
    result
}

/// Ends an indented code block turned fence, before its trailing blank
/// lines; returns how many blank lines it moved after the fence.
fn close_indented(out: &mut Vec<Line>) -> usize {
    let mut blanks = 0;
    while matches!(out.last(), Some(Line::Verbatim(l)) if l.trim().is_empty()) {
        out.pop();
        blanks += 1;
    }
    out.push(Line::Verbatim(" ```".to_owned()));
    blanks
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

fn dedent(line: &str, n: usize) -> String {
    let strip = indent(line).min(n);
    format!(" {}", &line[strip..])
}

fn fence_marker(trimmed: &str) -> Option<String> {
    for ch in ['`', '~'] {
        let count = trimmed.chars().take_while(|c| *c == ch).count();
        if count >= 3 {
            return Some(std::iter::repeat_n(ch, count).collect());
        }
    }
    None
}

/// Width of a list marker with its space (`- `, `1. `, `12) `), if `line`
/// starts a list item.
fn list_item_width(line: &str) -> Option<usize> {
    let marker = if line.starts_with(['-', '*', '+']) {
        1
    } else {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 9 || !line[digits..].starts_with(['.', ')']) {
            return None;
        }
        digits + 1
    };
    // The item's text starts after one to four spaces.
    let spaces = line[marker..].chars().take_while(|c| *c == ' ').count();
    (1..=4).contains(&spaces).then_some(marker + spaces)
}

/// Undoes prost-build's own comment rewriting (it wraps anything that starts
/// with `http(s)://` up to a space or `)` in `<>`, commas and quotes
/// included, and escapes brackets), so that every comment, whether it came
/// through prost-build or straight from the descriptor, is rewritten once,
/// here.
fn undo_prost(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("<http") {
        let candidate = &rest[at + 1..];
        let scheme_ok = candidate.starts_with("http://") || candidate.starts_with("https://");
        let end = candidate.find(|c: char| c.is_whitespace() || c == ')').unwrap_or(candidate.len());
        if scheme_ok && end > 0 && candidate[..end].ends_with('>') {
            out.push_str(&rest[..at]);
            out.push_str(&candidate[..end - 1]);
            rest = &candidate[end..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out.replace("\\[", "[").replace("\\]", "]")
}

/// What to do with a bracket.
#[derive(Clone, Copy, PartialEq)]
enum Bracket {
    /// Part of a Markdown link: keep.
    Keep,
    /// Part of a googleapis cross reference `[Text][pkg.Type]`: drop, so
    /// the text stays and the proto name (not a Rust path) goes.
    Drop,
}

/// Classifies the brackets that form links or cross references; brackets
/// not listed are escaped.
fn classify_brackets(chars: &[char]) -> std::collections::HashMap<usize, Bracket> {
    let mut marks = std::collections::HashMap::new();
    let mut open: Vec<usize> = Vec::new();
    let mut in_code = false;
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '`' => in_code = !in_code,
            '[' if !in_code => open.push(i),
            ']' if !in_code => {
                let Some(start) = open.pop() else { continue };
                match chars.get(i + 1) {
                    Some('(') | Some(':') => {
                        marks.insert(start, Bracket::Keep);
                        marks.insert(i, Bracket::Keep);
                    }
                    Some('[') => {
                        let close = chars[i + 2..].iter().position(|&x| x == ']').map(|p| p + i + 2);
                        if let Some(close) = close {
                            let reference: String = chars[i + 2..close].iter().collect();
                            let proto_name = !reference.is_empty()
                                && reference.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
                            let kind = if proto_name { Bracket::Drop } else { Bracket::Keep };
                            for at in [start, i] {
                                marks.insert(at, kind);
                            }
                            if kind == Bracket::Drop {
                                for at in i + 1..=close {
                                    marks.insert(at, Bracket::Drop);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    marks
}

/// Escapes one paragraph: brackets that are not links, bare URLs, and
/// `<words>` that are not HTML tags; inline code is left alone.
fn escape_paragraph(lines: &[String]) -> Vec<String> {
    if lines.is_empty() {
        return Vec::new();
    }
    let text = lines.iter().map(|l| undo_prost(l)).collect::<Vec<_>>().join("\n");
    let chars: Vec<char> = text.chars().collect();
    let marks = classify_brackets(&chars);
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_code = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            in_code = !in_code;
            out.push(c);
            i += 1;
            continue;
        }
        if in_code {
            out.push(c);
            i += 1;
            continue;
        }
        match marks.get(&i) {
            Some(Bracket::Drop) => {
                i += 1;
                continue;
            }
            Some(Bracket::Keep) => {
                out.push(c);
                i += 1;
                continue;
            }
            None if c == '[' || c == ']' => {
                out.push('\\');
                out.push(c);
                i += 1;
                continue;
            }
            None => {}
        }
        let rest: String = chars[i..].iter().take(8).collect();
        // A URL is left alone only as an autolink `<...>` or a link target `](...)`.
        let is_target = out.ends_with('<') || out.ends_with("](");
        if (rest.starts_with("http://") || rest.starts_with("https://")) && !is_target {
            let end = chars[i..]
                .iter()
                .position(|c| c.is_whitespace() || matches!(c, ')' | '>' | '"' | '\'' | '`' | '[' | ']'))
                .map_or(chars.len(), |p| p + i);
            let mut url: String = chars[i..end].iter().collect();
            let mut tail = String::new();
            while url.ends_with(['.', ',', ';', ':']) {
                tail.insert(0, url.pop().unwrap_or_default());
            }
            out.push('<');
            out.push_str(&url);
            out.push('>');
            out.push_str(&tail);
            i = end;
            continue;
        }
        let tag_like = |n: Option<&char>| n.is_some_and(|n| n.is_ascii_alphabetic());
        let html = tag_like(chars.get(i + 1)) || (chars.get(i + 1) == Some(&'/') && tag_like(chars.get(i + 2)));
        if c == '<' && html && !rest.starts_with("<http") {
            out.push_str("\\<");
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out.split('\n').map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    fn run(text: &[&str]) -> Vec<String> {
        sanitize(&text.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn fenced_rust_and_bare_fences_become_text() {
        assert_eq!(
            run(&[" Example:", " ```", " let x = 1;", " ```"]),
            vec![" Example:", " ```text", " let x = 1;", " ```"]
        );
        assert_eq!(run(&[" ```rust", " fn f() {}", " ```"])[0], " ```text");
        assert_eq!(run(&[" ```json", " {}", " ```"])[0], " ```json");
    }

    #[test]
    fn indented_blocks_are_fenced() {
        let out = run(&[" Call it like:", "", "     grpcurl -d '{}' host:443 svc/Method", "", " Done."]);
        assert_eq!(
            out,
            vec![" Call it like:", "", " ```text", " grpcurl -d '{}' host:443 svc/Method", " ```", "", " Done."]
        );
        let out = run(&[" Ends with code:", "", "     a = 1"]);
        assert_eq!(out.last().unwrap(), " ```");
    }

    #[test]
    fn list_continuations_are_not_code() {
        let out = run(&[" - item", "", "     continued"]);
        assert!(!out.iter().any(|l| l.contains("```")), "{out:?}");
    }

    #[test]
    fn list_continuations_align_with_the_item_text() {
        let out = run(&[" 1. first item", "     overindented", " lazy", "", " After the list."]);
        assert_eq!(out, vec![" 1. first item", "    overindented", "    lazy", "", " After the list."]);
        let out = run(&[" * a", "   b", " * c"]);
        assert_eq!(out, vec![" * a", "   b", " * c"]);
        let out = run(&[" *  wide marker", "     continued"]);
        assert_eq!(out, vec![" *  wide marker", "    continued"]);
    }

    #[test]
    fn prost_rewriting_is_undone_first() {
        // What prost-build makes of `["https://a.b/", "https://c.d/"].`
        let out = run(&[" \\[\"<https://a.b/\",> \"<https://c.d/\"\\].>"]);
        assert_eq!(out, vec![" \\[\"<https://a.b/>\", \"<https://c.d/>\"\\]."]);
        let out = run(&[" see <https://x.y/z>."]);
        assert_eq!(out, vec![" see <https://x.y/z>."]);
    }

    #[test]
    fn links_and_references_across_lines() {
        let out = run(&[" See [RFC", " 791](https://datatracker.ietf.org/doc/html/rfc791)."]);
        assert_eq!(out, vec![" See [RFC", " 791](https://datatracker.ietf.org/doc/html/rfc791)."]);
        let out = run(&[
            " see [TimeInterval][google.monitoring.v3.TimeInterval] and [`Distribution`][google.api.Distribution].",
        ]);
        assert_eq!(out, vec![" see TimeInterval and `Distribution`."]);
    }

    #[test]
    fn pseudo_html_is_escaped() {
        let out = run(&[" For example \"user:<owner email>\" or <b>bold</b> or <https://x.y>."]);
        assert_eq!(out, vec![" For example \"user:\\<owner email>\" or \\<b>bold\\</b> or <https://x.y>."]);
    }

    #[test]
    fn code_spans_continue_over_lines() {
        let out = run(&[" see `https://a.b/c", " [x]` and https://d.e"]);
        assert_eq!(out, vec![" see `https://a.b/c", " [x]` and <https://d.e>"]);
    }

    #[test]
    fn brackets_and_urls() {
        assert_eq!(run(&[" see [RFC 3339] and [docs](https://x.y)"])[0], " see \\[RFC 3339\\] and [docs](https://x.y)");
        assert_eq!(run(&[" vectors (https://e.org/Q)."])[0], " vectors (<https://e.org/Q>).");
        assert_eq!(run(&[" at https://example.com/a."])[0], " at <https://example.com/a>.");
        assert_eq!(run(&[" `[not a link]` stays"])[0], " `[not a link]` stays");
        assert_eq!(run(&[" a[0] or ]"])[0], " a\\[0\\] or \\]");
    }

    #[test]
    fn unterminated_fence_is_closed() {
        let out = run(&[" ```", " x"]);
        assert_eq!(out.last().unwrap().trim(), "```");
    }
}
