//! The one place that composes the server's middleware, in the documented
//! order: request id → tracing span → metrics → authentication → access
//! and audit log → rate limit → load shedding → deadline → panic recovery
//! → message-size status → call context (for outgoing calls) → handler.
//!
//! The layers run as the steps of one service with one state per call,
//! rather than as eleven nested services: one look-up of the method's
//! entry (its metrics series, auth rule, rate limiter, concurrency limit,
//! timeout and kind) serves every step, the call's id and trace context
//! are made once and shared by the steps that name them, and one observer
//! on the response body finishes the metrics, the access record and the
//! span together. Each step's logic is in its file under
//! [`crate::middleware`]; this file decides only the order and what each
//! step's answer passes through (a call refused by authentication is
//! counted and traced but not access-logged; one refused by a rate limit
//! or shed is all three).

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::task::futures::TaskLocalFuture;
use tonic::body::Body;

use crate::codegen::{MethodKind, ServiceSpec};
use crate::context::{CallContext, RequestId};
use crate::log::Logger;
use crate::metrics::{Registry, Series};
use crate::middleware::{PathMap, Seen, TraceLayer, forever};
use crate::middleware::{access_log, auth, concurrency, deadline, message_limit, rate_limit, recover, request_id};
use crate::trace::TraceContext;

/// The generated server's whole middleware as one layer, in the
/// documented order (see the module docs). `Server` serves behind it;
/// it is public for servers assembled by hand and for benchmarks.
#[derive(Clone, Copy)]
pub struct Stack {
    tables: &'static Tables,
}

/// What the steps read on every call, built once per server.
struct Tables {
    methods: PathMap<Method>,
    /// Each service's concurrency limit, for paths not in `methods`.
    limits: &'static [concurrency::Limit],
    /// The series of paths not in `methods`.
    unknown: &'static Series,
    logger: Logger,
    trace: TraceLayer,
}

/// One method's entry: everything a step needs to know about it.
struct Method {
    path: &'static str,
    series: &'static Series,
    auth: Option<auth::Rule>,
    audit: bool,
    rate_limit: Option<rate_limit::Limiter>,
    concurrency: &'static concurrency::Limit,
    timeout: Option<Duration>,
    /// Streams both ways: its trailers may carry a status to fix.
    bidi: bool,
}

impl Stack {
    /// The middleware for `services` (each with the verifier of its JWT
    /// rules, if it has any), logging through `logger`, recording metrics
    /// in `registry` and spans through `trace`.
    pub fn new(
        services: Vec<(&'static ServiceSpec, Option<crate::auth::Verifier>)>,
        logger: Logger,
        registry: &'static Registry,
        trace: TraceLayer,
    ) -> Stack {
        let limits: &'static [concurrency::Limit] =
            forever(services.iter().map(|(spec, _)| concurrency::Limit::of(spec)).collect::<Vec<_>>());
        let mut methods = PathMap::default();
        for ((spec, verifier), limit) in services.into_iter().zip(limits) {
            // Services differ in issuer, audiences and algorithms: each
            // method is checked with its own service's verifier.
            let verifier = verifier.map(forever);
            for m in spec.methods {
                let auth = verifier.filter(|_| m.requires_auth).map(|verifier| auth::Rule { roles: m.roles, verifier });
                let method = Method {
                    path: m.path,
                    series: registry.series(m.path),
                    auth,
                    audit: m.audit,
                    rate_limit: m.rate_limit.map(rate_limit::Limiter::new),
                    concurrency: limit,
                    timeout: m.timeout,
                    bidi: m.kind == MethodKind::Streaming,
                };
                methods.insert(m.path, method);
            }
        }
        let unknown = registry.series("");
        Stack { tables: forever(Tables { methods, limits, unknown, logger, trace }) }
    }
}

impl<S> tower_layer::Layer<S> for Stack {
    type Service = Stacked<S>;

