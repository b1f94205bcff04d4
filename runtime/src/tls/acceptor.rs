//! The rustls side of [`super`]: loading the files, reloading them, and
//! accepting connections.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

use super::{CERT, TlsFiles, Which};
use crate::log::{Level, Logger, Value};
use crate::server::Error;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the files are checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(2);

impl TlsFiles {
    /// The three files' bytes, to notice changes.
    fn contents(&self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut out = vec![std::fs::read(&self.cert)?, std::fs::read(&self.key)?];
        if let Some(ca) = &self.client_ca {
            out.push(std::fs::read(ca)?);
        }
        Ok(out)
    }

    /// Reads the files into a server configuration.
    pub(super) fn load(&self) -> Result<Arc<ServerConfig>, (Which, String)> {
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

/// The current TLS configuration, swapped when the files change.
pub(crate) struct Reloading {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloading {
    pub(crate) fn new(files: TlsFiles) -> Result<Arc<Reloading>, Error> {
        let config = files.load().map_err(|(_, problem)| Error::Config { variable: CERT.variable, problem })?;
        Ok(Arc::new(Reloading { files, current: RwLock::new(config) }))
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Watches the files and swaps the configuration when they change. A
    /// set caught mid-update fails to load and is skipped; the rest of the
    /// update changes the files again.
    pub(crate) async fn watch(self: Arc<Self>, logger: Logger) {
        let swap = |_: &Vec<Vec<u8>>| match self.files.load() {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
                let cert = self.files.cert.display().to_string();
                logger.log(Level::Info, "TLS certificate reloaded", &[("cert_file", Value::Str(&cert))]);
            }
            Err((_, problem)) => {
                logger.log(Level::Warn, "TLS files not reloaded", &[("problem", Value::Str(&problem))]);
            }
        };
        crate::config::watch(RELOAD_POLL, self.files.contents().ok(), || self.files.contents(), swap).await;
    }
}

/// Accepted connections after their TLS handshake, for tonic's
/// `serve_with_incoming`. Handshakes run concurrently, each bounded by a
/// timeout, so a slow client cannot hold up others. The listener closes
/// when the stream is dropped (tonic drops it when draining starts).
pub(crate) struct Incoming {
    rx: tokio::sync::mpsc::Receiver<TlsStream<TcpStream>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Incoming {
    pub(crate) fn new(listener: TcpListener, tls: Arc<Reloading>, logger: Logger) -> Incoming {
        let (tx, rx) = tokio::sync::mpsc::channel(128);
        let accept = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(pair) => pair,
                    Err(_) => {
                        // Out of descriptors or similar: back off briefly.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(stream).await;
                        }
                        Ok(Err(e)) => {
                            let peer = peer.to_string();
                            let error = e.to_string();
                            logger.log(
                                Level::Debug,
                                "TLS handshake failed",
                                &[("peer", Value::Str(&peer)), ("error", Value::Str(&error))],
                            );
                        }
                        Err(_) => {}
                    }
                });
            }
        });
        Incoming { rx, accept }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = Result<TlsStream<TcpStream>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|s| s.map(Ok))
    }
}
