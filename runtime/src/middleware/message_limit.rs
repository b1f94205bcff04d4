//! The status of oversized request messages: `RESOURCE_EXHAUSTED`, as gRPC
//! specifies and other implementations do (tonic answers `OUT_OF_RANGE`).
//! Applied to the handler's response before any other layer sees it: in
//! its headers (trailers-only responses), and in the trailers of methods
//! that stream both ways, the only ones whose handlers meet a request
//! message after their response has begun. (Other paths, such as
//! reflection, are treated as streaming both ways.)

/// tonic's decode-limit message, as it appears percent-encoded in
/// `grpc-message`.
const TOO_LARGE: &str = "Error,%20decoded%20message%20length%20too%20large";

/// Rewrites tonic's `OUT_OF_RANGE` for an oversized message in `headers`
/// (or trailers) to `RESOURCE_EXHAUSTED`.
pub(crate) fn fix_status(headers: &mut http::HeaderMap) {
    fix(headers, crate::completion::status_of(headers));
}

/// [`fix_status`] for `headers` whose status is `code`: the code after.
#[inline]
pub(crate) fn fix(headers: &mut http::HeaderMap, code: Option<u8>) -> Option<u8> {
    static GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
    if code == Some(11) && headers.get(&GRPC_MESSAGE).is_some_and(|m| m.as_bytes().starts_with(TOO_LARGE.as_bytes())) {
        headers.insert(&crate::completion::GRPC_STATUS, http::HeaderValue::from_static("8"));
        return Some(8);
    }
    code
}
