//! Per-call work at the HTTP/2 level that the interop cases need and a
//! tonic handler cannot do itself:
//!
//! - metadata echo: `x-grpc-test-echo-initial` goes back in the response
//!   headers, `x-grpc-test-echo-trailing-bin` in the trailers;
//! - request compression: each request message's compressed flag (the
//!   first byte of its gRPC frame) is recorded, so a handler can refuse a
//!   message sent uncompressed although it `expect_compressed`;
//! - response compression: each response message a handler marks with
//!   [`Compression::compress_next`] is sent gzip-compressed (when the
//!   client accepts gzip), the others as they are, so compression is
//!   chosen per message as `response_compressed` and
//!   `ResponseParameters.compressed` ask.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use http_body::Frame;
use svc_runtime::tonic::Status;
use svc_runtime::tonic::body::Body;
use svc_runtime::tonic::server::NamedService;
use tower_service::Service;

/// The metadata echoed in the response headers.
pub const ECHO_INITIAL: HeaderName = HeaderName::from_static("x-grpc-test-echo-initial");
/// The metadata echoed in the trailers.
pub const ECHO_TRAILING: HeaderName = HeaderName::from_static("x-grpc-test-echo-trailing-bin");

/// A call's record of message compression, shared by [`Interop`] and the
/// handler (found in the request's extensions).
#[derive(Debug, Clone, Default)]
pub struct Compression {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Compressed flags of the request messages not yet taken.
    received: VecDeque<bool>,
    /// Whether to compress each response message still to be sent.
    send: VecDeque<bool>,
}

impl Compression {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the next request message (in the order the handler receives
    /// them) arrived compressed.
    pub fn next_received_compressed(&self) -> bool {
        self.state().received.pop_front().unwrap_or(false)
    }

    /// Marks the next response message the handler sends: compressed or not.
    pub fn compress_next(&self, compressed: bool) {
        self.state().send.push_back(compressed);
    }
}

/// Wraps a generated tonic server with the echo and compression handling.
#[derive(Debug, Clone)]
pub struct Interop<S> {
    inner: S,
}

impl<S> Interop<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Interop { inner }
    }
}

impl<S: NamedService> NamedService for Interop<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for Interop<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let echo_initial = request.headers().get(ECHO_INITIAL).cloned();
        let mut echo_trailing = request.headers().get(ECHO_TRAILING).cloned();
        let gzip = request
            .headers()
            .get_all("grpc-accept-encoding")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| e.trim() == "gzip");
        let compression = Compression::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(compression.clone());
        let body = Body::new(Inspect { inner: body, frames: Frames::default(), compression: compression.clone() });
        let future = self.inner.call(http::Request::from_parts(parts, body));
        Box::pin(async move {
            let response = future.await?;
            let (mut parts, body) = response.into_parts();
            if let Some(value) = echo_initial {
                parts.headers.insert(ECHO_INITIAL, value);
            }
            // A trailers-only response (an error before any message) carries
            // its trailers in the headers.
            let trailers_only = parts.headers.contains_key("grpc-status");
            if trailers_only && let Some(value) = echo_trailing.take() {
                parts.headers.insert(ECHO_TRAILING, value);
            }
            if trailers_only {
                // Its body is empty and says so, so the headers end the stream.
                return Ok(http::Response::from_parts(parts, body));
            }
            if gzip {
                parts.headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
            }
            let body = Rewrite { inner: body, buf: BytesMut::new(), gzip, compression, echo_trailing };
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}

/// Where the reader of a stream of gRPC frames is: in a frame's 5-byte
/// prefix, or in its message.
#[derive(Debug, Default)]
struct Frames {
    /// Prefix bytes read of the current frame (0 to 5).
    prefix: usize,
    header: [u8; 5],
    /// Message bytes of the current frame still to come.
    remaining: usize,
}

impl Frames {
    /// Reads `data`, calling `flag` with each frame's compressed flag as its
    /// prefix completes.
    fn read(&mut self, mut data: &[u8], mut flag: impl FnMut(bool)) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix).min(data.len());
            self.header[self.prefix..self.prefix + n].copy_from_slice(&data[..n]);
            self.prefix += n;
            data = &data[n..];
            if self.prefix == 5 {
                self.prefix = 0;
                flag(self.header[0] == 1);
                self.remaining =
                    u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]) as usize;
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body passed on unchanged, its frames' flags recorded.
    struct Inspect {
        #[pin]
        inner: Body,
        frames: Frames,
        compression: Compression,
    }
}

