//! JWT authentication and role authorization, driven by `auth { jwt {...} }`
//! on the service and `public` / `roles` on each method.
//!
//! Every method needs `authorization: Bearer <token>` unless it is
//! `public`. A token is accepted only if its signature verifies with the
//! configured key under one of the annotated algorithms (never `none`),
//! `exp`, `iss` and `aud` are present and valid (`iss` equal to the
//! issuer, `aud` containing one of the audiences), `nbf` (if present) has
//! passed, all within the annotated leeway. Failures answer
//! `UNAUTHENTICATED`; a valid token without one of the method's `roles`
//! answers `PERMISSION_DENIED`. The verified [`Principal`] is put in the
//! request extensions.
//!
//! Keys come from the environment: `SVC_JWT_SECRET` (HS256/384/512) or
//! `SVC_JWT_SECRET_FILE` (a file holding it, e.g. a mounted Secret), or
//! `SVC_JWT_PUBLIC_KEY_FILE` (PEM; RSA, EC or Ed25519 public key).
//!
//! Verifying tokens needs the crate's `jwt` feature. Code generated for a
//! service with `auth` does not compile without it (the error says to
//! enable it), and a [`Verifier`] cannot be made without it.

use std::sync::Arc;

#[cfg(not(feature = "jwt"))]
use tonic::Status;

#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
pub use jwt::{TestIssuer, Verifier};

/// Longest accepted `authorization` value, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The verified caller, in request extensions of authenticated calls
/// (`request.extensions().get::<Principal>()`). Its fields are those of
/// [`Identity`]; copies share one identity, so handing it to every call of
/// a cached token costs no copying.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal(Arc<Identity>);

/// What a verified token says about the caller.
#[derive(Debug, PartialEq)]
pub struct Identity {
    /// The `sub` claim, if any.
    pub subject: Option<String>,
    /// Roles from the annotated roles claim (string or list of strings).
    pub roles: Vec<String>,
    /// Every claim of the token.
    #[cfg(feature = "jwt")]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Principal {
    /// A principal with this identity.
    pub fn new(identity: Identity) -> Principal {
        Principal(Arc::new(identity))
    }

    /// Whether both are copies of the same verification.
    pub fn same(a: &Principal, b: &Principal) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl std::ops::Deref for Principal {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        &self.0
    }
}

/// A JWT verification key and its rules. This build of svc-runtime lacks
/// the `jwt` feature, so no verifier can exist: a service that requires
/// authentication cannot be served until the feature is enabled.
#[cfg(not(feature = "jwt"))]
#[derive(Clone)]
pub enum Verifier {}

#[cfg(not(feature = "jwt"))]
impl Verifier {
    /// Says that the `jwt` feature is needed.
    pub fn from_env(jwt: &crate::codegen::JwtSpec) -> Result<Verifier, crate::Error> {
        Self::from_lookup(jwt, |_| None)
    }

    /// Says that the `jwt` feature is needed.
    pub fn from_lookup(
        _jwt: &crate::codegen::JwtSpec,
        _lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Verifier, crate::Error> {
        Err(crate::Error::Config {
            variable: "auth",
            problem: "the service requires JWT authentication, but this binary was built without it: enable \
                      the `jwt` feature of svc-runtime (features = [\"jwt\"] on its line in Cargo.toml)"
                .to_owned(),
        })
    }

    /// Never called: no verifier exists without the `jwt` feature.
    pub fn verify(&self, _header: Option<&http::HeaderValue>) -> Result<Principal, Status> {
        match *self {}
    }
}

/// What a method requires, and who checks it.
#[cfg(all(test, not(feature = "jwt")))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn without_the_feature_no_verifier_is_made() {
        let jwt = crate::codegen::JwtSpec {
            issuer: "https://issuer.test",
            audiences: &["api"],
            algorithms: &["HS256"],
            roles_claim: "roles",
            leeway: Duration::from_secs(5),
        };
        let e = Verifier::from_lookup(&jwt, |_| Some("0123456789abcdef0123456789abcdef".to_owned()));
        let e = e.err().expect("no jwt feature").to_string();
        assert!(e.contains("enable the `jwt` feature"), "{e}");
    }
}
