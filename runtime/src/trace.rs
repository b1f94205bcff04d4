//! One span per call, W3C Trace Context, and OpenTelemetry (OTLP) export.
//!
//! Every call gets a span. An incoming `traceparent` header (W3C Trace
//! Context, version `00`) makes the span a child of the caller's: same
//! trace id, the caller's span as parent, the caller's sampling decision.
//! Without one, the call starts a new, sampled trace. [`Sampler`]
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) can keep only a share
//! of new traces, or decide regardless of the caller. The span's context is
//! a [`TraceContext`], which handlers find in
//! [`crate::context::CallContext::current`] (generated clients pass it on by
//! themselves; [`TraceContext::traceparent`] is the header for other
//! outgoing calls), and access records carry its `trace_id` and `span_id`.
//!
//! With `SVC_OTLP_ENDPOINT` set (e.g. `http://otel-collector:4318`, or an
//! `https://` URL, trusted through the system's CA certificates or those
//! in `OTEL_EXPORTER_OTLP_CERTIFICATE`), sampled spans are exported in
//! batches as OTLP/HTTP JSON to
//! `<endpoint>/v1/traces`, named `<package>.<Service>/<Method>` with the
//! OpenTelemetry RPC attributes (`rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`, `network.peer.address`) and error status for the
//! codes the gRPC conventions count as server errors. `OTEL_SERVICE_NAME`
//! names the resource (default: the gRPC service's full name). Export never
//! slows calls down: spans queue in a bounded buffer, and when the collector
//! cannot keep up the overflow is dropped and counted in the logs.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::log::{Level, Logger, Value};

/// The trace position of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16-byte trace id, shared by every span of the trace.
    pub trace_id: [u8; 16],
    /// This call's span id.
    pub span_id: [u8; 8],
    /// The caller's span, from `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether the trace is recorded (exported).
    pub sampled: bool,
}

impl TraceContext {
    /// The context for a call carrying `traceparent` (or not), sampled as
    /// OpenTelemetry does by default: as the caller's span was, and new
    /// traces always.
    pub fn for_call(traceparent: Option<&http::HeaderValue>) -> TraceContext {
        Self::sampled_by(traceparent, Sampler::default())
    }

    /// The context for a call carrying `traceparent` (or not), the
    /// sampling decision taken by `sampler`.
    pub fn sampled_by(traceparent: Option<&http::HeaderValue>, sampler: Sampler) -> TraceContext {
        let span_id = nonzero8();
        let (trace_id, parent) = match traceparent.and_then(|v| v.to_str().ok()).and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => (trace_id, Some((parent, flags & 1 == 1))),
            None => {
                let mut trace_id = [0u8; 16];
                trace_id[..8].copy_from_slice(&random_u64().to_be_bytes());
                trace_id[8..].copy_from_slice(&nonzero8());
                (trace_id, None)
            }
        };
        let sampled = sampler.decide(&trace_id, parent.map(|(_, sampled)| sampled));
        TraceContext { trace_id, span_id, parent_span_id: parent.map(|(id, _)| id), sampled }
    }

    /// The `traceparent` header naming this span as the parent, for calls
    /// the handler makes.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), u8::from(self.sampled))
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

/// `version-traceid-parentid-flags`; version 00 exactly, or a later version
/// with at least those fields (forward compatible, as the spec asks).
fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    let version = u8::from_str_radix(version, 16).ok().filter(|_| version.len() == 2)?;
    if version == 0xff || (version == 0 && rest.is_some()) {
        return None;
    }
    let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if trace.len() != 32
        || parent.len() != 16
        || flags.len() != 2
        || ![trace, parent, flags].iter().all(|s| lower_hex(s))
    {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).ok()?;
    }
    for (i, b) in parent_id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&parent[2 * i..2 * i + 2], 16).ok()?;
    }
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_id, u8::from_str_radix(flags, 16).ok()?))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends `bytes` as lowercase hex digits.
pub(crate) fn push_hex(out: &mut impl crate::log::Text, bytes: &[u8]) {
    // Ids are at most 16 bytes: their digits go in with one copy.
    let mut digits = [0u8; 64];
    for chunk in bytes.chunks(32) {
        for (pair, &b) in digits.chunks_exact_mut(2).zip(chunk) {
            pair.copy_from_slice(&hex_pair(b));
        }
        out.put_ascii(&digits[..2 * chunk.len()]);
    }
}

