//! Reads `(svc.service)`, `(svc.method)`, `(svc.errors)` and `(svc.error)`
//! from a descriptor pool into the validated [`ir`](crate::ir), reporting
//! every bad value with its file:line:column and a fix.

use prost::Message as _;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor, FileDescriptor, MethodDescriptor,
    ReflectMessage, ServiceDescriptor, Value,
};

use crate::error::{Diagnostic, Error, Result};
use crate::ir::*;
use crate::units::{Quantity, parse_duration, parse_quantity};

pub(crate) mod http;

const SERVICE_EXT: &str = "svc.service";
const METHOD_EXT: &str = "svc.method";
const ERRORS_EXT: &str = "svc.errors";
const ERROR_EXT: &str = "svc.error";
/// Field numbers of the `options` field in ServiceDescriptorProto,
/// MethodDescriptorProto, EnumDescriptorProto and EnumValueDescriptorProto.
const OPTIONS_FIELD: i32 = 3;

/// Container resources when `deploy.resources` leaves them out: enough for
/// a small gRPC service, bounded so one pod cannot starve a node.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
pub const DEFAULT_CPU_LIMIT: &str = "1";
pub const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
pub const DEFAULT_MEMORY_LIMIT: &str = "256Mi";
const SERVICE_EXT_NUMBER: i32 = 71001;
const METHOD_EXT_NUMBER: i32 = 71002;
const ERRORS_EXT_NUMBER: i32 = 71003;
const ERROR_EXT_NUMBER: i32 = 71004;

/// Builds the IR for `input.files_to_generate`, grouped by package in
/// first-seen order.
///
/// The pool may lack source info: diagnostics read their line numbers from
/// `input`'s descriptors when one is reported.
pub fn read_packages(pool: &DescriptorPool, input: &crate::Input) -> Result<Vec<Package>> {
    let files = &input.files_to_generate;
    let exts = Extensions {
        service: pool.get_extension_by_name(SERVICE_EXT),
        method: pool.get_extension_by_name(METHOD_EXT),
        errors: pool.get_extension_by_name(ERRORS_EXT),
        error: pool.get_extension_by_name(ERROR_EXT),
        http: pool.get_extension_by_name(http::HTTP_EXT),
    };
    let mut routes = HashMap::new();
    let mut packages: Vec<Package> = Vec::new();
    let mut by_package: HashMap<String, usize> = HashMap::new();
    let mut errors = Vec::new();
    for name in files {
        let Some(file) = pool.get_file_by_name(name) else {
            errors.push(Diagnostic::new(
                format!("file {name}"),
                "is listed for generation but missing from the descriptors",
                "pass every file to generate together with its imports",
            ));
            continue;
        };
        let index = *by_package.entry(file.package_name().to_owned()).or_insert_with(|| {
            packages.push(Package {
                name: file.package_name().to_owned(),
                files: Vec::new(),
                services: Vec::new(),
                error_enums: Vec::new(),
            });
            packages.len() - 1
        });
        let mut cx = FileCx::new(&file, &input.descriptor_set, &mut errors, &mut routes);
        let package = &mut packages[index];
        package.files.push(name.clone());
        for service in file.services() {
            if let Some(s) = cx.service(&exts, &service) {
                package.services.push(s);
            }
        }
        let enums = file.enums().chain(file.messages().flat_map(|m| nested_enums(&m)));
        for e in enums {
            if let Some(errs) = cx.error_enum(&exts, &e) {
                package.error_enums.push(errs);
            }
        }
    }
    if errors.is_empty() { Ok(packages) } else { Err(Error { diagnostics: errors }) }
}

fn nested_enums(m: &prost_reflect::MessageDescriptor) -> Vec<EnumDescriptor> {
    let mut out: Vec<EnumDescriptor> = m.child_enums().collect();
    for child in m.child_messages() {
        out.extend(nested_enums(&child));
    }
    out
}

struct Extensions {
    service: Option<ExtensionDescriptor>,
    method: Option<ExtensionDescriptor>,
    errors: Option<ExtensionDescriptor>,
    error: Option<ExtensionDescriptor>,
    http: Option<ExtensionDescriptor>,
}

fn extension(options: &DynamicMessage, ext: &Option<ExtensionDescriptor>) -> Option<DynamicMessage> {
    let ext = ext.as_ref()?;
    if !options.has_extension(ext) {
        return None;
    }
    options.get_extension(ext).as_message().cloned()
}

/// Per-file context: source locations and the shared error list.
struct FileCx<'a> {
    name: String,
    /// The encoded descriptor set holding the file, for its source info.
    set: &'a [u8],
    /// Locations by path, read from `set` when the first diagnostic is due.
    locations: Option<HashMap<Vec<i32>, (u32, u32)>>,
    errors: &'a mut Vec<Diagnostic>,
    /// Every HTTP binding seen so far in this run, by its route shape
    /// (see [`http::route_key`]): the rpc and the binding it came from.
    routes: &'a mut HashMap<String, (String, String)>,
}

