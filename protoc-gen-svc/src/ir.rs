//! The validated intermediate representation that every emitter reads.
//!
//! Built from a descriptor pool by [`crate::annotations`]; free of syn/quote
//! types. Every setting has its default applied, so emitters never guess.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::units::Quantity;

/// gRPC status code names, indexed by code number.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Everything generated for one protobuf package.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    /// Dotted package name; empty for files without a package.
    pub name: String,
    /// Files of this package that were asked for, in request order.
    pub files: Vec<String>,
    /// Services declared in those files.
    pub services: Vec<Service>,
    /// Enums marked `(svc.errors)`.
    pub error_enums: Vec<ErrorEnum>,
}

/// One gRPC service with its resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Simple name, e.g. `Greeter`.
    pub name: String,
    /// Fully-qualified name, e.g. `greeter.v1.Greeter`.
    pub full_name: String,
    /// File that declares it.
    pub file: String,
    /// Whether `(svc.service)` was written (manifests are emitted only then).
    pub annotated: bool,
    /// Resolved service settings.
    pub settings: ServiceSettings,
    /// Methods in declaration order.
    pub methods: Vec<Method>,
}

/// Resolved `(svc.service)` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSettings {
    pub port: u16,
    pub metrics_port: u16,
    /// The HTTP/JSON listener's port (used when a method has a binding).
    pub http_port: u16,
    pub server: ServerSettings,
    pub auth: Option<JwtSettings>,
    pub rate_limit: Option<RateLimit>,
    pub client: ClientSettings,
    pub deploy: DeploySettings,
}

/// Resolved server transport settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub max_recv_message_size: u32,
    pub max_send_message_size: u32,
    pub max_concurrent_streams: u32,
    pub concurrency_limit: u32,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub min_ping_interval: Duration,
    pub max_connection_idle: Option<Duration>,
    pub max_connection_age: Option<Duration>,
    pub max_connection_age_grace: Option<Duration>,
    pub shutdown_grace: Duration,
}

/// Resolved JWT settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    pub roles_claim: String,
    pub leeway: Duration,
}

/// Bucket key of a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitKey {
    Global,
    Peer,
    Subject,
}

/// A resolved token-bucket rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub rps: f64,
    pub burst: u32,
    pub key: RateLimitKey,
}

/// Client-side load balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancing {
    RoundRobin,
    PowerOfTwoChoices,
    PickFirst,
}

/// Resolved client settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    pub pool_size: u32,
    pub load_balancing: LoadBalancing,
    pub connect_timeout: Duration,
    pub keepalive: Option<Duration>,
    /// "gzip", "zstd" or "" for none.
    pub compression: String,
    /// (max_tokens, token_ratio)
    pub retry_throttling: Option<(u32, f64)>,
    pub outlier_detection: Option<OutlierDetection>,
}

/// Resolved gRFC A50 outlier detection.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// (stdev_factor, enforcement_percentage, minimum_hosts, request_volume)
    pub success_rate: Option<[u32; 4]>,
    /// (threshold, enforcement_percentage, minimum_hosts, request_volume)
    pub failure_percentage: Option<[u32; 4]>,
}

/// Resolved deployment settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploySettings {
    pub image: Option<String>,
    pub namespace: Option<String>,
    /// Starting replica count; the default autoscaler minimum.
    pub replicas: u32,
    /// The HorizontalPodAutoscaler (always emitted; defaults applied).
    pub autoscale: Autoscale,
    pub cpu_request: Quantity,
    pub cpu_limit: Quantity,
    pub memory_request: Quantity,
    pub memory_limit: Quantity,
    pub env: BTreeMap<String, String>,
    pub pdb_min_available: u32,
    pub service_monitor: bool,
    pub network_policy: bool,
    pub headless_service: bool,
    /// Secret holding the TLS certificate; TLS is on when set.
    pub tls_secret: Option<String>,
    /// Client certificates required (needs `tls_secret`).
    pub mtls: bool,
}

/// Resolved autoscaler settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Autoscale {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub target_cpu_percent: Option<u32>,
    pub target_memory_percent: Option<u32>,
}

/// The standard `idempotency_level` method option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    Unknown,
    NoSideEffects,
    Idempotent,
}

/// One rpc with its resolved policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    /// Proto name, e.g. `SayHello`.
    pub name: String,
    /// gRPC path, e.g. `/greeter.v1.Greeter/SayHello`.
    pub path: String,
    /// Fully-qualified request type, e.g. `greeter.v1.HelloRequest`.
    pub input: String,
    /// Package of the request type.
    pub input_package: String,
    /// Fully-qualified response type.
    pub output: String,
    /// Package of the response type.
    pub output_package: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
    pub idempotency: Idempotency,
    pub policy: MethodPolicy,
    /// HTTP bindings from `google.api.http`: the rule, then its
    /// `additional_bindings`.
    pub http: Vec<HttpBinding>,
}

/// One checked HTTP binding of a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBinding {
    /// `GET`, `PUT`, `POST`, `DELETE`, `PATCH`, or a custom rule's kind.
    pub method: String,
    /// The path template as written.
    pub template: String,
    /// The segments before any `:verb`.
    pub path: Vec<PathSegment>,
    /// The `:verb` suffix.
    pub verb: Option<String>,
    pub body: HttpBody,
    /// The top-level response field sent as the body, if not the whole
    /// response.
    pub response_body: Option<String>,
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Literal(String),
    /// `*`
    Any,
    /// `**`
    Rest,
    /// `{a.b=pattern}`: field names from the request message down, and the
    /// segments bound (`*` for `{a.b}`).
    Field {
        path: Vec<String>,
        pattern: Vec<PathSegment>,
    },
}

/// What an HTTP request body maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpBody {
    None,
    /// `*`
    All,
    /// A top-level request field.
    Field(String),
}

/// Resolved `(svc.method)` policy (service defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodPolicy {
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub hedging: Option<HedgingPolicy>,
    /// True when the service has auth and this method is not public.
    pub requires_auth: bool,
    pub roles: Vec<String>,
    pub rate_limit: Option<RateLimit>,
    pub audit: bool,
    pub validate: bool,
}

/// Resolved gRFC A6 retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub backoff_multiplier: f64,
    /// Status code numbers.
    pub retryable_codes: Vec<u8>,
}

/// Resolved gRFC A6 hedging policy.
#[derive(Debug, Clone, PartialEq)]
pub struct HedgingPolicy {
    pub max_attempts: u32,
    pub delay: Duration,
    /// Status code numbers.
    pub non_fatal_codes: Vec<u8>,
}

/// An enum marked `(svc.errors)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorEnum {
    /// Simple name.
    pub name: String,
    /// Fully-qualified name.
    pub full_name: String,
    pub domain: String,
    pub values: Vec<ErrorValue>,
}

/// One value of an errors enum.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorValue {
    /// Proto value name, used as `ErrorInfo.reason`.
    pub name: String,
    pub number: i32,
    /// Status code number.
    pub code: u8,
    pub message: String,
    pub retryable: bool,
    pub retry_delay: Duration,
}
