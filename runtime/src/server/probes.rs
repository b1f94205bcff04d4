//! `/metrics`, `/healthz` and `/readyz` on the metrics port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// `/metrics` (Prometheus text), `/healthz` (the process is up) and
/// `/readyz` (serving; 503 while draining) over plain HTTP/1.1, one request
/// per connection.
pub(super) async fn serve_http(
    listener: TcpListener,
    ready: Arc<AtomicBool>,
    registry: &'static crate::metrics::Registry,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    match stream.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            len += n;
                            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let mut parts = head.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            const TEXT: &str = "text/plain; charset=utf-8";
            let (status, content_type, body) = match (method, path) {
                ("GET" | "HEAD", "/metrics") => {
                    ("200 OK", "text/plain; version=0.0.4; charset=utf-8", registry.render())
                }
                ("GET" | "HEAD", "/healthz") => ("200 OK", TEXT, "ok\n".to_owned()),
                ("GET" | "HEAD", "/readyz") if ready.load(Ordering::SeqCst) => ("200 OK", TEXT, "ready\n".to_owned()),
                ("GET" | "HEAD", "/readyz") => ("503 Service Unavailable", TEXT, "draining\n".to_owned()),
                ("GET" | "HEAD", _) => ("404 Not Found", TEXT, "not found\n".to_owned()),
                _ => ("405 Method Not Allowed", TEXT, "method not allowed\n".to_owned()),
            };
            let length = body.len();
            let body = if method == "HEAD" { String::new() } else { body };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n{body}"
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
