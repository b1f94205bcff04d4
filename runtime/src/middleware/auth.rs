//! Authentication and role checks (see [`crate::auth`]).

use tonic::Status;
use tonic::body::Body;

use crate::auth::{Principal, Verifier};

/// What a method that requires authentication checks: the token, with
/// its service's verifier, and the roles (any of them; none means any
/// authenticated caller).
pub(crate) struct Rule {
    pub(crate) roles: &'static [&'static str],
    pub(crate) verifier: &'static Verifier,
}

impl Rule {
    /// The caller, or the answer for a caller who fails the rule.
    #[expect(clippy::result_large_err, reason = "the answer is moved out once, on rejected calls only")]
    pub(crate) fn check<B>(&self, req: &http::Request<B>) -> Result<Principal, http::Response<Body>> {
        let principal =
            self.verifier.verify(req.headers().get(http::header::AUTHORIZATION)).map_err(Status::into_http)?;
        if !self.roles.is_empty() && !principal.roles.iter().any(|r| self.roles.contains(&r.as_str())) {
            return Err(Status::permission_denied(format!("requires one of the roles {:?}", self.roles)).into_http());
        }
        Ok(principal)
    }
}
