//! Access and audit records, one per call (see [`crate::log`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::Principal;
use crate::context::RequestId;
use crate::log::{Access, Level, Logger};
use crate::trace::TraceContext;

/// What an access record names beyond the call's method, id and trace:
/// written when the call ends (and as an audit record too for `audit`
/// methods). Built after authentication, so the subject is known.
pub(crate) struct Record {
    logger: Logger,
    audit: bool,
    peer: Option<SocketAddr>,
    principal: Option<Principal>,
}

impl Record {
    /// The record of a call, unless `logger` writes neither access nor
    /// (for an `audit` method) audit records.
    #[inline]
    pub(crate) fn new(
        logger: Logger,
        audit: bool,
        peer: Option<SocketAddr>,
        principal: Option<&Principal>,
    ) -> Option<Record> {
        let level = logger.level();
        let audit = audit && level != Level::Off;
        if level > Level::Info && !audit {
            return None;
        }
        Some(Record { logger, audit, peer, principal: principal.cloned() })
    }

    /// Writes the record of the call to `path` that ended with `code`
    /// after `duration`.
    pub(crate) fn write(self, path: &str, id: &RequestId, trace: &TraceContext, code: u8, duration: Duration) {
        let access = Access {
            method: path,
            code,
            duration,
            peer: self.peer,
            request_id: id.as_str(),
            subject: self.principal.as_ref().and_then(|p| p.subject.as_deref()),
            trace,
        };
        self.logger.access(&access, self.audit);
    }
}
