//! Panic recovery: a panicking handler answers `INTERNAL` and is logged.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;

use super::{POLLED_AFTER_COMPLETION, PathMap, forever};
use crate::codegen::ServiceSpec;
use crate::context::RequestId;
use crate::log::{Level, Logger, Value};

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

    #[inline]
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

    #[inline]
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
