//! TLS and mutual TLS on the gRPC listener (rustls).
//!
//! `SVC_TLS_CERT_FILE` and `SVC_TLS_KEY_FILE` (PEM; or `tls_cert_file` /
//! `tls_key_file` in the configuration file) turn TLS on; adding
//! `SVC_TLS_CLIENT_CA_FILE` (`tls_client_ca_file`) requires every client to
//! present a certificate signed by one of those CAs. The server offers
//! HTTP/2 only (ALPN `h2`), TLS 1.2 and 1.3.
//!
//! The files are re-read every two seconds while serving: when they change
//! (a renewed certificate, a rotated Kubernetes Secret), new connections use
//! the new certificate, key and CAs; established connections are untouched.
//! A half-written or inconsistent set (key not matching the certificate) is
//! logged and ignored until it is whole.
//!
//! The metrics port stays plain HTTP: Kubernetes probes and Prometheus
//! scrape it from inside the cluster.
//!
//! Serving TLS needs the crate's `tls` feature (rustls); in a binary built
//! without it, these settings stop start-up with a message that says so.

use std::path::PathBuf;

use crate::Error;
use crate::config::{ConfigSource, FileConfig};

#[cfg(feature = "tls")]
mod pem;

/// What a TLS setting gets in a binary built without the `tls` feature.
pub const MISSING_FEATURE: &str = "is set, but this binary was built without TLS support: enable the `tls` \
     feature of svc-runtime (features = [\"tls\"] on its line in Cargo.toml)";

/// Where the certificate, key and (for mTLS) client CAs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates; set = mTLS.
    pub client_ca: Option<PathBuf>,
}

/// What a variable or configuration key is called in messages.
pub(crate) struct Setting {
    pub(crate) variable: &'static str,
    key: &'static str,
}

pub(crate) const CERT: Setting = Setting { variable: "SVC_TLS_CERT_FILE", key: "tls_cert_file" };
const KEY: Setting = Setting { variable: "SVC_TLS_KEY_FILE", key: "tls_key_file" };
const CLIENT_CA: Setting = Setting { variable: "SVC_TLS_CLIENT_CA_FILE", key: "tls_client_ca_file" };

impl TlsFiles {
    /// The files named by the configuration file, overridden by the
    /// environment; `None` when TLS is off. The files are read and checked
    /// at once, so a bad set stops start-up naming the setting.
    pub fn from_layers(
        file: Option<(&ConfigSource, &FileConfig)>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TlsFiles>, Error> {
        let pick = |s: &Setting, from_file: Option<&String>| -> Option<(String, &'static str)> {
            lookup(s.variable)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v, s.variable))
                .or_else(|| from_file.filter(|v| !v.trim().is_empty()).map(|v| (v.clone(), s.key)))
        };
        let config = file.map(|(_, c)| c);
        let cert = pick(&CERT, config.and_then(|c| c.tls_cert_file.as_ref()));
        let key = pick(&KEY, config.and_then(|c| c.tls_key_file.as_ref()));
        let client_ca = pick(&CLIENT_CA, config.and_then(|c| c.tls_client_ca_file.as_ref()));
        let problem = |origin: &'static str, problem: String| match (origin.starts_with("SVC_"), file) {
            (false, Some((source, _))) => source.error(origin, problem),
            _ => Error::Config { variable: origin, problem },
        };
        let files = match (cert, key) {
            (None, None) => {
                return match client_ca {
                    Some((_, origin)) => {
                        Err(problem(origin, format!("needs TLS on: set {} and {} too", CERT.variable, KEY.variable)))
                    }
                    None => Ok(None),
                };
            }
            (Some((_, origin)), None) => {
                return Err(problem(origin, format!("is set but {} is not; TLS needs both", KEY.variable)));
            }
            (None, Some((_, origin))) => {
                return Err(problem(origin, format!("is set but {} is not; TLS needs both", CERT.variable)));
            }
            (Some(cert), Some(key)) => (cert, key),
        };
        let tls = TlsFiles {
            cert: files.0.0.trim().into(),
            key: files.1.0.trim().into(),
            client_ca: client_ca.as_ref().map(|(v, _)| v.trim().into()),
        };
        tls.check().map_err(|(which, p)| {
            let origin = match which {
                Which::Cert => files.0.1,
                Which::Key => files.1.1,
                Which::ClientCa => client_ca.as_ref().map_or(CLIENT_CA.variable, |(_, o)| *o),
            };
            problem(origin, p)
        })?;
        Ok(Some(tls))
    }

    /// Reads and checks the files.
    #[cfg(feature = "tls")]
    fn check(&self) -> Result<(), (Which, String)> {
        self.load().map(drop)
    }

    /// Without rustls there is nothing to serve them with.
    #[cfg(not(feature = "tls"))]
    fn check(&self) -> Result<(), (Which, String)> {
        Err((Which::Cert, MISSING_FEATURE.to_owned()))
    }
}

/// Which setting a problem is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    Cert,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Key,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    ClientCa,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_in_pairs() {
        let only = |name: &'static str| move |k: &str| (k == name).then(|| "/x.pem".to_owned());
        assert_eq!(TlsFiles::from_layers(None, |_| None).expect("off"), None);
        let e = TlsFiles::from_layers(None, only("SVC_TLS_CERT_FILE")).expect_err("no key").to_string();
        assert!(e.starts_with("SVC_TLS_CERT_FILE: is set but SVC_TLS_KEY_FILE is not"), "{e}");
        let e = TlsFiles::from_layers(None, only("SVC_TLS_KEY_FILE")).expect_err("no cert").to_string();
        assert!(e.starts_with("SVC_TLS_KEY_FILE: is set but SVC_TLS_CERT_FILE is not"), "{e}");
        let e = TlsFiles::from_layers(None, only("SVC_TLS_CLIENT_CA_FILE")).expect_err("ca alone").to_string();
        assert!(e.starts_with("SVC_TLS_CLIENT_CA_FILE: needs TLS on"), "{e}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_settings_need_the_feature() {
        let both = |k: &str| {
            k.starts_with("SVC_TLS_C")
                .then(|| "/x.pem".to_owned())
                .or_else(|| (k == "SVC_TLS_KEY_FILE").then(|| "/x.key".to_owned()))
        };
        let e = TlsFiles::from_layers(None, both).expect_err("no rustls").to_string();
        assert!(e.starts_with("SVC_TLS_CERT_FILE: is set, but this binary was built without TLS support"), "{e}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn unreadable_files_are_named() {
        let both = |k: &str| match k {
            "SVC_TLS_CERT_FILE" => Some("/nonexistent/tls.crt".to_owned()),
            "SVC_TLS_KEY_FILE" => Some("/nonexistent/tls.key".to_owned()),
            _ => None,
        };
        let e = TlsFiles::from_layers(None, both).expect_err("missing").to_string();
        assert!(e.starts_with("SVC_TLS_CERT_FILE: cannot read /nonexistent/tls.crt"), "{e}");
    }
}
