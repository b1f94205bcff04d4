//! The generated server entry point: one call runs a service with
//! `grpc.health.v1` (Check and Watch, per-service status), reflection (v1
//! and v1alpha), `/metrics` (Prometheus, see [`crate::metrics`]),
//! `/healthz` and `/readyz` on the metrics port, transport
//! limits from the annotations, and graceful shutdown on SIGTERM/SIGINT.
//!
//! Generated code wraps it as `<service>_svc::serve(implementation)`; use
//! [`Server`] directly to bind first (tests, port 0) or to serve several
//! services' specs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;

use crate::auth::Verifier;
use crate::codegen::ServiceSpec;
use crate::config::{ConfigSource, FileConfig};
use crate::log::Logger;
use crate::tls::TlsFiles;

mod probes;
mod reflection;
mod registry;
#[cfg(feature = "rest")]
mod rest;
mod shutdown;
mod stack;
#[cfg(feature = "tls")]
mod tls;

pub use crate::Error;
pub use shutdown::shutdown_signal;
pub use stack::{Stack, Stacked};

use probes::serve_http;
use reflection::reflection_descriptors;

/// Run-time settings, lowest to highest precedence: annotation defaults,
/// the configuration file (see [`crate::config`]), the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// gRPC listen address (`SVC_GRPC_ADDR`; default `0.0.0.0:<port>`).
    pub grpc_addr: SocketAddr,
    /// Health/metrics HTTP listen address (`SVC_METRICS_ADDR`; default
    /// `0.0.0.0:<metrics_port>`).
    pub metrics_addr: SocketAddr,
    /// HTTP/JSON listen address, used when a method has an HTTP binding
    /// (`SVC_HTTP_ADDR`; default `0.0.0.0:<http_port>`).
    pub http_addr: SocketAddr,
    /// Drain time after SIGTERM (annotation `shutdown_grace`).
    pub shutdown_grace: Duration,
}

