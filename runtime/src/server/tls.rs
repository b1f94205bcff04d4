//! The TLS listener: the configuration from [`crate::tls::TlsFiles`],
//! reloaded when the files change, and the accepting of connections.

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::Error;
use crate::log::{Level, Logger, Value};
use crate::tls::{CERT, TlsFiles};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the files are checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(2);

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
