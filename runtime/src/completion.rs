//! Observing the end of a call: its final `grpc-status` comes in the
//! response headers (trailers-only responses) or in the trailers after the
//! body; a response dropped before either counts as `CANCELLED`.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};
use tonic::body::Body;

/// Runs `done(code)` exactly once when the call behind `response` ends,
/// with `fix(trailers)` applied to its trailers first, if given. `status`
/// is the code in the response headers (see [`status_of`]), if any.
#[inline]
pub(crate) fn observe<F>(
    response: http::Response<Body>,
    status: Option<u8>,
    done: F,
    fix: Option<fn(&mut http::HeaderMap)>,
) -> http::Response<Body>
where
    F: FnOnce(u8) + Send + Unpin + 'static,
{
    let mut completion = Completion(Some(done));
    if let Some(code) = status {
        completion.finish(code);
        return response;
    }
    let (parts, body) = response.into_parts();
    http::Response::from_parts(parts, Body::new(ObservedBody { inner: body, completion, fix }))
}

pub(crate) static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The final status code in `headers`, if they carry one (an unreadable
/// one counts as `UNKNOWN`).
pub(crate) fn status_of(headers: &http::HeaderMap) -> Option<u8> {
    // Responses and trailers carry a few entries: passing them costs less
    // than hashing the name.
    let value = match headers.len() {
        0..=8 => headers.iter().find_map(|(name, value)| (name == GRPC_STATUS).then_some(value)),
        _ => headers.get(&GRPC_STATUS),
    };
    let code = match value?.as_bytes() {
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
    fix: Option<fn(&mut http::HeaderMap)>,
}

impl<F: FnOnce(u8) + Send + Unpin + 'static> http_body::Body for ObservedBody<F> {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &mut polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    if let Some(fix) = self.fix {
                        fix(trailers);
                    }
                    if let Some(code) = status_of(trailers) {
                        self.completion.finish(code);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_in_small_and_large_maps() {
        for extra in [0, 20] {
            let mut headers = http::HeaderMap::new();
            for i in 0..extra {
                headers.insert(
                    http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).expect("name"),
                    "v".parse().expect("value"),
                );
            }
            assert_eq!(status_of(&headers), None, "{extra} others");
            for (value, code) in [("0", 0), ("14", 14), ("16", 16), ("17", 2), ("x", 2), ("", 2)] {
                headers.insert(&GRPC_STATUS, value.parse().expect("value"));
                assert_eq!(status_of(&headers), Some(code), "{value:?} among {extra} others");
            }
        }
    }
}