/// `bytes`, known to be ASCII, as text.
pub(crate) fn ascii(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The two lowercase hex digits of `byte`.
pub(crate) fn hex_pair(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(byte >> 4)], DIGITS[usize::from(byte & 0xf)]]
}

/// Process-unique, unpredictable-enough 64-bit values: per thread, a
/// counter from a random start, scrambled (splitmix64). Ids, not secrets.
/// Each thread has its own counter, so minting ids never contends.
pub(crate) fn random_u64() -> u64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        // RandomState differs per thread, so threads start far apart.
        static NEXT: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish());
    }
    let mut z = NEXT.with(|next| {
        let z = next.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        next.set(z);
        z
    });
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn nonzero8() -> [u8; 8] {
    let v = random_u64();
    (if v == 0 { 1 } else { v }).to_be_bytes()
}

/// Which calls' spans are recorded (exported), as OpenTelemetry's
/// `OTEL_TRACES_SAMPLER` names them: `always_on`, `always_off`,
/// `traceidratio` (with `OTEL_TRACES_SAMPLER_ARG` the ratio, default 1),
/// and the `parentbased_` forms of each, which follow the caller's
/// decision when the call carries a `traceparent` and sample new traces as
/// named. The default is `parentbased_always_on`. The ratio is taken on the
/// trace id's low 56 bits, so every service sampling at the same ratio
/// keeps the same traces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// Follow the caller's decision when there is one.
    pub parent_based: bool,
    /// Share of traces recorded, 0 to 1.
    pub ratio: f64,
}

impl Default for Sampler {
    fn default() -> Sampler {
        Sampler { parent_based: true, ratio: 1.0 }
    }
}

impl Sampler {
    /// From `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Sampler, crate::Error> {
        let error = |variable, problem: String| crate::Error::Config { variable, problem };
        let name = lookup("OTEL_TRACES_SAMPLER").map(|v| v.trim().to_ascii_lowercase()).unwrap_or_default();
        let (parent_based, kind) = match name.strip_prefix("parentbased_") {
            Some(kind) => (true, kind.to_owned()),
            None if name.is_empty() => (true, "always_on".to_owned()),
            None => (false, name.clone()),
        };
        let ratio = match kind.as_str() {
            "always_on" => 1.0,
            "always_off" => 0.0,
            "traceidratio" => match lookup("OTEL_TRACES_SAMPLER_ARG").filter(|v| !v.trim().is_empty()) {
                None => 1.0,
                Some(v) => v.trim().parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or_else(|| {
                    error("OTEL_TRACES_SAMPLER_ARG", format!("{v:?} is not a ratio between 0 and 1, such as 0.25"))
                })?,
            },
            _ => {
                return Err(error(
                    "OTEL_TRACES_SAMPLER",
                    format!(
                        "{name:?} is not a sampler; use always_on, always_off, traceidratio, or parentbased_ \
                         followed by one of them"
                    ),
                ));
            }
        };
        Ok(Sampler { parent_based, ratio })
    }

    /// Whether the span of a call in trace `trace_id` is recorded, given
    /// the caller's decision if it sent one.
    pub fn decide(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> bool {
        if let (true, Some(sampled)) = (self.parent_based, parent_sampled) {
            return sampled;
        }
        if self.ratio >= 1.0 {
            return true;
        }
        let mut low = [0u8; 8];
        low[1..].copy_from_slice(&trace_id[9..]);
        (u64::from_be_bytes(low) as f64) < self.ratio * (1u64 << 56) as f64
    }
}
/// One call's span, exported when the call ends.
pub struct SpanRecord {
    pub(crate) context: TraceContext,
    pub(crate) path: String,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) request_id: Option<String>,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) code: u8,
}

