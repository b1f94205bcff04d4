//! Prometheus metrics of every RPC, named as in the widely used gRPC
//! Prometheus conventions and labelled by `grpc_service`, `grpc_method`
//! and `grpc_type`:
//!
//! - `grpc_server_started_total` (counter),
//! - `grpc_server_handled_total{grpc_code}` (counter, when the call ends),
//! - `grpc_server_handling_seconds` (histogram, start to end of the call,
//!   streams included),
//! - `grpc_server_in_flight` (gauge).
//!
//! The layer reads the final `grpc-status` from the response headers
//! (trailers-only responses) or trailers; a call whose response is dropped
//! before its trailers (client gone, deadline) counts as `CANCELLED`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Frame, SizeHint};
use tonic::body::Body;

use crate::codegen::{MethodKind, ServiceSpec};

/// Histogram upper bounds in seconds (Prometheus' defaults).
pub const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// (service, method, type)
type Key = (String, String, &'static str);

#[derive(Default)]
struct Series {
    started: u64,
    in_flight: i64,
    handled: BTreeMap<u8, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The metrics of one server.
#[derive(Default)]
pub struct Registry {
    series: Mutex<BTreeMap<Key, Series>>,
    kinds: BTreeMap<&'static str, MethodKind>,
}

impl Registry {
    /// A registry that knows the streaming kinds of `specs`' methods (other
    /// paths, such as health and reflection, are typed by their well-known
    /// shapes or `unknown`).
    pub fn new(specs: &[&'static ServiceSpec]) -> Registry {
        let mut kinds = BTreeMap::new();
        for spec in specs {
            for m in spec.methods {
                kinds.insert(m.path, m.kind);
            }
        }
        Registry { series: Mutex::default(), kinds }
    }

    fn grpc_type(&self, path: &str) -> &'static str {
        let kind = self.kinds.get(path).copied().or(match path {
            "/grpc.health.v1.Health/Check" => Some(MethodKind::Unary),
            "/grpc.health.v1.Health/Watch" => Some(MethodKind::ServerStreaming),
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
            | "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => Some(MethodKind::Streaming),
            _ => None,
        });
        match kind {
            Some(MethodKind::Unary) => "unary",
            Some(MethodKind::ServerStreaming) => "server_stream",
            Some(MethodKind::ClientStreaming) => "client_stream",
            Some(MethodKind::Streaming) => "bidi_stream",
            None => "unknown",
        }
    }

    fn with<R>(&self, key: &Key, f: impl FnOnce(&mut Series) -> R) -> R {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match series.get_mut(key) {
            Some(s) => s,
            None => series.entry(key.clone()).or_default(),
        };
        f(entry)
    }

    fn start(&self, key: &Key) {
        self.with(key, |s| {
            s.started += 1;
            s.in_flight += 1;
        });
    }

    fn finish(&self, key: &Key, code: u8, seconds: f64) {
        self.with(key, |s| {
            s.in_flight -= 1;
            *s.handled.entry(code).or_default() += 1;
            s.count += 1;
            s.sum += seconds;
            for (bucket, bound) in s.buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
        });
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let labels = |(service, method, kind): &Key| {
            format!("grpc_method=\"{}\",grpc_service=\"{}\",grpc_type=\"{kind}\"", escape(method), escape(service))
        };
        out.push_str("# HELP grpc_server_started_total Total number of RPCs started on the server.\n");
        out.push_str("# TYPE grpc_server_started_total counter\n");
        for (key, s) in series.iter() {
            let _ = writeln!(out, "grpc_server_started_total{{{}}} {}", labels(key), s.started);
        }
        out.push_str("# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.\n");
        out.push_str("# TYPE grpc_server_handled_total counter\n");
        for (key, s) in series.iter() {
            for (code, n) in &s.handled {
                let name = CODES.get(usize::from(*code)).copied().unwrap_or("Unknown");
                let _ = writeln!(out, "grpc_server_handled_total{{grpc_code=\"{name}\",{}}} {n}", labels(key));
            }
        }
        out.push_str("# HELP grpc_server_handling_seconds Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.\n");
        out.push_str("# TYPE grpc_server_handling_seconds histogram\n");
        for (key, s) in series.iter() {
            let l = labels(key);
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(out, "grpc_server_handling_seconds_bucket{{{l},le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "grpc_server_handling_seconds_bucket{{{l},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "grpc_server_handling_seconds_sum{{{l}}} {}", s.sum);
            let _ = writeln!(out, "grpc_server_handling_seconds_count{{{l}}} {}", s.count);
        }
        out.push_str("# HELP grpc_server_in_flight Number of RPCs currently being handled by the server.\n");
        out.push_str("# TYPE grpc_server_in_flight gauge\n");
        for (key, s) in series.iter() {
            let _ = writeln!(out, "grpc_server_in_flight{{{}}} {}", labels(key), s.in_flight);
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Tower layer that records [`Registry`] metrics for every request.
#[derive(Clone)]
pub struct MetricsLayer {
    registry: Arc<Registry>,
}

impl MetricsLayer {
    /// A layer recording into `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        MetricsLayer { registry }
    }
}

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = Metrics<S>;
    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics { inner, registry: self.registry.clone() }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    registry: Arc<Registry>,
}

impl<S, B> tower_service::Service<http::Request<B>> for Metrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
        let key: Key = (service.to_owned(), method.to_owned(), self.registry.grpc_type(path));
        let registry = self.registry.clone();
        registry.start(&key);
        let call = Call { registry, key: Some(key), started: Instant::now() };
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            let (parts, body) = response.into_parts();
            // Trailers-only responses (errors) carry grpc-status in the headers.
            if let Some(code) = status_of(&parts.headers) {
                call.finish(code);
                return Ok(http::Response::from_parts(parts, body));
            }
            Ok(http::Response::from_parts(parts, Body::new(MeteredBody { inner: body, call })))
        })
    }
}

/// One call's bookkeeping; finishing twice is impossible and dropping an
/// unfinished call records `CANCELLED`.
struct Call {
    registry: Arc<Registry>,
    key: Option<Key>,
    started: Instant,
}

impl Call {
    fn finish(mut self, code: u8) {
        self.record(code);
    }

    fn record(&mut self, code: u8) {
        if let Some(key) = self.key.take() {
            self.registry.finish(&key, code, self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.record(1);
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<u8> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<u8>().ok().filter(|c| *c <= 16).or(Some(2))
}

/// A response body that records the call when its trailers pass by.
struct MeteredBody {
    inner: Body,
    call: Call,
}

impl http_body::Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    self.call.record(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.call.record(13),
            Poll::Ready(None) => self.call.record(0),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_follows_the_text_format() {
        let r = Registry::new(&[]);
        let key: Key = ("a.B".into(), "C".into(), "unary");
        r.start(&key);
        r.finish(&key, 0, 0.02);
        r.start(&key);
        r.finish(&key, 5, 3.0);
        r.start(&key);
        let text = r.render();
        assert!(
            text.contains("grpc_server_started_total{grpc_method=\"C\",grpc_service=\"a.B\",grpc_type=\"unary\"} 3")
        );
        assert!(text.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"C\""));
        assert!(text.contains("grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method=\"C\""));
        assert!(text.contains("le=\"0.025\"} 1"));
        assert!(text.contains("le=\"5\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("grpc_server_in_flight{grpc_method=\"C\",grpc_service=\"a.B\",grpc_type=\"unary\"} 1"));
    }

    #[test]
    fn dropped_calls_count_as_cancelled() {
        let registry = Arc::new(Registry::new(&[]));
        let key: Key = ("s".into(), "m".into(), "unknown");
        registry.start(&key);
        drop(Call { registry: registry.clone(), key: Some(key), started: Instant::now() });
        assert!(registry.render().contains("grpc_code=\"Canceled\""));
    }
}
