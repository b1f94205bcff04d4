//! Tower layers of the generated server, outermost first:
//! [`RequestIdLayer`] → tracing span ([`crate::trace`]) → metrics
//! ([`crate::metrics`]) → authentication ([`crate::auth`]) → access and
//! audit log ([`crate::log`]) → rate limit and load shedding
//! ([`crate::limits`]) → [`DeadlineLayer`] → [`RecoverLayer`] →
//! [`MessageLimitLayer`] → handler. (Validation slots in at its documented
//! place when it lands.) [`Stack`] is all of them as one layer.
//!
//! Most are a [`Middleware`]: a step before the call and one after it,
//! run by the generic [`Wrap`] service. Nothing is boxed: the futures of
//! the layers nest into one value, allocated once with the call's task.
//! Deadlines and panic recovery act while the call runs, so they are
//! services of their own ([`Deadline`], [`Recover`]).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tonic::Status;
use tonic::body::Body;

use crate::codegen::ServiceSpec;
use crate::log::{Level, Logger, Value};

/// What one layer of the server does with a call: a look at (or change
/// to) the request before the inner service sees it, and one at the
/// response after. [`Wrap`] supplies the tower plumbing around it
/// (readiness is the inner service's), and each layer type is its own
/// `tower_layer::Layer`, wrapping the inner service with a copy of itself.
pub trait Middleware {
    /// What the layer carries from the request to its response.
    type State: Send + 'static;