/// Spans buffered before the oldest are dropped.
const QUEUE: usize = 8192;
/// Spans per export request.
const BATCH: usize = 512;
/// Longest a span waits before its batch is sent.
const LINGER: Duration = Duration::from_millis(500);

/// Sends spans to an OTLP/HTTP collector in the background.
pub struct Exporter {
    tx: tokio::sync::mpsc::Sender<SpanRecord>,
    dropped: AtomicU64,
}

/// Where spans go: `http://host:port/path` or `https://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, for connecting and for the Host header.
    pub authority: String,
    /// The host alone, the name the collector's certificate must carry.
    pub host: String,
    /// Request path, ending in `/v1/traces`.
    pub path: String,
    /// Over TLS (`https://`).
    pub https: bool,
    /// CA certificates (PEM) the collector's certificate is checked
    /// against instead of the system's (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Endpoint {
    /// Parses `SVC_OTLP_ENDPOINT`: the `http://` or `https://` URL of an
    /// OTLP/HTTP receiver; `/v1/traces` is appended unless the path already
    /// ends so.
    pub fn parse(value: &str) -> Result<Endpoint, String> {
        let v = value.trim();
        let (https, rest, default_port) = match (v.strip_prefix("http://"), v.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest, "80"),
            (_, Some(rest)) => (true, rest, "443"),
            _ => {
                return Err(format!(
                    "{v:?} is not an http:// or https:// URL; give the collector's OTLP/HTTP address, \
                     e.g. http://otel-collector:4318"
                ));
            }
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => (h, p),
            None if !authority.is_empty() => (authority, default_port),
            _ => return Err(format!("{v:?} has no valid host[:port]; write e.g. http://otel-collector:4318")),
        };
        let base = path.trim_end_matches('/');
        let path = if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok(Endpoint { authority: format!("{}:{port}", authority_host(&host)), host, path, https, ca_file: None })
    }

    /// The TLS settings for an `https://` endpoint: its CA file's
    /// certificates, or the system's. Errors say what to fix.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Result<ClientTls, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let unreadable = |e: &dyn std::fmt::Display| format!("cannot read CA certificates from {path:?}: {e}");
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
                    roots.add(cert.map_err(|e| unreadable(&e))?).map_err(|e| unreadable(&e))?;
                }
                if roots.is_empty() {
                    return Err(format!("{path:?} holds no PEM certificate"));
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // Certificates the system has but rustls cannot use are skipped.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err("the system has no CA certificates; set OTEL_EXPORTER_OTLP_CERTIFICATE to the \
                                collector's CA (PEM)"
                        .to_owned());
                }
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Without the `tls` feature there is nothing to export over TLS with.
    #[cfg(not(feature = "tls"))]
    pub fn tls(&self) -> Result<ClientTls, String> {
        Err("is an https:// URL, but this binary was built without TLS support: enable the `tls` feature of \
             svc-runtime (features = [\"tls\"] on its line in Cargo.toml), or export over http://"
            .to_owned())
    }
}

/// The TLS settings of an `https://` exporter.
#[cfg(feature = "tls")]
pub type ClientTls = Arc<tokio_rustls::rustls::ClientConfig>;

/// The TLS settings of an `https://` exporter: none without the `tls`
/// feature, which [`Endpoint::tls`] reports at start-up.
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub enum ClientTls {}

/// `host` as written in an authority: IPv6 addresses in brackets.
fn authority_host(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') { format!("[{host}]").into() } else { host.into() }
}

impl Exporter {
    /// Starts exporting to `endpoint` on the current Tokio runtime. The
    /// task ends, after a last export, once every handle is dropped.
    pub fn start(endpoint: Endpoint, service: String, logger: Logger) -> (Arc<Exporter>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let exporter = Arc::new(Exporter { tx, dropped: AtomicU64::new(0) });
        let task = tokio::spawn(export_loop(rx, endpoint, service, logger, Arc::downgrade(&exporter)));
        (exporter, task)
    }

