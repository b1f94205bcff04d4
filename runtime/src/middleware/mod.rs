//! The steps of the generated server's middleware, one file each, and the
//! per-path tables they read, built once and kept for the process.
//!
//! Each file holds one layer's logic as plain functions and types: read or
//! mint the request id, check a token, take a rate-limit token, enter the
//! concurrency limit, compute a deadline, catch a panic, fix a status,
//! write an access record. [`crate::server::Stack`] runs them, in the
//! documented order, as the steps of one service with one state per call,
//! so nothing is looked up, copied or boxed more than once per call.
//!
//! Layers know this module and the leaves of the crate (configuration,
//! metrics registry, trace context, credentials), never the server or the
//! client.

pub(crate) mod access_log;
pub(crate) mod auth;
pub(crate) mod concurrency;
pub(crate) mod deadline;
pub(crate) mod message_limit;
pub(crate) mod rate_limit;
pub(crate) mod recover;
pub(crate) mod request_id;
pub(crate) mod trace;

pub use deadline::parse_grpc_timeout;

/// The request headers the steps read, found in one pass over the
/// headers rather than one hashed look-up each (a call carries a handful
/// of headers; hashing a custom name costs more than passing them all).
#[derive(Default)]
pub(crate) struct Seen<'a> {
    /// `x-request-id`.
    pub(crate) request_id: Option<&'a http::HeaderValue>,
    /// `traceparent`.
    pub(crate) traceparent: Option<&'a http::HeaderValue>,
    /// `grpc-timeout`.
    pub(crate) timeout: Option<&'a http::HeaderValue>,
}

impl Seen<'_> {
    /// The first of each in `headers`, as a look-up would find it.
    #[inline]
    pub(crate) fn scan(headers: &http::HeaderMap) -> Seen<'_> {
        let mut seen = Seen::default();
        for (name, value) in headers {
            let slot = match name.as_str() {
                "x-request-id" => &mut seen.request_id,
                "traceparent" => &mut seen.traceparent,
                "grpc-timeout" => &mut seen.timeout,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        seen
    }
}
pub use trace::TraceLayer;

pub use crate::context::RequestId;
pub(crate) use crate::table::{PathMap, forever};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_finds_what_look_ups_find() {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/grpc".parse().expect("value"));
        headers.append("x-request-id", "first".parse().expect("value"));
        headers.append("x-request-id", "second".parse().expect("value"));
        headers.insert("grpc-timeout", "5S".parse().expect("value"));
        headers.insert("x-traceparent", "not it".parse().expect("value"));
        let seen = Seen::scan(&headers);
        assert_eq!(seen.request_id, headers.get("x-request-id"));
        assert_eq!(seen.request_id.map(|v| v.as_bytes()), Some(&b"first"[..]));
        assert_eq!(seen.timeout, headers.get("grpc-timeout"));
        assert_eq!(seen.traceparent, None);
    }
}