    /// Before the call: reads or changes `req`, or answers the call itself
    /// (`Err`) without calling further in.
    #[expect(
        clippy::result_large_err,
        reason = "an answer is moved out once, on rejected calls only; boxing it would cost an allocation"
    )]
    fn request<B>(&self, req: &mut http::Request<B>) -> Result<Self::State, http::Response<Body>>;

    /// After the call: shapes the response (headers, and the body, which
    /// may be wrapped to see the call's end). By default the response
    /// passes unchanged and the state is dropped.
    fn response(state: Self::State, response: http::Response<Body>) -> http::Response<Body> {
        drop(state);
        response
    }
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
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = WrapFuture<M, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.middleware.request(&mut req) {
            Ok(state) => WrapFuture::Inner { future: self.inner.call(req), state: Some(state) },
            Err(response) => WrapFuture::Answered { response: Some(response) },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Wrap`]: the inner call followed by
    /// [`Middleware::response`], or the middleware's own answer.
    #[project = WrapProjection]
    pub enum WrapFuture<M: Middleware, F> {
        /// The middleware answered the call.
        Answered { response: Option<http::Response<Body>> },
        /// The inner service is answering.
        Inner { #[pin] future: F, state: Option<M::State> },
    }
}

const POLLED_AFTER_COMPLETION: &str = "future polled after it completed";

impl<M, F, E> Future for WrapFuture<M, F>
where
    M: Middleware,
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            WrapProjection::Answered { response } => Poll::Ready(Ok(response.take().expect(POLLED_AFTER_COMPLETION))),
            WrapProjection::Inner { future, state } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(M::response(state.take().expect(POLLED_AFTER_COMPLETION), response)))
            }
        }
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

/// A table keyed by method path: built when the server starts, only read
/// while it serves.
pub(crate) type PathMap<V> = HashMap<&'static str, V, std::hash::BuildHasherDefault<PathHasher>>;

/// A quick hash for method paths: the length and three 8-byte words
/// (start, middle, end), mixed by multiply-rotate. Paths of one service
/// share a prefix and differ toward the end, which the last word covers;
/// lookups compare whole keys, so a rare collision costs a comparison,
/// never a wrong answer. Path tables are fixed before the first call and
/// calls only look them up, so a caller picking colliding paths slows
/// nothing but its own lookup: SipHash's protection against flooding is
/// not needed here.
#[derive(Default)]
pub(crate) struct PathHasher(u64);

impl PathHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        self.mix(bytes.len() as u64);
        if bytes.len() >= 8 {
            self.mix(word(0));
            self.mix(word(bytes.len() / 2 - 4));
            self.mix(word(bytes.len() - 8));
        } else {
            let mut short = [0u8; 8];
            short[..bytes.len()].copy_from_slice(bytes);
            self.mix(u64::from_le_bytes(short));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        // `str` ends its hash with one 0xff byte.
        self.mix(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

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
/// echoed in the response headers. Copying one allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(IdText);

#[derive(Debug, Clone, PartialEq, Eq)]
enum IdText {
    /// Minted here: 32 hex digits, kept inline.
    Minted([u8; 32]),
    /// The caller's, sharing the header's buffer.
    Given(http::HeaderValue),
}

impl RequestId {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        // Both kinds hold visible ASCII only.
        let bytes = match &self.0 {
            IdText::Minted(digits) => &digits[..],
            IdText::Given(value) => value.as_bytes(),
        };
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Accepts a caller's id when it is 1..=128 visible ASCII characters.
    fn from_header(value: &http::HeaderValue) -> Option<RequestId> {
        let b = value.as_bytes();
        (!b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic))
            .then(|| RequestId(IdText::Given(value.clone())))
    }

    /// A new id: 32 hex digits, unique in the process and random across
    /// processes.
    fn mint() -> RequestId {
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&crate::trace::random_u64().to_be_bytes());
        random[8..].copy_from_slice(&crate::trace::random_u64().to_be_bytes());
        let mut digits = [0u8; 32];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(random) {
            pair.copy_from_slice(&crate::trace::hex_pair(byte));
        }
        RequestId(IdText::Minted(digits))
    }

    /// The id as a response header value.
    fn header(&self) -> http::HeaderValue {
        match &self.0 {
            IdText::Minted(digits) => {
                http::HeaderValue::from_bytes(digits).expect("hex digits are a valid header value")
            }
            IdText::Given(value) => value.clone(),
        }
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
    /// The id, for the response header.
    type State = http::HeaderValue;

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<http::HeaderValue, http::Response<Body>> {
        let id = req.headers().get(&REQUEST_ID).and_then(RequestId::from_header).unwrap_or_else(RequestId::mint);
        let mut header = id.header();
        // Ids differ per call: HPACK should not spend its table on them.
        header.set_sensitive(true);
        req.extensions_mut().insert(id);
        Ok(header)
    }

    fn response(header: http::HeaderValue, mut response: http::Response<Body>) -> http::Response<Body> {
        response.headers_mut().insert(&REQUEST_ID, header);
        response
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
    timeouts: &'static PathMap<Duration>,
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

impl<S> tower_layer::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { timeouts: self.timeouts, inner }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    timeouts: &'static PathMap<Duration>,
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for Deadline<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let annotated = self.timeouts.get(req.uri().path()).copied();
        let caller = req.headers().get(&GRPC_TIMEOUT).and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        let limit = match (annotated, caller) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        };
        DeadlineFuture { inner: self.inner.call(req), timer: None, limit }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Deadline`]. Its timer starts on the first poll that
    /// finds the call still running, so calls answered at once (most
    /// unary ones) never touch the clock or the timer wheel.
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        limit: Option<Duration>,
    }
}

impl<F, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        let Some(limit) = *this.limit else { return Poll::Pending };
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(limit)));
        }
        let Some(timer) = this.timer.as_pin_mut() else { return Poll::Pending };
        ready!(timer.poll(cx));
        let message = format!("deadline of {}ms exceeded", limit.as_millis());
        Poll::Ready(Ok(Status::deadline_exceeded(message).into_http()))
    }
}

/// Turns a panicking handler into `INTERNAL` and keeps serving; the panic
/// is logged as an `error` record with the method, request id, trace id
/// and panic message.
#[derive(Debug, Clone, Copy)]
pub struct RecoverLayer {
    logger: Logger,
    /// The methods of the specs, whose paths reports name without copying.
    paths: &'static PathMap<()>,
}

