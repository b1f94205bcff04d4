//! Turns proto comments into rustdoc that never fails `cargo test` or
//! `cargo doc -D warnings`: code blocks become `text` blocks (proto comments
//! hold proto, shell or JSON snippets, never Rust doctests), stray brackets
//! are escaped so they are not read as intra-doc links, and bare URLs are
//! wrapped in `<>`.

/// Sanitizes one item's documentation (the joined `#[doc]` lines).
pub fn sanitize(lines: &[String]) -> Vec<String> {
    let min_indent = lines.iter().filter(|l| !l.trim().is_empty()).map(|l| indent(l)).min().unwrap_or(0);
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 4);
    let mut fence: Option<String> = None;
    let mut in_indented = false;
    let mut last_text_line = String::new();
    let mut prev_blank = true;
    for line in lines {
        let relative = indent(line).saturating_sub(min_indent);
        let trimmed = line.trim_start();
        if let Some(marker) = &fence {
            if trimmed.starts_with(marker.as_str()) && trimmed[marker.len()..].trim().is_empty() {
                fence = None;
            }
            out.push(line.clone());
            prev_blank = false;
            continue;
        }
        if in_indented {
            if line.trim().is_empty() || relative >= 4 {
                out.push(dedent(line, min_indent + 4));
                continue;
            }
            // The block ended: close it before trailing blank lines.
            let mut blanks = 0;
            while out.last().is_some_and(|l| l.trim().is_empty()) {
                out.pop();
                blanks += 1;
            }
            out.push(" ```".to_owned());
            out.extend(std::iter::repeat_n(String::new(), blanks));
            in_indented = false;
            prev_blank = blanks > 0;
        }
        if let Some(marker) = fence_marker(trimmed) {
            let info = trimmed[marker.len()..].trim();
            let lead = &line[..line.len() - trimmed.len()];
            let is_rust = info.is_empty() || info.split(',').any(|t| t.trim() == "rust");
            if is_rust {
                out.push(format!("{lead}{marker}text"));
            } else {
                out.push(line.clone());
            }
            fence = Some(marker);
            prev_blank = false;
            continue;
        }
        if relative >= 4 && prev_blank && !is_list_item(&last_text_line) {
            out.push(" ```text".to_owned());
            out.push(dedent(line, min_indent + 4));
            in_indented = true;
            continue;
        }
        if line.trim().is_empty() {
            prev_blank = true;
            out.push(line.clone());
            continue;
        }
        prev_blank = false;
        last_text_line = line.trim().to_owned();
        out.push(escape_text(line));
    }
    if in_indented {
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        out.push(" ```".to_owned());
    }
    if let Some(marker) = fence {
        out.push(format!(" {marker}"));
    }
    out
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

fn is_list_item(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("- ")
        || l.starts_with("* ")
        || l.starts_with("+ ")
        || l.split_once(". ").is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Escapes brackets that are not Markdown links and wraps bare URLs,
/// leaving inline code spans alone.
fn escape_text(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut in_code = false;
    let chars: Vec<char> = line.chars().collect();
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
        if c == '[' {
            if let Some(close) = chars[i + 1..].iter().position(|&x| x == ']').map(|p| p + i + 1) {
                let next = chars.get(close + 1);
                if matches!(next, Some('(') | Some('[') | Some(':')) {
                    out.extend(&chars[i..=close]);
                    i = close + 1;
                    continue;
                }
                out.push_str("\\[");
                out.extend(&chars[i + 1..close]);
                out.push_str("\\]");
                i = close + 1;
                continue;
            }
            out.push_str("\\[");
            i += 1;
            continue;
        }
        if c == ']' {
            out.push_str("\\]");
            i += 1;
            continue;
        }
        let rest: String = chars[i..].iter().take(8).collect();
        if (rest.starts_with("http://") || rest.starts_with("https://"))
            && !matches!(out.chars().last(), Some('<') | Some('(') | Some('"'))
        {
            let end = chars[i..]
                .iter()
                .position(|c| c.is_whitespace() || matches!(c, ')' | '>' | '"'))
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
        out.push(c);
        i += 1;
    }
    out
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
    fn brackets_and_urls() {
        assert_eq!(run(&[" see [RFC 3339] and [docs](https://x.y)"])[0], " see \\[RFC 3339\\] and [docs](https://x.y)");
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
