//! The layers of the generated server, one file each, and what they share:
//! the [`Middleware`] trait, the generic [`Wrap`] service that runs one,
//! and per-path tables built once and kept for the process.
//!
//! Most layers are a [`Middleware`]: a step before the call and one after
//! it. Nothing is boxed: the futures of the layers nest into one value,
//! allocated once with the call's task. Deadlines and panic recovery act
//! while the call runs, so they are services of their own
//! ([`Deadline`], [`Recover`]).
//!
//! Layers know this module and the leaves of the crate (configuration,
//! metrics registry, trace context, credentials), never the server or the
//! client. The server composes them, in its documented order, in
//! [`crate::server::Stack`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tonic::body::Body;

mod access_log;
mod auth;
mod concurrency;
mod deadline;
mod message_limit;
mod metrics;
mod propagate;
mod rate_limit;
mod recover;
mod request_id;
mod trace;

pub use access_log::{AccessLogLayer, Pending};
pub use auth::AuthLayer;
pub use concurrency::{ConcurrencyLayer, Slot};
pub use deadline::{Deadline, DeadlineFuture, DeadlineLayer, parse_grpc_timeout};
pub use message_limit::MessageLimitLayer;
pub use metrics::MetricsLayer;
pub use propagate::{CallDeadline, Propagate, PropagateLayer};
pub use rate_limit::RateLimitLayer;
pub use recover::{Recover, RecoverFuture, RecoverLayer};
pub use request_id::RequestIdLayer;
pub use trace::TraceLayer;

pub use crate::context::RequestId;
pub(crate) use crate::table::{PathMap, forever};

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

    #[inline]
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

    #[inline]
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

impl<M, S> Wrap<M, S> {
    pub(crate) fn wrapping(middleware: M, inner: S) -> Self {
        Wrap { middleware, inner }
    }
}
