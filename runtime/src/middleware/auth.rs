//! Authentication and role checks (see [`crate::auth`]).

use tonic::Status;
use tonic::body::Body;

use super::{Middleware, PathMap, forever, layer};
use crate::auth::Verifier;
use crate::codegen::ServiceSpec;

#[derive(Clone)]
struct Rule {
    roles: &'static [&'static str],
    verifier: &'static Verifier,
}

/// Authenticates and authorizes calls to the annotated methods.
#[derive(Clone)]
pub struct AuthLayer {
    rules: &'static PathMap<Rule>,
}

impl AuthLayer {
    /// A layer for the methods of `spec` that require authentication; with
    /// no verifier (a service without `auth`) it passes every call through.
    pub fn new(spec: &'static ServiceSpec, verifier: Option<Verifier>) -> AuthLayer {
        AuthLayer::for_services(vec![(spec, verifier)])
    }

    /// A layer for several services, each checked with its own verifier
    /// (services differ in issuer, audiences and algorithms).
    pub fn for_services(services: Vec<(&'static ServiceSpec, Option<Verifier>)>) -> AuthLayer {
        let mut rules = PathMap::default();
        for (spec, verifier) in services {
            let Some(verifier) = verifier.map(forever) else { continue };
            for m in spec.methods.iter().filter(|m| m.requires_auth) {
                rules.insert(m.path, Rule { roles: m.roles, verifier });
            }
        }
        AuthLayer { rules: forever(rules) }
    }
}

impl Middleware for AuthLayer {
    type State = ();

    fn request<B>(&self, req: &mut http::Request<B>) -> Result<(), http::Response<Body>> {
        let Some(rule) = self.rules.get(req.uri().path()) else { return Ok(()) };
        let principal =
            rule.verifier.verify(req.headers().get(http::header::AUTHORIZATION)).map_err(Status::into_http)?;
        if !rule.roles.is_empty() && !principal.roles.iter().any(|r| rule.roles.contains(&r.as_str())) {
            return Err(Status::permission_denied(format!("requires one of the roles {:?}", rule.roles)).into_http());
        }
        req.extensions_mut().insert(principal);
        Ok(())
    }
}

layer!(AuthLayer);
