//! Sets the [`CallContext`] around the handler, so that calls the handler
//! makes through a generated client inherit the call's deadline, trace and
//! request id with no code in the handler.

use std::task::{Context, Poll};
use std::time::Instant;

use tokio::task::futures::TaskLocalFuture;

use crate::context::{CallContext, RequestId};
use crate::trace::TraceContext;

/// When the call being served must end, as the deadline layer computed it
/// (in request extensions).
#[derive(Debug, Clone, Copy)]
pub struct CallDeadline(pub Instant);

/// Runs the inner service's future inside the call's [`CallContext`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateLayer;

impl<S> tower_layer::Layer<S> for PropagateLayer {
    type Service = Propagate<S>;
    fn layer(&self, inner: S) -> Propagate<S> {
        Propagate { inner }
    }
}

/// The service of [`PropagateLayer`].
#[derive(Debug, Clone)]
pub struct Propagate<S> {
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for Propagate<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<CallContext, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let context = CallContext {
            deadline: req.extensions().get::<CallDeadline>().map(|d| d.0),
            trace: req.extensions().get::<TraceContext>().copied(),
            request_id: req.extensions().get::<RequestId>().cloned(),
        };
        context.scope(self.inner.call(req))
    }
}
