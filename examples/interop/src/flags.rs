//! Flags as the official interop binaries take them: `--name=value`,
//! `--name value`, or a bare `--name` for a boolean.

use std::collections::BTreeMap;

/// Parsed flags, each checked against the binary's list of known names.
#[derive(Debug)]
pub struct Flags {
    values: BTreeMap<String, String>,
}

impl Flags {
    /// Parses `args` (without the program name). `known` lists every flag
    /// the binary takes with whether it is a boolean; anything else is an
    /// error that lists them.
    pub fn parse(args: impl IntoIterator<Item = String>, known: &[(&str, bool)]) -> Result<Flags, String> {
        let mut values = BTreeMap::new();
        let mut args = args.into_iter().peekable();
        let names = || known.iter().map(|(n, _)| format!("--{n}")).collect::<Vec<_>>().join(", ");
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(format!("unexpected argument {arg:?}: flags are --name=value ({})", names()));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (flag.to_owned(), None),
            };
            let Some(&(_, boolean)) = known.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag --{name}; this binary takes {}", names()));
            };
            let value = match inline {
                Some(v) => v,
                None if boolean => match args.peek().map(String::as_str) {
                    Some("true" | "false") => args.next().unwrap_or_default(),
                    _ => "true".to_owned(),
                },
                None => args.next().ok_or_else(|| format!("--{name} needs a value"))?,
            };
            values.insert(name, value);
        }
        Ok(Flags { values })
    }

    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The string value of `--name`, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// The boolean value of `--name` (`true` or `false`), or `default`.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(format!("--{name}={other}: write true or false")),
        }
    }

    /// The numeric value of `--name`, or `default`.
    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name}={v}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    const KNOWN: &[(&str, bool)] = &[("port", false), ("use_tls", true), ("test_case", false)];

    fn parse(args: &[&str]) -> Result<Flags, String> {
        Flags::parse(args.iter().map(|s| s.to_string()), KNOWN)
    }

    #[test]
    fn takes_each_spelling_the_official_binaries_take() {
        let f = parse(&["--port=8080", "--use_tls", "--test_case", "large_unary"]).unwrap();
        assert_eq!(f.number("port", 0u16).unwrap(), 8080);
        assert!(f.bool("use_tls", false).unwrap());
        assert_eq!(f.string("test_case", ""), "large_unary");
        let f = parse(&["--use_tls", "false", "-port", "1"]).unwrap();
        assert!(!f.bool("use_tls", true).unwrap());
        assert_eq!(f.number("port", 0u16).unwrap(), 1);
    }

    #[test]
    fn refuses_unknown_flags_and_bad_values_naming_them() {
        let e = parse(&["--prot=1"]).unwrap_err();
        assert!(e.contains("--prot") && e.contains("--port, --use_tls, --test_case"), "{e}");
        let e = parse(&["--use_tls=maybe"]).unwrap().bool("use_tls", false).unwrap_err();
        assert!(e.contains("--use_tls=maybe"), "{e}");
        let e = parse(&["--port=http"]).unwrap().number("port", 0u16).unwrap_err();
        assert!(e.contains("--port=http"), "{e}");
        assert!(parse(&["--port"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["stray"]).unwrap_err().contains("unexpected argument"));
    }
}
