//! The configuration file: `--config FILE` on the command line or
//! `SVC_CONFIG`, TOML (`.toml`) or YAML (`.yaml`, `.yml`).
//!
//! Settings layer lowest to highest: annotation defaults, this file, the
//! environment. Every key is optional:
//!
//! ```toml
//! grpc_addr = "0.0.0.0:50051"     # SVC_GRPC_ADDR
//! metrics_addr = "0.0.0.0:9090"   # SVC_METRICS_ADDR
//! http_addr = "0.0.0.0:8080"      # SVC_HTTP_ADDR (HTTP/JSON bindings)
//! shutdown_grace = "20s"          # drain time after SIGTERM
//! log = "info"                    # SVC_LOG; re-read while running
//! log_format = "json"             # SVC_LOG_FORMAT
//! tls_cert_file = "/etc/tls/tls.crt"      # SVC_TLS_CERT_FILE
//! tls_key_file = "/etc/tls/tls.key"       # SVC_TLS_KEY_FILE
//! tls_client_ca_file = "/etc/tls/ca.crt"  # SVC_TLS_CLIENT_CA_FILE (mTLS)
//! ```
//!
//! Unknown keys and bad values stop start-up with the file and key named.
//! While serving, the file is re-read every two seconds (Kubernetes updates
//! mounted ConfigMaps in place); a changed `log` level applies at once,
//! unless `SVC_LOG` pins it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;

/// The settings a configuration file may hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// gRPC listen address.
    pub grpc_addr: Option<String>,
    /// Health/metrics listen address.
    pub metrics_addr: Option<String>,
    /// HTTP/JSON listen address.
    pub http_addr: Option<String>,
    /// Drain time after SIGTERM, e.g. "20s".
    pub shutdown_grace: Option<String>,
    /// Log level.
    pub log: Option<String>,
    /// `json` or `text`.
    pub log_format: Option<String>,
    /// PEM certificate chain; with `tls_key_file`, turns TLS on.
    pub tls_cert_file: Option<String>,
    /// PEM private key.
    pub tls_key_file: Option<String>,
    /// PEM CAs for client certificates (mutual TLS).
    pub tls_client_ca_file: Option<String>,
}

/// Where the configuration file was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// `--config` or `SVC_CONFIG`.
    pub origin: &'static str,
    /// The file.
    pub path: PathBuf,
}

impl ConfigSource {
    /// `--config FILE` / `--config=FILE` in `args` (program name first),
    /// else `SVC_CONFIG` through `lookup`.
    pub fn find(
        args: impl IntoIterator<Item = String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ConfigSource>, Error> {
        let mut args = args.into_iter().skip(1);
        while let Some(arg) = args.next() {
            let value = if arg == "--config" {
                Some(args.next().ok_or_else(|| Error::Config {
                    variable: "--config",
                    problem: "needs a file name, e.g. --config /etc/svc/config.toml".into(),
                })?)
            } else {
                arg.strip_prefix("--config=").map(str::to_owned)
            };
            if let Some(path) = value {
                return Ok(Some(ConfigSource { origin: "--config", path: path.into() }));
            }
        }
        Ok(lookup("SVC_CONFIG")
            .filter(|v| !v.trim().is_empty())
            .map(|v| ConfigSource { origin: "SVC_CONFIG", path: v.trim().into() }))
    }

    /// A start-up error for a bad value of `key` in this file.
    pub fn error(&self, key: &str, problem: String) -> Error {
        Error::Config { variable: self.origin, problem: format!("{}: {key}: {problem}", self.path.display()) }
    }

    /// Reads and parses the file.
    pub fn load(&self) -> Result<FileConfig, Error> {
        self.load_text().map(|(_, config)| config)
    }

    /// Reads and parses the file, keeping its text.
    pub fn load_text(&self) -> Result<(String, FileConfig), Error> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| Error::Config {
            variable: self.origin,
            problem: format!("cannot read {}: {e}", self.path.display()),
        })?;
        let config = parse(&self.path, &text).map_err(|problem| Error::Config { variable: self.origin, problem })?;
        Ok((text, config))
    }
}

