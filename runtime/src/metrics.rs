//! Prometheus metrics of every RPC, named as in the widely used gRPC
//! Prometheus conventions and labelled by `grpc_service`, `grpc_method`
//! and `grpc_type`:
//!
//! - `grpc_server_started_total` (counter),
//! - `grpc_server_handled_total{grpc_code}` (counter, when the call ends),
//! - `grpc_server_handling_seconds` (histogram, start to end of the call,
//!   streams included),
//! - `grpc_server_in_flight` (gauge).
//!
//! Clients record the same families as `grpc_client_*`, plus
//! `grpc_client_attempts_total` (every attempt, retries and hedges
//! included), in the process-wide [`clients`] registry.
//!
//! The layer reads the final `grpc-status` from the response headers
//! (trailers-only responses) or trailers; a call whose response is dropped
//! before its trailers (client gone, deadline) counts as `CANCELLED`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::codegen::{MethodKind, ServiceSpec};

/// Histogram upper bounds in seconds (Prometheus' defaults).
pub const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// (service, method, type)
type Key = (String, String, &'static str);

/// Counters of one (service, method, type), updated without locks: a call
/// adds to four of them (started, its code, its latency bucket, the latency
/// sum), in the shard of the thread it runs on, so threads on different
/// cores do not pass the counters' cache lines back and forth. What can be
/// derived is, when rendering: calls in flight are those started and not
/// yet handled, the histogram's cumulative buckets and its count are
/// running sums of per-bucket counts.
pub struct Series {
    shards: [Shard; SHARDS],
}

/// Shards per series; threads take them in turn.
const SHARDS: usize = 8;

/// One shard's counters, on cache lines of their own.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    started: AtomicU64,
    handled: [AtomicU64; 17],
    /// Calls whose latency falls in each bucket alone (above the previous
    /// bound, up to this one); the last is above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A series' counters summed over its shards.
struct Totals {
    started: u64,
    handled: [u64; 17],
    buckets: [u64; BUCKETS.len() + 1],
    sum_nanos: u64,
}

impl Default for Series {
    fn default() -> Self {
        Series { shards: std::array::from_fn(|_| Shard::default()) }
    }
}

/// This thread's shard index.
fn shard_index() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static MINE: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS as u64) as usize;
    }
    MINE.with(|i| *i)
}

impl Series {
    pub(crate) fn start(&self) {
        self.shards[shard_index()].started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self, code: u8, elapsed: std::time::Duration) {
        let shard = &self.shards[shard_index()];
        shard.handled[usize::from(code.min(16))].fetch_add(1, Ordering::Relaxed);
        shard.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(BUCKETS.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters summed over the shards. Handled calls are read before
    /// started ones: a call counts as handled only after it started, so
    /// started minus handled (calls in flight) never goes below zero.
    fn totals(&self) -> Totals {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut t = Totals { started: 0, handled: [0; 17], buckets: [0; BUCKETS.len() + 1], sum_nanos: 0 };
        for shard in &self.shards {
            for (total, n) in t.handled.iter_mut().zip(&shard.handled) {
                *total += load(n);
            }
            for (total, n) in t.buckets.iter_mut().zip(&shard.buckets) {
                *total += load(n);
            }
            t.sum_nanos += load(&shard.sum_nanos);
        }
        t.started = self.shards.iter().map(|shard| load(&shard.started)).sum();
        t
    }
}

/// The metrics of one server: a series for every method of the services,
/// for health checking and reflection, and one shared by all other paths
/// (methods the server does not have), so callers cannot grow it. Every
/// series exists from the start and is updated without locks.
#[derive(Default)]
pub struct Registry {
    known: crate::table::PathMap<(Key, Series)>,
    unknown: (Key, Series),
}

/// Paths the server answers besides its services' methods.
const BUILT_IN: [(&str, MethodKind); 4] = [
    ("/grpc.health.v1.Health/Check", MethodKind::Unary),
    ("/grpc.health.v1.Health/Watch", MethodKind::ServerStreaming),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", MethodKind::Streaming),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", MethodKind::Streaming),
];

impl Registry {
    /// A registry with series for every method of `specs`.
    pub fn new(specs: &[&'static ServiceSpec]) -> Registry {
        let mut known = crate::table::PathMap::default();
        let paths = specs.iter().flat_map(|s| s.methods.iter().map(|m| (m.path, m.kind)));
        for (path, kind) in BUILT_IN.into_iter().chain(paths) {
            let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
            let key: Key = (service.to_owned(), method.to_owned(), kind_name(Some(kind)));
            known.insert(path, (key, Series::default()));
        }
        let unknown = (("unknown".to_owned(), "unknown".to_owned(), kind_name(None)), Series::default());
        Registry { known, unknown }
    }

    /// Keeps the registry for the rest of the process, so that layers and
    /// the metrics endpoint share it without reference counting.
    pub fn forever(self) -> &'static Registry {
        crate::table::forever(self)
    }

