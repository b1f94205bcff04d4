//! Tower layers of the generated server, outermost first:
//! [`RequestIdLayer`] → tracing span ([`crate::trace`]) → metrics
//! ([`crate::metrics`]) → authentication ([`crate::auth`]) → access and
//! audit log ([`crate::log`]) → rate limit and load shedding
//! ([`crate::limits`]) → [`DeadlineLayer`] → [`RecoverLayer`] →
//! [`MessageLimitLayer`] → handler. (Validation slots in at its documented
//! place when it lands.) Each is a [`Middleware`]; [`Wrap`] is the service
//! they all build.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use crate::log::{Level, Logger, Value};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Status;
use tonic::body::Body;

use crate::codegen::ServiceSpec;

/// The future every layer of the server returns.
pub(crate) type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// What one layer of the server does with a call. [`Wrap`] supplies the
/// tower plumbing around it (readiness is the inner service's), and each
/// layer type is its own `tower_layer::Layer`, wrapping the inner service
/// with a copy of itself.
pub trait Middleware {
    /// Handles `req`: passes it on to `inner`, changed or not, and shapes
    /// the response, or answers by itself.
    fn call<S, B>(&self, inner: &mut S, req: http::Request<B>) -> BoxFuture<http::Response<Body>, S::Error>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static;
}

/// A service running the middleware `M` in front of `S`.
#[derive(Debug, Clone)]
pub struct Wrap<M, S> {
    middleware: M,
    inner: S,
}

impl<M, S, B> tower_service::Service<http::Request<B>> for Wrap<M, S>
where
    M: Middleware,
    S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.middleware.call(&mut self.inner, req)
    }
}

/// Makes each listed [`Middleware`] type a `tower_layer::Layer` producing
/// [`Wrap`].
macro_rules! layer {
    ($($middleware:ty),+) => {$(
        impl<S> tower_layer::Layer<S> for $middleware {
            type Service = $crate::middleware::Wrap<$middleware, S>;
            fn layer(&self, inner: S) -> Self::Service {
                $crate::middleware::Wrap::wrapping(self.clone(), inner)
            }
        }
    )+};
}
pub(crate) use layer;

/// Keeps `value` for the rest of the process. Layers keep their tables
/// this way: tonic clones the whole middleware stack for every call, and a
/// plain reference clones for free, where a shared counter would bounce
/// between CPU cores on every call. Tables are built once per server, so
/// what is kept is bounded by the servers a process builds.
pub(crate) fn forever<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

impl<M, S> Wrap<M, S> {
    pub(crate) fn wrapping(middleware: M, inner: S) -> Self {
        Wrap { middleware, inner }
    }
}

/// The request's id, from `x-request-id` or minted; in request extensions
/// (handlers read it with `request.extensions().get::<RequestId>()`) and
/// echoed in the response headers. Copies share one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(http::HeaderValue);

impl RequestId {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        // Both constructors admit visible ASCII only.
        self.0.to_str().unwrap_or_default()
    }

    /// Accepts a caller's id when it is 1..=128 visible ASCII characters.
    fn from_header(value: &http::HeaderValue) -> Option<RequestId> {
        let b = value.as_bytes();
        (!b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)).then(|| RequestId(value.clone()))
    }

    /// A new id: 32 hex digits, unique in the process and random across
    /// processes.
    fn mint() -> RequestId {
        let mut text = String::with_capacity(32);
        crate::trace::push_hex(&mut text, &crate::trace::random_u64().to_be_bytes());
        crate::trace::push_hex(&mut text, &crate::trace::random_u64().to_be_bytes());
        RequestId(
            http::HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).expect("hex digits are a valid header"),
        )
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads or mints the request id and echoes it back.
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer;

static REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl Middleware for RequestIdLayer {
    fn call<S, B>(&self, inner: &mut S, mut req: http::Request<B>) -> BoxFuture<http::Response<Body>, S::Error>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let id = req.headers().get(&REQUEST_ID).and_then(RequestId::from_header).unwrap_or_else(RequestId::mint);
        let mut header = id.0.clone();
        // Ids differ per call: HPACK should not spend its table on them.
        header.set_sensitive(true);
        req.extensions_mut().insert(id);
        let future = inner.call(req);
        Box::pin(async move {
            let mut response = future.await?;
            response.headers_mut().insert(&REQUEST_ID, header);
            Ok(response)
        })
    }
}

layer!(RequestIdLayer);

/// Enforces each method's deadline: the annotated `timeout` or the
/// caller's `grpc-timeout`, whichever is sooner, answered with
/// `DEADLINE_EXCEEDED`. (tonic's own timeout answers `CANCELLED` and knows
/// no per-method defaults.) It bounds the time to the response headers,
/// which for unary and client-streaming calls is the whole handler.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    timeouts: &'static HashMap<&'static str, Duration>,
}

impl DeadlineLayer {
    /// Deadlines from the method specs of `specs`.
    pub fn new(specs: &[&'static ServiceSpec]) -> Self {
        let timeouts =
            specs.iter().flat_map(|s| s.methods.iter()).filter_map(|m| m.timeout.map(|t| (m.path, t))).collect();
        DeadlineLayer { timeouts: forever(timeouts) }
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m,
/// u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

impl Middleware for DeadlineLayer {
    fn call<S, B>(&self, inner: &mut S, req: http::Request<B>) -> BoxFuture<http::Response<Body>, S::Error>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let annotated = self.timeouts.get(req.uri().path()).copied();
        let caller = req.headers().get(&GRPC_TIMEOUT).and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        let deadline = match (annotated, caller) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        };
        let future = inner.call(req);
        Box::pin(async move {
            match deadline {
                None => future.await,
                Some(d) => match tokio::time::timeout(d, future).await {
                    Ok(result) => result,
                    Err(_) => {
                        Ok(Status::deadline_exceeded(format!("deadline of {}ms exceeded", d.as_millis())).into_http())
                    }
                },
            }
        })
    }
}

layer!(DeadlineLayer);

/// Turns a panicking handler into `INTERNAL` and keeps serving; the panic
/// is logged as an `error` record with the method, request id, trace id
/// and panic message.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecoverLayer {
    logger: Logger,
}