/// The keys a configuration file may hold.
const KEYS: [&str; 9] = [
    "grpc_addr",
    "metrics_addr",
    "http_addr",
    "shutdown_grace",
    "log",
    "log_format",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
];

/// Whether `key` is one of [`KEYS`]; the error lists them.
fn known(key: &str) -> Result<(), String> {
    if KEYS.contains(&key) {
        return Ok(());
    }
    let known: Vec<String> = KEYS.iter().map(|k| format!("`{k}`")).collect();
    Err(format!("unknown field `{key}`, expected one of {}", known.join(", ")))
}

impl FileConfig {
    /// Sets `key` (one of [`KEYS`]); every value is text.
    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "grpc_addr" => &mut self.grpc_addr,
            "metrics_addr" => &mut self.metrics_addr,
            "http_addr" => &mut self.http_addr,
            "shutdown_grace" => &mut self.shutdown_grace,
            "log" => &mut self.log,
            "log_format" => &mut self.log_format,
            "tls_cert_file" => &mut self.tls_cert_file,
            "tls_key_file" => &mut self.tls_key_file,
            "tls_client_ca_file" => &mut self.tls_client_ca_file,
            _ => return,
        };
        *slot = Some(value);
    }
}

/// Parses `text` as TOML or YAML, chosen by the extension of `path`: a
/// table of the [`FileConfig`] keys with text values.
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let shown = path.display();
    let mut config = FileConfig::default();
    let wrong_type = |key: &str, found: &str| format!("{shown}: {key}: expected text, found {found}");
    match ext.as_str() {
        "toml" => {
            let table: toml::Table =
                text.parse().map_err(|e: toml::de::Error| format!("{shown}: {}", e.to_string().trim_end()))?;
            for (key, value) in table {
                known(&key).map_err(|e| format!("{shown}: {e}"))?;
                let value = match value {
                    toml::Value::String(s) => s,
                    other => return Err(wrong_type(&key, other.type_str())),
                };
                config.set(&key, value);
            }
        }
        "yaml" | "yml" => {
            if text.trim().is_empty() {
                return Ok(config);
            }
            let mapping: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(text).map_err(|e| format!("{shown}: {e}"))?;
            for (key, value) in mapping {
                let serde_yaml_ng::Value::String(key) = key else {
                    return Err(format!("{shown}: keys are names such as `log`, found {key:?}"));
                };
                known(&key).map_err(|e| format!("{shown}: {e}"))?;
                // Plain scalars are text to YAML's reader too (`grace: 20s`,
                // `grpc_addr: 8080`).
                let value = match value {
                    serde_yaml_ng::Value::String(s) => s,
                    serde_yaml_ng::Value::Number(n) => n.to_string(),
                    serde_yaml_ng::Value::Bool(b) => b.to_string(),
                    serde_yaml_ng::Value::Null => continue,
                    serde_yaml_ng::Value::Sequence(_) => return Err(wrong_type(&key, "a list")),
                    serde_yaml_ng::Value::Mapping(_) => return Err(wrong_type(&key, "a mapping")),
                    serde_yaml_ng::Value::Tagged(_) => return Err(wrong_type(&key, "a tagged value")),
                };
                config.set(&key, value);
            }
        }
        _ => return Err(format!("{shown}: unknown format; name the file *.toml, *.yaml or *.yml")),
    }
    Ok(config)
}

/// Checks `read` every `every` and calls `changed` with each reading that
/// differs from the one before (starting from `last`). Failed readings are
/// skipped. Kubernetes replaces mounted files atomically, so comparing
/// contents sees every update. Runs until the task is aborted.
pub(crate) async fn watch<T: PartialEq>(
    every: Duration,
    mut last: Option<T>,
    mut read: impl FnMut() -> std::io::Result<T>,
    mut changed: impl FnMut(&T),
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Small local files: reading them inline costs less than a
        // blocking-pool hop.
        let Ok(now) = read() else { continue };
        if last.as_ref() != Some(&now) {
            changed(&now);
            last = Some(now);
        }
    }
}

