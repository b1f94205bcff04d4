//! Per-method deadlines: the annotated `timeout` or the caller's
//! `grpc-timeout`, whichever is sooner.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tonic::Status;
use tonic::body::Body;

use super::{PathMap, forever};
use crate::codegen::ServiceSpec;

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

    #[inline]
    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let annotated = self.timeouts.get(req.uri().path()).copied();
        let caller = req.headers().get(&GRPC_TIMEOUT).and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        let limit = match (annotated, caller) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        };
        if let Some(limit) = limit {
            req.extensions_mut().insert(super::CallDeadline(std::time::Instant::now() + limit));
        }
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

    #[inline]
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
}
