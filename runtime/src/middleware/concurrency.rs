//! Load shedding: at most `concurrency_limit` calls in the service's
//! handlers at once; a call beyond it is shed at once with
//! `RESOURCE_EXHAUSTED`, never queued. Health checks and reflection are not
//! counted, so probes keep answering under load.

use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::Status;
use tonic::body::Body;

use crate::codegen::ServiceSpec;

/// One service's limit and its calls in flight.
pub(crate) struct Limit {
    /// `/package.Service/`, which the paths of its methods start with.
    pub(crate) prefix: String,
    limit: usize,
    in_flight: AtomicUsize,
}

impl Limit {
    /// The limit of `spec`'s calls.
    pub(crate) fn of(spec: &ServiceSpec) -> Limit {
        Limit {
            prefix: format!("/{}/", spec.name),
            limit: spec.server.concurrency_limit.max(1),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// A place for one more call, or the answer shedding it.
    #[inline]
    #[expect(clippy::result_large_err, reason = "the answer is moved out once, on shed calls only")]
    pub(crate) fn enter(&'static self) -> Result<Slot, http::Response<Body>> {
        let previous = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(&self.in_flight);
        if previous >= self.limit {
            drop(slot);
            return Err(Status::resource_exhausted("server is at its concurrency limit; retry later").into_http());
        }
        Ok(slot)
    }
}

/// A call counted against a service's concurrency limit until the
/// handler has answered; released when dropped.
pub(crate) struct Slot(&'static AtomicUsize);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
