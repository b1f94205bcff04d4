//! Load shedding: at most `concurrency_limit` calls in the service's
//! handlers at once; a call beyond it is shed at once with
//! `RESOURCE_EXHAUSTED`, never queued. Health checks and reflection are not
//! counted, so probes keep answering under load.

use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::Status;
use tonic::body::Body;

use super::{Middleware, forever, layer};
use crate::codegen::ServiceSpec;

/// Sheds calls beyond each service's concurrency limit.
#[derive(Clone)]
pub struct ConcurrencyLayer {
    services: &'static [Limit],
}

/// One service's limit and its calls in flight.
struct Limit {
    prefix: String,
    limit: usize,
    in_flight: AtomicUsize,
}

impl ConcurrencyLayer {
    /// At most `concurrency_limit` calls of each service's methods at once.
    pub fn new(specs: &[&ServiceSpec]) -> ConcurrencyLayer {
        let services = specs
            .iter()
            .map(|spec| Limit {
                prefix: format!("/{}/", spec.name),
                limit: spec.server.concurrency_limit.max(1),
                in_flight: AtomicUsize::new(0),
            })
            .collect::<Vec<_>>();
        ConcurrencyLayer { services: forever(services) }
    }
}

/// A call counted against a service's concurrency limit; released when
/// dropped.
pub struct Slot(&'static AtomicUsize);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Middleware for ConcurrencyLayer {
    /// The call's place among those in flight, given back when the
    /// handler has answered (or the call is dropped).
    type State = Option<Slot>;

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<Option<Slot>, http::Response<Body>> {
        let path = req.uri().path();
        let Some(service) = self.services.iter().find(|s| path.starts_with(&s.prefix)) else { return Ok(None) };
        let previous = service.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(&service.in_flight);
        if previous >= service.limit {
            drop(slot);
            return Err(Status::resource_exhausted("server is at its concurrency limit; retry later").into_http());
        }
        Ok(Some(slot))
    }
}

layer!(ConcurrencyLayer);