impl RecoverLayer {
    /// Reports panics through `logger`.
    pub fn new(logger: Logger) -> RecoverLayer {
        RecoverLayer { logger }
    }
}

impl Middleware for RecoverLayer {
    fn call<S, B>(&self, inner: &mut S, req: http::Request<B>) -> BoxFuture<http::Response<Body>, S::Error>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        // What the report needs, kept cheaply: the URI and request id are
        // shared buffers, the trace context is a copy; text only on panic.
        let uri = req.uri().clone();
        let id = req.extensions().get::<RequestId>().cloned();
        let trace = req.extensions().get::<crate::trace::TraceContext>().copied();
        let logger = self.logger;
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req)));
        Box::pin(async move {
            let report = |panic: Box<dyn std::any::Any + Send>| {
                let trace = trace.map(|t| t.trace_id_hex());
                let id = id.as_ref().map_or("", RequestId::as_str);
                panicked(logger, uri.path(), id, trace.as_deref(), &*panic)
            };
            let future = match call {
                Ok(f) => f,
                Err(panic) => return Ok(report(panic)),
            };
            match CatchUnwind(Box::pin(future)).await {
                Ok(result) => result,
                Err(panic) => Ok(report(panic)),
            }
        })
    }
}

layer!(RecoverLayer);

fn panicked(
    logger: Logger,
    path: &str,
    id: &str,
    trace: Option<&str>,
    panic: &(dyn std::any::Any + Send),
) -> http::Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic)");
    logger.log(
        Level::Error,
        "handler panicked",
        &[
            ("method", Value::Str(path)),
            ("request_id", Value::Str(id)),
            ("trace_id", trace.map_or(Value::None, Value::Str)),
            ("panic", Value::Str(message)),
        ],
    );
    Status::internal("the handler failed unexpectedly").into_http()
}

/// Polls a future, turning a panic into `Err`.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_ids() {
        let a = RequestId::mint();
        let b = RequestId::mint();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let ok = http::HeaderValue::from_static("abc-123");
        assert_eq!(RequestId::from_header(&ok).as_ref().map(RequestId::as_str), Some("abc-123"));
        let spaced = http::HeaderValue::from_static("a b");
        assert_eq!(RequestId::from_header(&spaced), None);
        let long = http::HeaderValue::from_str(&"x".repeat(129)).expect("header");
        assert_eq!(RequestId::from_header(&long), None);
    }
}

/// Reports an oversized request message as `RESOURCE_EXHAUSTED`, as gRPC
/// specifies and other implementations do (tonic answers `OUT_OF_RANGE`).
/// Innermost, so every other layer sees the corrected code.
///
/// The code is fixed in the response headers (trailers-only responses),
/// and in the trailers of methods that stream both ways, the only ones
/// whose handlers meet a request message after their response has begun.
/// (Other paths, such as reflection, are treated as streaming both ways.)
#[derive(Debug, Clone)]
pub struct MessageLimitLayer {
    /// Methods of the specs that do not stream both ways.
    headers_only: &'static std::collections::HashSet<&'static str>,
}

impl MessageLimitLayer {
    /// For the methods of `specs`.
    pub fn new(specs: &[&'static ServiceSpec]) -> MessageLimitLayer {
        let headers_only = specs
            .iter()
            .flat_map(|s| s.methods.iter())
            .filter(|m| m.kind != crate::codegen::MethodKind::Streaming)
            .map(|m| m.path)
            .collect();
        MessageLimitLayer { headers_only: forever(headers_only) }
    }
}

/// tonic's decode-limit message, as it appears percent-encoded in
/// `grpc-message`.
const TOO_LARGE: &str = "Error,%20decoded%20message%20length%20too%20large";

fn fix_status(headers: &mut http::HeaderMap) {
    static GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
    let status = &crate::completion::GRPC_STATUS;
    let too_large = headers.get(status).is_some_and(|v| v == "11")
        && headers.get(&GRPC_MESSAGE).is_some_and(|m| m.as_bytes().starts_with(TOO_LARGE.as_bytes()));
    if too_large {
        headers.insert(status, http::HeaderValue::from_static("8"));
    }
}

impl Middleware for MessageLimitLayer {
    fn call<S, B>(&self, inner: &mut S, req: http::Request<B>) -> BoxFuture<http::Response<Body>, S::Error>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let headers_only = self.headers_only.contains(req.uri().path());
        let future = inner.call(req);
        Box::pin(async move {
            let mut response = future.await?;
            fix_status(response.headers_mut());
            if headers_only {
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(parts, Body::new(FixTrailers(body))))
        })
    }
}

layer!(MessageLimitLayer);

/// Applies [`fix_status`] to the trailers of a streaming response.
struct FixTrailers(Body);

impl http_body::Body for FixTrailers {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    fix_status(&mut trailers);
                    Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.0)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.0)
    }
}
