//! Rate limits: a token bucket per method (`GLOBAL`), per client address
//! (`PEER`) or per authenticated subject (`SUBJECT`), from the method's
//! `rate_limit` or the service default. An empty bucket answers
//! `RESOURCE_EXHAUSTED` with `google.rpc.RetryInfo` saying when a token
//! will be back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::codegen::{RateLimitKey, RateLimitSpec};

/// Buckets kept per method before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Global,
    Peer(Option<IpAddr>),
    Subject(Option<String>),
}

/// Token buckets kept as the time each becomes full again (the generic
/// cell rate algorithm): a call moves that time one interval (1/rps) on,
/// and is refused when it would land more than `burst - 1` intervals
/// ahead of now. The `GLOBAL` bucket is one atomic word, taken without a
/// lock; keyed buckets share a map.
pub(crate) struct Limiter {
    spec: RateLimitSpec,
    /// Times are nanoseconds since this instant.
    base: Instant,
    /// Nanoseconds per token.
    interval: u64,
    /// How far ahead of now a bucket may be: `burst - 1` intervals.
    tolerance: u64,
    global: AtomicU64,
    keyed: Mutex<HashMap<BucketKey, u64>>,
}

impl Limiter {
    pub(crate) fn new(spec: RateLimitSpec) -> Limiter {
        let interval = if spec.rps > 0.0 { (1e9 / spec.rps).min(u64::MAX as f64) as u64 } else { u64::MAX };
        let tolerance = interval.saturating_mul(u64::from(spec.burst.max(1) - 1));
        Limiter { spec, base: Instant::now(), interval, tolerance, global: AtomicU64::new(0), keyed: Mutex::default() }
    }

    /// From a bucket's full-again time `full` at time `t`: the new one, or
    /// how long until a token is back.
    fn step(&self, full: u64, t: u64) -> Result<u64, Duration> {
        let full = full.max(t);
        match full - t {
            ahead if ahead > self.tolerance => Err(Duration::from_nanos(ahead - self.tolerance)),
            _ => Ok(full.saturating_add(self.interval)),
        }
    }

    /// Takes a token, or says how long until one is available.
    fn take(&self, key: BucketKey, now: Instant) -> Result<(), Duration> {
        let t = u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        if key == BucketKey::Global {
            let mut current = self.global.load(Ordering::Relaxed);
            loop {
                let next = self.step(current, t)?;
                match self.global.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return Ok(()),
                    Err(seen) => current = seen,
                }
            }
        }
        let mut buckets = self.keyed.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            // Full buckets carry no state worth keeping.
            buckets.retain(|_, full| *full > t);
        }
        let full = buckets.entry(key).or_insert(0);
        *full = self.step(*full, t)?;
        Ok(())
    }
}

impl Limiter {
    /// Takes a token for a call from `peer` by `subject`, or answers
    /// `RESOURCE_EXHAUSTED` saying when one will be back.
    #[expect(clippy::result_large_err, reason = "the answer is moved out once, on refused calls only")]
    pub(crate) fn check(&self, peer: Option<SocketAddr>, subject: Option<&str>) -> Result<(), http::Response<Body>> {
        let key = match self.spec.key {
            RateLimitKey::Global => BucketKey::Global,
            RateLimitKey::Peer => BucketKey::Peer(peer.map(|a| a.ip())),
            RateLimitKey::Subject => BucketKey::Subject(subject.map(str::to_owned)),
        };
        self.take(key, Instant::now()).map_err(|wait| {
            let mut details = ErrorDetails::new();
            details.set_retry_info(Some(wait));
            let message = format!("rate limit of {} requests per second exceeded", self.spec.rps);
            Status::with_error_details(Code::ResourceExhausted, message, details).into_http()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_refills_at_rps() {
        let l = Limiter::new(RateLimitSpec { rps: 2.0, burst: 3, key: RateLimitKey::Global });
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
    fn the_global_bucket_is_shared_by_threads_without_losing_tokens() {
        let l = Limiter::new(RateLimitSpec { rps: 1e-3, burst: 1000, key: RateLimitKey::Global });
        let t0 = Instant::now();
        let taken = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..400 {
                        if l.take(BucketKey::Global, t0).is_ok() {
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(taken.into_inner(), 1000, "exactly the burst, no more, no less");
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let l = Limiter::new(RateLimitSpec { rps: 1.0, burst: 1, key: RateLimitKey::Peer });
        let t0 = Instant::now();
        l.take(BucketKey::Peer(Some([10, 0, 0, 1].into())), t0).expect("first peer");
        l.take(BucketKey::Peer(Some([10, 0, 0, 2].into())), t0).expect("second peer");
        l.take(BucketKey::Peer(Some([10, 0, 0, 1].into())), t0).expect_err("first peer again");
    }
}
