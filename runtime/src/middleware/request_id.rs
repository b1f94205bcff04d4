//! Request ids: `x-request-id` read or minted, echoed back.

use tonic::body::Body;

use super::{Middleware, layer};
use crate::context::RequestId;

/// Reads or mints the request id and echoes it back.
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer;

static REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl Middleware for RequestIdLayer {
    /// The id, for the response header.
    type State = http::HeaderValue;

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<http::HeaderValue, http::Response<Body>> {
        let id = req.headers().get(&REQUEST_ID).and_then(RequestId::from_header).unwrap_or_else(RequestId::mint);
        let mut header = id.header();
        // Ids differ per call: HPACK should not spend its table on them.
        header.set_sensitive(true);
        req.extensions_mut().insert(id);
        Ok(header)
    }

    fn response(header: http::HeaderValue, mut response: http::Response<Body>) -> http::Response<Body> {
        response.headers_mut().insert(&REQUEST_ID, header);
        response
    }
}

layer!(RequestIdLayer);
