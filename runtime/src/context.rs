//! What identifies a call while it is served, shared by the middleware
//! that sets it, the handlers that read it and the clients that pass it on:
//! the request id, the caller's address, and the [`CallContext`] that
//! outgoing calls made while handling it inherit.

use std::net::SocketAddr;
use std::time::Instant;

use crate::trace::TraceContext;

/// The call a generated server is handling, as calls made from its
/// handler inherit it: the generated client sends no later deadline than
/// this one, the same trace (the server span as parent) and the same
/// request id. The server sets it around every handler; code that spawns
/// tasks passes it on with [`CallContext::scope`].
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// When the call being served must end.
    pub deadline: Option<Instant>,
    /// The server span of the call being served.
    pub trace: Option<TraceContext>,
    /// The call's request id.
    pub request_id: Option<RequestId>,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl CallContext {
    /// The context of the call being served by the current task, if any.
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` with this context, e.g. a task spawned by a handler:
    /// `tokio::spawn(CallContext::current().unwrap_or_default().scope(work))`.
    pub fn scope<F: Future>(self, future: F) -> tokio::task::futures::TaskLocalFuture<CallContext, F> {
        CURRENT.scope(self, future)
    }
}

/// The deadline of the call being served, if any.
pub(crate) fn current_deadline() -> Option<Instant> {
    CURRENT.try_with(|c| c.deadline).ok().flatten()
}

/// Adds the served call's `traceparent` and `x-request-id` to an outgoing
/// call's headers, unless the caller set them.
pub(crate) fn propagate(headers: &mut http::HeaderMap) {
    static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    static REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
    let _ = CURRENT.try_with(|c| {
        if let Some(trace) = &c.trace
            && !headers.contains_key(&TRACEPARENT)
            && let Ok(v) = http::HeaderValue::from_str(&trace.traceparent())
        {
            headers.insert(&TRACEPARENT, v);
        }
        if let Some(id) = &c.request_id
            && !headers.contains_key(&REQUEST_ID)
        {
            headers.insert(&REQUEST_ID, id.header());
        }
    });
}

/// The request's id, from `x-request-id` or minted; in request extensions
/// (handlers read it with `request.extensions().get::<RequestId>()`) and
/// echoed in the response headers. Copying one allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(IdText);

#[derive(Debug, Clone, PartialEq, Eq)]
enum IdText {
    /// Minted here: 32 hex digits, kept inline.
    Minted([u8; 32]),
    /// The caller's, sharing the header's buffer.
    Given(http::HeaderValue),
}

impl RequestId {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        // Both kinds hold visible ASCII only.
        let bytes = match &self.0 {
            IdText::Minted(digits) => &digits[..],
            IdText::Given(value) => value.as_bytes(),
        };
        crate::trace::ascii(bytes)
    }

    /// Accepts a caller's id when it is 1..=128 visible ASCII characters.
    pub(crate) fn from_header(value: &http::HeaderValue) -> Option<RequestId> {
        let b = value.as_bytes();
        (!b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic))
            .then(|| RequestId(IdText::Given(value.clone())))
    }

    /// A new id: 32 hex digits, unique in the process and random across
    /// processes.
    pub(crate) fn mint() -> RequestId {
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&crate::trace::random_u64().to_be_bytes());
        random[8..].copy_from_slice(&crate::trace::random_u64().to_be_bytes());
        let mut digits = [0u8; 32];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(random) {
            pair.copy_from_slice(&crate::trace::hex_pair(byte));
        }
        RequestId(IdText::Minted(digits))
    }

    /// The id as a response header value.
    pub(crate) fn header(&self) -> http::HeaderValue {
        match &self.0 {
            IdText::Minted(digits) => {
                http::HeaderValue::from_bytes(digits).expect("hex digits are a valid header value")
            }
            IdText::Given(value) => value.clone(),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client's address from a request's extensions, over plain TCP or
/// TLS.
pub fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    use tonic::transport::server::TcpConnectInfo;
    let tcp = extensions.get::<TcpConnectInfo>();
    #[cfg(feature = "tls")]
    let tcp = tcp
        .or_else(|| extensions.get::<tonic::transport::server::TlsConnectInfo<TcpConnectInfo>>().map(|t| t.get_ref()));
    tcp.and_then(|info| info.remote_addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let a = RequestId::mint();
        let b = RequestId::mint();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let ok = http::HeaderValue::from_static("abc-123");
        assert_eq!(RequestId::from_header(&ok).as_ref().map(RequestId::as_str), Some("abc-123"));
        let spaced = http::HeaderValue::from_static("a b");
        assert_eq!(RequestId::from_header(&spaced), None);
        let long = http::HeaderValue::from_str(&"x".repeat(129)).expect("header");
        assert_eq!(RequestId::from_header(&long), None);
    }
}
