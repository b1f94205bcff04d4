//! Generation parameters: one set of names shared by `--svc_opt`, buf `opt:`,
//! `generate --opt` and the build-script builder.

use crate::error::{Diagnostic, Result};

/// Which artefacts to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// Rust code (the default).
    #[default]
    Rust,
    /// Kubernetes manifests.
    K8s,
    /// Dockerfiles.
    Docker,
    /// OpenAPI 3.1 documents of the HTTP bindings.
    Openapi,
    /// Everything.
    All,
}

impl Target {
    /// The parameter value, as in `target=k8s`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Rust => "rust",
            Target::K8s => "k8s",
            Target::Docker => "docker",
            Target::Openapi => "openapi",
            Target::All => "all",
        }
    }
}

/// Every parameter of the generator, with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `target=`.
    pub target: Target,
    /// `messages=`: emit prost message types.
    pub messages: bool,
    /// `server=`: emit server traits and glue.
    pub server: bool,
    /// `client=`: emit clients.
    pub client: bool,
    /// `validate=`: emit request validation.
    pub validate: bool,
    /// `runtime_crate=`: path under which generated code finds the runtime.
    pub runtime_crate: String,
    /// `extern_path=.pkg=::path` (repeatable).
    pub extern_paths: Vec<(String, String)>,
    /// `type_attribute=PATH=ATTR` (repeatable).
    pub type_attributes: Vec<(String, String)>,
    /// `field_attribute=PATH=ATTR` (repeatable).
    pub field_attributes: Vec<(String, String)>,
    /// `bytes=PATH` (repeatable): `bytes::Bytes` for these bytes fields.
    pub bytes: Vec<String>,
    /// `btree_map=PATH` (repeatable): `BTreeMap` for these map fields.
    pub btree_map: Vec<String>,
    /// `include_file=`: name of the module-tree file; empty disables it.
    pub include_file: String,
    /// `templates=DIR`: manifest template overrides.
    pub templates: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: Target::Rust,
            messages: true,
            server: true,
            client: true,
            validate: true,
            runtime_crate: "::svc_runtime".to_owned(),
            extern_paths: Vec::new(),
            type_attributes: Vec::new(),
            field_attributes: Vec::new(),
            bytes: Vec::new(),
            btree_map: Vec::new(),
            include_file: "mod.rs".to_owned(),
            templates: None,
        }
    }
}

/// Names accepted by [`Options::set`], for error messages and `--help`.
pub const PARAMETER_NAMES: &[&str] = &[
    "target",
    "messages",
    "server",
    "client",
    "validate",
    "runtime_crate",
    "extern_path",
    "type_attribute",
    "field_attribute",
    "bytes",
    "btree_map",
    "include_file",
    "templates",
];

impl Options {
    /// Parses a protoc parameter string: `k=v` pairs separated by commas.
    /// A comma or backslash inside a value is written `\,` or `\\`
    /// (attribute values such as `#[derive(A\, B)]` need it).
    pub fn parse(parameter: &str) -> Result<Options> {
        let mut options = Options::default();
        options.apply(parameter)?;
        Ok(options)
    }