/// Where a diagnostic points and what it is about.
struct At<'p> {
    element: String,
    path: &'p [i32],
}

impl<'a> FileCx<'a> {
    fn new(
        file: &FileDescriptor,
        set: &'a [u8],
        errors: &'a mut Vec<Diagnostic>,
        routes: &'a mut HashMap<String, (String, String)>,
    ) -> Self {
        FileCx { name: file.name().to_owned(), set, locations: None, errors, routes }
    }

    /// Location of the longest prefix of `path` that has source info.
    fn locate(&mut self, path: &[i32]) -> (Option<u32>, Option<u32>) {
        let (set, name) = (self.set, self.name.as_str());
        let locations = self.locations.get_or_insert_with(|| {
            let mut locations = HashMap::new();
            // Only files with a diagnostic get here: finding this one in the
            // set and decoding it in full costs nothing on the good path.
            let info = crate::source::set_files(set)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|bytes| prost_types::FileDescriptorProto::decode(bytes).ok())
                .find(|f| f.name() == name)
                .and_then(|f| f.source_code_info);
            for loc in info.map(|i| i.location).unwrap_or_default() {
                if loc.span.len() >= 2 {
                    locations.entry(loc.path).or_insert(((loc.span[0] + 1) as u32, (loc.span[1] + 1) as u32));
                }
            }
            locations
        });
        (0..=path.len())
            .rev()
            .find_map(|n| locations.get(&path[..n]))
            .map_or((None, None), |(l, c)| (Some(*l), Some(*c)))
    }

    fn error(&mut self, at: &At<'_>, message: impl Into<String>, hint: impl Into<String>) {
        let (line, column) = self.locate(at.path);
        self.errors.push(Diagnostic {
            file: Some(self.name.clone()),
            line,
            column,
            element: at.element.clone(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn duration(&mut self, at: &At<'_>, msg: &DynamicMessage, field: &str, default: Duration) -> Duration {
        self.opt_duration(at, msg, field).unwrap_or(default)
    }

    fn opt_duration(&mut self, at: &At<'_>, msg: &DynamicMessage, field: &str) -> Option<Duration> {
        self.any_duration(at, msg, field, false)
    }

    /// A duration field; zero is an error unless `zero_ok`.
    fn any_duration(&mut self, at: &At<'_>, msg: &DynamicMessage, field: &str, zero_ok: bool) -> Option<Duration> {
        let text = get_str(msg, field)?;
        match parse_duration(&text) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.error(at, format!("{field} must be greater than zero"), format!("write e.g. {field}: \"5s\""));
                None
            }
            Ok(d) => Some(d),
            Err(why) => {
                self.error(
                    at,
                    format!("{field}: {text:?} is not a duration ({why})"),
                    format!("write a number with a unit (ns, us, ms, s, m, h), e.g. {field}: \"250ms\" or \"1m30s\""),
                );
                None
            }
        }
    }

    fn quantity(&mut self, at: &At<'_>, msg: &DynamicMessage, field: &str, example: &str) -> Option<Quantity> {
        let text = get_str(msg, field)?;
        match parse_quantity(&text) {
            Ok(q) => Some(q),
            Err(why) => {
                self.error(
                    at,
                    format!("{field}: {why}"),
                    format!("write a Kubernetes quantity, e.g. {field}: \"{example}\""),
                );
                None
            }
        }
    }

    fn service(&mut self, exts: &Extensions, service: &ServiceDescriptor) -> Option<Service> {
        let opts = extension(&service.options(), &exts.service);
        let option_path: Vec<i32> = [service.path(), &[OPTIONS_FIELD, SERVICE_EXT_NUMBER]].concat();
        let at = At { element: format!("service {}", service.full_name()), path: &option_path };
        // Without the annotation every setting takes its default: reading
        // fields from the bare ServiceOptions finds none of ours.
        let bare = service.options();
        let o = opts.as_ref().unwrap_or(&bare);
        let settings = self.service_settings(&at, o);
        let methods = service.methods().map(|m| self.method(exts, &m, &settings)).collect::<Vec<_>>();
        Some(Service {
            name: service.name().to_owned(),
            full_name: service.full_name().to_owned(),
            file: self.name.clone(),
            annotated: opts.is_some(),
            settings,
            methods,
        })
    }

    fn service_settings(&mut self, at: &At<'_>, o: &DynamicMessage) -> ServiceSettings {
        let port = self.port(at, o, "port", 50051);
        let metrics_port = self.port(at, o, "metrics_port", 9090);
        if port == metrics_port {
            self.error(
                at,
                format!("port and metrics_port are both {port}"),
                "give the gRPC and metrics listeners different ports",
            );
        }
        let http_port = self.port(at, o, "http_port", 8080);
        if http_port == port || http_port == metrics_port {
            self.error(
                at,
                format!(
                    "http_port {http_port} is also the {} port",
                    if http_port == port { "gRPC" } else { "metrics" }
                ),
                "give the HTTP/JSON listener a port of its own",
            );
        }
        let server = self.server_settings(at, &get_msg(o, "server"));
        let auth = get_msg(o, "auth").and_then(|a| get_msg(&a, "jwt")).map(|j| self.jwt(at, &j));
        let rate_limit = get_msg(o, "rate_limit").and_then(|r| self.rate_limit(at, &r, auth.is_some()));
        let client = self.client_settings(at, &get_msg(o, "client"));
        let deploy = self.deploy_settings(at, &get_msg(o, "deploy"));
        ServiceSettings { port, metrics_port, http_port, server, auth, rate_limit, client, deploy }
    }

    fn port(&mut self, at: &At<'_>, o: &DynamicMessage, field: &str, default: u16) -> u16 {
        match get_u32(o, field) {
            None => default,
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                self.error(
                    at,
                    format!("{field} {p} is out of range"),
                    format!("use a port between 1 and 65535, e.g. {field}: {default}"),
                );
                default
            }
        }
    }

    fn positive(&mut self, at: &At<'_>, o: &DynamicMessage, field: &str, default: u32) -> u32 {
        match get_u32(o, field) {
            None => default,
            Some(0) => {
                self.error(
                    at,
                    format!("{field} must be greater than zero"),
                    format!("remove it to use the default {default}"),
                );
                default
            }
            Some(v) => v,
        }
    }

    fn server_settings(&mut self, at: &At<'_>, server: &Option<DynamicMessage>) -> ServerSettings {
        let d = ServerSettings::defaults();
        let Some(s) = server else { return d };
        let mut out = ServerSettings {
            max_recv_message_size: self.positive(at, s, "max_recv_message_size", d.max_recv_message_size),
            max_send_message_size: self.positive(at, s, "max_send_message_size", d.max_send_message_size),
            max_concurrent_streams: self.positive(at, s, "max_concurrent_streams", d.max_concurrent_streams),
            concurrency_limit: self.positive(at, s, "concurrency_limit", d.concurrency_limit),
            shutdown_grace: self.duration(at, s, "shutdown_grace", d.shutdown_grace),
            ..d.clone()
        };
        if let Some(k) = get_msg(s, "keepalive") {
            out.keepalive_interval = self.duration(at, &k, "interval", d.keepalive_interval);
            out.keepalive_timeout = self.duration(at, &k, "timeout", d.keepalive_timeout);
            out.min_ping_interval = self.duration(at, &k, "min_ping_interval", d.min_ping_interval);
            out.max_connection_idle = self.opt_duration(at, &k, "max_connection_idle");
            out.max_connection_age = self.opt_duration(at, &k, "max_connection_age");
            out.max_connection_age_grace = self.opt_duration(at, &k, "max_connection_age_grace");
        }
        out
    }

    fn jwt(&mut self, at: &At<'_>, j: &DynamicMessage) -> JwtSettings {
        const HMAC: &[&str] = &["HS256", "HS384", "HS512"];
        const ASYMMETRIC: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
        let issuer = get_str(j, "issuer").unwrap_or_default();
        if issuer.trim().is_empty() {
            self.error(
                at,
                "auth.jwt.issuer is missing",
                "set the issuer every token must carry, e.g. issuer: \"https://auth.example.com\"",
            );
        }
        let audiences = get_strs(j, "audiences");
        if audiences.iter().all(|a| a.trim().is_empty()) {
            self.error(
                at,
                "auth.jwt.audiences is empty",
                "list the audience(s) tokens are issued for, e.g. audiences: \"shop-api\"",
            );
        }
        let mut algorithms = get_strs(j, "algorithms");
        if algorithms.is_empty() {
            algorithms.push("RS256".to_owned());
        }
        for alg in &algorithms {
            if !HMAC.contains(&alg.as_str()) && !ASYMMETRIC.contains(&alg.as_str()) {
                self.error(
                    at,
                    format!("auth.jwt.algorithms: {alg:?} is not accepted"),
                    format!("use some of {}", [HMAC, ASYMMETRIC].concat().join(", ")),
                );
            }
        }
        let has_hmac = algorithms.iter().any(|a| HMAC.contains(&a.as_str()));
        let has_asym = algorithms.iter().any(|a| ASYMMETRIC.contains(&a.as_str()));
        if has_hmac && has_asym {
            self.error(
                at,
                "auth.jwt.algorithms mixes HMAC (HS*) and public-key algorithms",
                "pick one family: a shared secret (HS*) or a public key (RS*/PS*/ES*/EdDSA), never both",
            );
        }
        let leeway = self.duration(at, j, "leeway", Duration::from_secs(30));
        if leeway > Duration::from_secs(300) {
            self.error(at, "auth.jwt.leeway is longer than 5m", "keep clock-skew leeway small, e.g. leeway: \"30s\"");
        }
        JwtSettings {
            issuer,
            audiences,
            algorithms,
            roles_claim: get_str(j, "roles_claim").unwrap_or_else(|| "roles".to_owned()),
            leeway,
        }
    }

    fn rate_limit(&mut self, at: &At<'_>, r: &DynamicMessage, has_auth: bool) -> Option<RateLimit> {
        let rps = get_f64(r, "rps").unwrap_or(0.0);
        if !(rps.is_finite() && rps > 0.0) {
            self.error(
                at,
                format!("rate_limit.rps {rps} must be a positive number"),
                "write e.g. rate_limit { rps: 100 }",
            );
            return None;
        }
        let burst = match get_u32(r, "burst") {
            Some(0) => {
                self.error(at, "rate_limit.burst must be at least 1", "remove it to default to rps rounded up");
                1
            }
            Some(b) => b,
            None => (rps.ceil() as u32).max(1),
        };
        let key = match get_enum(r, "key") {
            None | Some(1) => RateLimitKey::Global,
            Some(2) => RateLimitKey::Peer,
            Some(_) => RateLimitKey::Subject,
        };
        if key == RateLimitKey::Subject && !has_auth {
            self.error(
                at,
                "rate_limit.key SUBJECT needs authentication, but the service has no auth block",
                "add auth { jwt { ... } } to the service or use key: PEER",
            );
        }
        Some(RateLimit { rps, burst, key })
    }

    fn client_settings(&mut self, at: &At<'_>, c: &Option<DynamicMessage>) -> ClientSettings {
        let mut out = ClientSettings {
            pool_size: 1,
            load_balancing: LoadBalancing::RoundRobin,
            connect_timeout: Duration::from_secs(5),
            keepalive: None,
            compression: String::new(),
            retry_throttling: None,
            outlier_detection: None,
        };
        let Some(c) = c else { return out };
        out.pool_size = self.positive(at, c, "pool_size", 1);
        if out.pool_size > 64 {
            self.error(
                at,
                format!("client.pool_size {} is above 64", out.pool_size),
                "use at most 64 connections per endpoint",
            );
        }
        if let Some(lb) = get_str(c, "load_balancing") {
            out.load_balancing = match lb.as_str() {
                "round_robin" | "" => LoadBalancing::RoundRobin,
                "p2c" => LoadBalancing::PowerOfTwoChoices,
                "pick_first" => LoadBalancing::PickFirst,
                other => {
                    self.error(
                        at,
                        format!("client.load_balancing {other:?} is unknown"),
                        "use \"round_robin\", \"p2c\" or \"pick_first\"",
                    );
                    LoadBalancing::RoundRobin
                }
            };
        }
        out.connect_timeout = self.duration(at, c, "connect_timeout", Duration::from_secs(5));
        out.keepalive = self.opt_duration(at, c, "keepalive");
        if let Some(comp) = get_str(c, "compression") {
            if !matches!(comp.as_str(), "" | "gzip" | "zstd") {
                self.error(at, format!("client.compression {comp:?} is unknown"), "use \"gzip\", \"zstd\" or \"\"");
            } else {
                out.compression = comp;
            }
        }
        if let Some(t) = get_msg(c, "retry_throttling") {
            let max_tokens = get_u32(&t, "max_tokens").unwrap_or(0);
            let ratio = get_f64(&t, "token_ratio").unwrap_or(0.0);
            if !(1..=1000).contains(&max_tokens) {
                self.error(
                    at,
                    format!("client.retry_throttling.max_tokens {max_tokens} is out of range"),
                    "use 1..=1000, e.g. max_tokens: 10",
                );
            }
            if !(ratio.is_finite() && ratio > 0.0) {
                self.error(
                    at,
                    format!("client.retry_throttling.token_ratio {ratio} must be positive"),
                    "write e.g. token_ratio: 0.1",
                );
            }
            out.retry_throttling = Some((max_tokens, ratio));
        }
        if let Some(o) = get_msg(c, "outlier_detection") {
            out.outlier_detection = Some(self.outlier_detection(at, &o));
        }
        out
    }

    fn outlier_detection(&mut self, at: &At<'_>, o: &DynamicMessage) -> OutlierDetection {
        let interval = self.duration(at, o, "interval", Duration::from_secs(10));
        let base_ejection_time = self.duration(at, o, "base_ejection_time", Duration::from_secs(30));
        let max_ejection_time =
            self.duration(at, o, "max_ejection_time", Duration::from_secs(300)).max(base_ejection_time);
        let percent = |this: &mut Self, m: &DynamicMessage, name: &str, field: &str, default: u32| {
            let v = get_u32(m, field).unwrap_or(default);
            if v > 100 {
                this.error(
                    at,
                    format!("client.outlier_detection.{name}{field} {v} is above 100"),
                    format!("write a percentage, 0..=100, e.g. {field}: {default}"),
                );
            }
            v
        };
        let max_ejection_percent = percent(self, o, "", "max_ejection_percent", 10);
        let success_rate = get_msg(o, "success_rate_ejection").map(|m| {
            let name = "success_rate_ejection.";
            [
                get_u32(&m, "stdev_factor").unwrap_or(1900),
                percent(self, &m, name, "enforcement_percentage", 100),
                get_u32(&m, "minimum_hosts").unwrap_or(5),
                get_u32(&m, "request_volume").unwrap_or(100),
            ]
        });
        let failure_percentage = get_msg(o, "failure_percentage_ejection").map(|m| {
            let name = "failure_percentage_ejection.";
            [
                percent(self, &m, name, "threshold", 85),
                percent(self, &m, name, "enforcement_percentage", 100),
                get_u32(&m, "minimum_hosts").unwrap_or(5),
                get_u32(&m, "request_volume").unwrap_or(50),
            ]
        });
        if success_rate.is_none() && failure_percentage.is_none() {
            self.error(
                at,
                "client.outlier_detection sets neither success_rate_ejection nor failure_percentage_ejection, so it would never eject",
                "add failure_percentage_ejection {} (or success_rate_ejection {}) for gRFC A50's defaults",
            );
        }
        OutlierDetection {
            interval,
            base_ejection_time,
            max_ejection_time,
            max_ejection_percent,
            success_rate,
            failure_percentage,
        }
    }

    fn deploy_settings(&mut self, at: &At<'_>, d: &Option<DynamicMessage>) -> DeploySettings {
        let quantity = |text: &str| parse_quantity(text).expect("default quantities parse");
        let mut out = DeploySettings {
            image: None,
            namespace: None,
            replicas: 2,
            autoscale: Autoscale {
                min_replicas: 2,
                max_replicas: 10,
                target_cpu_percent: Some(80),
                target_memory_percent: None,
            },
            cpu_request: quantity(DEFAULT_CPU_REQUEST),
            cpu_limit: quantity(DEFAULT_CPU_LIMIT),
            memory_request: quantity(DEFAULT_MEMORY_REQUEST),
            memory_limit: quantity(DEFAULT_MEMORY_LIMIT),
            env: BTreeMap::new(),
            pdb_min_available: 1,
            service_monitor: false,
            network_policy: true,
            headless_service: false,
            tls_secret: None,
            mtls: false,
        };
        let Some(d) = d else { return out };
        if let Some(image) = get_str(d, "image") {
            let last = image.rsplit('/').next().unwrap_or(&image);
            if image.trim().is_empty() || image.contains(char::is_whitespace) {
                self.error(
                    at,
                    format!("deploy.image {image:?} is not an image reference"),
                    "write e.g. image: \"ghcr.io/acme/shop:1.4.2\"",
                );
            } else if !image.contains('@') && !last.contains(':') {
                // No tag means :latest. Writing `:latest` out is asking for
                // it; leaving the tag off is not.
                self.error(
                    at,
                    format!("deploy.image {image:?} has no tag or digest, so it would run whatever :latest is"),
                    "pin a version tag or a digest so rollouts are reproducible (or write :latest to ask for it)",
                );
            }
            out.image = Some(image);
        }
        if let Some(ns) = get_str(d, "namespace") {
            if !is_dns_label(&ns) {
                self.error(
                    at,
                    format!("deploy.namespace {ns:?} is not a DNS label"),
                    "use lowercase letters, digits and '-', at most 63 characters",
                );
            }
            out.namespace = Some(ns);
        }
        out.replicas = self.positive(at, d, "replicas", 2);
        let a = get_msg(d, "autoscale");
        let min = a.as_ref().map_or(out.replicas, |a| self.positive(at, a, "min_replicas", out.replicas));
        let max = a.as_ref().map_or(10.max(min), |a| self.positive(at, a, "max_replicas", 10.max(min)));
        if min > max {
            self.error(
                at,
                format!("deploy.autoscale.min_replicas {min} is above max_replicas {max}"),
                "make min_replicas <= max_replicas",
            );
        }
        let mut percent = |field: &str| {
            let v = get_u32(a.as_ref()?, field)?;
            if !(1..=100).contains(&v) {
                self.error(
                    at,
                    format!("deploy.autoscale.{field} {v} is out of range"),
                    "use a percentage between 1 and 100",
                );
            }
            Some(v)
        };
        let cpu = percent("target_cpu_percent");
        let memory = percent("target_memory_percent");
        let cpu = if cpu.is_none() && memory.is_none() { Some(80) } else { cpu };
        out.autoscale =
            Autoscale { min_replicas: min, max_replicas: max, target_cpu_percent: cpu, target_memory_percent: memory };
        if let Some(r) = get_msg(d, "resources") {
            let cpu_request = self.quantity(at, &r, "cpu_request", "200m");
            let cpu_limit = self.quantity(at, &r, "cpu_limit", "1");
            let memory_request = self.quantity(at, &r, "memory_request", "128Mi");
            let memory_limit = self.quantity(at, &r, "memory_limit", "256Mi");
            for (kind, req, lim) in [("cpu", &cpu_request, &cpu_limit), ("memory", &memory_request, &memory_limit)] {
                if let (Some(req), Some(lim)) = (req, lim)
                    && lim.millis < req.millis
                {
                    let message =
                        format!("deploy.resources.{kind}_limit {} is below {kind}_request {}", lim.text, req.text);
                    self.error(at, message, format!("raise {kind}_limit or lower {kind}_request"));
                }
            }
            // What is left out adapts to what is written: a default request
            // never exceeds an explicit limit, a default limit never falls
            // below an explicit request.
            let resolve = |request: Option<Quantity>, limit: Option<Quantity>, defaults: (&Quantity, &Quantity)| {
                let request = request.unwrap_or_else(|| match &limit {
                    Some(l) if l.millis < defaults.0.millis => l.clone(),
                    _ => defaults.0.clone(),
                });
                let limit = limit.unwrap_or_else(|| {
                    if request.millis > defaults.1.millis { request.clone() } else { defaults.1.clone() }
                });
                (request, limit)
            };
            (out.cpu_request, out.cpu_limit) = resolve(cpu_request, cpu_limit, (&out.cpu_request, &out.cpu_limit));
            (out.memory_request, out.memory_limit) =
                resolve(memory_request, memory_limit, (&out.memory_request, &out.memory_limit));
        }
        if let Some(Value::Map(env)) = d.get_field_by_name("env").map(|v| v.into_owned()) {
            for (k, v) in env {
                let key = k.as_str().unwrap_or_default().to_owned();
                if !is_env_name(&key) {
                    self.error(
                        at,
                        format!("deploy.env key {key:?} is not a valid variable name"),
                        "use letters, digits and '_', not starting with a digit",
                    );
                }
                out.env.insert(key, v.as_str().unwrap_or_default().to_owned());
            }
        }
        let floor = out.autoscale.min_replicas;
        match get_u32(d, "pdb_min_available") {
            // One pod must stay up, unless there is only one.
            None => out.pdb_min_available = u32::from(floor > 1),
            Some(v) if v >= floor => self.error(
                at,
                format!("deploy.pdb_min_available {v} is not below the replica count {floor}"),
                "lower pdb_min_available or raise replicas (or autoscale.min_replicas), or no pod could ever be evicted",
            ),
            Some(v) => out.pdb_min_available = v,
        }
        out.service_monitor = get_bool(d, "service_monitor").unwrap_or(false);
        out.network_policy = get_bool(d, "network_policy").unwrap_or(true);
        out.headless_service = get_bool(d, "headless_service").unwrap_or(false);
        if let Some(secret) = get_str(d, "tls_secret") {
            if !is_dns_subdomain(&secret) {
                self.error(
                    at,
                    format!("deploy.tls_secret {secret:?} is not a Secret name"),
                    "use lowercase letters, digits, '-' and '.', at most 253 characters",
                );
            }
            out.tls_secret = Some(secret);
        }
        out.mtls = get_bool(d, "mtls").unwrap_or(false);
        if out.mtls && out.tls_secret.is_none() {
            self.error(
                at,
                "deploy.mtls is set without deploy.tls_secret",
                "name the kubernetes.io/tls Secret (with ca.crt) in tls_secret, or drop mtls",
            );
        }
        out
    }

    fn method(&mut self, exts: &Extensions, m: &MethodDescriptor, service: &ServiceSettings) -> Method {
        let opts = extension(&m.options(), &exts.method);
        let option_path: Vec<i32> = [m.path(), &[OPTIONS_FIELD, METHOD_EXT_NUMBER]].concat();
        let at = At { element: format!("rpc {}", m.full_name()), path: &option_path };
        let idempotency = match m.options().get_field_by_name("idempotency_level").and_then(|v| v.as_enum_number()) {
            Some(1) => Idempotency::NoSideEffects,
            Some(2) => Idempotency::Idempotent,
            _ => Idempotency::Unknown,
        };
        let mut policy = MethodPolicy {
            timeout: None,
            retry: None,
            hedging: None,
            requires_auth: service.auth.is_some(),
            roles: Vec::new(),
            rate_limit: service.rate_limit.clone(),
            audit: false,
            validate: true,
        };
        if let Some(o) = &opts {
            policy.timeout = self.opt_duration(&at, o, "timeout");
            if let Some(r) = get_msg(o, "retry") {
                policy.retry = self.retry(&at, &r, idempotency);
            }
            if let Some(h) = get_msg(o, "hedging") {
                policy.hedging = self.hedging(&at, &h, idempotency);
                if policy.retry.is_some() {
                    self.error(
                        &at,
                        "the method sets both retry and hedging",
                        "keep one: hedging sends copies without waiting for failures, retry waits for one",
                    );
                }
            }
            let public = get_bool(o, "public").unwrap_or(false);
            if public {
                policy.requires_auth = false;
            }
            policy.roles = get_strs(o, "roles");
            if !policy.roles.is_empty() && service.auth.is_none() {
                self.error(
                    &at,
                    "roles are set but the service has no auth block",
                    "add auth { jwt { ... } } to (svc.service), or remove roles",
                );
            }
            if !policy.roles.is_empty() && public {
                self.error(&at, "a public method cannot require roles", "remove public: true or remove roles");
            }
            if let Some(r) = get_msg(o, "rate_limit") {
                policy.rate_limit = self.rate_limit(&at, &r, service.auth.is_some());
            }
            policy.audit = get_bool(o, "audit").unwrap_or(false);
            policy.validate = !get_bool(o, "skip_validation").unwrap_or(false);
        }
        let service_name = m.parent_service().full_name().to_owned();
        let http = self.http_bindings(&exts.http, m);
        Method {
            name: m.name().to_owned(),
            path: format!("/{service_name}/{}", m.name()),
            input: m.input().full_name().to_owned(),
            input_package: m.input().package_name().to_owned(),
            output: m.output().full_name().to_owned(),
            output_package: m.output().package_name().to_owned(),
            client_streaming: m.is_client_streaming(),
            server_streaming: m.is_server_streaming(),
            idempotency,
            policy,
            http,
        }
    }

    fn retry(&mut self, at: &At<'_>, r: &DynamicMessage, idempotency: Idempotency) -> Option<RetryPolicy> {
        let opt_in = get_bool(r, "non_idempotent_ok").unwrap_or(false);
        if idempotency == Idempotency::Unknown && !opt_in {
            self.error(
                at,
                "retry is set on a method that is not marked idempotent",
                "add `option idempotency_level = IDEMPOTENT;` (or NO_SIDE_EFFECTS) to the rpc, or set retry { non_idempotent_ok: true } if repeating it is safe",
            );
        }
        let max_attempts = get_u32(r, "max_attempts").unwrap_or(3);
        if !(2..=5).contains(&max_attempts) {
            self.error(
                at,
                format!("retry.max_attempts {max_attempts} is out of range"),
                "use 2..=5 (gRFC A6 caps attempts at 5)",
            );
        }
        let initial_backoff = self.duration(at, r, "initial_backoff", Duration::from_millis(100));
        let max_backoff = self.duration(at, r, "max_backoff", Duration::from_secs(1));
        if max_backoff < initial_backoff {
            self.error(at, "retry.max_backoff is shorter than initial_backoff", "make max_backoff >= initial_backoff");
        }
        let backoff_multiplier = get_f64(r, "backoff_multiplier").unwrap_or(2.0);
        if !(backoff_multiplier.is_finite() && backoff_multiplier >= 1.0) {
            self.error(
                at,
                format!("retry.backoff_multiplier {backoff_multiplier} is below 1"),
                "use a multiplier >= 1, e.g. 2",
            );
        }
        let mut codes: Vec<u8> = get_enums(r, "retryable_codes").into_iter().map(|c| c as u8).collect();
        if codes.is_empty() {
            codes.push(14);
        }
        if codes.contains(&0) {
            self.error(
                at,
                "retry.retryable_codes contains OK",
                "list failure codes only, e.g. retryable_codes: [UNAVAILABLE]",
            );
        }
        codes.sort_unstable();
        codes.dedup();
        Some(RetryPolicy { max_attempts, initial_backoff, max_backoff, backoff_multiplier, retryable_codes: codes })
    }

    fn hedging(&mut self, at: &At<'_>, h: &DynamicMessage, idempotency: Idempotency) -> Option<HedgingPolicy> {
        if idempotency == Idempotency::Unknown {
            self.error(
                at,
                "hedging is set on a method that is not marked idempotent",
                "hedging runs the call more than once at the same time: add `option idempotency_level = IDEMPOTENT;` (or NO_SIDE_EFFECTS) to the rpc if that is safe, or use retry",
            );
        }
        let max_attempts = get_u32(h, "max_attempts").unwrap_or(0);
        if !(2..=5).contains(&max_attempts) {
            self.error(
                at,
                format!("hedging.max_attempts {max_attempts} is out of range"),
                "use 2..=5 (gRFC A6 caps attempts at 5), e.g. max_attempts: 3",
            );
        }
        let delay = self.any_duration(at, h, "delay", true).unwrap_or(Duration::ZERO);
        let mut codes: Vec<u8> = get_enums(h, "non_fatal_codes").into_iter().map(|c| c as u8).collect();
        if codes.contains(&0) {
            self.error(
                at,
                "hedging.non_fatal_codes contains OK",
                "list failure codes only, e.g. non_fatal_codes: [UNAVAILABLE]",
            );
        }
        codes.sort_unstable();
        codes.dedup();
        Some(HedgingPolicy { max_attempts, delay, non_fatal_codes: codes })
    }

    fn error_enum(&mut self, exts: &Extensions, e: &EnumDescriptor) -> Option<ErrorEnum> {
        let opts = extension(&e.options(), &exts.errors);
        let option_path: Vec<i32> = [e.path(), &[OPTIONS_FIELD, ERRORS_EXT_NUMBER]].concat();
        let at = At { element: format!("enum {}", e.full_name()), path: &option_path };
        let Some(opts) = opts else {
            for v in e.values() {
                if extension(&v.options(), &exts.error).is_some() {
                    let path: Vec<i32> = [v.path(), &[OPTIONS_FIELD, ERROR_EXT_NUMBER]].concat();
                    let at = At { element: format!("enum value {}.{}", e.full_name(), v.name()), path: &path };
                    self.error(
                        &at,
                        "has (svc.error) but its enum is not marked (svc.errors)",
                        "add option (svc.errors) = { domain: \"...\" }; to the enum",
                    );
                }
            }
            return None;
        };
        let domain = get_str(&opts, "domain").unwrap_or_default();
        if domain.trim().is_empty() {
            self.error(
                &at,
                "(svc.errors).domain is missing",
                "set the ErrorInfo domain, e.g. domain: \"shop.example.com\"",
            );
        }
        let mut values = Vec::new();
        for v in e.values() {
            let Some(o) = extension(&v.options(), &exts.error) else { continue };
            let path: Vec<i32> = [v.path(), &[OPTIONS_FIELD, ERROR_EXT_NUMBER]].concat();
            let vat = At { element: format!("enum value {}.{}", e.full_name(), v.name()), path: &path };
            let code = get_enum(&o, "code").unwrap_or(2);
            if code == 0 {
                self.error(&vat, "(svc.error).code is OK", "an error needs a failure code, e.g. code: NOT_FOUND");
            }
            values.push(ErrorValue {
                name: v.name().to_owned(),
                number: v.number(),
                code: code.clamp(0, 16) as u8,
                message: get_str(&o, "message").unwrap_or_else(|| v.name().to_owned()),
                retryable: get_bool(&o, "retryable").unwrap_or(false),
                retry_delay: self.duration(&vat, &o, "retry_delay", Duration::from_secs(1)),
            });
        }
        Some(ErrorEnum { name: e.name().to_owned(), full_name: e.full_name().to_owned(), domain, values })
    }
}