impl Config {
    /// The annotation defaults of `spec`.
    pub fn defaults(spec: &ServiceSpec) -> Config {
        Config {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], spec.port)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], spec.metrics_port)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], spec.http_port)),
            shutdown_grace: spec.server.shutdown_grace,
        }
    }

    /// Defaults overridden by `SVC_GRPC_ADDR` and `SVC_METRICS_ADDR`.
    pub fn from_env(spec: &ServiceSpec) -> Result<Config, Error> {
        Self::from_lookup(spec, |name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup`.
    pub fn from_lookup(spec: &ServiceSpec, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        Self::from_layers(spec, None, lookup)
    }

    /// Defaults, overridden by the configuration file, overridden by the
    /// variables `lookup` finds.
    pub fn from_layers(
        spec: &ServiceSpec,
        file: Option<(&ConfigSource, &FileConfig)>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let mut config = Config::defaults(spec);
        let addr = |value: &str| {
            value.trim().parse::<SocketAddr>().map_err(|e| {
                format!("{value:?} is not a socket address ({e}); write e.g. 0.0.0.0:50051 or 127.0.0.1:0")
            })
        };
        if let Some((source, f)) = file {
            if let Some(v) = &f.grpc_addr {
                config.grpc_addr = addr(v).map_err(|p| source.error("grpc_addr", p))?;
            }
            if let Some(v) = &f.metrics_addr {
                config.metrics_addr = addr(v).map_err(|p| source.error("metrics_addr", p))?;
            }
            if let Some(v) = &f.http_addr {
                config.http_addr = addr(v).map_err(|p| source.error("http_addr", p))?;
            }
            if let Some(v) = &f.shutdown_grace {
                config.shutdown_grace =
                    crate::config::parse_duration(v).map_err(|p| source.error("shutdown_grace", p))?;
            }
        }
        for (variable, slot) in [
            ("SVC_GRPC_ADDR", &mut config.grpc_addr),
            ("SVC_METRICS_ADDR", &mut config.metrics_addr),
            ("SVC_HTTP_ADDR", &mut config.http_addr),
        ] {
            if let Some(v) = lookup(variable) {
                *slot = addr(&v).map_err(|problem| Error::Config { variable, problem })?;
            }
        }
        Ok(config)
    }
}

/// What [`Server::serve`] accepts: a generated tonic server
/// (`<service>_svc::server(impl)` or `XxxServer::new(impl)`).
pub trait GrpcService:
    tower_service::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
    + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A server for one or more service specs. The first service's
/// annotations give the ports, transport limits and grace period.
pub struct Server {
    settings: Settings,
}

/// Everything a server runs with, before and after binding.
struct Settings {
    /// The services, each with its JWT verifier (for those with `auth`).
    services: Vec<(&'static ServiceSpec, Option<Verifier>)>,
    config: Config,
    logger: Logger,
    reload: Option<Reload>,
    tls: Option<TlsFiles>,
    otlp: Option<(crate::trace::Endpoint, String)>,
    sampler: crate::trace::Sampler,
    registration: Option<registry::Registration>,
}

impl Settings {
    fn specs(&self) -> Vec<&'static ServiceSpec> {
        self.services.iter().map(|(spec, _)| *spec).collect()
    }

    /// `a.v1.A` or `a.v1.A,b.v1.B`, for messages.
    fn names(&self) -> String {
        self.specs().iter().map(|s| s.name).collect::<Vec<_>>().join(",")
    }
}

/// What re-reading the configuration file while serving needs.
#[derive(Debug, Clone)]
struct Reload {
    source: ConfigSource,
    /// The file as last read.
    text: String,
    /// `SVC_LOG` is set and outranks the file.
    level_pinned: bool,
}

/// A server whose listeners are bound; [`Bound::serve`] runs it.
pub struct Bound {
    settings: Settings,
    grpc: TcpListener,
    metrics: TcpListener,
    /// The HTTP/JSON listener, when a method has an HTTP binding.
    http: Option<TcpListener>,
}

impl Server {
    /// A server configured from the annotations, the configuration file
    /// (`--config FILE` or `SVC_CONFIG`) and the environment, including the
    /// JWT key when the service requires authentication.
    pub fn from_env(spec: &'static ServiceSpec) -> Result<Server, Error> {
        let env = |k: &str| std::env::var(k).ok();
        let source = ConfigSource::find(std::env::args(), env)?;
        let loaded = source.as_ref().map(|s| s.load_text()).transpose()?;
        let file = source.as_ref().zip(loaded.as_ref().map(|(_, config)| config));
        let config = Config::from_layers(spec, file, env)?;
        let logger = Logger::from_layers(file, env)?;
        let verifier = spec.auth.as_ref().map(Verifier::from_env).transpose()?;
        let tls = TlsFiles::from_layers(file, env)?;
        let otlp = match env("SVC_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => {
                let mut endpoint = crate::trace::Endpoint::parse(&v)
                    .map_err(|problem| Error::Config { variable: "SVC_OTLP_ENDPOINT", problem })?;
                if endpoint.https {
                    // Checked now, so a bad CA file stops start-up.
                    let ca = env("OTEL_EXPORTER_OTLP_CERTIFICATE").filter(|p| !p.trim().is_empty());
                    let variable = if ca.is_some() { "OTEL_EXPORTER_OTLP_CERTIFICATE" } else { "SVC_OTLP_ENDPOINT" };
                    endpoint.ca_file = ca.map(std::path::PathBuf::from);
                    endpoint.tls().map_err(|problem| Error::Config { variable, problem })?;
                }
                let name = env("OTEL_SERVICE_NAME").filter(|n| !n.trim().is_empty()).unwrap_or(spec.name.to_owned());
                Some((endpoint, name))
            }
        };
        let reload = source.zip(loaded).map(|(source, (text, _))| Reload {
            source,
            text,
            level_pinned: env("SVC_LOG").is_some(),
        });
        let sampler = crate::trace::Sampler::from_lookup(env)?;
        let registration = registry::Registration::from_lookup(env)?;
        let services = vec![(spec, verifier)];
        Ok(Server { settings: Settings { services, config, logger, reload, tls, otlp, sampler, registration } })
    }

    /// A server with explicit settings. A service that requires
    /// authentication also needs [`Server::verifier`].
    pub fn with_config(spec: &'static ServiceSpec, config: Config) -> Server {
        let services = vec![(spec, None)];
        Server {
            settings: Settings {
                services,
                config,
                logger: Logger::default(),
                reload: None,
                tls: None,
                otlp: None,
                sampler: crate::trace::Sampler::default(),
                registration: None,
            },
        }
    }

    /// Registers the server's services in the etcd cluster at `endpoints`
    /// (comma-separated `http://host:port`, as `SVC_ETCD_ENDPOINTS`),
    /// advertising `advertise` (default: the bound gRPC address), with
    /// leases of `ttl` (see the contract's registration rules).
    pub fn etcd(mut self, endpoints: &str, advertise: Option<&str>, ttl: Duration) -> Result<Server, Error> {
        let registration = registry::Registration::new(endpoints.to_owned(), advertise.map(str::to_owned), ttl)?;
        self.settings.registration = Some(registration);
        Ok(self)
    }

    /// Serves another service from the same process, on the same ports;
    /// its JWT key, if it requires one, comes from the environment (see
    /// [`Verifier::from_env`]). Pass its implementation in the routes given
    /// to [`Server::serve_routes`].
    pub fn add_service_from_env(self, spec: &'static ServiceSpec) -> Result<Server, Error> {
        let verifier = spec.auth.as_ref().map(Verifier::from_env).transpose()?;
        Ok(self.add_service(spec, verifier))
    }

    /// Serves another service, with an explicit verifier when it requires
    /// authentication.
    pub fn add_service(mut self, spec: &'static ServiceSpec, verifier: Option<Verifier>) -> Server {
        self.settings.services.push((spec, verifier));
        self
    }

    /// Sets which calls' spans are recorded (from the environment:
    /// `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    pub fn sampler(mut self, sampler: crate::trace::Sampler) -> Server {
        self.settings.sampler = sampler;
        self
    }

    /// Sets how access and audit records are written.
    pub fn logger(mut self, logger: Logger) -> Server {
        self.settings.logger = logger;
        self
    }

    /// Serves gRPC over TLS (mutual TLS when `files.client_ca` is set); see
    /// [`crate::tls`].
    pub fn tls(mut self, files: TlsFiles) -> Server {
        self.settings.tls = Some(files);
        self
    }

    /// Exports spans to an OTLP/HTTP collector (see [`crate::trace`]),
    /// naming the resource `service_name`.
    pub fn otlp(mut self, endpoint: crate::trace::Endpoint, service_name: impl Into<String>) -> Server {
        self.settings.otlp = Some((endpoint, service_name.into()));
        self
    }

    /// Sets the JWT verifier of the first service (see
    /// [`Verifier::from_lookup`]).
    pub fn verifier(mut self, verifier: Verifier) -> Server {
        self.settings.services[0].1 = Some(verifier);
        self
    }

    /// Binds the gRPC and metrics listeners.
    pub async fn bind(self) -> Result<Bound, Error> {
        let settings = self.settings;
        if let Some((spec, _)) = settings.services.iter().find(|(spec, v)| spec.auth.is_some() && v.is_none()) {
            return Err(Error::Config {
                variable: "SVC_JWT_SECRET",
                problem: format!(
                    "{} requires JWT authentication but no key is configured (SVC_JWT_SECRET or SVC_JWT_PUBLIC_KEY_FILE)",
                    spec.name
                ),
            });
        }
        if cfg!(not(feature = "tls")) && settings.tls.is_some() {
            let problem = crate::tls::MISSING_FEATURE.to_owned();
            return Err(Error::Config { variable: "SVC_TLS_CERT_FILE", problem });
        }
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| Error::Bind { what, addr, source })
        };
        let grpc = bind("gRPC", settings.config.grpc_addr).await?;
        let metrics = bind("metrics", settings.config.metrics_addr).await?;
        let bindings = settings.services.iter().any(|(spec, _)| spec.methods.iter().any(|m| !m.http.is_empty()));
        if bindings && cfg!(not(feature = "rest")) {
            // Protos from elsewhere (googleapis) carry bindings their users
            // may not want served: gRPC alone is served, and said so.
            settings.logger.log(
                crate::log::Level::Warn,
                "google.api.http bindings are not served: this build of svc-runtime lacks the `rest` feature",
                &[("services", crate::log::Value::Str(&settings.names()))],
            );
        }
        if bindings && cfg!(feature = "rest") && settings.tls.is_some() {
            // Plain HTTP beside TLS gRPC would let calls around the
            // transport's protection (mTLS above all).
            settings.logger.log(
                crate::log::Level::Warn,
                "google.api.http bindings are not served: the server uses TLS, which the HTTP/JSON listener does not serve yet",
                &[("services", crate::log::Value::Str(&settings.names()))],
            );
        }
        let http = match bindings && cfg!(feature = "rest") && settings.tls.is_none() {
            true => Some(bind("HTTP/JSON", settings.config.http_addr).await?),
            false => None,
        };
        Ok(Bound { settings, grpc, metrics, http })
    }

    /// Binds and serves `service` until SIGTERM or SIGINT.
    pub async fn serve<S: GrpcService>(self, service: S) -> Result<(), Error>
    where
        S::Future: Send + 'static,
    {
        self.serve_routes(tonic::service::Routes::new(service)).await
    }

    /// Binds and serves several services until SIGTERM or SIGINT: `routes`
    /// holds one generated server per service added with
    /// [`Server::add_service_from_env`] (e.g.
    /// `Routes::new(a_svc::server(A)).add_service(b_svc::server(B))`).
    pub async fn serve_routes(self, routes: tonic::service::Routes) -> Result<(), Error> {
        let bound = self.bind().await?;
        let http = bound.http_addr().map(|a| format!(", HTTP/JSON on {a}")).unwrap_or_default();
        eprintln!(
            "svc: serving {} on {} (health and metrics on {}{http})",
            bound.settings.names(),
            bound.grpc_addr(),
            bound.metrics_addr()
        );
        bound.serve_routes(routes, shutdown_signal()).await
    }
}

