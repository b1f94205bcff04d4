//! Access and audit records, one per call (see [`crate::log`]).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use tonic::body::Body;

use super::{Middleware, PathMap, forever, layer};
use crate::auth::Principal;
use crate::codegen::ServiceSpec;
use crate::context::RequestId;
use crate::log::{Level, Logger, Value};

/// Writes an access record per call (and an audit record for `audit`
/// methods) when the call ends: method, code, duration, peer, request id,
/// subject. Sits inside authentication so the subject is known.
#[derive(Clone)]
pub struct AccessLogLayer {
    logger: Logger,
    /// Each method of the specs: its path, kept for the records, and
    /// whether it is audited.
    methods: &'static PathMap<bool>,
}

impl AccessLogLayer {
    /// Logs calls of `specs` with `logger`.
    pub fn new(specs: &[&'static ServiceSpec], logger: Logger) -> AccessLogLayer {
        let methods = specs.iter().flat_map(|s| s.methods.iter()).map(|m| (m.path, m.audit)).collect();
        AccessLogLayer { logger, methods: forever(methods) }
    }
}

/// What an access record needs from the request. Shared or static where
/// possible: a record costs no copies of the path, request id or identity.
pub struct Pending {
    logger: Logger,
    audit: bool,
    path: Cow<'static, str>,
    peer: Option<SocketAddr>,
    request_id: Option<RequestId>,
    principal: Option<Principal>,
    trace: Option<crate::trace::TraceContext>,
    started: Instant,
}

impl Pending {
    fn write(self, code: u8) {
        let fields = [
            ("method", Value::Str(&self.path)),
            ("code", Value::Str(crate::metrics::code_name(code))),
            ("duration_ms", Value::Millis(self.started.elapsed())),
            ("peer", self.peer.map_or(Value::None, Value::Addr)),
            ("request_id", self.request_id.as_ref().map_or(Value::None, |r| Value::Str(r.as_str()))),
            ("subject", self.principal.as_ref().and_then(|p| p.subject.as_deref()).map_or(Value::None, Value::Str)),
            ("trace_id", self.trace.as_ref().map_or(Value::None, |t| Value::Hex(&t.trace_id))),
            ("span_id", self.trace.as_ref().map_or(Value::None, |t| Value::Hex(&t.span_id))),
        ];
        self.logger.log(Level::Info, "rpc", &fields);
        if self.audit {
            self.logger.audit(&fields);
        }
    }
}

impl Middleware for AccessLogLayer {
    /// The record to write when the call ends, unless nothing is logged.
    type State = Option<Pending>;

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<Option<Pending>, http::Response<Body>> {
        let known = self.methods.get_key_value(req.uri().path());
        let level = self.logger.level();
        let audit = known.is_some_and(|(_, audit)| *audit) && level != Level::Off;
        if level > Level::Info && !audit {
            return Ok(None);
        }
        Ok(Some(Pending {
            logger: self.logger,
            audit,
            path: match known {
                Some((path, _)) => Cow::Borrowed(path),
                None => Cow::Owned(req.uri().path().to_owned()),
            },
            peer: crate::context::peer_addr(req.extensions()),
            request_id: req.extensions().get::<RequestId>().cloned(),
            principal: req.extensions().get::<Principal>().cloned(),
            trace: req.extensions().get::<crate::trace::TraceContext>().copied(),
            started: Instant::now(),
        }))
    }

    fn response(pending: Option<Pending>, response: http::Response<Body>) -> http::Response<Body> {
        match pending {
            Some(pending) => crate::completion::observe(response, move |code| pending.write(code)),
            None => response,
        }
    }
}

layer!(AccessLogLayer);