impl http_body::Body for Inspect {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            let compression = &*this.compression;
            this.frames.read(data, |compressed| compression.state().received.push_back(compressed));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

pin_project_lite::pin_project! {
    /// A response body whose frames are compressed as the handler marked
    /// them, with the trailing echo added to its trailers.
    struct Rewrite {
        #[pin]
        inner: Body,
        buf: BytesMut,
        gzip: bool,
        compression: Compression,
        echo_trailing: Option<HeaderValue>,
    }
}

/// gzip of `message`, as a gRPC frame with the compressed flag set.
fn gzip_frame(message: &[u8]) -> Result<Bytes, Status> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(message).map_err(|e| Status::internal(format!("gzip: {e}")))?;
    let compressed = encoder.finish().map_err(|e| Status::internal(format!("gzip: {e}")))?;
    let len = u32::try_from(compressed.len()).map_err(|_| Status::internal("compressed message over 4 GiB"))?;
    let mut frame = BytesMut::with_capacity(5 + compressed.len());
    frame.put_u8(1);
    frame.put_u32(len);
    frame.extend_from_slice(&compressed);
    Ok(frame.freeze())
}

impl Rewrite {
    /// The next whole frame buffered, compressed if it was marked so.
    fn next_frame(buf: &mut BytesMut, gzip: bool, compression: &Compression) -> Option<Result<Bytes, Status>> {
        if buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            return None;
        }
        let mut frame = buf.split_to(5 + len);
        let compress = compression.state().send.pop_front().unwrap_or(false);
        if frame[0] == 0 && gzip && compress {
            frame.advance(5);
            return Some(gzip_frame(&frame));
        }
        Some(Ok(frame.freeze()))
    }
}

impl http_body::Body for Rewrite {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut this = self.project();
        loop {
            if let Some(frame) = Rewrite::next_frame(this.buf, *this.gzip, this.compression) {
                return Poll::Ready(Some(frame.map(Frame::data)));
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.buf.extend_from_slice(&data),
                    Err(frame) => {
                        let Ok(mut trailers) = frame.into_trailers() else { continue };
                        if let Some(value) = this.echo_trailing.take() {
                            trailers.insert(ECHO_TRAILING, value);
                        }
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None if this.buf.is_empty() => return Poll::Ready(None),
                // A frame cut short: pass on what there is, as it came.
                None => return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze())))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buf.is_empty() && self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::{Compression, Frames, Rewrite, gzip_frame};
    use bytes::BytesMut;

    fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    #[test]
    fn records_each_frames_flag_however_the_bytes_are_split() {
        let mut bytes = frame(1, b"abc");
        bytes.extend(frame(0, &[7; 300]));
        bytes.extend(frame(1, b""));
        for split in [1, 2, 5, 7, 64, bytes.len()] {
            let mut frames = Frames::default();
            let mut flags = Vec::new();
            for chunk in bytes.chunks(split) {
                frames.read(chunk, |f| flags.push(f));
            }
            assert_eq!(flags, [true, false, true], "chunks of {split}");
        }
    }

    #[test]
    fn compresses_only_the_marked_frames() {
        let compression = Compression::default();
        compression.compress_next(true);
        compression.compress_next(false);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(0, &[0; 1000]));
        buf.extend_from_slice(&frame(0, b"plain"));
        buf.extend_from_slice(&frame(0, b"cut")[..6]);
        let first = Rewrite::next_frame(&mut buf, true, &compression).unwrap().unwrap();
        assert_eq!(first[0], 1);
        assert!(first.len() < 100, "1000 zeros compress");
        let mut decoder = flate2::read::GzDecoder::new(&first[5..]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut decoder, &mut out).unwrap();
        assert_eq!(out, vec![0; 1000]);
        assert_eq!(&Rewrite::next_frame(&mut buf, true, &compression).unwrap().unwrap()[..], &frame(0, b"plain")[..]);
        assert!(Rewrite::next_frame(&mut buf, true, &compression).is_none(), "a partial frame waits");
        assert_eq!(gzip_frame(b"").unwrap()[0], 1);
    }

    #[test]
    fn a_client_that_does_not_accept_gzip_gets_every_frame_plain() {
        let compression = Compression::default();
        compression.compress_next(true);
        let mut buf = BytesMut::from(&frame(0, b"x")[..]);
        assert_eq!(&Rewrite::next_frame(&mut buf, false, &compression).unwrap().unwrap()[..], &frame(0, b"x")[..]);
    }
}
