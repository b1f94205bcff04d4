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
use std::sync::Arc;
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

impl<M, S> Wrap<M, S> {
    pub(crate) fn wrapping(middleware: M, inner: S) -> Self {
        Wrap { middleware, inner }
    }
}

/// The request's id, from `x-request-id` or minted; in request extensions
/// (handlers read it with `request.extensions().get::<RequestId>()`) and
/// echoed in the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// Accepts a caller's id when it is 1..=128 visible ASCII characters.
    fn from_header(value: &http::HeaderValue) -> Option<RequestId> {
        let s = value.to_str().ok()?;
        (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then(|| RequestId(s.to_owned()))
    }

    /// A new id: 32 hex digits, unique in the process and random across
    /// processes.
    fn mint() -> RequestId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&crate::trace::random_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&crate::trace::random_u64().to_be_bytes());
        RequestId(crate::trace::hex(&bytes))
    }
}

/// Reads or mints the request id and echoes it back.
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer;

const REQUEST_ID: &str = "x-request-id";

impl Middleware for RequestIdLayer {
    fn call<S, B>(&self, inner: &mut S, mut req: http::Request<B>) -> BoxFuture<http::Response<Body>, S::Error>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let id = req.headers().get(REQUEST_ID).and_then(RequestId::from_header).unwrap_or_else(RequestId::mint);
        let header = http::HeaderValue::from_str(&id.0).ok();
        req.extensions_mut().insert(id);
        let future = inner.call(req);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(h) = header {
                response.headers_mut().insert(REQUEST_ID, h);
            }
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
    timeouts: Arc<HashMap<&'static str, Duration>>,
}

impl DeadlineLayer {
    /// Deadlines from the method specs of `specs`.
    pub fn new(specs: &[&'static ServiceSpec]) -> Self {
        let timeouts =
            specs.iter().flat_map(|s| s.methods.iter()).filter_map(|m| m.timeout.map(|t| (m.path, t))).collect();
        DeadlineLayer { timeouts: Arc::new(timeouts) }
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

impl Middleware for DeadlineLayer {
    fn call<S, B>(&self, inner: &mut S, req: http::Request<B>) -> BoxFuture<http::Response<Body>, S::Error>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let annotated = self.timeouts.get(req.uri().path()).copied();
        let caller = req.headers().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
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
                let id = id.as_ref().map_or("", |r| r.0.as_str());
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
        assert_eq!(a.0.len(), 32);
        let ok = http::HeaderValue::from_static("abc-123");
        assert_eq!(RequestId::from_header(&ok), Some(RequestId("abc-123".into())));
        let long = http::HeaderValue::from_str(&"x".repeat(129)).expect("header");
        assert_eq!(RequestId::from_header(&long), None);
    }
}

/// Reports an oversized request message as `RESOURCE_EXHAUSTED`, as gRPC
/// specifies and other implementations do (tonic answers `OUT_OF_RANGE`).
/// Innermost, so every other layer sees the corrected code.
#[derive(Debug, Clone, Default)]
pub struct MessageLimitLayer;

/// tonic's decode-limit message, as it appears percent-encoded in
/// `grpc-message`.
const TOO_LARGE: &str = "Error,%20decoded%20message%20length%20too%20large";

fn fix_status(headers: &mut http::HeaderMap) {
    let too_large = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers.get("grpc-message").and_then(|v| v.to_str().ok()).is_some_and(|m| m.starts_with(TOO_LARGE));
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

impl Middleware for MessageLimitLayer {
    fn call<S, B>(&self, inner: &mut S, req: http::Request<B>) -> BoxFuture<http::Response<Body>, S::Error>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let future = inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            let (mut parts, body) = response.into_parts();
            fix_status(&mut parts.headers);
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
