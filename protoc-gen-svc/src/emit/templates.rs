//! The manifest templates and the two ways of rendering them.
//!
//! Built-in templates (the top-level `templates/`) are compiled in with
//! askama, each against one typed context struct. `templates=DIR` replaces
//! any of them at generation time: a file in DIR named like a built-in
//! template is rendered with minijinja against the same context, serialized.
//! Built-in templates use only the syntax both engines share (`{{ x.y }}`,
//! `{% if %}`, `{% for %}`, `-` whitespace control, no filters), so a copy
//! of a built-in template renders byte for byte the same through either
//! engine (tested), and is the natural starting point for an override.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Diagnostic, Error, Result};

/// A context struct bound to its built-in template.
pub trait Manifest: askama::Template + serde::Serialize {
    /// The template's name: its file name under `templates/k8s` or
    /// `templates/docker`, and the name an override must have in DIR.
    const NAME: &'static str;
}

/// Every built-in template: (name, source). An override directory may only
/// hold these names.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("deployment.yaml", include_str!("../../templates/k8s/deployment.yaml")),
    ("service.yaml", include_str!("../../templates/k8s/service.yaml")),
    ("hpa.yaml", include_str!("../../templates/k8s/hpa.yaml")),
    ("pdb.yaml", include_str!("../../templates/k8s/pdb.yaml")),
    ("serviceaccount.yaml", include_str!("../../templates/k8s/serviceaccount.yaml")),
    ("configmap.yaml", include_str!("../../templates/k8s/configmap.yaml")),
    ("networkpolicy.yaml", include_str!("../../templates/k8s/networkpolicy.yaml")),
    ("servicemonitor.yaml", include_str!("../../templates/k8s/servicemonitor.yaml")),
    ("kustomization.yaml", include_str!("../../templates/k8s/kustomization.yaml")),
    ("Dockerfile", include_str!("../../templates/docker/Dockerfile")),
    ("dockerignore", include_str!("../../templates/docker/dockerignore")),
];

/// Template overrides read from `templates=DIR`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Directory they came from, for messages.
    dir: String,
    /// Template name → source.
    sources: BTreeMap<String, String>,
}

impl Overrides {
    /// No overrides: every template is built in.
    pub fn none() -> Overrides {
        Overrides::default()
    }

    /// Reads every file in `dir`. Each must be named like a built-in
    /// template; anything else is an error, so a misspelt override is not
    /// silently ignored.
    pub fn load(dir: &str) -> Result<Overrides> {
        let element = "parameter templates";
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Diagnostic::new(
                element,
                format!("cannot read directory {dir:?}: {e}"),
                "give a directory holding template overrides, e.g. templates=deploy/templates",
            )
        })?;
        let mut sources = BTreeMap::new();
        let mut errors = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Diagnostic::new(element, format!("cannot list {dir:?}: {e}"), ""))?;
            let path = entry.path();
            if path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if !BUILT_IN.iter().any(|(n, _)| *n == name) {
                let known: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
                errors.push(Diagnostic::new(
                    element,
                    format!("{} is not the name of a template", path.display()),
                    format!("name overrides after the template they replace: {}", known.join(", ")),
                ));
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    sources.insert(name, text);
                }
                Err(e) => errors.push(Diagnostic::new(
                    element,
                    format!("cannot read {}: {e}", path.display()),
                    "make the file readable UTF-8 text",
                )),
            }
        }
        if !errors.is_empty() {
            return Err(Error { diagnostics: errors });
        }
        Ok(Overrides { dir: dir.to_owned(), sources })
    }

    /// Overrides from in-memory sources (tests, embedding tools).
    pub fn from_sources(dir: &str, sources: impl IntoIterator<Item = (String, String)>) -> Overrides {
        Overrides { dir: dir.to_owned(), sources: sources.into_iter().collect() }
    }

    /// Renders `context` with its override when there is one, else with
    /// the built-in template. Both engines drop the template's final
    /// newline; the output always ends with exactly one.
    pub fn render<T: Manifest>(&self, context: &T) -> Result<String> {
        let mut text = match self.sources.get(T::NAME) {
            None => context.render().map_err(|e| {
                Error::one(Diagnostic::new(
                    format!("template {}", T::NAME),
                    format!("failed to render: {e}"),
                    "please report this with the .proto file",
                ))
            }),
            Some(source) => render_override(&self.dir, T::NAME, source, context),
        }?;
        text.truncate(text.trim_end_matches('\n').len());
        text.push('\n');
        Ok(text)
    }
}

fn render_override<T: serde::Serialize>(dir: &str, name: &str, source: &str, context: &T) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let path = Path::new(dir).join(name);
    let problem = |e: minijinja::Error| -> Error {
        let mut text = e.to_string();
        if let Some(detail) = e.detail() {
            text = format!("{text}: {detail}");
        }
        let mut d = Diagnostic::new(
            format!("template {name}"),
            text,
            format!("fix the override; the built-in {name} shows every field its context has"),
        )
        .in_file(path.display().to_string());
        d.line = e.line().map(|l| l as u32);
        Error::one(d)
    };
    let template = env.template_from_named_str(name, source).map_err(problem)?;
    template.render(minijinja::value::Serde(context)).map_err(problem)
}
