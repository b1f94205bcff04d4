//! The status of oversized request messages: `RESOURCE_EXHAUSTED`.

use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;

use super::{Middleware, PathMap, forever, layer};
use crate::codegen::ServiceSpec;

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
