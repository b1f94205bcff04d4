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

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tonic::Status;
use tonic::body::Body;

use crate::codegen::{JwtSpec, ServiceSpec};
use crate::middleware::{Middleware, layer};
use crate::server::Error;

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

/// Verified tokens kept before the cache is emptied.
const CACHE_ENTRIES: usize = 10_000;
/// Longest time a verified token is reused without verifying it again.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A verification key and the rules it is used with. Verified tokens are
/// cached (at most 60 s, never past their `exp`), so a client
/// that reuses its token pays for one signature check, not one per call.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    roles_claim: &'static str,
    cache: Arc<std::sync::RwLock<TokenCache>>,
    /// Tells this verifier's entries in [`RECENT`] from other verifiers'.
    id: u64,
}

/// Each thread's latest verified token, looked at before the shared cache:
/// a client that keeps its token is answered without a lock or a hash.
struct Recent {
    verifier: u64,
    token: String,
    /// The token's principal, and until when it may be reused.
    verified: Option<(Principal, std::time::Instant)>,
}

thread_local! {
    static RECENT: std::cell::RefCell<Recent> = const {
        std::cell::RefCell::new(Recent { verifier: 0, token: String::new(), verified: None })
    };
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths
/// only: the remembered token is someone's credential, and a comparison
/// that stops at the first difference would tell a caller how much of it
/// they had guessed.
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Recent {
    fn get(&self, verifier: u64, token: &str, now: std::time::Instant) -> Option<Principal> {
        let (principal, until) = self.verified.as_ref()?;
        (now < *until && self.verifier == verifier && same_text(&self.token, token)).then(|| principal.clone())
    }

    fn set(&mut self, verifier: u64, token: &str, principal: &Principal, until: std::time::Instant) {
        self.verifier = verifier;
        self.token.clear();
        self.token.push_str(token);
        self.verified = Some((principal.clone(), until));
    }
}

/// Verified tokens: token → (principal, reusable until).
type TokenCache = HashMap<String, (Principal, std::time::Instant)>;

impl Verifier {
    /// Builds the verifier of `jwt` from the environment.
    pub fn from_env(jwt: &JwtSpec) -> Result<Verifier, Error> {
        Self::from_lookup(jwt, |k| std::env::var(k).ok())
    }

    /// Like [`Verifier::from_env`], reading variables through `lookup`.
    pub fn from_lookup(jwt: &JwtSpec, lookup: impl Fn(&str) -> Option<String>) -> Result<Verifier, Error> {
        let mut algorithms: Vec<Algorithm> = jwt.algorithms.iter().filter_map(|a| a.parse().ok()).collect();
        let hmac = algorithms.iter().any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        let config = |variable: &'static str, problem: String| Error::Config { variable, problem };
        // The secret itself, or a file holding it (a mounted Secret); a
        // trailing newline in the file is not part of the secret.
        let secret = match (lookup("SVC_JWT_SECRET"), lookup("SVC_JWT_SECRET_FILE")) {
            (Some(secret), _) => Some(("SVC_JWT_SECRET", secret)),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| config("SVC_JWT_SECRET_FILE", format!("cannot read {path:?}: {e}")))?;
                Some(("SVC_JWT_SECRET_FILE", text.trim_end_matches(['\n', '\r']).to_owned()))
            }
            (None, None) => None,
        };
        let key = match (secret, lookup("SVC_JWT_PUBLIC_KEY_FILE")) {
            (Some((variable, secret)), _) if hmac => {
                if secret.len() < 32 {
                    return Err(config(
                        variable,
                        "is shorter than 32 bytes; use a random secret of at least 32 bytes".into(),
                    ));
                }
                DecodingKey::from_secret(secret.as_bytes())
            }
            (Some((variable, _)), _) => {
                return Err(config(
                    variable,
                    format!(
                        "is set, but the service accepts only {:?}; give a PEM public key in SVC_JWT_PUBLIC_KEY_FILE",
                        jwt.algorithms
                    ),
                ));
            }
            (None, Some(path)) if !hmac => {
                let pem = std::fs::read(&path)
                    .map_err(|e| config("SVC_JWT_PUBLIC_KEY_FILE", format!("cannot read {path:?}: {e}")))?;
                // Keep only the algorithms of the key's family: a token naming
                // another family is rejected before any signature check.
                let (key, family): (DecodingKey, &[Algorithm]) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                    (
                        k,
                        &[
                            Algorithm::RS256,
                            Algorithm::RS384,
                            Algorithm::RS512,
                            Algorithm::PS256,
                            Algorithm::PS384,
                            Algorithm::PS512,
                        ],
                    )
                } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                    (k, &[Algorithm::ES256, Algorithm::ES384])
                } else if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
                    (k, &[Algorithm::EdDSA])
                } else {
                    return Err(config(
                        "SVC_JWT_PUBLIC_KEY_FILE",
                        format!("{path:?} is not a PEM RSA, EC or Ed25519 public key"),
                    ));
                };
                algorithms.retain(|a| family.contains(a));
                if algorithms.is_empty() {
                    return Err(config(
                        "SVC_JWT_PUBLIC_KEY_FILE",
                        format!("the key in {path:?} fits none of the service's algorithms {:?}", jwt.algorithms),
                    ));
                }
                key
            }
            (None, Some(_)) => {
                return Err(config(
                    "SVC_JWT_PUBLIC_KEY_FILE",
                    "is set, but the service accepts only HMAC algorithms; set SVC_JWT_SECRET instead".into(),
                ));
            }
            (None, None) => {
                let which = if hmac { "SVC_JWT_SECRET" } else { "SVC_JWT_PUBLIC_KEY_FILE" };
                return Err(config(which, "is not set, but the service requires JWT authentication".into()));
            }
        };
        let mut validation = Validation::new(algorithms.first().copied().unwrap_or(Algorithm::RS256));
        validation.algorithms = algorithms;
        validation.set_issuer(&[jwt.issuer]);
        validation.set_audience(jwt.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = jwt.leeway.as_secs();
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Verifier { key, validation, roles_claim: jwt.roles_claim, cache: Arc::default(), id })
    }

    /// Verifies an `authorization` header value, from the cache when the
    /// same token was verified recently.
    pub fn verify(&self, header: Option<&http::HeaderValue>) -> Result<Principal, Status> {
        let header = header.ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        if header.len() > MAX_TOKEN_BYTES {
            return Err(Status::unauthenticated("authorization header is too large"));
        }
        let value = header.to_str().map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization is not a bearer token"))?;
        let token = token.trim();
        let now = std::time::Instant::now();
        if let Some(principal) = RECENT.with_borrow(|recent| recent.get(self.id, token, now)) {
            return Ok(principal);
        }
        let cached = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned();
        if let Some((principal, until)) = cached
            && now < until
        {
            RECENT.with_borrow_mut(|recent| recent.set(self.id, token, &principal, until));
            return Ok(principal);
        }
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &self.key, &self.validation)
                .map_err(|_| Status::unauthenticated("invalid token"))?;
        let claims = data.claims;
        // Reuse it until it expires (leeway excluded) or for CACHE_TTL.
        let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let remaining = claims.get("exp").and_then(|e| e.as_u64()).map_or(0, |exp| exp.saturating_sub(unix_now));
        let until = now + CACHE_TTL.min(std::time::Duration::from_secs(remaining));
        let roles = match claims.get(self.roles_claim) {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            }
            _ => Vec::new(),
        };
        let subject = claims.get("sub").and_then(|v| v.as_str()).map(str::to_owned);
        let principal = Principal::new(Identity { subject, roles, claims });
        if until > now {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(token.to_owned(), (principal.clone(), until));
            RECENT.with_borrow_mut(|recent| recent.set(self.id, token, &principal, until));
        }
        Ok(principal)
    }
}