    pub(crate) fn record(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn export_loop(
    mut rx: tokio::sync::mpsc::Receiver<SpanRecord>,
    endpoint: Endpoint,
    service: String,
    logger: Logger,
    exporter: std::sync::Weak<Exporter>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    // Built once; a problem (checked at start-up already) fails each post.
    let tls = endpoint.https.then(|| endpoint.tls());
    loop {
        let Some(first) = rx.recv().await else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let body = encode(&service, &batch);
        let spans = batch.len();
        batch.clear();
        match post(&endpoint, tls.as_ref(), &body).await {
            Ok(()) if failing => {
                failing = false;
                logger.log(Level::Info, "span export recovered", &[]);
            }
            Ok(()) => {}
            // Reported once per outage, not per batch.
            Err(problem) if !failing => {
                failing = true;
                let target = format!("http://{}{}", endpoint.authority, endpoint.path);
                logger.log(
                    Level::Warn,
                    "span export failed",
                    &[
                        ("endpoint", Value::Str(&target)),
                        ("problem", Value::Str(&problem)),
                        ("spans", Value::Num(spans as f64)),
                    ],
                );
            }
            Err(_) => {}
        }
        if let Some(e) = exporter.upgrade() {
            let dropped = e.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                logger.log(Level::Warn, "spans dropped: export is behind", &[("spans", Value::Num(dropped as f64))]);
            }
        }
    }
}

/// One OTLP/HTTP JSON POST; any 2xx is success.
/// Sends one export: over TLS when `tls` is given.
async fn post(endpoint: &Endpoint, tls: Option<&Result<ClientTls, String>>, body: &str) -> Result<(), String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(&endpoint.authority).await.map_err(|e| e.to_string())?;
        match tls {
            None => exchange(tcp, endpoint, body).await,
            Some(Err(problem)) => Err(problem.clone()),
            #[cfg(not(feature = "tls"))]
            Some(Ok(config)) => match *config {},
            #[cfg(feature = "tls")]
            Some(Ok(config)) => {
                let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
                    .map_err(|_| format!("{:?} is not a host name a certificate can carry", endpoint.host))?;
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                exchange(stream, endpoint, body).await
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.map_err(|_| "timed out after 10s".to_owned())?
}

/// One HTTP/1.1 POST of `body` over `stream`, and the collector's verdict.
async fn exchange<S>(mut stream: S, endpoint: &Endpoint, body: &str) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\nUser-Agent: svc/{}\r\n\r\n",
        endpoint.path,
        endpoint.authority,
        body.len(),
        env!("CARGO_PKG_VERSION"),
    );
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.write_all(body.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while !reply.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let status_line = String::from_utf8_lossy(&reply);
    let status_line = status_line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()) {
        Some(code) if (200..300).contains(&code) => Ok(()),
        _ => Err(format!("collector answered {status_line:?}")),
    }
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// OTLP JSON for `spans` (ExportTraceServiceRequest): ids in hex, 64-bit
/// integers as strings, enums as numbers.
fn encode(service: &str, spans: &[SpanRecord]) -> String {
    let mut out = String::with_capacity(256 + spans.len() * 512);
    out.push_str("{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    attr_str(&mut out, "service.name", service);
    out.push_str("]},\"scopeSpans\":[{\"scope\":{\"name\":\"svc\",\"version\":");
    crate::log::json_string(&mut out, env!("CARGO_PKG_VERSION"));
    out.push_str("},\"spans\":[");
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let name = span.path.trim_start_matches('/');
        let (rpc_service, rpc_method) = name.split_once('/').unwrap_or((name, ""));
        let _ = write!(
            out,
            "{{\"traceId\":\"{}\",\"spanId\":\"{}\",",
            span.context.trace_id_hex(),
            span.context.span_id_hex()
        );
        if let Some(parent) = span.context.parent_span_id {
            let _ = write!(out, "\"parentSpanId\":\"{}\",", hex(&parent));
        }
        out.push_str("\"name\":");
        crate::log::json_string(&mut out, name);
        let _ = write!(
            out,
            ",\"kind\":2,\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[",
            unix_nanos(span.start),
            unix_nanos(span.end).max(unix_nanos(span.start))
        );
        attr_str(&mut out, "rpc.system", "grpc");
        out.push(',');
        attr_str(&mut out, "rpc.service", rpc_service);
        out.push(',');
        attr_str(&mut out, "rpc.method", rpc_method);
        let _ = write!(out, ",{{\"key\":\"rpc.grpc.status_code\",\"value\":{{\"intValue\":\"{}\"}}}}", span.code);
        if let Some(peer) = span.peer {
            out.push(',');
            attr_str(&mut out, "network.peer.address", &peer.ip().to_string());
            let _ = write!(out, ",{{\"key\":\"network.peer.port\",\"value\":{{\"intValue\":\"{}\"}}}}", peer.port());
        }
        if let Some(id) = &span.request_id {
            out.push(',');
            attr_str(&mut out, "svc.request_id", id);
        }
        out.push_str("],\"status\":");
        // Server-side errors per the OpenTelemetry gRPC conventions.
        if matches!(span.code, 2 | 4 | 12 | 13 | 14 | 15) {
            out.push_str("{\"code\":2,\"message\":");
            crate::log::json_string(&mut out, crate::metrics::code_name(span.code));
            out.push_str("}}");
        } else {
            out.push_str("{}}");
        }
    }
    out.push_str("]}]}]}");
    out
}

fn attr_str(out: &mut String, key: &str, value: &str) {
    out.push_str("{\"key\":");
    crate::log::json_string(out, key);
    out.push_str(",\"value\":{\"stringValue\":");
    crate::log::json_string(out, value);
    out.push_str("}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(vars: &[(&str, &str)]) -> Result<Sampler, String> {
        Sampler::from_lookup(|k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn samplers_from_the_environment() {
        assert_eq!(sampler(&[]), Ok(Sampler { parent_based: true, ratio: 1.0 }));
        assert_eq!(sampler(&[("OTEL_TRACES_SAMPLER", "always_off")]), Ok(Sampler { parent_based: false, ratio: 0.0 }));
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.25")]),
            Ok(Sampler { parent_based: true, ratio: 0.25 })
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio")]),
            Ok(Sampler { parent_based: false, ratio: 1.0 })
        );
        let e = sampler(&[("OTEL_TRACES_SAMPLER", "sometimes")]).expect_err("unknown");
        assert!(e.starts_with("OTEL_TRACES_SAMPLER: \"sometimes\" is not a sampler"), "{e}");
        for bad in ["1.5", "-0.1", "half"] {
            let e = sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", bad)])
                .expect_err("bad ratio");
            assert!(e.starts_with("OTEL_TRACES_SAMPLER_ARG:"), "{e}");
        }
    }

    #[test]
    fn ratios_keep_a_share_of_traces_decided_by_the_trace_id() {
        let tenth = Sampler { parent_based: false, ratio: 0.1 };
        let ids: Vec<[u8; 16]> = (0..20_000)
            .map(|_| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&random_u64().to_be_bytes());
                id[8..].copy_from_slice(&random_u64().to_be_bytes());
                id
            })
            .collect();
        let kept = ids.iter().filter(|id| tenth.decide(id, None)).count();
        assert!((1_700..=2_300).contains(&kept), "{kept} of 20000 at 0.1");
        // The same trace gets the same answer, here and in every service.
        assert!(ids.iter().all(|id| tenth.decide(id, None) == tenth.decide(id, Some(false))));
        let none = Sampler { parent_based: false, ratio: 0.0 };
        assert!(ids.iter().all(|id| !none.decide(id, None)));
        let all = Sampler { parent_based: false, ratio: 1.0 };
        assert!(ids.iter().all(|id| all.decide(id, Some(false))), "not parent based: the caller's flag is ignored");
        // Parent based: the caller decides; new traces by ratio.
        let parent = Sampler { parent_based: true, ratio: 0.0 };
        assert!(parent.decide(&ids[0], Some(true)));
        assert!(!parent.decide(&ids[0], Some(false)));
        assert!(!parent.decide(&ids[0], None));
        let h = http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(TraceContext::sampled_by(Some(&h), parent).sampled);
        assert!(!TraceContext::sampled_by(None, parent).sampled);
        assert!(!TraceContext::sampled_by(Some(&h), none).sampled);
    }

