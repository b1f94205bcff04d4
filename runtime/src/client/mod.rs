//! The generated client's side: a [`Channel`] per client, holding a pool
//! of HTTP/2 connections to every endpoint of its target, placing each
//! call by the balancing policy, and running it with the method's
//! deadline and gRFC A6 retry policy from the annotations.
//!
//! Generated code gives every annotated service a `Client` in its
//! `<service>_svc` module, the service's typed client over a [`Channel`]:
//!
//! ```ignore
//! let mut client = greeter_svc::Client::connect("dns:///greeter.default.svc:50051").await?;
//! let reply = client.say_hello(HelloRequest { name: "Ada".into() }).await?;
//! // Overrides: TLS, tokens, pool size, policy, timeouts, compression.
//! let client = greeter_svc::Client::builder("ipv4:10.0.0.1:50051,10.0.0.2:50051")
//!     .pool_size(4)
//!     .load_balancing("round_robin")
//!     .build()
//!     .await?;
//! ```
//!
//! What a call gets:
//! - **Targets** in gRPC's naming ([`target::FORMS`]): DNS names
//!   (re-resolved every 30 s and whenever a connection fails, so a
//!   Kubernetes headless Service's pods are followed), fixed lists, Unix
//!   sockets, or a [`Resolver`] of your own.
//! - **Pool**: `pool_size` connections per endpoint (annotation
//!   `client.pool_size`), and one more whenever all open ones carry as many
//!   calls as the server's `MAX_CONCURRENT_STREAMS`, so a busy client
//!   never queues behind one connection nor meets `REFUSED_STREAM`.
//!   Connections are dialled with gRPC's connection backoff (1 s, ×1.6,
//!   ±20 %, at most 120 s), each attempt bounded by `connect_timeout`;
//!   keepalive pings (gRFC A8) go out every 5 minutes while calls are open
//!   (servers' default minimum), failing connections are closed.
//! - **Balancing**: `pick_first`, `round_robin`, or `p2c` (the default:
//!   the less loaded of two random endpoints by calls in flight). Calls go
//!   only to connected endpoints.
//! - **Deadlines**: the caller's (`Request::set_timeout`), else the
//!   method's `timeout`, and never later than the deadline of the call a
//!   generated server is handling ([`crate::context::CallContext`]), whose
//!   `traceparent` and `x-request-id` are passed on too. Sent as
//!   `grpc-timeout`.
//! - **Retries** (gRFC A6) for methods with a `retry` policy: at most 5
//!   attempts, exponential backoff with full jitter, only the policy's
//!   codes, `grpc-retry-pushback-ms` honoured, `grpc-previous-rpc-attempts`
//!   sent, throttled by `retry_throttling`, never past the deadline, and
//!   only until the response has begun. Calls that never reached a server
//!   (a connection that closed first, a refused stream, GOAWAY) are sent
//!   again for every method.
//! - **Hedging** (gRFC A6) for idempotent methods with a `hedging` policy:
//!   a copy of the call every `delay` (at once after a non-fatal code)
//!   until one answers; the first that begins, succeeds or fails fatally
//!   wins and the others are cancelled.
//! - **Outlier detection** (gRFC A50) with `outlier_detection`: endpoints
//!   whose calls fail far more than the others' are ejected for a while.
//! - **Metrics**: `grpc_client_*` in [`crate::metrics::clients`].

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tonic::Status;

mod backoff;
mod call;
mod connection;
mod dns;
pub(crate) mod etcd;
mod pool;
mod resolve;
mod retry;
pub mod target;
mod tls;

pub use connection::ResponseBody;
pub use resolve::{BoxFuture, Resolver, Updates};
pub use target::{Address, Target};
pub use tls::ClientTls;

use crate::Error;
use crate::codegen::{
    HedgingSpec, LoadBalancing, MethodSpec, OutlierDetectionSpec, RetrySpec, RetryThrottlingSpec, ServiceSpec,
};
use crate::metrics::ClientSeries;
use crate::table::PathMap;

/// Keepalive ping interval and ack timeout: grpc servers' default minimum
/// interval between pings (5 minutes) and gRPC's default timeout.
const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(300), Duration::from_secs(20));

/// How often DNS names are resolved again.
const DNS_REFRESH: Duration = Duration::from_secs(30);

