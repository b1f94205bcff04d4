//! The connections of a client: endpoints from the resolver, at least
//! `pool_size` HTTP/2 connections to each, more when the open ones reach
//! the server's stream limit, and the balancing policy that places each
//! call on a connected endpoint.
//!
//! Each connection slot is a task: it dials with gRPC's connection
//! backoff until it connects, holds the connection until it ends, then
//! dials again. A call only ever goes to an open connection; while none is
//! open it waits (bounded by its deadline) unless every endpoint has
//! failed its last attempt, when it fails at once with `UNAVAILABLE`
//! naming the addresses and what went wrong.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tonic::Status;

use super::backoff::ConnectBackoff;
use super::connection::{Connection, Dial, Stats, connect};
use super::resolve::Resolution;
use super::target::Address;
use crate::codegen::{LoadBalancing, OutlierDetectionSpec};

/// Connections per endpoint at most, however busy.
pub(crate) const MAX_CONNECTIONS_PER_ENDPOINT: usize = 64;

/// One resolved address and its connections.
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    conns: RwLock<Vec<Arc<Connection>>>,
    /// Slots dialling now.
    dialling: AtomicUsize,
    /// Slots alive (holding or dialling a connection).
    slots: AtomicUsize,
    /// Failed attempts since the last success.
    failures: AtomicU32,
    last_error: Mutex<String>,
    removed: AtomicBool,
    removed_now: Notify,
    stats: Arc<Stats>,
    /// Outlier detection: when ejected (no calls placed while another
    /// endpoint is ready), and how many times in a row.
    ejection: Mutex<Ejection>,
    ejected: AtomicBool,
}

#[derive(Default)]
struct Ejection {
    since: Option<Instant>,
    /// Grows with each ejection, shrinks each interval without one.
    multiplier: u32,
}

impl Endpoint {
    fn new(address: Address) -> Endpoint {
        Endpoint {
            address,
            conns: RwLock::new(Vec::new()),
            dialling: AtomicUsize::new(0),
            slots: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            last_error: Mutex::new(String::new()),
            removed: AtomicBool::new(false),
            removed_now: Notify::new(),
            stats: Arc::default(),
            ejection: Mutex::default(),
            ejected: AtomicBool::new(false),
        }
    }

    fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// The open connection with the fewest calls in flight.
    fn least_loaded(&self) -> Option<Arc<Connection>> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        conns.iter().filter(|c| c.is_open()).min_by_key(|c| c.load()).cloned()
    }

    /// Calls in flight over all connections.
    pub(crate) fn load(&self) -> usize {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).iter().map(|c| c.load()).sum()
    }

    fn open_connections(&self) -> usize {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).iter().filter(|c| c.is_open()).count()
    }

    fn is_ready(&self) -> bool {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).iter().any(|c| c.is_open())
    }

    /// Failed its last attempt and is not dialling again yet.
    fn is_failing(&self) -> bool {
        self.failures.load(Ordering::Relaxed) > 0 && self.dialling.load(Ordering::Relaxed) == 0 && !self.is_ready()
    }

    pub(crate) fn remove(&self) {
        self.removed.store(true, Ordering::Relaxed);
        self.removed_now.notify_waiters();
        self.conns.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// What the pool's tasks share.
pub(crate) struct Pool {
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    /// An endpoint connected, failed, appeared or went.
    changed: Notify,
    /// The resolver's latest answer.
    resolution: Mutex<Resolution>,
    /// Asks the resolver to resolve again.
    pub(crate) resolve_again: Arc<Notify>,
    policy: LoadBalancing,
    /// p2c weighs calls in flight by response time.
    peak_ewma: bool,
    pool_size: usize,
    pub(crate) dial: Dial,
    next: AtomicUsize,
    /// The target as written, for messages.
    target: String,
    /// Connections opened over the pool's life (for tests and logs).
    pub(crate) opened: AtomicUsize,
    /// Idle mode: after `idle_timeout` without calls, the connections are
    /// closed; the next call opens them again.
    idle_timeout: Option<Duration>,
    idle: AtomicBool,
    /// When a call last asked for a connection, in milliseconds since
    /// `born`.
    last_active: AtomicU64,
    born: Instant,
}

impl Pool {
    /// A pool following `resolution`'s updates.
    pub(crate) fn start(
        target: String,
        (policy, peak_ewma, outlier_detection): (LoadBalancing, bool, Option<OutlierDetectionSpec>),
        (pool_size, idle_timeout): (usize, Option<Duration>),
        dial: Dial,
        resolve_again: Arc<Notify>,
        mut resolution: watch::Receiver<Resolution>,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            endpoints: RwLock::new(Arc::new(Vec::new())),
            changed: Notify::new(),
            resolution: Mutex::new(None),
            resolve_again,
            policy,
            peak_ewma,
            pool_size: pool_size.max(1),
            dial,
            next: AtomicUsize::new(0),
            target,
            opened: AtomicUsize::new(0),
            idle_timeout: idle_timeout.filter(|t| !t.is_zero()),
            idle: AtomicBool::new(false),
            last_active: AtomicU64::new(0),
            born: Instant::now(),
        });
        if let Some(spec) = outlier_detection {
            tokio::spawn(detect_outliers(Arc::downgrade(&pool), spec));
        }
        if let Some(timeout) = pool.idle_timeout {
            tokio::spawn(enter_idle(Arc::downgrade(&pool), timeout));
        }
        let weak = Arc::downgrade(&pool);
        tokio::spawn(async move {
            loop {
                let latest = resolution.borrow_and_update().clone();
                let Some(pool) = weak.upgrade() else { return };
                pool.apply(latest);
                drop(pool);
                if resolution.changed().await.is_err() {
                    return;
                }
            }
        });
        pool
    }

    /// Takes a resolution: new addresses get endpoints, removed ones are
    /// drained (their calls finish; no new ones go there).
    fn apply(self: &Arc<Self>, latest: Resolution) {
        // While idle only the answer is kept; leaving idle applies it.
        if !self.idle.load(Ordering::Acquire) {
            self.place(&latest);
        }
        *self.resolution.lock().unwrap_or_else(|e| e.into_inner()) = latest;
        self.changed.notify_waiters();
    }

    /// Makes the endpoints follow `latest`.
    fn place(self: &Arc<Self>, latest: &Resolution) {
        if let Some(Ok(addresses)) = latest {
            let current = self.endpoints.read().unwrap_or_else(|e| e.into_inner()).clone();
            let mut known: BTreeMap<&Address, &Arc<Endpoint>> = current.iter().map(|e| (&e.address, e)).collect();
            let mut next = Vec::with_capacity(addresses.len());
            let mut added = Vec::new();
            for address in addresses {
                match known.remove(address) {
                    Some(endpoint) => next.push(endpoint.clone()),
                    None => {
                        let endpoint = Arc::new(Endpoint::new(address.clone()));
                        added.push(endpoint.clone());
                        next.push(endpoint);
                    }
                }
            }
            for gone in known.values() {
                gone.remove();
            }
            *self.endpoints.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
            for endpoint in added {
                for _ in 0..self.pool_size {
                    self.spawn_slot(&endpoint, true);
                }
            }
        }
    }

    /// Milliseconds since the pool began.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A call is asking for a connection: the pool is active, and leaves
    /// idle mode if it was in it.
    fn touch(self: &Arc<Self>) {
        if self.idle_timeout.is_none() {
            return;
        }
        let now = self.now_ms();
        // Written only when it changed, so that busy cores do not contend
        // for the line on every call.
        if self.last_active.load(Ordering::Relaxed) != now {
            self.last_active.store(now, Ordering::Relaxed);
        }
        if self.idle.load(Ordering::Acquire) {
            // The resolution lock orders this with `apply` and `go_idle`.
            let latest = self.resolution.lock().unwrap_or_else(|e| e.into_inner());
            if self.idle.swap(false, Ordering::AcqRel) {
                self.place(&latest);
                drop(latest);
                // The addresses may have changed meanwhile.
                self.resolve_again.notify_one();
                self.changed.notify_waiters();
            }
        }
    }

    /// Closes every connection if no call is in flight and none asked for
    /// a connection since `quiet_since` (milliseconds since `born`); true
    /// when it did.
    fn go_idle(&self, quiet_since: u64) -> bool {
        let latest = self.resolution.lock().unwrap_or_else(|e| e.into_inner());
        let endpoints = self.endpoints();
        if self.last_active.load(Ordering::Relaxed) > quiet_since || endpoints.iter().any(|e| e.load() > 0) {
            return false;
        }
        self.idle.store(true, Ordering::Release);
        *self.endpoints.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Vec::new());
        drop(latest);
        for endpoint in endpoints.iter() {
            endpoint.remove();
        }
        self.changed.notify_waiters();
        true
    }

    /// Whether the pool is in idle mode (no connections until a call).
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }

    /// Connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.endpoints().iter().map(|e| e.open_connections()).sum()
    }

    fn spawn_slot(self: &Arc<Self>, endpoint: &Arc<Endpoint>, lasting: bool) {
        endpoint.slots.fetch_add(1, Ordering::Relaxed);
        // Counted before the task runs, so that calls arriving meanwhile
        // do not open more.
        endpoint.dialling.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(slot(Arc::downgrade(self), endpoint.clone(), lasting));
    }

    /// The endpoints, in the resolver's order.
    pub(crate) fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A connection for a call, chosen by the policy among connected
    /// endpoints; waits for one until `deadline`.
    pub(crate) async fn pick(self: &Arc<Self>, deadline: Option<Instant>) -> Result<Arc<Connection>, Status> {
        loop {
            self.touch();
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let endpoints = self.endpoints();
            if let Some(endpoint) = self.choose(&endpoints)
                && let Some(conn) = endpoint.least_loaded()
            {
                if conn.has_room() || !self.grow(&endpoint) {
                    return Ok(conn);
                }
                // Every open connection is at the server's stream limit and
                // another is being opened: wait for it rather than queue
                // behind the limit (at most a connect timeout).
                let until = Instant::now() + self.dial.connect_timeout;
                let until = deadline.map_or(until, |d| d.min(until));
                if tokio::time::timeout_at(until, changed).await.is_err() {
                    return Ok(conn);
                }
                continue;
            }
            if let Some(status) = self.unavailable() {
                return Err(status);
            }
            match deadline {
                Some(at) => {
                    if tokio::time::timeout_at(at, changed).await.is_err() {
                        return Err(Status::deadline_exceeded(format!(
                            "deadline exceeded while waiting for a connection to {}{}",
                            self.target,
                            self.problems(&endpoints)
                        )));
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Why calls cannot be placed now, if they cannot: nothing resolved,
    /// or every endpoint failed its last attempt.
    fn unavailable(&self) -> Option<Status> {
        if self.is_idle() {
            // Went idle while this call looked: it wakes the pool next turn.
            return None;
        }
        let resolution = self.resolution.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Read after the resolution: `apply` stores the endpoints first, so
        // these are at least as new as it is (an older list read before a
        // resolution landed would look like "no addresses").
        let endpoints = &self.endpoints()[..];
        match resolution {
            None => None,
            Some(Err(problem)) if endpoints.is_empty() => {
                Some(Status::unavailable(format!("cannot resolve {}: {problem}", self.target)))
            }
            Some(_) if endpoints.is_empty() => {
                Some(Status::unavailable(format!("{} resolved to no addresses", self.target)))
            }
            Some(_) if endpoints.iter().all(|e| e.is_failing()) => Some(Status::unavailable(format!(
                "no endpoint of {} is reachable{}",
                self.target,
                self.problems(endpoints)
            ))),
            Some(_) => None,
        }
    }

    /// `: 10.0.0.1:50051: cannot connect: ...; ...` for messages.
    fn problems(&self, endpoints: &[Arc<Endpoint>]) -> String {
        let parts: Vec<String> = endpoints
            .iter()
            .filter_map(|e| {
                let error = e.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (!error.is_empty()).then(|| format!("{}: {error}", e.address))
            })
            .collect();
        if parts.is_empty() { String::new() } else { format!(" ({})", parts.join("; ")) }
    }

    /// The policy's choice among endpoints with an open connection, not
    /// ejected by outlier detection unless every ready one is.
    fn choose(&self, endpoints: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        self.choose_among(endpoints, |e| e.is_ready() && !e.is_ejected())
            .or_else(|| self.choose_among(endpoints, Endpoint::is_ready))
    }

    fn choose_among(&self, endpoints: &[Arc<Endpoint>], usable: impl Fn(&Endpoint) -> bool) -> Option<Arc<Endpoint>> {
        match self.policy {
            LoadBalancing::PickFirst => endpoints.iter().find(|e| usable(e)).cloned(),
            LoadBalancing::RoundRobin => {
                // In turn among the usable ones, so that one left out does
                // not double its neighbour's share.
                let n = endpoints.iter().filter(|e| usable(e)).count();
                let turn = self.next.fetch_add(1, Ordering::Relaxed);
                (n > 0).then(|| endpoints.iter().filter(|e| usable(e)).nth(turn % n).cloned()).flatten()
            }
            LoadBalancing::PowerOfTwoChoices => {
                // Two distinct random picks among the usable endpoints,
                // counted and indexed without collecting them.
                let n = endpoints.iter().filter(|e| usable(e)).count();
                let nth = |i: usize| endpoints.iter().filter(|e| usable(e)).nth(i);
                match n {
                    0 => None,
                    1 => nth(0).cloned(),
                    n => {
                        let r = crate::trace::random_u64();
                        let a = (r % n as u64) as usize;
                        let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
                        let (x, y) = (nth(a)?, nth(b)?);
                        Some(if self.cost(y) < self.cost(x) { y.clone() } else { x.clone() })
                    }
                }
            }
        }
    }

    /// What p2c compares: calls in flight, ties broken by response time;
    /// with peak EWMA, the expected wait (response time × (calls + 1)).
    fn cost(&self, e: &Endpoint) -> (f64, f64) {
        let load = e.load() as f64;
        let latency = e.stats.latency.get();
        if self.peak_ewma { (latency * (load + 1.0), 0.0) } else { (load, latency) }
    }

    /// Opens one more connection to `endpoint`, whose open ones are all at
    /// the server's stream limit, unless one is being dialled already;
    /// false when none will come (the endpoint is failing, or at
    /// [`MAX_CONNECTIONS_PER_ENDPOINT`]).
    fn grow(self: &Arc<Self>, endpoint: &Arc<Endpoint>) -> bool {
        if endpoint.failures.load(Ordering::Relaxed) > 0 {
            return false;
        }
        if endpoint.dialling.load(Ordering::Relaxed) > 0 {
            return true;
        }
        if endpoint.slots.load(Ordering::Relaxed) >= MAX_CONNECTIONS_PER_ENDPOINT {
            return false;
        }
        self.spawn_slot(endpoint, false);
        true
    }

    /// Waits until an endpoint is connected or every endpoint has failed
    /// (for `connect`, which reports unreachable targets at once).
    pub(crate) async fn wait_connected(self: &Arc<Self>, within: Duration) -> Result<(), Status> {
        // A little past the connect timeout, so that an attempt that hits
        // it reports why.
        let deadline = Instant::now() + within + Duration::from_millis(500);
        self.pick(Some(deadline)).await.map(drop)
    }
}

/// One connection slot of `endpoint`: dial (with backoff) until connected,
/// hold the connection until it ends, again; a slot opened for load
/// (`lasting` false) ends with its connection.
async fn slot(pool: Weak<Pool>, endpoint: Arc<Endpoint>, lasting: bool) {
    let mut backoff = ConnectBackoff::new();
    // The first dial was counted when the slot was made.
    let mut counted = true;
    loop {
        if !counted {
            endpoint.dialling.fetch_add(1, Ordering::Relaxed);
        }
        counted = false;
        if endpoint.removed.load(Ordering::Relaxed) {
            endpoint.dialling.fetch_sub(1, Ordering::Relaxed);
            break;
        }
        let Some(p) = pool.upgrade() else {
            endpoint.dialling.fetch_sub(1, Ordering::Relaxed);
            break;
        };
        let dial = p.dial.clone();
        drop(p);
        let attempt = tokio::select! {
            result = connect(&endpoint.address, &dial, endpoint.stats.clone()) => Some(result),
            () = endpoint.removed_now.notified() => None,
        };
        endpoint.dialling.fetch_sub(1, Ordering::Relaxed);
        let Some(pool_now) = pool.upgrade() else { break };
        match attempt {
            None => break,
            Some(Ok((conn, task))) => {
                backoff.reset();
                endpoint.failures.store(0, Ordering::Relaxed);
                endpoint.last_error.lock().unwrap_or_else(|e| e.into_inner()).clear();
                pool_now.opened.fetch_add(1, Ordering::Relaxed);
                endpoint.conns.write().unwrap_or_else(|e| e.into_inner()).push(conn.clone());
                pool_now.changed.notify_waiters();
                drop(pool_now);
                tokio::select! {
                    _ = task => {}
                    () = endpoint.removed_now.notified() => {}
                }
                endpoint.conns.write().unwrap_or_else(|e| e.into_inner()).retain(|c| !Arc::ptr_eq(c, &conn));
                drop(conn);
                if let Some(p) = pool.upgrade() {
                    p.changed.notify_waiters();
                    // The endpoint may have moved (a rolling update).
                    p.resolve_again.notify_one();
                }
                if !lasting {
                    break;
                }
            }
            Some(Err(problem)) => {
                endpoint.failures.fetch_add(1, Ordering::Relaxed);
                *endpoint.last_error.lock().unwrap_or_else(|e| e.into_inner()) = problem;
                pool_now.changed.notify_waiters();
                pool_now.resolve_again.notify_one();
                drop(pool_now);
                if !lasting {
                    break;
                }
                let wait = backoff.next_wait();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = endpoint.removed_now.notified() => break,
                }
            }
        }
    }
    endpoint.slots.fetch_sub(1, Ordering::Relaxed);
}

/// Idle mode: once no call has been in flight or asked for a connection
/// for `timeout`, the pool closes its connections (a server's idle
/// connections cost it memory and keepalive pings); the next call opens
/// them again from the latest resolution.
async fn enter_idle(pool: Weak<Pool>, timeout: Duration) {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut wait = timeout;
    loop {
        tokio::time::sleep(wait).await;
        let Some(pool) = pool.upgrade() else { return };
        if pool.is_idle() {
            wait = timeout;
            continue;
        }
        let now = pool.now_ms();
        let last = pool.last_active.load(Ordering::Relaxed);
        let quiet_for = now.saturating_sub(last);
        wait = if quiet_for >= timeout_ms {
            if !pool.go_idle(last) {
                // Calls in flight: look again a timeout from now.
                pool.last_active.store(now, Ordering::Relaxed);
            }
            timeout
        } else {
            Duration::from_millis(timeout_ms - quiet_for)
        };
    }
}

/// gRFC A50 outlier detection: every `interval`, takes each endpoint's
/// successes and failures since the last look, ejects the outliers, and
/// readmits endpoints whose ejection time is over.
async fn detect_outliers(pool: Weak<Pool>, spec: OutlierDetectionSpec) {
    let interval = spec.interval.max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(interval).await;
        let Some(pool) = pool.upgrade() else { return };
        let endpoints = pool.endpoints();
        let counts: Vec<Counts> = endpoints
            .iter()
            .map(|e| Counts {
                succeeded: e.stats.succeeded.swap(0, Ordering::Relaxed),
                failed: e.stats.failed.swap(0, Ordering::Relaxed),
                ejected: e.is_ejected(),
            })
            .collect();
        let now = Instant::now();
        for i in outliers(&spec, &counts, crate::trace::random_u64) {
            let e = &endpoints[i];
            let mut ejection = e.ejection.lock().unwrap_or_else(|p| p.into_inner());
            ejection.since = Some(now);
            ejection.multiplier += 1;
            e.ejected.store(true, Ordering::Relaxed);
        }
        for e in endpoints.iter() {
            let mut ejection = e.ejection.lock().unwrap_or_else(|p| p.into_inner());
            match ejection.since {
                None => ejection.multiplier = ejection.multiplier.saturating_sub(1),
                Some(since) => {
                    let longest = spec.max_ejection_time.max(spec.base_ejection_time);
                    let time = spec.base_ejection_time.saturating_mul(ejection.multiplier).min(longest);
                    if now >= since + time {
                        ejection.since = None;
                        e.ejected.store(false, Ordering::Relaxed);
                    }
                }
            }
        }
        pool.changed.notify_waiters();
    }
}

/// One endpoint's interval, as outlier detection sees it.
#[derive(Debug, Clone, Copy)]
struct Counts {
    succeeded: u64,
    failed: u64,
    ejected: bool,
}

/// The endpoints (indexes into `counts`) to eject now by gRFC A50: success
/// rate far below the mean, then failure share above the threshold, never
/// past `max_ejection_percent` of the endpoints (though at least one).
fn outliers(spec: &OutlierDetectionSpec, counts: &[Counts], random: impl Fn() -> u64) -> Vec<usize> {
    let total = counts.len();
    let mut ejected = counts.iter().filter(|c| c.ejected).count();
    let mut out: Vec<usize> = Vec::new();
    let room = |ejected: usize| (ejected as f64) * 100.0 / (total.max(1) as f64) < f64::from(spec.max_ejection_percent);
    let enforced = |percent: u32| random() % 100 < u64::from(percent);
    if let Some(sr) = spec.success_rate {
        let eligible: Vec<(usize, f64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.succeeded + c.failed >= u64::from(sr.request_volume.max(1)))
            .map(|(i, c)| (i, c.succeeded as f64 / (c.succeeded + c.failed) as f64))
            .collect();
        if eligible.len() >= sr.minimum_hosts.max(1) as usize {
            let n = eligible.len() as f64;
            let mean = eligible.iter().map(|(_, r)| r).sum::<f64>() / n;
            let stdev = (eligible.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
            let bar = mean - stdev * f64::from(sr.stdev_factor) / 1000.0;
            for (i, rate) in eligible {
                if !counts[i].ejected && rate < bar && room(ejected) && enforced(sr.enforcement_percentage) {
                    out.push(i);
                    ejected += 1;
                }
            }
        }
    }
    if let Some(fp) = spec.failure_percentage {
        let eligible: Vec<(usize, f64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.succeeded + c.failed >= u64::from(fp.request_volume.max(1)))
            .map(|(i, c)| (i, c.failed as f64 * 100.0 / (c.succeeded + c.failed) as f64))
            .collect();
        if eligible.len() >= fp.minimum_hosts.max(1) as usize {
            for (i, failed) in eligible {
                if out.contains(&i) || counts[i].ejected {
                    continue;
                }
                if failed > f64::from(fp.threshold) && room(ejected) && enforced(fp.enforcement_percentage) {
                    out.push(i);
                    ejected += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::{FailurePercentageEjectionSpec, SuccessRateEjectionSpec};

    fn spec() -> OutlierDetectionSpec {
        OutlierDetectionSpec {
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            success_rate: None,
            failure_percentage: None,
        }
    }

    fn counts(pairs: &[(u64, u64)]) -> Vec<Counts> {
        pairs.iter().map(|&(succeeded, failed)| Counts { succeeded, failed, ejected: false }).collect()
    }

    const ALWAYS: fn() -> u64 = || 0;

    #[test]
    fn failure_percentage_ejects_above_the_threshold_with_enough_calls_and_hosts() {
        let fp = FailurePercentageEjectionSpec {
            threshold: 85,
            enforcement_percentage: 100,
            minimum_hosts: 5,
            request_volume: 50,
        };
        let spec = OutlierDetectionSpec { failure_percentage: Some(fp), max_ejection_percent: 100, ..spec() };
        let healthy = (100, 0);
        let five = counts(&[healthy, healthy, healthy, healthy, (10, 90)]);
        assert_eq!(outliers(&spec, &five, ALWAYS), [4]);
        let at_threshold = counts(&[healthy, healthy, healthy, healthy, (15, 85)]);
        assert!(outliers(&spec, &at_threshold, ALWAYS).is_empty(), "85 % is not above 85 %");
        let four = counts(&[healthy, healthy, healthy, (0, 100)]);
        assert!(outliers(&spec, &four, ALWAYS).is_empty(), "below minimum_hosts");
        let quiet = counts(&[healthy, healthy, healthy, healthy, (0, 49)]);
        assert!(outliers(&spec, &quiet, ALWAYS).is_empty(), "below request_volume");
        let never: fn() -> u64 = || 99;
        let enforced_half = OutlierDetectionSpec {
            failure_percentage: Some(FailurePercentageEjectionSpec { enforcement_percentage: 50, ..fp }),
            ..spec
        };
        assert!(outliers(&enforced_half, &five, never).is_empty(), "not enforced this time");
    }

    #[test]
    fn success_rate_ejects_far_below_the_mean() {
        let sr = SuccessRateEjectionSpec {
            stdev_factor: 1900,
            enforcement_percentage: 100,
            minimum_hosts: 5,
            request_volume: 100,
        };
        let spec = OutlierDetectionSpec { success_rate: Some(sr), max_ejection_percent: 100, ..spec() };
        // Mean 0.82, stdev 0.36: the bar is 0.82 − 1.9 × 0.36 < 0.1.
        let rates = counts(&[
            (100, 0),
            (100, 0),
            (100, 0),
            (100, 0),
            (100, 0),
            (100, 0),
            (100, 0),
            (100, 0),
            (100, 0),
            (0, 100),
        ]);
        assert_eq!(outliers(&spec, &rates, ALWAYS), [9]);
        let close = counts(&[(100, 0), (99, 1), (98, 2), (97, 3), (96, 4)]);
        assert!(outliers(&spec, &close, ALWAYS).is_empty(), "within the spread");
    }

    #[test]
    fn ejections_stop_at_the_maximum_share_but_allow_one() {
        let fp = FailurePercentageEjectionSpec {
            threshold: 50,
            enforcement_percentage: 100,
            minimum_hosts: 1,
            request_volume: 1,
        };
        let spec = OutlierDetectionSpec { failure_percentage: Some(fp), ..spec() };
        let all_bad = counts(&[(0, 10), (0, 10), (0, 10)]);
        assert_eq!(outliers(&spec, &all_bad, ALWAYS).len(), 1, "10 % of 3 still ejects one");
        let mut one_out = all_bad.clone();
        one_out[0].ejected = true;
        assert!(outliers(&spec, &one_out, ALWAYS).is_empty(), "one of three is past 10 %");
    }
}