    #[test]
    fn traceparent_round_trip() {
        let h = http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let c = TraceContext::for_call(Some(&h));
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_span_id.map(|p| hex(&p)).as_deref(), Some("00f067aa0ba902b7"));
        assert!(c.sampled);
        assert_ne!(c.span_id, [0; 8]);
        assert_eq!(c.traceparent(), format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", c.span_id_hex()));
        let unsampled = http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!TraceContext::for_call(Some(&unsampled)).sampled);
    }

    #[test]
    fn invalid_traceparents_start_new_traces() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let h = http::HeaderValue::from_str(bad).expect("header");
            let c = TraceContext::for_call(Some(&h));
            assert_eq!(c.parent_span_id, None, "{bad}");
            assert!(c.sampled);
        }
        // A later version with extra fields is read for what it shares.
        let future = http::HeaderValue::from_static("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x");
        assert!(TraceContext::for_call(Some(&future)).parent_span_id.is_some());
    }

    #[test]
    fn new_ids_differ() {
        let a = TraceContext::for_call(None);
        let b = TraceContext::for_call(None);
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://otel:4318").expect("ok");
        assert_eq!((e.authority.as_str(), e.path.as_str()), ("otel:4318", "/v1/traces"));
        let e = Endpoint::parse("http://127.0.0.1:9/custom/").expect("ok");
        assert_eq!(e.path, "/custom/v1/traces");
        assert_eq!(Endpoint::parse("http://c/v1/traces").expect("ok").authority, "c:80");
        let e = Endpoint::parse("https://otel.example:4318").expect("https");
        assert!(e.https && !Endpoint::parse("http://otel:4318").expect("http").https);
        assert_eq!((e.authority.as_str(), e.host.as_str()), ("otel.example:4318", "otel.example"));
        assert_eq!(Endpoint::parse("https://otel.example").expect("ok").authority, "otel.example:443");
        let v6 = Endpoint::parse("http://[::1]:4318").expect("ipv6");
        assert_eq!((v6.authority.as_str(), v6.host.as_str()), ("[::1]:4318", "::1"));
        assert!(Endpoint::parse("grpc://otel:4317").expect_err("scheme").contains("not an http:// or https:// URL"));
        assert!(Endpoint::parse("http://:4318").is_err());
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn https_needs_the_tls_feature() {
        let e = Endpoint::parse("https://otel:4318").expect("parses");
        assert!(e.tls().expect_err("no rustls").contains("enable the `tls` feature"));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_settings_name_what_to_fix() {
        let dir = std::env::temp_dir().join(format!("svc-otlp-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let mut e = Endpoint::parse("https://otel:4318").expect("ok");
        e.ca_file = Some(empty.clone());
        assert!(e.tls().expect_err("no certificate").contains("holds no PEM certificate"));
        e.ca_file = Some(dir.join("absent.pem"));
        assert!(e.tls().expect_err("absent").contains("cannot read CA certificates"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn json_encoding() {
        let context = TraceContext::for_call(None);
        let span = SpanRecord {
            context,
            path: "/a.v1.S/M".into(),
            peer: Some("127.0.0.1:5".parse().expect("addr")),
            request_id: Some("r\"1".into()),
            start: UNIX_EPOCH + Duration::from_secs(1),
            end: UNIX_EPOCH + Duration::from_secs(2),
            code: 13,
        };
        let json: serde_json::Value = serde_json::from_str(&encode("svc \"x\"", &[span])).expect("valid json");
        let s = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["name"], "a.v1.S/M");
        assert_eq!(s["startTimeUnixNano"], "1000000000");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(json["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "svc \"x\"");
    }
}