/// How long a client waits without calls before closing its connections.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A client's connections and call policy, shared by its clones.
#[derive(Clone)]
pub struct Channel {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pool: Arc<pool::Pool>,
    methods: PathMap<&'static MethodSpec>,
    series: PathMap<&'static ClientSeries>,
    throttle: Option<retry::Throttle>,
    metadata: http::HeaderMap,
    token: Option<Token>,
    replay_budget: Arc<AtomicUsize>,
    timeout_override: Option<Duration>,
    repeat_override: Option<call::Repeat>,
    resolver: tokio::task::JoinHandle<()>,
    /// Where failed calls are recorded.
    log: crate::log::Logger,
    target: Arc<str>,
    /// Requests are validated before they are sent.
    validate_requests: bool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.resolver.abort();
        for endpoint in self.pool.endpoints().iter() {
            endpoint.remove();
        }
        // Records of failed calls are buffered: a short-lived program that
        // drops its client before exiting still gets them.
        crate::log::flush();
    }
}

impl Channel {
    /// Connections open now (none while idle).
    pub fn connections_open(&self) -> usize {
        self.shared.pool.open_connections()
    }

    /// Whether the client is in idle mode: its connections closed after
    /// [`Builder::idle_timeout`] without calls, to be opened by the next.
    pub fn is_idle(&self) -> bool {
        self.shared.pool.is_idle()
    }

    /// Connections opened so far (more than `pool_size` per endpoint once
    /// calls reached the servers' stream limits).
    pub fn connections_opened(&self) -> usize {
        self.shared.pool.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The endpoints currently resolved, with their calls in flight.
    pub fn endpoints(&self) -> Vec<(Address, usize)> {
        self.shared.pool.endpoints().iter().map(|e| (e.address.clone(), e.load())).collect()
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<ResponseBody>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Calls wait for a connection inside, bounded by their deadline.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(call::run(self.shared.clone(), request))
    }
}

/// Message compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip.
    Gzip,
    /// zstd (feature `zstd`).
    Zstd,
}

/// Where bearer tokens come from; each call sends
/// `authorization: Bearer <token>`.
#[derive(Clone)]
pub enum TokenSource {
    /// The same token for every call.
    Static(String),
    /// A file holding the token (e.g. a projected service-account token),
    /// read again when it changes.
    File(PathBuf),
    /// An async provider, asked for every call (cache inside it).
    Provider(Arc<dyn Fn() -> BoxFuture<Result<String, Status>> + Send + Sync>),
}

struct Token {
    source: TokenSource,
    /// For a static token: its header, made once when the client is built.
    fixed: Option<Result<http::HeaderValue, Status>>,
    /// For files: when last read, its modification time and value.
    cached: Mutex<Option<(std::time::Instant, Option<SystemTime>, http::HeaderValue)>>,
}

impl Token {
    fn bearer(token: &str) -> Result<http::HeaderValue, Status> {
        let mut v = http::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| Status::unauthenticated("the token holds characters a header cannot carry"))?;
        v.set_sensitive(true);
        Ok(v)
    }

    async fn header(&self) -> Result<http::HeaderValue, Status> {
        match &self.source {
            TokenSource::Static(t) => self.fixed.clone().unwrap_or_else(|| Token::bearer(t)),
            TokenSource::Provider(p) => Token::bearer(&p().await?),
            TokenSource::File(path) => {
                let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
                // Checked for changes at most once a second.
                if let Some((at, _, v)) = &*cached
                    && at.elapsed() < Duration::from_secs(1)
                {
                    return Ok(v.clone());
                }
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if let Some((_, m, v)) = &*cached
                    && *m == modified
                    && modified.is_some()
                {
                    let v = v.clone();
                    *cached = Some((std::time::Instant::now(), modified, v.clone()));
                    return Ok(v);
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Status::unauthenticated(format!("token file {}: {e}", path.display())))?;
                let v = Token::bearer(&text)?;
                *cached = Some((std::time::Instant::now(), modified, v.clone()));
                Ok(v)
            }
        }
    }
}

/// What a built client is made from; generated clients implement
/// [`FromChannel`] to apply it.
pub struct Connected {
    /// The channel.
    pub channel: Channel,
    /// Compress requests with this encoding.
    pub send_compressed: Option<tonic::codec::CompressionEncoding>,
    /// Accept responses compressed with these.
    pub accept_compressed: Vec<tonic::codec::CompressionEncoding>,
    /// Largest response message accepted.
    pub max_decoding_message_size: usize,
    /// Largest request message sent.
    pub max_encoding_message_size: usize,
}

