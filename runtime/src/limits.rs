//! Rate limits and load shedding.
//!
//! [`RateLimitLayer`]: a token bucket per method (`GLOBAL`), per client
//! address (`PEER`) or per authenticated subject (`SUBJECT`), from the
//! method's `rate_limit` or the service default. An empty bucket answers
//! `RESOURCE_EXHAUSTED` with `google.rpc.RetryInfo` saying when a token
//! will be back.
//!
//! [`ConcurrencyLayer`]: at most `concurrency_limit` calls in the service's
//! handlers at once; a call beyond it is shed at once with
//! `RESOURCE_EXHAUSTED`, never queued. Health checks and reflection are not
//! counted, so probes keep answering under load.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::Principal;
use crate::codegen::{RateLimitKey, RateLimitSpec, ServiceSpec};
use crate::middleware::{Middleware, layer};

/// Buckets kept per method before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Global,
    Peer(Option<IpAddr>),
    Subject(Option<String>),
}

struct Limiter {
    spec: RateLimitSpec,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
}

impl Limiter {
    /// Takes a token, or says how long until one is available.
    fn take(&self, key: BucketKey, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.spec.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            let rps = self.spec.rps;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rps < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: burst, at: now });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.spec.rps;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.spec.rps))
        }
    }
}

/// Applies the annotated rate limits.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiters: &'static crate::middleware::PathMap<Limiter>,
}

impl RateLimitLayer {
    /// Limiters for the methods of `specs` that have a rate limit.
    pub fn new(specs: &[&'static ServiceSpec]) -> RateLimitLayer {
        let limiters = specs
            .iter()
            .flat_map(|s| s.methods.iter())
            .filter_map(|m| m.rate_limit.map(|r| (m.path, Limiter { spec: r, buckets: Mutex::default() })))
            .collect();
        RateLimitLayer { limiters: crate::middleware::forever(limiters) }
    }
}

impl Middleware for RateLimitLayer {
    type State = ();

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<(), http::Response<Body>> {
        let Some(limiter) = self.limiters.get(req.uri().path()) else { return Ok(()) };
        let key = match limiter.spec.key {
            RateLimitKey::Global => BucketKey::Global,
            RateLimitKey::Peer => BucketKey::Peer(crate::server::peer_addr(req.extensions()).map(|a| a.ip())),
            RateLimitKey::Subject => {
                BucketKey::Subject(req.extensions().get::<Principal>().and_then(|p| p.subject.clone()))
            }
        };
        limiter.take(key, Instant::now()).map_err(|wait| {
            let mut details = ErrorDetails::new();
            details.set_retry_info(Some(wait));
            let message = format!("rate limit of {} requests per second exceeded", limiter.spec.rps);
            Status::with_error_details(Code::ResourceExhausted, message, details).into_http()
        })
    }

    fn response((): (), response: http::Response<Body>) -> http::Response<Body> {
        response
    }
}

layer!(RateLimitLayer);

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
        ConcurrencyLayer { services: crate::middleware::forever(services) }
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

    fn response(slot: Option<Slot>, response: http::Response<Body>) -> http::Response<Body> {
        drop(slot);
        response
    }
}

layer!(ConcurrencyLayer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_refills_at_rps() {
        let l = Limiter {
            spec: RateLimitSpec { rps: 2.0, burst: 3, key: RateLimitKey::Global },
            buckets: Mutex::default(),
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            l.take(BucketKey::Global, t0).expect("burst");
        }
        let wait = l.take(BucketKey::Global, t0).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        l.take(BucketKey::Global, t0 + Duration::from_millis(500)).expect("one token back");
        l.take(BucketKey::Global, t0 + Duration::from_millis(500)).expect_err("only one");
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let l =
            Limiter { spec: RateLimitSpec { rps: 1.0, burst: 1, key: RateLimitKey::Peer }, buckets: Mutex::default() };
        let t0 = Instant::now();
        l.take(BucketKey::Peer(Some([10, 0, 0, 1].into())), t0).expect("first peer");
        l.take(BucketKey::Peer(Some([10, 0, 0, 2].into())), t0).expect("second peer");
        l.take(BucketKey::Peer(Some([10, 0, 0, 1].into())), t0).expect_err("first peer again");
    }
}