impl RecoverLayer {
    /// Reports panics in the methods of `specs` (and any other path)
    /// through `logger`.
    pub fn new(specs: &[&'static ServiceSpec], logger: Logger) -> RecoverLayer {
        let paths = specs.iter().flat_map(|s| s.methods.iter()).map(|m| (m.path, ())).collect();
        RecoverLayer { logger, paths: forever(paths) }
    }
}

impl<S> tower_layer::Layer<S> for RecoverLayer {
    type Service = Recover<S>;
    fn layer(&self, inner: S) -> Recover<S> {
        Recover { layer: *self, inner }
    }
}

/// The service of [`RecoverLayer`].
#[derive(Debug, Clone)]
pub struct Recover<S> {
    layer: RecoverLayer,
    inner: S,
}

/// What a panic report names.
struct Report {
    logger: Logger,
    path: std::borrow::Cow<'static, str>,
    id: Option<RequestId>,
    trace: Option<crate::trace::TraceContext>,
}

impl Report {
    fn answer(&self, panic: &(dyn std::any::Any + Send)) -> http::Response<Body> {
        let trace = self.trace.map(|t| t.trace_id_hex());
        let id = self.id.as_ref().map_or("", RequestId::as_str);
        panicked(self.logger, &self.path, id, trace.as_deref(), panic)
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for Recover<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = RecoverFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // What the report needs, kept without allocating for the service's
        // own methods; text only on panic.
        let path = match self.layer.paths.get_key_value(req.uri().path()) {
            Some((path, ())) => std::borrow::Cow::Borrowed(*path),
            None => std::borrow::Cow::Owned(req.uri().path().to_owned()),
        };
        let report = Report {
            logger: self.layer.logger,
            path,
            id: req.extensions().get::<RequestId>().cloned(),
            trace: req.extensions().get::<crate::trace::TraceContext>().copied(),
        };
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))) {
            Ok(future) => RecoverFuture { state: RecoverState::Running { future, report: Some(report) } },
            Err(panic) => RecoverFuture { state: RecoverState::Answered { response: Some(report.answer(&*panic)) } },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Recover`].
    pub struct RecoverFuture<F> {
        #[pin]
        state: RecoverState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = RecoverProjection]
    enum RecoverState<F> {
        /// The handler panicked before returning its future.
        Answered { response: Option<http::Response<Body>> },
        /// The handler's future, polled with panics caught.
        Running { #[pin] future: F, report: Option<Report> },
    }
}

impl<F, E> Future for RecoverFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project().state.project() {
            RecoverProjection::Answered { response } => {
                Poll::Ready(Ok(response.take().expect(POLLED_AFTER_COMPLETION)))
            }
            RecoverProjection::Running { future, report } => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(poll) => poll,
                    Err(panic) => {
                        let report = report.take().expect(POLLED_AFTER_COMPLETION);
                        Poll::Ready(Ok(report.answer(&*panic)))
                    }
                }
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tables() {
        let paths = ["/a.v1.S/Get", "/a.v1.S/Set", "/a.v1.S/GetMany", "/b/c", "/", "", "/a.v1.T/Get"];
        let table: PathMap<usize> = paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(table.get(p), Some(&i), "{p}");
        }
        for absent in ["/a.v1.S/Gex", "/a.v1.S/Get ", "/b/d", "//", "/a.v1.S/GetManx"] {
            assert_eq!(table.get(absent), None, "{absent}");
        }
    }

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
    headers_only: &'static PathMap<()>,
}

impl MessageLimitLayer {
    /// For the methods of `specs`.
    pub fn new(specs: &[&'static ServiceSpec]) -> MessageLimitLayer {
        let headers_only = specs
            .iter()
            .flat_map(|s| s.methods.iter())
            .filter(|m| m.kind != crate::codegen::MethodKind::Streaming)
            .map(|m| (m.path, ()))
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
    /// Whether the trailers can be left alone.
    type State = bool;

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<bool, http::Response<Body>> {
        Ok(self.headers_only.contains_key(req.uri().path()))
    }

    fn response(headers_only: bool, mut response: http::Response<Body>) -> http::Response<Body> {
        fix_status(response.headers_mut());
        if headers_only {
            return response;
        }
        let (parts, body) = response.into_parts();
        http::Response::from_parts(parts, Body::new(FixTrailers(body)))
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

/// The generated server's whole middleware as one layer, in the
/// documented order (see the module docs). `Server` serves behind it;
/// it is public for servers assembled by hand and for benchmarks.
#[derive(Clone)]
pub struct Stack {
    request_id: RequestIdLayer,
    trace: crate::trace::TraceLayer,
    metrics: crate::metrics::MetricsLayer,
    auth: crate::auth::AuthLayer,
    access_log: crate::log::AccessLogLayer,
    rate_limit: crate::limits::RateLimitLayer,
    concurrency: crate::limits::ConcurrencyLayer,
    deadline: DeadlineLayer,
    recover: RecoverLayer,
    message_limit: MessageLimitLayer,
}

impl Stack {
    /// The middleware for `services` (each with the verifier of its JWT
    /// rules, if it has any), logging through `logger`, recording metrics
    /// in `registry` and spans through `trace`.
    pub fn new(
        services: Vec<(&'static ServiceSpec, Option<crate::auth::Verifier>)>,
        logger: Logger,
        registry: &'static crate::metrics::Registry,
        trace: crate::trace::TraceLayer,
    ) -> Stack {
        let specs: Vec<&'static ServiceSpec> = services.iter().map(|(spec, _)| *spec).collect();
        Stack {
            request_id: RequestIdLayer,
            trace,
            metrics: crate::metrics::MetricsLayer::new(registry),
            auth: crate::auth::AuthLayer::for_services(services),
            access_log: crate::log::AccessLogLayer::new(&specs, logger),
            rate_limit: crate::limits::RateLimitLayer::new(&specs),
            concurrency: crate::limits::ConcurrencyLayer::new(&specs),
            deadline: DeadlineLayer::new(&specs),
            recover: RecoverLayer::new(&specs, logger),
            message_limit: MessageLimitLayer::new(&specs),
        }
    }
}

/// The service [`Stack`] builds around `S`.
pub type Stacked<S> = Wrap<
    RequestIdLayer,
    Wrap<
        crate::trace::TraceLayer,
        Wrap<
            crate::metrics::MetricsLayer,
            Wrap<
                crate::auth::AuthLayer,
                Wrap<
                    crate::log::AccessLogLayer,
                    Wrap<
                        crate::limits::RateLimitLayer,
                        Wrap<crate::limits::ConcurrencyLayer, Deadline<Recover<Wrap<MessageLimitLayer, S>>>>,
                    >,
                >,
            >,
        >,
    >,
>;

impl<S> tower_layer::Layer<S> for Stack {
    type Service = Stacked<S>;

    fn layer(&self, inner: S) -> Stacked<S> {
        let s = Wrap::wrapping(self.message_limit.clone(), inner);
        let s = Recover { layer: self.recover, inner: s };
        let s = Deadline { timeouts: self.deadline.timeouts, inner: s };
        let s = Wrap::wrapping(self.concurrency.clone(), s);
        let s = Wrap::wrapping(self.rate_limit.clone(), s);
        let s = Wrap::wrapping(self.access_log.clone(), s);
        let s = Wrap::wrapping(self.auth.clone(), s);
        let s = Wrap::wrapping(self.metrics.clone(), s);
        let s = Wrap::wrapping(self.trace.clone(), s);
        Wrap::wrapping(self.request_id.clone(), s)
    }
}