/// A client made from a built [`Channel`].
pub trait FromChannel {
    /// Wraps `connected`, applying its codec settings.
    fn from_channel(connected: Connected) -> Self;
}

impl FromChannel for Channel {
    fn from_channel(connected: Connected) -> Self {
        connected.channel
    }
}

/// The logger of clients built without one, from `SVC_LOG` and
/// `SVC_LOG_FORMAT` as they were at the first build; shared by all of them.
fn environment_logger() -> Result<crate::log::Logger, Error> {
    static LOGGER: std::sync::OnceLock<Result<crate::log::Logger, (&'static str, String)>> = std::sync::OnceLock::new();
    let made = LOGGER.get_or_init(|| {
        crate::log::Logger::from_lookup(|name| std::env::var(name).ok()).map_err(|e| match e {
            Error::Config { variable, problem } => (variable, problem),
            other => ("SVC_LOG", other.to_string()),
        })
    });
    made.clone().map_err(|(variable, problem)| Error::Config { variable, problem })
}

/// Overrides of a service's client defaults; [`Builder::build`] connects.
pub struct Builder<C> {
    spec: &'static ServiceSpec,
    target: String,
    tls: Option<ClientTls>,
    token: Option<TokenSource>,
    pool_size: Option<usize>,
    policy: Result<Option<LoadBalancing>, String>,
    timeout: Option<Duration>,
    repeat: Option<call::Repeat>,
    outlier_detection: Option<Option<OutlierDetectionSpec>>,
    throttling: Option<Option<RetryThrottlingSpec>>,
    connect_timeout: Option<Duration>,
    keepalive: Option<Option<(Duration, Duration)>>,
    compression: Result<Option<Option<Compression>>, String>,
    metadata: Result<http::HeaderMap, String>,
    max_decoding_message_size: usize,
    max_encoding_message_size: usize,
    resolver: Option<Box<dyn Resolver>>,
    dns_refresh: Duration,
    lazy: bool,
    validate_requests: bool,
    peak_ewma: bool,
    idle_timeout: Option<Duration>,
    log: Option<crate::log::Logger>,
    client: PhantomData<fn() -> C>,
}

impl<C: FromChannel> Builder<C> {
    /// A builder for `spec`'s client of `target`, with every annotation
    /// default.
    pub fn new(spec: &'static ServiceSpec, target: impl Into<String>) -> Builder<C> {
        Builder {
            spec,
            target: target.into(),
            tls: None,
            token: None,
            pool_size: None,
            policy: Ok(None),
            timeout: None,
            repeat: None,
            outlier_detection: None,
            throttling: None,
            connect_timeout: None,
            keepalive: None,
            compression: Ok(None),
            metadata: Ok(http::HeaderMap::new()),
            max_decoding_message_size: spec.server.max_send_message_size.max(4 << 20),
            max_encoding_message_size: spec.server.max_recv_message_size.max(4 << 20),
            resolver: None,
            dns_refresh: DNS_REFRESH,
            lazy: false,
            validate_requests: false,
            peak_ewma: false,
            idle_timeout: Some(IDLE_TIMEOUT),
            log: None,
            client: PhantomData,
        }
    }

    /// TLS (and mTLS with an identity); needs the `tls` feature.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sends a bearer token from `source` with every call.
    pub fn token(mut self, source: TokenSource) -> Self {
        self.token = Some(source);
        self
    }

    /// Connections per endpoint to keep open (annotation `pool_size`).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = Some(n.max(1));
        self
    }

    /// The balancing policy by name: `pick_first`, `round_robin` or `p2c`.
    pub fn load_balancing(mut self, policy: &str) -> Self {
        self.policy = match policy {
            "pick_first" => Ok(Some(LoadBalancing::PickFirst)),
            "round_robin" => Ok(Some(LoadBalancing::RoundRobin)),
            "p2c" => Ok(Some(LoadBalancing::PowerOfTwoChoices)),
            other => {
                Err(format!("load_balancing {other:?} is not a policy: use \"pick_first\", \"round_robin\" or \"p2c\""))
            }
        };
        self
    }

    /// The deadline of calls whose caller sets none, for every method
    /// (instead of each method's `timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The retry policy of every method (instead of each method's retry
    /// or hedging policy).
    pub fn retry(mut self, policy: RetrySpec) -> Self {
        self.repeat = Some(call::Repeat::Retry(policy));
        self
    }

    /// The hedging policy of every method (instead of each method's retry
    /// or hedging policy): only for clients whose methods are all safe to
    /// run more than once.
    pub fn hedging(mut self, policy: HedgingSpec) -> Self {
        self.repeat = Some(call::Repeat::Hedge(policy));
        self
    }

    /// Outlier detection (gRFC A50) instead of the annotation's
    /// `outlier_detection`; `None` turns it off.
    pub fn outlier_detection(mut self, policy: Option<OutlierDetectionSpec>) -> Self {
        self.outlier_detection = Some(policy);
        self
    }

    /// Retry throttling (gRFC A6) instead of the annotation's
    /// `retry_throttling`; `None` turns it off.
    pub fn retry_throttling(mut self, throttling: Option<RetryThrottlingSpec>) -> Self {
        self.throttling = Some(throttling);
        self
    }

    /// Bound of one connection attempt (annotation `connect_timeout`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Keepalive pings every `interval` while calls are open, closing the
    /// connection when one is not answered within `timeout`; `None` turns
    /// them off.
    pub fn keepalive(mut self, ping: Option<(Duration, Duration)>) -> Self {
        self.keepalive = Some(ping);
        self
    }

    /// Compresses requests (annotation `compression`); `None` sends them
    /// plain. Compressed responses are accepted either way.
    pub fn compression(mut self, compression: Option<Compression>) -> Self {
        self.compression = Ok(Some(compression));
        self
    }

    /// Metadata sent with every call (a call's own metadata wins).
    pub fn metadata(mut self, name: &str, value: &str) -> Self {
        if let Ok(map) = &mut self.metadata {
            match (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value)) {
                (Ok(n), Ok(v)) => {
                    map.append(n, v);
                }
                _ => self.metadata = Err(format!("metadata {name:?}: {value:?} is not a valid header")),
            }
        }
        self
    }

    /// Largest response message accepted.
    pub fn max_decoding_message_size(mut self, bytes: usize) -> Self {
        self.max_decoding_message_size = bytes;
        self
    }

    /// Largest request message sent.
    pub fn max_encoding_message_size(mut self, bytes: usize) -> Self {
        self.max_encoding_message_size = bytes;
        self
    }

    /// Resolves the target with `resolver` instead of by its scheme (the
    /// target then only names the calls' `:authority`).
    pub fn resolver(mut self, resolver: impl Resolver) -> Self {
        self.resolver = Some(Box::new(resolver));
        self
    }

    /// How often DNS names are resolved again (default 30 s; at least
    /// 1 s). Failed connections resolve again at once.
    pub fn dns_refresh(mut self, every: Duration) -> Self {
        self.dns_refresh = every.max(Duration::from_secs(1));
        self
    }

    /// Makes p2c compare endpoints by expected wait (a peak-sensitive
    /// moving average of response times × calls in flight) instead of
    /// calls in flight alone, for servers of uneven speed.
    pub fn peak_ewma(mut self) -> Self {
        self.peak_ewma = true;
        self
    }

    /// Idle mode: after this long without calls the client closes its
    /// connections, and the next call opens them again (waiting for the
    /// first one, within its deadline). Default 30 minutes, as in grpc-go
    /// and grpc-java; `None` keeps connections open for the client's life.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Where failed calls are recorded: one structured record per call that
    /// ends with a status other than OK (`warn`; `debug` when the caller
    /// cancelled it), with the target, method, code, message, attempts,
    /// last peer and duration. By default a logger from `SVC_LOG` and
    /// `SVC_LOG_FORMAT`; a generated server passes its own.
    pub fn log(mut self, log: crate::log::Logger) -> Self {
        self.log = Some(log);
        self
    }

    /// Validates each request (each message of a client stream) against
    /// its `buf.validate` rules before sending it: an invalid unary or
    /// server-streaming request fails with the `INVALID_ARGUMENT` status a
    /// generated server would send, without reaching the network; an
    /// invalid message later in a client stream cancels the call. Off by
    /// default (servers validate anyway).
    pub fn validate_requests(mut self, on: bool) -> Self {
        self.validate_requests = on;
        self
    }

    /// Returns without waiting for a first connection (calls wait for one,
    /// within their deadline).
    pub fn lazy(mut self) -> Self {
        self.lazy = true;
        self
    }

    /// Resolves the target and, unless [`Builder::lazy`], waits until a
    /// connection is open or every endpoint failed once (bounded by the
    /// connect timeout): an unreachable target is an error naming each
    /// address and why.
    pub async fn build(self) -> Result<C, Error> {
        let target_text = self.target.clone();
        let fail = |problem: String| Error::Client { target: target_text.clone(), problem };
        let spec = self.spec;
        let c = &spec.client;
        let target = Target::parse(&self.target, spec.port).map_err(|p| Error::Client {
            target: self.target.clone(),
            problem: p.split_once(": ").map_or(p.clone(), |(_, rest)| rest.to_owned()),
        })?;
        let policy = self.policy.map_err(fail)?.unwrap_or(c.load_balancing);
        let log = match self.log {
            Some(log) => log,
            None => environment_logger()?,
        };
        let compression = match self.compression.map_err(fail)? {
            Some(choice) => choice,
            None => match c.compression {
                "gzip" => Some(Compression::Gzip),
                "zstd" => Some(Compression::Zstd),
                _ => None,
            },
        };
        if compression == Some(Compression::Zstd) && cfg!(not(feature = "zstd")) {
            return Err(fail(
                "zstd compression needs the `zstd` feature of svc-runtime (features = [\"zstd\"] on its line in \
                 Cargo.toml)"
                    .into(),
            ));
        }
        let metadata = self.metadata.map_err(fail)?;
        let connector = match &self.tls {
            Some(settings) => Some(tls::Connector::new(settings, &target.host()).map_err(fail)?),
            None => None,
        };
        let authority = http::uri::Authority::try_from(target.authority())
            .map_err(|e| fail(format!("{:?} cannot be an HTTP/2 authority: {e}", target.authority())))?;
        let scheme = if connector.is_some() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP };
        let connect_timeout = self.connect_timeout.unwrap_or(c.connect_timeout);
        let keepalive = self.keepalive.unwrap_or(Some(c.keepalive.map_or(KEEPALIVE, |k| (k, KEEPALIVE.1))));
        let dial = connection::Dial { connect_timeout, keepalive, tls: connector, scheme, authority };
        let resolver = match self.resolver {
            Some(r) => r,
            None => resolve::for_target(&target, self.dns_refresh).map_err(fail)?,
        };
        let (tx, rx) = tokio::sync::watch::channel(None);
        let again = Arc::new(tokio::sync::Notify::new());
        let resolver = tokio::spawn(resolver.run(Updates::new(tx, again.clone())));
        let pool_size = self.pool_size.unwrap_or(c.pool_size.max(1) as usize);
        let outliers = self.outlier_detection.unwrap_or(c.outlier_detection);
        let balancing = (policy, self.peak_ewma, outliers);
        let sizes = (pool_size, self.idle_timeout);
        let pool = pool::Pool::start(self.target.clone(), balancing, sizes, dial, again, rx);
        let methods = spec.methods.iter().map(|m| (m.path, m)).collect();
        let shared = Shared {
            pool: pool.clone(),
            methods,
            series: crate::metrics::clients().register(spec),
            throttle: self.throttling.unwrap_or(c.retry_throttling).map(retry::Throttle::new),
            metadata,
            token: self.token.map(|source| {
                let fixed = match &source {
                    TokenSource::Static(t) => Some(Token::bearer(t)),
                    _ => None,
                };
                Token { source, fixed, cached: Mutex::new(None) }
            }),
            replay_budget: Arc::new(AtomicUsize::new(0)),
            timeout_override: self.timeout,
            repeat_override: self.repeat,
            resolver,
            log,
            target: Arc::from(self.target.as_str()),
            validate_requests: self.validate_requests,
        };
        if !self.lazy {
            pool.wait_connected(connect_timeout).await.map_err(|s| fail(s.message().to_owned()))?;
        }
        let encoding = |c: Compression| match c {
            Compression::Gzip => tonic::codec::CompressionEncoding::Gzip,
            #[cfg(feature = "zstd")]
            Compression::Zstd => tonic::codec::CompressionEncoding::Zstd,
            #[cfg(not(feature = "zstd"))]
            Compression::Zstd => tonic::codec::CompressionEncoding::Gzip,
        };
        let accept = vec![
            tonic::codec::CompressionEncoding::Gzip,
            #[cfg(feature = "zstd")]
            tonic::codec::CompressionEncoding::Zstd,
        ];
        Ok(C::from_channel(Connected {
            channel: Channel { shared: Arc::new(shared) },
            send_compressed: compression.map(encoding),
            accept_compressed: accept,
            max_decoding_message_size: self.max_decoding_message_size,
            max_encoding_message_size: self.max_encoding_message_size,
        }))
    }
}