    /// The series of `path`.
    pub(crate) fn series(&self, path: &str) -> &Series {
        self.known.get(path).map_or(&self.unknown.1, |(_, series)| series)
    }

    /// The Prometheus text exposition (format 0.0.4), with the process's
    /// client metrics (see [`clients`]) after the server's.
    pub fn render(&self) -> String {
        let all: BTreeMap<&Key, Totals> =
            self.known.values().chain([&self.unknown]).map(|(key, series)| (key, series.totals())).collect();
        let mut out = String::new();
        render_family(&mut out, Side::Server, &all, &BTreeMap::new());
        out.push_str(&clients().render());
        out
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Server,
    Client,
}

fn labels((service, method, kind): &Key) -> String {
    format!("grpc_method=\"{}\",grpc_service=\"{}\",grpc_type=\"{kind}\"", escape(method), escape(service))
}

/// Writes the started, handled, latency and (server) in-flight or
/// (client) attempt families of one side.
fn render_family(out: &mut String, side: Side, all: &BTreeMap<&Key, Totals>, attempts: &BTreeMap<&Key, u64>) {
    let (p, on, latency) = match side {
        Side::Server => (
            "grpc_server",
            "on the server",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
        ),
        Side::Client => (
            "grpc_client",
            "on the client",
            "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
        ),
    };
    if side == Side::Client && all.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {p}_started_total Total number of RPCs started {on}.");
    let _ = writeln!(out, "# TYPE {p}_started_total counter");
    for (key, s) in all {
        let _ = writeln!(out, "{p}_started_total{{{}}} {}", labels(key), s.started);
    }
    let _ = writeln!(
        out,
        "# HELP {p}_handled_total Total number of RPCs completed {on}, regardless of success or failure."
    );
    let _ = writeln!(out, "# TYPE {p}_handled_total counter");
    for (key, s) in all {
        for (code, &n) in s.handled.iter().enumerate() {
            if n > 0 {
                let _ = writeln!(out, "{p}_handled_total{{grpc_code=\"{}\",{}}} {n}", CODES[code], labels(key));
            }
        }
    }
    let _ = writeln!(out, "# HELP {p}_handling_seconds {latency}");
    let _ = writeln!(out, "# TYPE {p}_handling_seconds histogram");
    for (key, s) in all {
        let l = labels(key);
        let mut count = 0;
        for (bound, n) in BUCKETS.iter().zip(&s.buckets) {
            count += n;
            let _ = writeln!(out, "{p}_handling_seconds_bucket{{{l},le=\"{bound}\"}} {count}");
        }
        count += s.buckets[BUCKETS.len()];
        let _ = writeln!(out, "{p}_handling_seconds_bucket{{{l},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{p}_handling_seconds_sum{{{l}}} {}", s.sum_nanos as f64 / 1e9);
        let _ = writeln!(out, "{p}_handling_seconds_count{{{l}}} {count}");
    }
    match side {
        Side::Server => {
            out.push_str("# HELP grpc_server_in_flight Number of RPCs currently being handled by the server.\n");
            out.push_str("# TYPE grpc_server_in_flight gauge\n");
            for (key, s) in all {
                let in_flight = s.started.saturating_sub(s.handled.iter().sum());
                let _ = writeln!(out, "grpc_server_in_flight{{{}}} {in_flight}", labels(key));
            }
        }
        Side::Client => {
            out.push_str(
                "# HELP grpc_client_attempts_total Total number of attempts of RPCs on the client, retries and hedges included.\n",
            );
            out.push_str("# TYPE grpc_client_attempts_total counter\n");
            for (key, n) in attempts {
                let _ = writeln!(out, "grpc_client_attempts_total{{{}}} {n}", labels(key));
            }
        }
    }
}

/// The client-side series of one method: calls as the application sees
/// them, and every attempt sent for them.
pub struct ClientSeries {
    key: Key,
    pub(crate) calls: Series,
    attempts: [AtomicU64; SHARDS],
}

impl ClientSeries {
    pub(crate) fn attempt(&self) {
        self.attempts[shard_index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// The client metrics of the process: a series per method of every
/// service a client was built for, kept for the process. A server's
/// `/metrics` includes them; a client-only process renders them with
/// [`ClientRegistry::render`].
pub struct ClientRegistry {
    series: std::sync::RwLock<BTreeMap<&'static str, &'static ClientSeries>>,
}

/// The process's client metrics.
pub fn clients() -> &'static ClientRegistry {
    static CLIENTS: ClientRegistry = ClientRegistry { series: std::sync::RwLock::new(BTreeMap::new()) };
    &CLIENTS
}

impl ClientRegistry {
    /// The series of every method of `spec`, created on first use.
    pub(crate) fn register(&self, spec: &'static ServiceSpec) -> crate::table::PathMap<&'static ClientSeries> {
        let mut all = self.series.write().unwrap_or_else(|e| e.into_inner());
        let mut out = crate::table::PathMap::default();
        for m in spec.methods {
            let series = *all.entry(m.path).or_insert_with(|| {
                // The service as the path names it (one spec may hold
                // several services' methods, as etcd's does).
                let service = m.path.trim_start_matches('/').split('/').next().unwrap_or(spec.name);
                crate::table::forever(ClientSeries {
                    key: (service.to_owned(), m.name.to_owned(), kind_name(Some(m.kind))),
                    calls: Series::default(),
                    attempts: Default::default(),
                })
            });
            out.insert(m.path, series);
        }
        out
    }

    /// The series of calls to methods outside the client's service.
    pub(crate) fn unknown(&self) -> &'static ClientSeries {
        static UNKNOWN: std::sync::OnceLock<ClientSeries> = std::sync::OnceLock::new();
        UNKNOWN.get_or_init(|| ClientSeries {
            key: ("unknown".to_owned(), "unknown".to_owned(), kind_name(None)),
            calls: Series::default(),
            attempts: Default::default(),
        })
    }

    /// The Prometheus text of the client metrics (empty before any client
    /// is built).
    pub fn render(&self) -> String {
        let all = self.series.read().unwrap_or_else(|e| e.into_inner());
        let totals: BTreeMap<&Key, Totals> = all.values().map(|s| (&s.key, s.calls.totals())).collect();
        let attempts: BTreeMap<&Key, u64> =
            all.values().map(|s| (&s.key, s.attempts.iter().map(|a| a.load(Ordering::Relaxed)).sum())).collect();
        let mut out = String::new();
        render_family(&mut out, Side::Client, &totals, &attempts);
        out
    }
}

/// The code's name as gRPC Prometheus conventions spell it (`OK`,
/// `NotFound`, ...).
pub(crate) fn code_name(code: u8) -> &'static str {
    CODES.get(usize::from(code)).copied().unwrap_or("Unknown")
}

fn kind_name(kind: Option<MethodKind>) -> &'static str {
    match kind {
        Some(MethodKind::Unary) => "unary",
        Some(MethodKind::ServerStreaming) => "server_stream",
        Some(MethodKind::ClientStreaming) => "client_stream",
        Some(MethodKind::Streaming) => "bidi_stream",
        None => "unknown",
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_follows_the_text_format() {
        let r = Registry::new(&[]);
        let s = r.series("/a.B/C");
        assert!(std::ptr::eq(s, r.series("/x.Y/Z")), "paths the server lacks share one series");
        assert!(!std::ptr::eq(s, r.series("/grpc.health.v1.Health/Check")));
        s.start();
        s.finish(0, std::time::Duration::from_millis(20));
        s.start();
        s.finish(5, std::time::Duration::from_secs(3));
        s.start();
        let text = r.render();
        assert!(text.contains(
            "grpc_server_started_total{grpc_method=\"unknown\",grpc_service=\"unknown\",grpc_type=\"unknown\"} 3"
        ));
        assert!(text.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"unknown\""));
        assert!(text.contains("grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method=\"unknown\""));
        assert!(text.contains("le=\"0.025\"} 1"));
        assert!(text.contains("le=\"5\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains(
            "grpc_server_handling_seconds_sum{grpc_method=\"unknown\",grpc_service=\"unknown\",grpc_type=\"unknown\"} 3.02"
        ));
        assert!(text.contains(
            "grpc_server_in_flight{grpc_method=\"unknown\",grpc_service=\"unknown\",grpc_type=\"unknown\"} 1"
        ));
    }

    #[test]
    fn dropped_calls_count_as_cancelled() {
        let registry = Registry::new(&[]);
        let series = registry.series("/s/m");
        series.start();
        let started = std::time::Instant::now();
        drop(crate::completion::Completion(Some(move |code| series.finish(code, started.elapsed()))));
        assert!(registry.render().contains("grpc_code=\"Canceled\""));
    }
}