    fn layer(&self, inner: S) -> Stacked<S> {
        Stacked { tables: self.tables, inner }
    }
}

/// The service [`Stack`] builds around `S`.
#[derive(Clone)]
pub struct Stacked<S> {
    tables: &'static Tables,
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for Stacked<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> CallFuture<S::Future> {
        let tables = self.tables;
        let method = tables.methods.get(req.uri().path());
        let path = match method {
            Some(m) => Cow::Borrowed(m.path),
            None => Cow::Owned(req.uri().path().to_owned()),
        };
        let peer = crate::context::peer_addr(req.extensions());

        let seen = Seen::scan(req.headers());
        let timeout = deadline::limit(method.and_then(|m| m.timeout), seen.timeout);

        // Request id (in the extensions for handlers) and trace context
        // (handlers find both in `CallContext::current()`).
        let id = request_id::of(seen.request_id);
        let trace = tables.trace.context(seen.traceparent);
        req.extensions_mut().insert(id.clone());
        let span = tables.trace.span(trace, &path, peer, &id);

        // Metrics.
        let series = method.map_or(tables.unknown, |m| m.series);
        series.start();
        let mut call = Call {
            logger: tables.logger,
            slot: None,
            fix_trailers: method.is_none_or(|m| m.bidi),
            ending: Ending { path, id, series, started: Instant::now(), trace, record: None, span },
        };

        // Authentication: a refused call is not access-logged.
        let mut principal = None;
        if let Some(rule) = method.and_then(|m| m.auth.as_ref()) {
            match rule.check(&req) {
                Ok(p) => principal = Some(p),
                Err(answer) => return CallFuture::answered(answer, call),
            }
        }

        // Access and audit log.
        let audit = method.is_some_and(|m| m.audit);
        call.ending.record = access_log::Record::new(tables.logger, audit, peer, principal.as_ref());

        // Rate limit.
        if let Some(limiter) = method.and_then(|m| m.rate_limit.as_ref())
            && let Err(answer) = limiter.check(peer, principal.as_ref().and_then(|p| p.subject.as_deref()))
        {
            return CallFuture::answered(answer, call);
        }
        if let Some(principal) = principal {
            req.extensions_mut().insert(principal);
        }

        // Load shedding.
        let limit = match method {
            Some(m) => Some(m.concurrency),
            None => tables.limits.iter().find(|l| call.ending.path.starts_with(&l.prefix)),
        };
        if let Some(limit) = limit {
            match limit.enter() {
                Ok(slot) => call.slot = Some(slot),
                Err(answer) => return CallFuture::answered(answer, call),
            }
        }

        // Deadline, and the context outgoing calls inherit.
        let deadline = timeout.map(|limit| (call.ending.started + limit, limit));
        let context = CallContext {
            deadline: deadline.map(|(at, _)| at),
            trace: Some(trace),
            request_id: Some(call.ending.id.clone()),
        };

        // Panic recovery around the handler.
        let inner = &mut self.inner;
        match recover::catch(|| inner.call(req)) {
            Ok(handler) => CallFuture {
                state: State::Running { handler: context.scope(handler), timer: None, deadline },
                call: Some(call),
            },
            Err(panic) => {
                let answer = call.panicked(&*panic);
                CallFuture::answered(answer, call)
            }
        }
    }
}

/// What a call carries from its request to its response.
struct Call {
    logger: Logger,
    /// Its place under the concurrency limit, until the handler answers.
    slot: Option<concurrency::Slot>,
    /// Whether the status in its trailers may need
    /// [`message_limit::fix_status`].
    fix_trailers: bool,
    ending: Ending,
}

impl Call {
    fn panicked(&self, panic: &(dyn std::any::Any + Send)) -> http::Response<Body> {
        let ending = &self.ending;
        recover::answer(self.logger, &ending.path, &ending.id, &ending.trace, panic)
    }

    /// The response as it leaves the stack: the slot given back, the id
    /// echoed, and the call's end observed. `status` is the code in its
    /// headers, if any.
    fn respond(self, mut response: http::Response<Body>, status: Option<u8>) -> http::Response<Body> {
        let Call { logger: _, slot, fix_trailers, ending } = self;
        drop(slot);
        request_id::echo(&ending.id, response.headers_mut());
        let fix = fix_trailers.then_some(message_limit::fix_status as fn(&mut http::HeaderMap));
        crate::completion::observe(response, status, move |code| ending.end(code), fix)
    }
}

/// What is done when the call ends: its metrics, access record and span.
struct Ending {
    path: Cow<'static, str>,
    id: RequestId,
    series: &'static Series,
    started: Instant,
    trace: TraceContext,
    record: Option<access_log::Record>,
    /// Boxed: most calls have none, and the call's state moves from
    /// future to future as tonic and hyper wrap it.
    span: Option<Box<crate::middleware::trace::Span>>,
}

impl Ending {
    fn end(self, code: u8) {
        let duration = self.started.elapsed();
        if let Some(record) = self.record {
            record.write(&self.path, &self.id, &self.trace, code, duration);
        }
        self.series.finish(code, duration);
        if let Some(span) = self.span {
            (*span).end(code);
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Stacked`]. Dropped before the handler answers (the
    /// caller cancelled), the call ends as `CANCELLED`.
    pub struct CallFuture<F> {
        #[pin]
        state: State<F>,
        call: Option<Call>,
    }

    impl<F> PinnedDrop for CallFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.ending.end(1);
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State<F> {
        /// A step answered the call (or the handler panicked).
        Answered { response: Option<http::Response<Body>> },
        /// The handler is answering, in the call's context, under its
        /// deadline.
        Running {
            #[pin]
            handler: TaskLocalFuture<CallContext, F>,
            timer: Option<Pin<Box<tokio::time::Sleep>>>,
            deadline: Option<(Instant, Duration)>,
        },
    }
}

impl<F> CallFuture<F> {
    fn answered(response: http::Response<Body>, call: Call) -> CallFuture<F> {
        CallFuture { state: State::Answered { response: Some(response) }, call: Some(call) }
    }
}

const POLLED_AFTER_COMPLETION: &str = "future polled after it completed";

impl<F, E> Future for CallFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut status = None;
        let response = match this.state.project() {
            StateProjection::Answered { response } => response.take().expect(POLLED_AFTER_COMPLETION),
            StateProjection::Running { handler, timer, deadline } => match recover::catch(|| handler.poll(cx)) {
                Ok(Poll::Ready(Ok(mut response))) => {
                    let headers = response.headers_mut();
                    status = Some(message_limit::fix(headers, crate::completion::status_of(headers)));
                    response
                }
                Ok(Poll::Ready(Err(error))) => return Poll::Ready(Err(error)),
                Ok(Poll::Pending) => match deadline::poll_expired(timer, *deadline, cx) {
                    Poll::Ready(answer) => answer,
                    Poll::Pending => return Poll::Pending,
                },
                Err(panic) => this.call.as_ref().expect(POLLED_AFTER_COMPLETION).panicked(&*panic),
            },
        };
        let status = status.unwrap_or_else(|| crate::completion::status_of(response.headers()));
        Poll::Ready(Ok(this.call.take().expect(POLLED_AFTER_COMPLETION).respond(response, status)))
    }
}
