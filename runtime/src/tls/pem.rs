//! Reading the PEM files into a rustls configuration.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use super::{TlsFiles, Which};

impl TlsFiles {
    /// The three files' bytes, to notice changes.
    pub(crate) fn contents(&self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut out = vec![std::fs::read(&self.cert)?, std::fs::read(&self.key)?];
        if let Some(ca) = &self.client_ca {
            out.push(std::fs::read(ca)?);
        }
        Ok(out)
    }

    /// Reads the files into a server configuration.
    pub(crate) fn load(&self) -> Result<Arc<ServerConfig>, (Which, String)> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let shown = |p: &PathBuf| p.display().to_string();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| (Which::Cert, format!("cannot read {}: {e}", shown(&self.cert))))?
            .collect::<Result<_, _>>()
            .map_err(|e| (Which::Cert, format!("{} is not a PEM certificate chain: {e}", shown(&self.cert))))?;
        if certs.is_empty() {
            return Err((Which::Cert, format!("{} holds no PEM certificate", shown(&self.cert))));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| (Which::Key, format!("{} holds no usable PEM private key: {e}", shown(&self.key))))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| (Which::Cert, e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let cas = CertificateDer::pem_file_iter(path)
                    .map_err(|e| (Which::ClientCa, format!("cannot read {}: {e}", shown(path))))?;
                for ca in cas {
                    let ca = ca.map_err(|e| (Which::ClientCa, format!("{} is not PEM: {e}", shown(path))))?;
                    roots
                        .add(ca)
                        .map_err(|e| (Which::ClientCa, format!("{} holds a bad CA certificate: {e}", shown(path))))?;
                }
                if roots.is_empty() {
                    return Err((Which::ClientCa, format!("{} holds no CA certificate", shown(path))));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| (Which::ClientCa, format!("{}: {e}", shown(path))))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            (Which::Key, format!("{} does not fit the certificate in {}: {e}", shown(&self.key), shown(&self.cert)))
        })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}