/// Parses a duration such as "250ms", "20s", "1m30s" (units `ms`, `s`,
/// `m`, `h`; whole numbers).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("is empty; write e.g. \"20s\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration; write e.g. \"20s\" or \"1m30s\""))?;
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(format!("{s:?} is not a duration; units are ms, s, m and h")),
        };
        total = total.saturating_add(part);
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn finds_the_file() {
        let none = |_: &str| None;
        let env = |k: &str| (k == "SVC_CONFIG").then(|| "/etc/a.toml".to_owned());
        assert_eq!(ConfigSource::find(args(&["bin"]), none).expect("ok"), None);
        let s = ConfigSource::find(args(&["bin", "--config", "x.yaml"]), env).expect("ok").expect("some");
        assert_eq!((s.origin, s.path), ("--config", PathBuf::from("x.yaml")));
        let s = ConfigSource::find(args(&["bin", "--config=y.toml"]), none).expect("ok").expect("some");
        assert_eq!(s.path, PathBuf::from("y.toml"));
        let s = ConfigSource::find(args(&["bin"]), env).expect("ok").expect("some");
        assert_eq!((s.origin, s.path), ("SVC_CONFIG", PathBuf::from("/etc/a.toml")));
        let e = ConfigSource::find(args(&["bin", "--config"]), none).expect_err("no value").to_string();
        assert!(e.starts_with("--config: needs a file name"), "{e}");
    }

    #[test]
    fn parses_both_formats() {
        let want = FileConfig {
            grpc_addr: Some("0.0.0.0:1".into()),
            log: Some("warn".into()),
            shutdown_grace: Some("3s".into()),
            ..FileConfig::default()
        };
        let toml = "grpc_addr = \"0.0.0.0:1\"\nlog = \"warn\"\nshutdown_grace = \"3s\"\n";
        assert_eq!(parse(Path::new("c.toml"), toml).expect("toml"), want);
        let yaml = "grpc_addr: 0.0.0.0:1\nlog: warn\nshutdown_grace: 3s\n";
        assert_eq!(parse(Path::new("c.yml"), yaml).expect("yaml"), want);
        assert_eq!(parse(Path::new("c.yaml"), "").expect("empty"), FileConfig::default());
    }

    #[test]
    fn bad_files_name_the_problem() {
        let e = parse(Path::new("/c.toml"), "grpc_adr = \"x\"\n").expect_err("unknown key");
        assert!(e.starts_with("/c.toml:") && e.contains("grpc_adr"), "{e}");
        let e = parse(Path::new("/c.yaml"), "log: [1, 2]\n").expect_err("wrong type");
        assert!(e.starts_with("/c.yaml:") && e.contains("log"), "{e}");
        let e = parse(Path::new("/c.ini"), "").expect_err("unknown format");
        assert!(e.contains("*.toml"), "{e}");
        let e = parse(Path::new("/c.toml"), "log = 3\n").expect_err("a number");
        assert_eq!(e, "/c.toml: log: expected text, found integer");
        let e = parse(Path::new("/c.yaml"), "tls: {cert: x}\n").expect_err("unknown key");
        assert!(e.contains("unknown field `tls`, expected one of `grpc_addr`"), "{e}");
        let e = parse(Path::new("/c.toml"), "log = \"info\"\nlog = \"warn\"\n").expect_err("duplicate");
        assert!(e.starts_with("/c.toml:") && e.contains("log"), "{e}");
        let e = parse(Path::new("/c.yaml"), "- a\n").expect_err("not a mapping");
        assert!(e.starts_with("/c.yaml:"), "{e}");
        assert_eq!(parse(Path::new("c.yaml"), "grpc_addr: 8080\n").expect("number").grpc_addr.as_deref(), Some("8080"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "20", "s", "1.5s", "3 s", "2d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