/// What a method requires, and who checks it.
#[derive(Clone)]
struct Rule {
    roles: &'static [&'static str],
    verifier: &'static Verifier,
}

/// Authenticates and authorizes calls to the annotated methods.
#[derive(Clone)]
pub struct AuthLayer {
    rules: &'static crate::middleware::PathMap<Rule>,
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
        let mut rules = crate::middleware::PathMap::default();
        for (spec, verifier) in services {
            let Some(verifier) = verifier.map(crate::middleware::forever) else { continue };
            for m in spec.methods.iter().filter(|m| m.requires_auth) {
                rules.insert(m.path, Rule { roles: m.roles, verifier });
            }
        }
        AuthLayer { rules: crate::middleware::forever(rules) }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const JWT: JwtSpec = JwtSpec {
        issuer: "https://issuer.test",
        audiences: &["api"],
        algorithms: &["HS256"],
        roles_claim: "roles",
        leeway: Duration::from_secs(5),
    };
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> Verifier {
        Verifier::from_lookup(&JWT, |k| (k == "SVC_JWT_SECRET").then(|| SECRET.to_owned())).expect("verifier")
    }

    fn token(claims: serde_json::Value) -> http::HeaderValue {
        let t = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encode");
        http::HeaderValue::from_str(&format!("Bearer {t}")).expect("header")
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
    }

