//! TLS for the client's connections (rustls, feature `tls`): the server
//! verified against a CA file or the system's certificates, optionally a
//! client certificate (mTLS), and an override of the name checked.

use std::path::PathBuf;

/// What [`super::Builder::tls`] takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates that sign the server's certificate; `None`
    /// trusts the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key presented to the server.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry (default: the
    /// target's host).
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Trust the CAs in `path` (PEM).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> ClientTls {
        self.ca_file = Some(path.into());
        self
    }

    /// Present `cert` (PEM chain) with `key` (PEM) to the server.
    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> ClientTls {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Check the server's certificate for `name` instead of the target's
    /// host.
    pub fn server_name(mut self, name: impl Into<String>) -> ClientTls {
        self.server_name = Some(name.into());
        self
    }
}

#[cfg(feature = "tls")]
pub(crate) use rustls_side::Connector;

#[cfg(feature = "tls")]
mod rustls_side {
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    use super::ClientTls;
    use crate::client::connection::Io;

    /// A configured TLS client side.
    #[derive(Clone)]
    pub(crate) struct Connector {
        connector: tokio_rustls::TlsConnector,
        name: ServerName<'static>,
    }

    impl Connector {
        /// Reads the files; errors name the file and what is wrong.
        pub(crate) fn new(settings: &ClientTls, default_name: &str) -> Result<Connector, String> {
            let mut roots = RootCertStore::empty();
            match &settings.ca_file {
                Some(path) => {
                    let shown = path.display();
                    let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("CA file {shown}: {e}"))?;
                    for cert in certs {
                        let cert = cert.map_err(|e| format!("CA file {shown} is not PEM: {e}"))?;
                        roots.add(cert).map_err(|e| format!("CA file {shown} holds a bad certificate: {e}"))?;
                    }
                    if roots.is_empty() {
                        return Err(format!("CA file {shown} holds no PEM certificate"));
                    }
                }
                None => {
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                    if roots.is_empty() {
                        return Err("the system has no CA certificates: name a CA file".to_owned());
                    }
                }
            }
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let builder = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots);
            let mut config = match &settings.identity {
                None => builder.with_no_client_auth(),
                Some((cert, key)) => {
                    let shown = cert.display();
                    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                        .map_err(|e| format!("client certificate {shown}: {e}"))?
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("client certificate {shown} is not PEM: {e}"))?;
                    if chain.is_empty() {
                        return Err(format!("client certificate {shown} holds no PEM certificate"));
                    }
                    let key = PrivateKeyDer::from_pem_file(key)
                        .map_err(|e| format!("client key {} holds no usable PEM private key: {e}", key.display()))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| format!("client key does not fit the certificate {shown}: {e}"))?
                }
            };
            config.alpn_protocols = vec![b"h2".to_vec()];
            let name = settings.server_name.as_deref().unwrap_or(default_name);
            let name = ServerName::try_from(name.to_owned())
                .map_err(|e| format!("{name:?} is not a server name to verify: {e}"))?;
            Ok(Connector { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), name })
        }

        pub(crate) async fn handshake<S>(&self, io: S) -> Result<Box<dyn Io>, String>
        where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
        {
            let tls = self.connector.connect(self.name.clone(), io).await.map_err(|e| format!("TLS handshake: {e}"))?;
            Ok(Box::new(tls))
        }
    }
}

/// Without the `tls` feature no connector exists; the builder refuses TLS
/// settings with the feature's name.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub(crate) enum Connector {}

#[cfg(not(feature = "tls"))]
impl Connector {
    pub(crate) fn new(_settings: &ClientTls, _default_name: &str) -> Result<Connector, String> {
        Err("TLS is set, but this binary was built without TLS support: enable the `tls` feature of svc-runtime \
             (features = [\"tls\"] on its line in Cargo.toml)"
            .to_owned())
    }

    pub(crate) async fn handshake<S>(&self, _io: S) -> Result<Box<dyn super::connection::Io>, String> {
        match *self {}
    }
}
