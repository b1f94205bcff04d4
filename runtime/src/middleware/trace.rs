//! One span per call (see [`crate::trace`] for contexts, sampling and
//! export).

use std::sync::Arc;
use std::time::SystemTime;

use tonic::body::Body;

use super::{Middleware, layer};
use crate::context::RequestId;
use crate::trace::{Exporter, Sampler, SpanRecord, TraceContext};

/// Starts a span for every call (see the module docs).
#[derive(Clone, Default)]
pub struct TraceLayer {
    exporter: Option<Arc<Exporter>>,
    sampler: Sampler,
}

impl TraceLayer {
    /// Spans for the logs and handlers only; nothing exported.
    pub fn new() -> TraceLayer {
        TraceLayer::default()
    }

    /// Spans exported through `exporter`.
    pub fn exporting(exporter: Arc<Exporter>) -> TraceLayer {
        TraceLayer { exporter: Some(exporter), sampler: Sampler::default() }
    }

    /// Spans sampled by `sampler` (the default follows the caller and
    /// samples new traces).
    pub fn sampled_by(self, sampler: Sampler) -> TraceLayer {
        TraceLayer { sampler, ..self }
    }
}

impl Middleware for TraceLayer {
    /// The span to export when the call ends, if spans are exported.
    type State = Option<(Arc<Exporter>, SpanRecord)>;

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<Self::State, http::Response<Body>> {
        static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
        let context = TraceContext::sampled_by(req.headers().get(&TRACEPARENT), self.sampler);
        req.extensions_mut().insert(context);
        let exporter = match &self.exporter {
            Some(e) if context.sampled => e.clone(),
            _ => return Ok(None),
        };
        let span = SpanRecord {
            context,
            path: req.uri().path().to_owned(),
            peer: crate::context::peer_addr(req.extensions()),
            request_id: req.extensions().get::<RequestId>().map(|r| r.as_str().to_owned()),
            start: SystemTime::now(),
            end: SystemTime::UNIX_EPOCH,
            code: 0,
        };
        Ok(Some((exporter, span)))
    }

    fn response(state: Self::State, response: http::Response<Body>) -> http::Response<Body> {
        let Some((exporter, span)) = state else { return response };
        crate::completion::observe(response, move |code| {
            exporter.record(SpanRecord { end: SystemTime::now(), code, ..span });
        })
    }
}

layer!(TraceLayer);