impl Bound {
    /// The bound gRPC address (useful with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.settings.config.grpc_addr)
    }

    /// The bound health/metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.local_addr().unwrap_or(self.settings.config.metrics_addr)
    }

    /// The bound HTTP/JSON address, when a method has an HTTP binding.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|l| l.local_addr().unwrap_or(self.settings.config.http_addr))
    }

    /// Serves `service` until `shutdown` completes, then drains: health
    /// turns NOT_SERVING and `/readyz` 503 first, new connections are
    /// refused, in-flight calls get `shutdown_grace` to finish; calls still
    /// open then are cancelled.
    pub async fn serve<S: GrpcService>(self, service: S, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error>
    where
        S::Future: Send + 'static,
    {
        self.serve_routes(tonic::service::Routes::new(service), shutdown).await
    }

    /// Like [`Bound::serve`], for the routes of every added service.
    pub async fn serve_routes(
        self,
        routes: tonic::service::Routes,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let Bound { settings, grpc, metrics, http } = self;
        let grpc_addr = grpc.local_addr().unwrap_or(settings.config.grpc_addr);
        let specs = settings.specs();
        let spec = specs[0];
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        for s in &specs {
            health.set_service_status(s.name, ServingStatus::Serving).await;
        }

        // Both reflection versions describe everything served: the service,
        // health, and both reflection protocols (clients such as grpcurl
        // look a service up before calling it).
        let reflection = reflection_descriptors(&specs)?;
        let builder = || {
            tonic_reflection::server::Builder::configure()
                .register_file_descriptor_set(reflection.clone())
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
                .include_reflection_service(false)
        };
        let v1 = builder().build_v1().map_err(|e| Error::Reflection(e.to_string()))?;
        let v1alpha = builder().build_v1alpha().map_err(|e| Error::Reflection(e.to_string()))?;

        let ready = Arc::new(AtomicBool::new(true));
        let registry = crate::metrics::Registry::new(&specs).forever();
        let probes = tokio::spawn(serve_http(metrics, ready.clone(), registry));
        let logger = settings.logger;
        let watcher = settings.reload.map(|reload| tokio::spawn(watch_config(reload, logger)));

        let s = &spec.server;
        let (trace, exporter) = match settings.otlp {
            None => (crate::middleware::TraceLayer::new(), None),
            Some((endpoint, name)) => {
                let (exporter, task) = crate::trace::Exporter::start(endpoint, name, logger);
                (crate::middleware::TraceLayer::exporting(exporter), Some(task))
            }
        };
        let trace = trace.sampled_by(settings.sampler);
        let stack = Stack::new(settings.services, logger, registry, trace);
        // HTTP/JSON calls go through the same stack to the same services.
        #[cfg(feature = "rest")]
        let rest_stop = match http.map(|listener| (listener, rest::Rest::new(&specs, reflection.clone()))) {
            Some((listener, Ok(Some(rest)))) => {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let service = tower_layer::Layer::layer(&stack, routes.clone());
                tokio::spawn(rest::serve(listener, Arc::new(rest), service, logger, stopped));
                Some(stop)
            }
            Some((_, Err(e))) => {
                probes.abort();
                return Err(e);
            }
            _ => None,
        };
        #[cfg(not(feature = "rest"))]
        drop(http);
        let router: Router<_> = tonic::transport::Server::builder()
            .layer(stack)
            .max_concurrent_streams(s.max_concurrent_streams)
            .http2_keepalive_interval(Some(s.keepalive_interval))
            .http2_keepalive_timeout(Some(s.keepalive_timeout))
            .http2_max_local_error_reset_streams(Some(1024))
            .max_connection_age_opt(s.max_connection_age.map(jittered))
            .max_connection_age_grace_opt(s.max_connection_age_grace)
            .add_routes(routes)
            .add_service(health_service)
            .add_service(v1)
            .add_service(v1alpha);

        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let drained = async {
            let _ = drain_rx.await;
        };
        type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;
        let (server, tls_watcher): (Serving, _) = match settings.tls {
            None => {
                // Small gRPC messages must not wait for Nagle's algorithm
                // (tonic sets this only on listeners it binds itself).
                let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(grpc), |conn| {
                    conn.inspect(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    })
                });
                (Box::pin(router.serve_with_incoming_shutdown(incoming, drained)), None)
            }
            #[cfg(feature = "tls")]
            Some(files) => {
                let tls = tls::Reloading::new(files)?;
                let watcher = tokio::spawn(tls.clone().watch(logger));
                let incoming = tls::Incoming::new(grpc, tls, logger);
                (Box::pin(router.serve_with_incoming_shutdown(incoming, drained)), Some(watcher))
            }
            // `bind` refuses TLS settings without the feature.
            #[cfg(not(feature = "tls"))]
            Some(_) => {
                probes.abort();
                let problem = crate::tls::MISSING_FEATURE.to_owned();
                return Err(Error::Config { variable: "SVC_TLS_CERT_FILE", problem });
            }
        };
        let registered = match settings.registration {
            Some(registration) => {
                match registration.start(specs.iter().map(|s| s.name).collect(), grpc_addr, logger).await {
                    Ok(registered) => Some(registered),
                    Err(e) => {
                        probes.abort();
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let mut server = server;
        tokio::select! {
            result = &mut server => {
                probes.abort();
                return result.map_err(Error::Transport);
            }
            () = shutdown => {}
        }
        // Draining: leave etcd and tell load balancers first, then stop
        // accepting.
        if let Some(registered) = registered {
            registered.withdraw().await;
        }
        logger.log(
            crate::log::Level::Info,
            "draining",
            &[("grace_seconds", crate::log::Value::Num(settings.config.shutdown_grace.as_secs_f64()))],
        );
        ready.store(false, Ordering::SeqCst);
        health.set_service_status("", ServingStatus::NotServing).await;
        for s in &specs {
            health.set_service_status(s.name, ServingStatus::NotServing).await;
        }
        let _ = drain_tx.send(());
        #[cfg(feature = "rest")]
        if let Some(stop) = &rest_stop {
            let _ = stop.send(true);
        }
        let outcome = match tokio::time::timeout(settings.config.shutdown_grace, &mut server).await {
            Ok(result) => result.map_err(Error::Transport),
            Err(_) => Ok(()),
        };
        probes.abort();
        for w in [watcher, tls_watcher].into_iter().flatten() {
            w.abort();
        }
        // The router (and with it the exporter handle) goes first, so the
        // exporter sends what it holds and ends; it gets two seconds.
        drop(server);
        if let Some(task) = exporter {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        crate::log::flush();
        outcome
    }
}

/// `age` moved by up to 10% either way, drawn once per call: replicas
/// started together close their connections at different times.
fn jittered(age: Duration) -> Duration {
    let unit = (crate::trace::random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    age.mul_f64(0.9 + 0.2 * unit)
}

/// How often the configuration file is re-read.
const CONFIG_POLL: Duration = Duration::from_secs(2);

/// Re-reads the configuration file while serving and applies what can
/// change without a restart (the log level).
async fn watch_config(reload: Reload, logger: Logger) {
    use crate::log::{Level, Value};
    let path = reload.source.path.clone();
    let shown = path.display().to_string();
    let apply = |text: &String| {
        let level = crate::config::parse(&path, text)
            .and_then(|c| c.log.as_deref().map(Level::parse).transpose().map_err(|problem| format!("log: {problem}")));
        match level {
            Err(problem) => logger.log(
                Level::Warn,
                "configuration not reloaded",
                &[("file", Value::Str(&shown)), ("problem", Value::Str(&problem))],
            ),
            Ok(level) => {
                if let Some(level) = level.filter(|_| !reload.level_pinned) {
                    logger.set_level(level);
                }
                logger.log(
                    Level::Warn,
                    "configuration reloaded; addresses and shutdown_grace apply at the next start",
                    &[("file", Value::Str(&shown)), ("log", Value::Str(logger.level().as_str()))],
                );
            }
        }
    };
    crate::config::watch(CONFIG_POLL, Some(reload.text.clone()), || std::fs::read_to_string(&path), apply).await;
}

/// Sets the optional connection-age limits that tonic takes unwrapped.
trait OptionalAge {
    fn max_connection_age_opt(self, age: Option<Duration>) -> Self;
    fn max_connection_age_grace_opt(self, grace: Option<Duration>) -> Self;
}

impl<L> OptionalAge for tonic::transport::Server<L> {
    fn max_connection_age_opt(self, age: Option<Duration>) -> Self {
        match age {
            Some(a) => self.max_connection_age(a),
            None => self,
        }
    }
    fn max_connection_age_grace_opt(self, grace: Option<Duration>) -> Self {
        match grace {
            Some(g) => self.max_connection_age_grace(g),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::*;

    static SPEC: ServiceSpec = ServiceSpec {
        name: "t.v1.T",
        port: 50051,
        metrics_port: 9090,
        http_port: 8080,
        server: ServerSpec {
            max_recv_message_size: 4 << 20,
            max_send_message_size: 4 << 20,
            max_concurrent_streams: 100,
            concurrency_limit: 100,
            keepalive_interval: Duration::from_secs(7200),
            keepalive_timeout: Duration::from_secs(20),
            min_ping_interval: Duration::from_secs(300),
            max_connection_idle: None,
            max_connection_age: None,
            max_connection_age_grace: None,
            shutdown_grace: Duration::from_secs(3),
        },
        auth: None,
        client: ClientSpec {
            pool_size: 1,
            load_balancing: LoadBalancing::RoundRobin,
            connect_timeout: Duration::from_secs(5),
            keepalive: None,
            compression: "",
            retry_throttling: None,
            outlier_detection: None,
        },
        methods: &[],
        descriptors: &crate::codegen::FileDescriptors { files: &[], imports: &[] },
        openapi: None,
    };

    #[test]
    fn connection_ages_are_jittered_within_ten_percent() {
        let age = Duration::from_secs(600);
        let drawn: Vec<Duration> = (0..200).map(|_| jittered(age)).collect();
        assert!(drawn.iter().all(|d| (Duration::from_secs(540)..=Duration::from_secs(660)).contains(d)));
        assert!(
            drawn.iter().any(|d| *d < Duration::from_secs(580)) && drawn.iter().any(|d| *d > Duration::from_secs(620))
        );
    }

    #[test]
    fn config_layers_defaults_and_environment() {
        let c = Config::from_lookup(&SPEC, |_| None).expect("defaults");
        assert_eq!(c.grpc_addr, "0.0.0.0:50051".parse().expect("addr"));
        assert_eq!(c.metrics_addr, "0.0.0.0:9090".parse().expect("addr"));
        assert_eq!(c.shutdown_grace, Duration::from_secs(3));
        let c = Config::from_lookup(&SPEC, |k| (k == "SVC_GRPC_ADDR").then(|| "127.0.0.1:0".to_owned())).expect("env");
        assert_eq!(c.grpc_addr, "127.0.0.1:0".parse().expect("addr"));
    }

    #[test]
    fn bad_environment_names_the_variable() {
        let e = Config::from_lookup(&SPEC, |k| (k == "SVC_METRICS_ADDR").then(|| "localhost".to_owned()))
            .expect_err("bad address");
        let text = e.to_string();
        assert!(text.starts_with("SVC_METRICS_ADDR: \"localhost\" is not a socket address"), "{text}");
    }

    #[test]
    fn reflection_serves_every_services_files_once() {
        use crate::codegen::FileDescriptors;
        use prost::Message;
        fn file(name: &str, deps: &[&str]) -> &'static [u8] {
            let file = prost_types::FileDescriptorProto {
                name: Some(name.into()),
                dependency: deps.iter().map(|d| (*d).to_owned()).collect(),
                ..Default::default()
            };
            Box::leak(file.encode_to_vec().into_boxed_slice())
        }
        fn node(files: Vec<&'static [u8]>, imports: Vec<&'static FileDescriptors>) -> &'static FileDescriptors {
            Box::leak(Box::new(FileDescriptors { files: files.leak(), imports: imports.leak() }))
        }
        let shared = node(vec![file("google/protobuf/timestamp.proto", &[])], vec![]);
        // A second crate's copy of the same well-known file.
        let other = node(vec![file("google/protobuf/timestamp.proto", &[])], vec![]);
        let a = node(vec![file("a.proto", &["google/protobuf/timestamp.proto"])], vec![shared]);
        let b = node(vec![file("b.proto", &["a.proto"])], vec![a, shared, other]);
        let (sa, sb) = (ServiceSpec { descriptors: a, ..SPEC }, ServiceSpec { descriptors: b, ..SPEC });
        let merged = reflection_descriptors(&[&sa, &sb]).expect("descriptors");
        let names: Vec<&str> = merged.file.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["google/protobuf/timestamp.proto", "a.proto", "b.proto"]);
        let broken = ServiceSpec { descriptors: node(vec![b"\xff"], vec![]), ..SPEC };
        assert!(reflection_descriptors(&[&broken]).is_err());
    }
}
