//! One span per call (see [`crate::trace`] for contexts, sampling and
//! export).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::context::RequestId;
use crate::trace::{Exporter, Sampler, SpanRecord, TraceContext};

/// How the server traces calls: every call gets a [`TraceContext`] (the
/// caller's trace, or a new one), and sampled calls a span exported when
/// the call ends, if an exporter is set.
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

    /// The call's context: a new span in the caller's trace (its
    /// `traceparent` header) or in a new one.
    #[inline]
    pub(crate) fn context(&self, traceparent: Option<&http::HeaderValue>) -> TraceContext {
        TraceContext::sampled_by(traceparent, self.sampler)
    }

    /// The span to export when the call ends, if it is sampled and spans
    /// are exported.
    #[inline]
    pub(crate) fn span(
        &self,
        context: TraceContext,
        path: &str,
        peer: Option<SocketAddr>,
        id: &RequestId,
    ) -> Option<Box<Span>> {
        let exporter = self.exporter.as_ref().filter(|_| context.sampled)?.clone();
        let record = SpanRecord {
            context,
            path: path.to_owned(),
            peer,
            request_id: Some(id.as_str().to_owned()),
            start: SystemTime::now(),
            end: SystemTime::UNIX_EPOCH,
            code: 0,
        };
        Some(Box::new(Span { exporter, record }))
    }
}

/// A span waiting for its call to end.
pub(crate) struct Span {
    exporter: Arc<Exporter>,
    record: SpanRecord,
}

impl Span {
    /// Exports the span of a call that ended with `code`.
    pub(crate) fn end(self, code: u8) {
        self.exporter.record(SpanRecord { end: SystemTime::now(), code, ..self.record });
    }
}
