//! Errors reported to users: each names the file, the element, what is wrong
//! and how to fix it.

use std::fmt;

/// One problem found in the input, with its location when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Proto file name as imported (e.g. `shop/v1/shop.proto`), if known.
    pub file: Option<String>,
    /// 1-based line and column, if the descriptor carries source info.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
    /// The element concerned, e.g. `rpc shop.v1.Shop.GetItem` or `parameter target`.
    pub element: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl Diagnostic {
    /// A diagnostic that is not tied to a file (parameters, request framing).
    pub fn new(element: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Diagnostic {
            file: None,
            line: None,
            column: None,
            element: element.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// Attaches a file name.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line, self.column) {
            (Some(file), Some(line), Some(col)) => write!(f, "{file}:{line}:{col}: ")?,
            (Some(file), Some(line), None) => write!(f, "{file}:{line}: ")?,
            (Some(file), None, _) => write!(f, "{file}: ")?,
            _ => {}
        }
        write!(f, "{}: {}", self.element, self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (fix: {})", self.hint)?;
        }
        Ok(())
    }
}

/// Everything that can stop generation. Carries every problem found, so a
/// user fixes them in one round instead of one per run.
///
/// `Debug` prints the same text as `Display`: a build script written
/// `fn main() -> Result<(), Box<dyn Error>>` shows its error with `Debug`.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// The problems, in the order they were found.
    pub diagnostics: Vec<Diagnostic>,
}

impl Error {
    /// An error holding a single diagnostic.
    pub fn one(d: Diagnostic) -> Self {
        Error { diagnostics: vec![d] }
    }
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Self {
        Error::one(d)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
