//! Request ids: `x-request-id` read or minted, echoed back.

use crate::context::RequestId;

static REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The caller's id (`x-request-id`) when it is acceptable, else a new one.
#[inline]
pub(crate) fn of(header: Option<&http::HeaderValue>) -> RequestId {
    header.and_then(RequestId::from_header).unwrap_or_else(RequestId::mint)
}

/// Echoes `id` in the response `headers`.
#[inline]
pub(crate) fn echo(id: &RequestId, headers: &mut http::HeaderMap) {
    let mut header = id.header();
    // Ids differ per call: HPACK should not spend its table on them.
    header.set_sensitive(true);
    headers.insert(&REQUEST_ID, header);
}
