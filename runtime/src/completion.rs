//! Observing the end of a call: its final `grpc-status` comes in the
//! response headers (trailers-only responses) or in the trailers after the
//! body; a response dropped before either counts as `CANCELLED`.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};
use tonic::body::Body;

/// Runs `done(code)` exactly once when the call behind `response` ends.
pub(crate) fn observe<F>(response: http::Response<Body>, done: F) -> http::Response<Body>
where
    F: FnOnce(u8) + Send + Unpin + 'static,
{
    let (parts, body) = response.into_parts();
    let mut completion = Completion(Some(done));
    if let Some(code) = status_of(&parts.headers) {
        completion.finish(code);
        return http::Response::from_parts(parts, body);
    }
    http::Response::from_parts(parts, Body::new(ObservedBody { inner: body, completion }))
}

pub(crate) static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The final status code in `headers`, if they carry one (an unreadable
/// one counts as `UNKNOWN`).
pub(crate) fn status_of(headers: &http::HeaderMap) -> Option<u8> {
    let code = match headers.get(&GRPC_STATUS)?.as_bytes() {
        [d] if d.is_ascii_digit() => d - b'0',
        [b'1', d] if (b'0'..=b'6').contains(d) => 10 + (d - b'0'),
        _ => 2,
    };
    Some(code)
}

/// Calls its function once; dropping it unfinished reports `CANCELLED`.
pub(crate) struct Completion<F: FnOnce(u8)>(pub(crate) Option<F>);

impl<F: FnOnce(u8)> Completion<F> {
    pub(crate) fn finish(&mut self, code: u8) {
        if let Some(done) = self.0.take() {
            done(code);
        }
    }
}

impl<F: FnOnce(u8)> Drop for Completion<F> {
    fn drop(&mut self) {
        self.finish(1);
    }
}

struct ObservedBody<F: FnOnce(u8)> {
    inner: Body,
    completion: Completion<F>,
}

impl<F: FnOnce(u8) + Send + Unpin + 'static> http_body::Body for ObservedBody<F> {
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
                    self.completion.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.completion.finish(13),
            Poll::Ready(None) => self.completion.finish(0),
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
