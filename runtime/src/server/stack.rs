//! The one place that composes the server's middleware, in the documented
//! order: request id → tracing span → metrics → authentication → access
//! and audit log → rate limit → load shedding → deadline → panic recovery
//! → message-size status → call context (for outgoing calls) → handler. (Validation slots in at its
//! documented place when it lands.)

use crate::codegen::ServiceSpec;
use crate::log::Logger;
use crate::middleware::{
    AccessLogLayer, AuthLayer, ConcurrencyLayer, Deadline, DeadlineLayer, MessageLimitLayer, MetricsLayer, Propagate,
    PropagateLayer, RateLimitLayer, Recover, RecoverLayer, RequestIdLayer, TraceLayer, Wrap,
};

/// The generated server's whole middleware as one layer, in the
/// documented order (see the module docs). `Server` serves behind it;
/// it is public for servers assembled by hand and for benchmarks.
#[derive(Clone)]
pub struct Stack {
    request_id: RequestIdLayer,
    trace: TraceLayer,
    metrics: MetricsLayer,
    auth: AuthLayer,
    access_log: AccessLogLayer,
    rate_limit: RateLimitLayer,
    concurrency: ConcurrencyLayer,
    deadline: DeadlineLayer,
    recover: RecoverLayer,
    message_limit: MessageLimitLayer,
    propagate: PropagateLayer,
}

impl Stack {
    /// The middleware for `services` (each with the verifier of its JWT
    /// rules, if it has any), logging through `logger`, recording metrics
    /// in `registry` and spans through `trace`.
    pub fn new(
        services: Vec<(&'static ServiceSpec, Option<crate::auth::Verifier>)>,
        logger: Logger,
        registry: &'static crate::metrics::Registry,
        trace: TraceLayer,
    ) -> Stack {
        let specs: Vec<&'static ServiceSpec> = services.iter().map(|(spec, _)| *spec).collect();
        Stack {
            request_id: RequestIdLayer,
            trace,
            metrics: MetricsLayer::new(registry),
            auth: AuthLayer::for_services(services),
            access_log: AccessLogLayer::new(&specs, logger),
            rate_limit: RateLimitLayer::new(&specs),
            concurrency: ConcurrencyLayer::new(&specs),
            deadline: DeadlineLayer::new(&specs),
            recover: RecoverLayer::new(&specs, logger),
            message_limit: MessageLimitLayer::new(&specs),
            propagate: PropagateLayer,
        }
    }
}

/// The service [`Stack`] builds around `S`.
pub type Stacked<S> = Wrap<
    RequestIdLayer,
    Wrap<
        TraceLayer,
        Wrap<
            MetricsLayer,
            Wrap<
                AuthLayer,
                Wrap<
                    AccessLogLayer,
                    Wrap<
                        RateLimitLayer,
                        Wrap<ConcurrencyLayer, Deadline<Recover<Wrap<MessageLimitLayer, Propagate<S>>>>>,
                    >,
                >,
            >,
        >,
    >,
>;

impl<S> tower_layer::Layer<S> for Stack {
    type Service = Stacked<S>;

    fn layer(&self, inner: S) -> Stacked<S> {
        let s = self.propagate.layer(inner);
        let s = self.message_limit.layer(s);
        let s = self.recover.layer(s);
        let s = self.deadline.layer(s);
        let s = self.concurrency.layer(s);
        let s = self.rate_limit.layer(s);
        let s = self.access_log.layer(s);
        let s = self.auth.layer(s);
        let s = self.metrics.layer(s);
        let s = self.trace.layer(s);
        self.request_id.layer(s)
    }
}
