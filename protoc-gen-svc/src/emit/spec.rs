//! Emits each service's resolved settings and per-method policy as `const`
//! data of runtime types (`<runtime>::codegen::ServiceSpec`), which the
//! runtime's server and client layers read.

use std::time::Duration;

use heck::ToUpperCamelCase;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ir::{self, CODE_NAMES, LoadBalancing, RateLimitKey};

/// Tokens for the `<service>_svc` module of one service; with `server`, it
/// also gets `server(impl)` and `serve(impl)`, with `client` the `Client`.
pub fn service_module(
    service: &ir::Service,
    rt: &TokenStream,
    with_server: bool,
    with_client: bool,
    openapi: Option<&str>,
) -> TokenStream {
    let module = format_ident!("{}", crate::ident::svc_module(&service.name));
    let s = &service.settings;
    let name = &service.full_name;
    let port = s.port;
    let metrics_port = s.metrics_port;
    let http_port = s.http_port;
    let server = server(&s.server, rt);
    let mut entry = if with_server { server_entry(service, rt) } else { TokenStream::new() };
    if with_client {
        entry.extend(client_entry(service, rt));
    }
    let auth = option(s.auth.as_ref().map(|j| {
        let (issuer, audiences, algorithms, roles_claim) = (&j.issuer, &j.audiences, &j.algorithms, &j.roles_claim);
        let leeway = duration(j.leeway);
        quote!(#rt::codegen::JwtSpec {
            issuer: #issuer,
            audiences: &[#(#audiences),*],
            algorithms: &[#(#algorithms),*],
            roles_claim: #roles_claim,
            leeway: #leeway,
        })
    }));
    let client = client(&s.client, rt);
    let methods = service.methods.iter().map(|m| method(m, rt));
    let doc = format!(
        " Settings and per-method policy of `{name}`, resolved from its `(svc.service)` and `(svc.method)` annotations."
    );
    let const_doc = format!(" The resolved specification of `{name}`.");
    // The OpenAPI document, one literal per line so it reads as JSON.
    let (openapi_const, openapi_field) = match openapi {
        Some(document) => {
            let lines = document.split_inclusive('\n');
            let doc = format!(" The OpenAPI 3.1 document of `{name}`'s HTTP bindings, served at `/openapi.json`.");
            (quote! { #[doc = #doc] pub const OPENAPI: &str = concat!(#(#lines),*); }, quote!(Some(OPENAPI)))
        }
        None => (TokenStream::new(), quote!(None)),
    };
    quote! {
        #[doc = #doc]
        pub mod #module {
            #[doc = #const_doc]
            pub const SERVICE: #rt::codegen::ServiceSpec = #rt::codegen::ServiceSpec {
                name: #name,
                port: #port,
                metrics_port: #metrics_port,
                http_port: #http_port,
                server: #server,
                auth: #auth,
                client: #client,
                methods: &[#(#methods),*],
                descriptors: &super::FILE_DESCRIPTORS,
                openapi: #openapi_field,
            };
            #openapi_const
            #entry
        }
    }
}

/// `server(impl)` (the tonic server with the annotated limits) and
/// `serve(impl)` (the complete server until SIGTERM/SIGINT).
fn server_entry(service: &ir::Service, rt: &TokenStream) -> TokenStream {
    let trait_name = crate::ident::to_upper_camel(&service.name);
    let module = format_ident!("{}_server", crate::ident::tonic_snake(&trait_name));
    let server = format_ident!("{}Server", trait_name.trim_end_matches('_'));
    let trait_ident: TokenStream = trait_name.parse().unwrap_or_default();
    let name = &service.full_name;
    let server_doc = format!(
        " Wraps an implementation of `{name}` in its tonic server with the annotated message-size limits; gzip-compressed requests are accepted (responses are sent uncompressed: compressing small messages costs more CPU than it saves)."
    );
    let serve_doc = format!(
        " Runs `{name}` for `inner` until SIGTERM or SIGINT: gRPC with health and reflection, `/healthz` and `/readyz`, settings from the annotations and the `SVC_*` environment, graceful drain within `shutdown_grace`."
    );
    // Annotations that need a runtime feature fail compilation without it,
    // with a message that names the feature.
    let mut features = TokenStream::new();
    if service.settings.auth.is_some() {
        features.extend(quote!(const _: () = #rt::codegen::require_jwt();));
    }
    if service.settings.deploy.tls_secret.is_some() {
        features.extend(quote!(const _: () = #rt::codegen::require_tls();));
    }
    // Clients annotated with zstd send it; the server accepts what its
    // clients send.
    let zstd = service.settings.client.compression == "zstd";
    if zstd {
        features.extend(quote!(const _: () = #rt::codegen::require_zstd();));
    }
    let accept_zstd =
        if zstd { quote!(.accept_compressed(#rt::codegen::tonic::codec::CompressionEncoding::Zstd)) } else { quote!() };
    quote! {
        #features
        #[doc = #server_doc]
        pub fn server<T: super::#module::#trait_ident>(inner: T) -> super::#module::#server<T> {
            super::#module::#server::new(inner)
                .max_decoding_message_size(SERVICE.server.max_recv_message_size)
                .max_encoding_message_size(SERVICE.server.max_send_message_size)
                .accept_compressed(#rt::codegen::tonic::codec::CompressionEncoding::Gzip)
                #accept_zstd
        }
        #[doc = #serve_doc]
        pub async fn serve<T: super::#module::#trait_ident>(inner: T) -> ::core::result::Result<(), #rt::server::Error> {
            #rt::server::Server::from_env(&SERVICE)?.serve(server(inner)).await
        }
    }
}

/// `Client`: the service's typed client over the runtime's channel, with
/// `connect(target)` and `builder(target)` taking the annotation defaults.
fn client_entry(service: &ir::Service, rt: &TokenStream) -> TokenStream {
    let trait_name = crate::ident::to_upper_camel(&service.name);
    let module = format_ident!("{}_client", crate::ident::tonic_snake(&trait_name));
    let client = format_ident!("{}Client", trait_name.trim_end_matches('_'));
    let name = &service.full_name;
    let alias_doc = format!(
        " The client of `{name}`: its methods take `&mut self`; clones are cheap and share one pool of connections. `Client::connect(target)` uses every annotation default (pool size, balancing, connect timeout, method deadlines and retry policies); `Client::builder(target)` overrides them."
    );
    let connect_doc = format!(
        " Connects to `target` (`dns:///host:port`, `host:port`, `ipv4:a:p,b:p`, `unix:/path`) with the annotation defaults of `{name}`, waiting until a connection is open or every endpoint failed within the connect timeout."
    );
    let builder_doc = format!(" A client of `{name}` at `target`, with overrides of its annotation defaults.");
    let features = if service.settings.client.compression == "zstd" {
        quote!(const _: () = #rt::codegen::require_zstd();)
    } else {
        quote!()
    };
    quote! {
        #features
        #[doc = #alias_doc]
        pub type Client = super::#module::#client<#rt::client::Channel>;
        impl super::#module::#client<#rt::client::Channel> {
            #[doc = #connect_doc]
            pub async fn connect(target: &str) -> ::core::result::Result<Self, #rt::Error> {
                Self::builder(target).build().await
            }
            #[doc = #builder_doc]
            pub fn builder(target: &str) -> #rt::client::Builder<Self> {
                #rt::client::Builder::new(&SERVICE, target)
            }
        }
        impl #rt::client::FromChannel for super::#module::#client<#rt::client::Channel> {
            fn from_channel(connected: #rt::client::Connected) -> Self {
                let mut client = Self::new(connected.channel)
                    .max_decoding_message_size(connected.max_decoding_message_size)
                    .max_encoding_message_size(connected.max_encoding_message_size);
                if let ::core::option::Option::Some(encoding) = connected.send_compressed {
                    client = client.send_compressed(encoding);
                }
                for encoding in connected.accept_compressed {
                    client = client.accept_compressed(encoding);
                }
                client
            }
        }
    }
}

fn server(s: &ir::ServerSettings, rt: &TokenStream) -> TokenStream {
    let (recv, send, streams, limit) = (
        s.max_recv_message_size as usize,
        s.max_send_message_size as usize,
        s.max_concurrent_streams,
        s.concurrency_limit as usize,
    );
    let interval = duration(s.keepalive_interval);
    let timeout = duration(s.keepalive_timeout);
    let min_ping = duration(s.min_ping_interval);
    let idle = option(s.max_connection_idle.map(duration));
    let age = option(s.max_connection_age.map(duration));
    let grace = option(s.max_connection_age_grace.map(duration));
    let shutdown = duration(s.shutdown_grace);
    quote!(#rt::codegen::ServerSpec {
        max_recv_message_size: #recv,
        max_send_message_size: #send,
        max_concurrent_streams: #streams,
        concurrency_limit: #limit,
        keepalive_interval: #interval,
        keepalive_timeout: #timeout,
        min_ping_interval: #min_ping,
        max_connection_idle: #idle,
        max_connection_age: #age,
        max_connection_age_grace: #grace,
        shutdown_grace: #shutdown,
    })
}

fn client(c: &ir::ClientSettings, rt: &TokenStream) -> TokenStream {
    let pool_size = c.pool_size;
    let lb = match c.load_balancing {
        LoadBalancing::RoundRobin => quote!(RoundRobin),
        LoadBalancing::PowerOfTwoChoices => quote!(PowerOfTwoChoices),
        LoadBalancing::PickFirst => quote!(PickFirst),
    };
    let connect_timeout = duration(c.connect_timeout);
    let keepalive = option(c.keepalive.map(duration));
    let compression = &c.compression;
    let throttling = option(
        c.retry_throttling.map(|(max_tokens, ratio)| quote!(#rt::codegen::RetryThrottlingSpec { max_tokens: #max_tokens, token_ratio: #ratio })),
    );
    let outliers = option(c.outlier_detection.as_ref().map(|o| {
        let (interval, base, max, percent) = (
            duration(o.interval),
            duration(o.base_ejection_time),
            duration(o.max_ejection_time),
            o.max_ejection_percent,
        );
        let success_rate = option(o.success_rate.map(|[stdev_factor, enforcement, hosts, volume]| {
            quote!(#rt::codegen::SuccessRateEjectionSpec {
                stdev_factor: #stdev_factor,
                enforcement_percentage: #enforcement,
                minimum_hosts: #hosts,
                request_volume: #volume,
            })
        }));
        let failure_percentage = option(o.failure_percentage.map(|[threshold, enforcement, hosts, volume]| {
            quote!(#rt::codegen::FailurePercentageEjectionSpec {
                threshold: #threshold,
                enforcement_percentage: #enforcement,
                minimum_hosts: #hosts,
                request_volume: #volume,
            })
        }));
        quote!(#rt::codegen::OutlierDetectionSpec {
            interval: #interval,
            base_ejection_time: #base,
            max_ejection_time: #max,
            max_ejection_percent: #percent,
            success_rate: #success_rate,
            failure_percentage: #failure_percentage,
        })
    }));
    quote!(#rt::codegen::ClientSpec {
        pool_size: #pool_size,
        load_balancing: #rt::codegen::LoadBalancing::#lb,
        connect_timeout: #connect_timeout,
        keepalive: #keepalive,
        compression: #compression,
        retry_throttling: #throttling,
        outlier_detection: #outliers,
    })
}

/// `tonic::Code::Unavailable` for status code 14.
fn code(c: u8, rt: &TokenStream) -> TokenStream {
    let variant = format_ident!("{}", CODE_NAMES[usize::from(c)].to_upper_camel_case());
    quote!(#rt::codegen::tonic::Code::#variant)
}

fn method(m: &ir::Method, rt: &TokenStream) -> TokenStream {
    let name = &m.name;
    let path = &m.path;
    let kind = match (m.client_streaming, m.server_streaming) {
        (false, false) => quote!(Unary),
        (false, true) => quote!(ServerStreaming),
        (true, false) => quote!(ClientStreaming),
        (true, true) => quote!(Streaming),
    };
    let idempotent = m.idempotency != ir::Idempotency::Unknown;
    let p = &m.policy;
    let timeout = option(p.timeout.map(duration));
    let retry = option(p.retry.as_ref().map(|r| {
        let max_attempts = r.max_attempts;
        let initial = duration(r.initial_backoff);
        let max = duration(r.max_backoff);
        let mult = r.backoff_multiplier;
        let codes = r.retryable_codes.iter().map(|c| code(*c, rt));
        quote!(#rt::codegen::RetrySpec {
            max_attempts: #max_attempts,
            initial_backoff: #initial,
            max_backoff: #max,
            backoff_multiplier: #mult,
            retryable_codes: &[#(#codes),*],
        })
    }));
    let hedging = option(p.hedging.as_ref().map(|h| {
        let max_attempts = h.max_attempts;
        let delay = duration(h.delay);
        let codes = h.non_fatal_codes.iter().map(|c| code(*c, rt));
        quote!(#rt::codegen::HedgingSpec {
            max_attempts: #max_attempts,
            delay: #delay,
            non_fatal_codes: &[#(#codes),*],
        })
    }));
    let requires_auth = p.requires_auth;
    let roles = &p.roles;
    let rate_limit = option(p.rate_limit.as_ref().map(|r| rate_limit(r, rt)));
    let audit = p.audit;
    let validate = p.validate;
    let http = m.http.iter().map(|b| http_rule(b, rt));
    quote!(#rt::codegen::MethodSpec {
        name: #name,
        path: #path,
        kind: #rt::codegen::MethodKind::#kind,
        idempotent: #idempotent,
        timeout: #timeout,
        retry: #retry,
        hedging: #hedging,
        requires_auth: #requires_auth,
        roles: &[#(#roles),*],
        rate_limit: #rate_limit,
        audit: #audit,
        validate: #validate,
        http: &[#(#http),*],
    })
}

fn http_rule(b: &ir::HttpBinding, rt: &TokenStream) -> TokenStream {
    let (method, template) = (&b.method, &b.template);
    let path = path_segments(&b.path, rt);
    let verb = option(b.verb.as_ref().map(|v| quote!(#v)));
    let body = match &b.body {
        ir::HttpBody::None => quote!(#rt::codegen::HttpBody::None),
        ir::HttpBody::All => quote!(#rt::codegen::HttpBody::All),
        ir::HttpBody::Field(f) => quote!(#rt::codegen::HttpBody::Field(#f)),
    };
    let response_body = option(b.response_body.as_ref().map(|r| quote!(#r)));
    quote!(#rt::codegen::HttpRule {
        method: #method,
        template: #template,
        path: #path,
        verb: #verb,
        body: #body,
        response_body: #response_body,
    })
}

fn path_segments(segments: &[ir::PathSegment], rt: &TokenStream) -> TokenStream {
    let segments = segments.iter().map(|s| match s {
        ir::PathSegment::Literal(l) => quote!(#rt::codegen::PathSegment::Literal(#l)),
        ir::PathSegment::Any => quote!(#rt::codegen::PathSegment::Any),
        ir::PathSegment::Rest => quote!(#rt::codegen::PathSegment::Rest),
        ir::PathSegment::Field { path, pattern } => {
            let pattern = path_segments(pattern, rt);
            quote!(#rt::codegen::PathSegment::Field { path: &[#(#path),*], pattern: #pattern })
        }
    });
    quote!(&[#(#segments),*])
}

fn rate_limit(r: &ir::RateLimit, rt: &TokenStream) -> TokenStream {
    let rps = r.rps;
    let burst = r.burst;
    let key = match r.key {
        RateLimitKey::Global => quote!(Global),
        RateLimitKey::Peer => quote!(Peer),
        RateLimitKey::Subject => quote!(Subject),
    };
    quote!(#rt::codegen::RateLimitSpec { rps: #rps, burst: #burst, key: #rt::codegen::RateLimitKey::#key })
}

fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

fn duration(d: Duration) -> TokenStream {
    let nanos = d.as_nanos();
    if nanos.is_multiple_of(1_000_000_000) {
        let secs = d.as_secs();
        quote!(::core::time::Duration::from_secs(#secs))
    } else if nanos.is_multiple_of(1_000_000) {
        let ms = nanos as u64 / 1_000_000;
        quote!(::core::time::Duration::from_millis(#ms))
    } else {
        let ns = nanos as u64;
        quote!(::core::time::Duration::from_nanos(#ns))
    }
}

/// Tokens implementing `<runtime>::codegen::TypedErrors` for an enum marked
/// `(svc.errors)`. The enum is reached through the names prost gives it and
/// its values through prost's `as_str_name`/`from_str_name`.
pub fn typed_errors(e: &ir::ErrorEnum, package: &str, rt: &TokenStream) -> TokenStream {
    let path: TokenStream = crate::ident::type_path(package, &e.full_name).parse().unwrap_or_default();
    let domain = &e.domain;
    let consts = e.values.iter().enumerate().map(|(i, v)| {
        let name = format_ident!("SPEC_{i}");
        let reason = &v.name;
        let code = format_ident!("{}", CODE_NAMES[usize::from(v.code)].to_upper_camel_case());
        let message = &v.message;
        let delay = option(v.retryable.then(|| duration(v.retry_delay)));
        quote! {
            const #name: #rt::codegen::ErrorSpec = #rt::codegen::ErrorSpec {
                reason: #reason,
                code: #rt::codegen::tonic::Code::#code,
                message: #message,
                retry_delay: #delay,
            };
        }
    });
    let arms = e.values.iter().enumerate().map(|(i, v)| {
        let name = format_ident!("SPEC_{i}");
        let reason = &v.name;
        quote!(#reason => ::core::option::Option::Some(&#name),)
    });
    let body = if e.values.is_empty() {
        quote!(::core::option::Option::None)
    } else {
        quote! {
            #(#consts)*
            match self.as_str_name() {
                #(#arms)*
                _ => ::core::option::Option::None,
            }
        }
    };
    let doc = format!(
        " `{}` values are typed errors of domain `{domain}`: their `Status` carries `google.rpc.ErrorInfo`.",
        e.full_name
    );
    quote! {
        #[doc = #doc]
        impl #rt::codegen::TypedErrors for #path {
            const DOMAIN: &'static str = #domain;
            fn spec(self) -> ::core::option::Option<&'static #rt::codegen::ErrorSpec> {
                #body
            }
            fn reason(self) -> &'static str {
                self.as_str_name()
            }
            fn from_reason(reason: &str) -> ::core::option::Option<Self> {
                Self::from_str_name(reason)
            }
        }
    }
}
