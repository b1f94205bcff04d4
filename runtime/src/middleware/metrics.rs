//! Per-call metrics, recorded in [`crate::metrics::Registry`].

use std::time::Instant;

use tonic::body::Body;

use super::{Middleware, layer};
use crate::metrics::{Registry, Series};

#[derive(Clone)]
pub struct MetricsLayer {
    registry: &'static Registry,
}

impl MetricsLayer {
    /// A layer recording into `registry` (kept for the process, see
    /// [`Registry::forever`]).
    pub fn new(registry: &'static Registry) -> Self {
        MetricsLayer { registry }
    }
}

impl Middleware for MetricsLayer {
    /// The call's series and start.
    type State = (&'static Series, Instant);

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<Self::State, http::Response<Body>> {
        let series = self.registry.series(req.uri().path());
        series.start();
        Ok((series, Instant::now()))
    }

    fn response((series, started): Self::State, response: http::Response<Body>) -> http::Response<Body> {
        crate::completion::observe(response, move |code| series.finish(code, started.elapsed()))
    }
}

layer!(MetricsLayer);