    #[test]
    fn valid_token_yields_principal() {
        let h = token(
            serde_json::json!({"iss": JWT.issuer, "aud": "api", "exp": now() + 60, "sub": "u1", "roles": ["a", "b"]}),
        );
        let p = verifier().verify(Some(&h)).expect("valid");
        assert_eq!(p.subject.as_deref(), Some("u1"));
        assert_eq!(p.roles, ["a", "b"]);
    }

    #[test]
    fn required_claims_are_enforced() {
        let v = verifier();
        for claims in [
            serde_json::json!({"aud": "api", "exp": now() + 60}),
            serde_json::json!({"iss": JWT.issuer, "exp": now() + 60}),
            serde_json::json!({"iss": JWT.issuer, "aud": "api"}),
            serde_json::json!({"iss": JWT.issuer, "aud": "other", "exp": now() + 60}),
            serde_json::json!({"iss": "https://evil.test", "aud": "api", "exp": now() + 60}),
            serde_json::json!({"iss": JWT.issuer, "aud": "api", "exp": now() - 60}),
            serde_json::json!({"iss": JWT.issuer, "aud": "api", "exp": now() + 60, "nbf": now() + 60}),
        ] {
            let err = v.verify(Some(&token(claims.clone()))).expect_err("rejected");
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{claims}");
        }
        assert_eq!(v.verify(None).expect_err("missing").code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn verified_tokens_are_reused_until_they_expire() {
        let v = verifier();
        let h = token(serde_json::json!({"iss": JWT.issuer, "aud": "api", "exp": now() + 60, "sub": "c"}));
        let first = v.verify(Some(&h)).expect("valid");
        let second = v.verify(Some(&h)).expect("cached");
        assert!(Principal::same(&first, &second), "the second check comes from the cache");
        // A token about to expire is not cached past its exp.
        let short = token(serde_json::json!({"iss": JWT.issuer, "aud": "api", "exp": now(), "sub": "d"}));
        if let Ok(p) = v.verify(Some(&short)) {
            let again = v.verify(Some(&short)).expect("still within leeway");
            assert!(!Principal::same(&p, &again), "not reused beyond exp");
        }
    }

    #[test]
    fn remembered_tokens_compare_whole() {
        assert!(same_text("abc.def", "abc.def"));
        assert!(!same_text("abc.def", "abc.deg"));
        assert!(!same_text("xbc.def", "abc.def"));
        assert!(!same_text("abc", "abc.def"));
        assert!(same_text("", ""));
    }

    #[test]
    fn a_token_verified_by_one_verifier_is_not_reused_by_another() {
        let v = verifier();
        let other = Verifier::from_lookup(&JWT, |k| (k == "SVC_JWT_SECRET").then(|| "another-secret-".repeat(3)))
            .expect("verifier");
        let h = token(serde_json::json!({"iss": JWT.issuer, "aud": "api", "exp": now() + 60, "sub": "e"}));
        v.verify(Some(&h)).expect("valid for its own key");
        // Same thread, right after: the other key still checks the signature.
        let err = other.verify(Some(&h)).expect_err("signed with another key");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        // And a clone shares the first verifier's cache.
        let clone = v.clone();
        assert!(Principal::same(&v.verify(Some(&h)).expect("cached"), &clone.verify(Some(&h)).expect("cached")));
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        let e = Verifier::from_lookup(&JWT, |_| None).err().expect("missing key").to_string();
        assert!(e.starts_with("SVC_JWT_SECRET: is not set"), "{e}");
        let e = Verifier::from_lookup(&JWT, |k| (k == "SVC_JWT_SECRET").then(|| "short".to_owned()))
            .err()
            .expect("short")
            .to_string();
        assert!(e.contains("shorter than 32 bytes"), "{e}");
        let e = Verifier::from_lookup(&JWT, |k| (k == "SVC_JWT_SECRET_FILE").then(|| "/nonexistent/key".to_owned()))
            .err()
            .expect("unreadable")
            .to_string();
        assert!(e.starts_with("SVC_JWT_SECRET_FILE: cannot read \"/nonexistent/key\""), "{e}");
    }

    #[test]
    fn secret_from_a_file() {
        let path = std::env::temp_dir().join(format!("svc-jwt-secret-{}", std::process::id()));
        std::fs::write(&path, format!("{SECRET}\n")).expect("write secret");
        let file = path.to_string_lossy().into_owned();
        let v = Verifier::from_lookup(&JWT, |k| (k == "SVC_JWT_SECRET_FILE").then(|| file.clone())).expect("verifier");
        let _ = std::fs::remove_file(&path);
        let h = token(serde_json::json!({"iss": JWT.issuer, "aud": "api", "exp": now() + 60, "sub": "ada"}));
        assert_eq!(v.verify(Some(&h)).expect("valid").subject.as_deref(), Some("ada"));
    }
}