impl ServerSettings {
    /// Defaults documented in svc/options.proto (grpc-core's keepalive
    /// defaults, tonic's 4 MiB message limit, bounded streams and queueing).
    fn defaults() -> Self {
        ServerSettings {
            max_recv_message_size: 4 << 20,
            max_send_message_size: 4 << 20,
            max_concurrent_streams: 200,
            concurrency_limit: 1000,
            keepalive_interval: Duration::from_secs(7200),
            keepalive_timeout: Duration::from_secs(20),
            min_ping_interval: Duration::from_secs(300),
            max_connection_idle: None,
            max_connection_age: None,
            max_connection_age_grace: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn field(msg: &DynamicMessage, name: &str) -> Option<Value> {
    if msg.descriptor().get_field_by_name(name).is_some() && msg.has_field_by_name(name) {
        msg.get_field_by_name(name).map(|v| v.into_owned())
    } else {
        None
    }
}

fn get_str(msg: &DynamicMessage, name: &str) -> Option<String> {
    field(msg, name).and_then(|v| v.as_str().map(str::to_owned))
}

fn get_u32(msg: &DynamicMessage, name: &str) -> Option<u32> {
    field(msg, name).and_then(|v| v.as_u32())
}

fn get_f64(msg: &DynamicMessage, name: &str) -> Option<f64> {
    field(msg, name).and_then(|v| v.as_f64())
}

fn get_bool(msg: &DynamicMessage, name: &str) -> Option<bool> {
    field(msg, name).and_then(|v| v.as_bool())
}

fn get_enum(msg: &DynamicMessage, name: &str) -> Option<i32> {
    field(msg, name).and_then(|v| v.as_enum_number())
}

fn get_msg(msg: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    field(msg, name).and_then(|v| v.as_message().cloned())
}

fn get_strs(msg: &DynamicMessage, name: &str) -> Vec<String> {
    field(msg, name)
        .and_then(|v| v.as_list().map(|l| l.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()))
        .unwrap_or_default()
}

fn get_enums(msg: &DynamicMessage, name: &str) -> Vec<i32> {
    field(msg, name)
        .and_then(|v| v.as_list().map(|l| l.iter().filter_map(Value::as_enum_number).collect()))
        .unwrap_or_default()
}