    /// Applies a parameter string (same syntax as [`Options::parse`]) on top
    /// of the current values; repeatable parameters accumulate.
    pub fn apply(&mut self, parameter: &str) -> Result<()> {
        for item in split_escaped(parameter) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v),
                None => (item, ""),
            };
            self.set(key, value)?;
        }
        Ok(())
    }

    /// Sets one parameter by name, as written in `--svc_opt`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let element = format!("parameter {key}");
        match key {
            "target" => {
                self.target = match value {
                    "rust" => Target::Rust,
                    "k8s" => Target::K8s,
                    "docker" => Target::Docker,
                    "openapi" => Target::Openapi,
                    "all" => Target::All,
                    other => {
                        return Err(Diagnostic::new(
                            element,
                            format!("unknown target {other:?}"),
                            "use one of target=rust, target=k8s, target=docker, target=openapi, target=all",
                        )
                        .into());
                    }
                }
            }
            "messages" => self.messages = parse_bool(key, value)?,
            "server" => self.server = parse_bool(key, value)?,
            "client" => self.client = parse_bool(key, value)?,
            "validate" => self.validate = parse_bool(key, value)?,
            "runtime_crate" => {
                let path = value.trim();
                if syn::parse_str::<syn::Path>(path).is_err() {
                    return Err(Diagnostic::new(
                        element,
                        format!("{path:?} is not a Rust path"),
                        "give the path of the runtime crate, e.g. runtime_crate=::svc_runtime or runtime_crate=crate::rt",
                    )
                    .into());
                }
                self.runtime_crate = path.to_owned();
            }
            "extern_path" => self.extern_paths.push(pair(key, value, ".my.pkg=::my_crate::pkg")?),
            "type_attribute" => self.type_attributes.push(pair(key, value, ".my.pkg.Msg=#[derive(Eq)]")?),
            "field_attribute" => self.field_attributes.push(pair(key, value, ".my.pkg.Msg.field=#[serde(skip)]")?),
            "bytes" => self.bytes.push(non_empty(key, value, "bytes=.my.pkg.Msg.data (or bytes=. for all)")?),
            "btree_map" => {
                self.btree_map.push(non_empty(key, value, "btree_map=.my.pkg.Msg.map (or btree_map=. for all)")?)
            }
            "include_file" => {
                if value.contains('/') || value.contains('\\') {
                    return Err(Diagnostic::new(
                        element,
                        format!("{value:?} contains a directory"),
                        "give a plain file name such as include_file=mod.rs, or include_file= to disable it",
                    )
                    .into());
                }
                self.include_file = value.to_owned();
            }
            "templates" => self.templates = Some(non_empty(key, value, "templates=path/to/dir")?),
            other => {
                return Err(Diagnostic::new(
                    format!("parameter {other}"),
                    "unknown parameter",
                    format!("known parameters are {}", PARAMETER_NAMES.join(", ")),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Whether Rust code is emitted.
    pub fn emits_rust(&self) -> bool {
        matches!(self.target, Target::Rust | Target::All)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "" | "true" => Ok(true),
        "false" => Ok(false),
        other => Err(Diagnostic::new(
            format!("parameter {key}"),
            format!("{other:?} is not a boolean"),
            format!("write {key}=true or {key}=false"),
        )
        .into()),
    }
}

fn non_empty(key: &str, value: &str, example: &str) -> Result<String> {
    if value.trim().is_empty() {
        return Err(
            Diagnostic::new(format!("parameter {key}"), "needs a value", format!("write e.g. {example}")).into()
        );
    }
    Ok(value.trim().to_owned())
}

fn pair(key: &str, value: &str, example: &str) -> Result<(String, String)> {
    match value.split_once('=') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => Ok((a.trim().to_owned(), b.trim().to_owned())),
        _ => Err(Diagnostic::new(
            format!("parameter {key}"),
            format!("{value:?} is not of the form PROTO_PATH=VALUE"),
            format!("write e.g. {key}={example}"),
        )
        .into()),
    }
}

/// Splits on unescaped commas and resolves `\,` and `\\`.
fn split_escaped(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '\\')) => current.push(next),
                Some(next) => {
                    current.push('\\');
                    current.push(next);
                }
                None => current.push('\\'),
            },
            ',' => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    items.push(current);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = Options::parse("").unwrap();
        assert_eq!(o, Options::default());
        assert!(o.emits_rust());
    }

    #[test]
    fn parses_all_kinds() {
        let o = Options::parse(
            "target=all,messages=false,server=false,client,validate=false,runtime_crate=crate::rt,\
             extern_path=.a.b=::ab,type_attribute=.a.M=#[derive(Eq\\, Hash)],bytes=.,btree_map=.a,include_file=lib.rs",
        )
        .unwrap();
        assert_eq!(o.target, Target::All);
        assert!(!o.messages && !o.server && o.client && !o.validate);
        assert_eq!(o.runtime_crate, "crate::rt");
        assert_eq!(o.extern_paths, vec![(".a.b".into(), "::ab".into())]);
        assert_eq!(o.type_attributes, vec![(".a.M".into(), "#[derive(Eq, Hash)]".into())]);
        assert_eq!(o.bytes, vec![".".to_string()]);
        assert_eq!(o.include_file, "lib.rs");
    }

    #[test]
    fn unknown_parameter_is_named() {
        let e = Options::parse("target=rust,colour=blue").unwrap_err().to_string();
        assert!(e.contains("parameter colour: unknown parameter"), "{e}");
        assert!(e.contains("known parameters are target"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        for (input, needle) in [
            ("target=go", "unknown target"),
            ("messages=yes", "not a boolean"),
            ("extern_path=.a", "PROTO_PATH=VALUE"),
            ("runtime_crate=not a path", "not a Rust path"),
            ("include_file=a/b.rs", "contains a directory"),
            ("bytes=", "needs a value"),
        ] {
            let e = Options::parse(input).unwrap_err().to_string();
            assert!(e.contains(needle), "{input}: {e}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(split_escaped(r"a\,b,c\\,d"), vec!["a,b", r"c\", "d"]);
        assert_eq!(split_escaped(r"x\y"), vec![r"x\y"]);
    }
}
