//! Identifier casing and keyword escaping, matching the names prost-build
//! gives to generated items so emitters can refer to them.

use heck::{ToSnakeCase, ToUpperCamelCase};

/// Rust keywords (strict, reserved and edition-specific) that prost-build
/// writes as raw identifiers (`r#type`).
const RAW_KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "else", "enum", "false", "fn", "for", "if", "impl", "in", "let", "loop",
    "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct", "trait", "true", "type", "unsafe",
    "use", "where", "while", "dyn", "abstract", "become", "box", "do", "final", "macro", "override", "priv", "typeof",
    "unsized", "virtual", "yield", "async", "await", "try", "gen",
];

/// Names that cannot be raw identifiers; prost-build appends `_`.
const SUFFIX_KEYWORDS: &[&str] = &["_", "self", "super", "crate", "Self", "extern"];

/// The name a service's files and Kubernetes objects go under: its simple
/// name in kebab case (`ShopAdmin` → `shop-admin`).
pub fn kebab_name(service_name: &str) -> String {
    to_snake(service_name).trim_start_matches("r#").trim_end_matches('_').replace('_', "-")
}

/// snake_case module or field name, escaped like prost-build does.
pub fn to_snake(s: &str) -> String {
    escape(s.to_snake_case())
}

/// UpperCamelCase type name, escaped like prost-build does.
pub fn to_upper_camel(s: &str) -> String {
    escape(s.to_upper_camel_case())
}

fn escape(ident: String) -> String {
    if ident.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{ident}")
    } else if SUFFIX_KEYWORDS.contains(&ident.as_str()) {
        format!("{ident}_")
    } else if RAW_KEYWORDS.contains(&ident.as_str()) {
        format!("r#{ident}")
    } else {
        ident
    }
}

/// tonic-build's module naming for `<name>_server` / `<name>_client`: an
/// underscore before every uppercase letter but the first, then lowercase.
pub fn tonic_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Name of the `<service>_svc` module that holds a service's spec and
/// server entry point.
pub fn svc_module(service_name: &str) -> String {
    format!("{}_svc", service_name.to_snake_case())
}

/// The Rust path, relative to its package module, of a type with
/// fully-qualified proto name `full_name` in package `package`.
pub fn type_path(package: &str, full_name: &str) -> String {
    let local = if package.is_empty() { full_name } else { full_name.strip_prefix(package).unwrap_or(full_name) };
    let parts: Vec<&str> = local.trim_start_matches('.').split('.').collect();
    let (last, parents) = parts.split_last().unwrap_or((&"", &[]));
    let mut path: Vec<String> = parents.iter().map(|p| to_snake(p)).collect();
    path.push(to_upper_camel(last));
    path.join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_raw_keyword_is_escaped() {
        for kw in RAW_KEYWORDS {
            assert_eq!(to_snake(kw), format!("r#{kw}"), "{kw}");
            let ident = to_snake(kw);
            assert!(syn::parse_str::<syn::Ident>(&ident).is_ok(), "{ident} parses");
        }
    }

    #[test]
    fn every_suffix_keyword_gets_an_underscore() {
        for kw in SUFFIX_KEYWORDS.iter().filter(|k| **k != "_") {
            let ident =
                if kw.chars().next().is_some_and(char::is_uppercase) { to_upper_camel(kw) } else { to_snake(kw) };
            assert_eq!(ident, format!("{kw}_"), "{kw}");
            assert!(syn::parse_str::<syn::Ident>(&ident).is_ok(), "{ident} parses");
        }
    }

    #[test]
    fn casing() {
        assert_eq!(to_snake("GetItem"), "get_item");
        assert_eq!(to_upper_camel("HELLO_world"), "HelloWorld");
        assert_eq!(to_upper_camel("self"), "Self_");
        assert_eq!(type_path("shop.v1", "shop.v1.ShopError"), "ShopError");
        assert_eq!(type_path("shop.v1", "shop.v1.Outer.Inner.Kind"), "outer::inner::Kind");
        assert_eq!(type_path("", "Top"), "Top");
        assert_eq!(type_path("a", "a.Type.Self"), "r#type::Self_");
        assert_eq!(tonic_snake("HTTPService"), "h_t_t_p_service");
        assert_eq!(tonic_snake("Greeter"), "greeter");
    }
}
