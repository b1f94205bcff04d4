//! Token verification with `jsonwebtoken` (the `jwt` feature).

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tonic::Status;

use super::{Identity, MAX_TOKEN_BYTES, Principal};
use crate::Error;
use crate::codegen::JwtSpec;

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
        Ok(Verifier::with_key(jwt, key, algorithms))
    }

    /// A verifier of `jwt`'s rules with `key`, accepting `algorithms` (all
    /// of the key's family).
    fn with_key(jwt: &JwtSpec, key: DecodingKey, algorithms: Vec<Algorithm>) -> Verifier {
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
        Verifier { key, validation, roles_claim: jwt.roles_claim, cache: Arc::default(), id }
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

/// Issues tokens for a service's own tests, as its identity provider would:
/// a key made on the spot, of a family the service accepts, and tokens
/// carrying its issuer, its first audience and the roles asked for. The
/// [`TestIssuer::verifier`] checks them with the service's rules, so a test
/// can serve the service and call it authenticated without any key files.
///
/// ```
/// use std::time::Duration;
/// use svc_runtime::auth::TestIssuer;
/// use svc_runtime::codegen::JwtSpec;
///
/// let jwt = JwtSpec {
///     issuer: "https://issuer.example",
///     audiences: &["shop"],
///     algorithms: &["ES256"],
///     roles_claim: "roles",
///     leeway: Duration::from_secs(30),
/// };
/// let issuer = TestIssuer::new(&jwt);
/// let header = http::HeaderValue::from_str(&issuer.bearer("ada", &["admin"])).unwrap();
/// let principal = issuer.verifier().verify(Some(&header)).unwrap();
/// assert_eq!(principal.subject.as_deref(), Some("ada"));
/// assert_eq!(principal.roles, ["admin"]);
/// ```
///
/// With only RSA algorithms (RS*, PS*) it makes a 2048-bit RSA key, which
/// takes seconds in an unoptimized build; `[profile.dev.package.num-bigint-dig]
/// opt-level = 3` in the crate's Cargo.toml makes it fast.
pub struct TestIssuer {
    key: jsonwebtoken::EncodingKey,
    algorithm: Algorithm,
    issuer: &'static str,
    audience: &'static str,
    roles_claim: &'static str,
    verifier: Verifier,
}

impl TestIssuer {
    /// A fresh key for `jwt`: HMAC when the service accepts an HS*
    /// algorithm, else Ed25519, ECDSA P-256, P-384, then RSA.
    pub fn new(jwt: &JwtSpec) -> TestIssuer {
        let accepted: Vec<Algorithm> = jwt.algorithms.iter().filter_map(|a| a.parse().ok()).collect();
        let preference = [
            Algorithm::HS256,
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::EdDSA,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::RS384,
            Algorithm::PS384,
            Algorithm::RS512,
            Algorithm::PS512,
        ];
        let algorithm = preference.into_iter().find(|a| accepted.contains(a)).unwrap_or(Algorithm::RS256);
        let (key, decoding) = new_key(algorithm);
        TestIssuer {
            key,
            algorithm,
            issuer: jwt.issuer,
            audience: jwt.audiences.first().copied().unwrap_or_default(),
            roles_claim: jwt.roles_claim,
            verifier: Verifier::with_key(jwt, decoding, vec![algorithm]),
        }
    }

    /// A verifier that accepts this issuer's tokens (for
    /// `Server::verifier`).
    pub fn verifier(&self) -> Verifier {
        self.verifier.clone()
    }

    /// The algorithm tokens are signed with, e.g. `"ES256"`.
    pub fn algorithm(&self) -> String {
        format!("{:?}", self.algorithm)
    }

    /// A token for `subject` with `roles`, valid for five minutes.
    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), self.issuer.into());
        claims.insert("aud".into(), self.audience.into());
        claims.insert("sub".into(), subject.into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + 300).into());
        claims.insert(self.roles_claim.into(), roles.iter().map(|r| serde_json::Value::from(*r)).collect());
        let header = jsonwebtoken::Header::new(self.algorithm);
        // The key was made for this algorithm, so signing cannot fail.
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap_or_default()
    }

    /// `Bearer <token>`, the value of an `authorization` header.
    pub fn bearer(&self, subject: &str, roles: &[&str]) -> String {
        format!("Bearer {}", self.token(subject, roles))
    }
}

/// A signing key for `algorithm` and the key that verifies it.
fn new_key(algorithm: Algorithm) -> (jsonwebtoken::EncodingKey, DecodingKey) {
    use jsonwebtoken::EncodingKey;
    use rand::RngCore;
    let mut rng = rand::rngs::OsRng;
    let mut seed = [0u8; 64];
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            rng.fill_bytes(&mut seed);
            (EncodingKey::from_secret(&seed), DecodingKey::from_secret(&seed))
        }
        Algorithm::EdDSA => {
            use ed25519_dalek::pkcs8::EncodePrivateKey;
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
            let der = signing.to_pkcs8_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
            (EncodingKey::from_ed_der(&der), DecodingKey::from_ed_der(signing.verifying_key().as_bytes()))
        }
        Algorithm::ES256 => {
            use p256::pkcs8::EncodePrivateKey;
            let signing = p256::ecdsa::SigningKey::random(&mut rng);
            let der = signing.to_pkcs8_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
            let public = signing.verifying_key().to_encoded_point(false);
            (EncodingKey::from_ec_der(&der), DecodingKey::from_ec_der(public.as_bytes()))
        }
        Algorithm::ES384 => {
            use p384::pkcs8::EncodePrivateKey;
            let signing = p384::ecdsa::SigningKey::random(&mut rng);
            let der = signing.to_pkcs8_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
            let public = signing.verifying_key().to_encoded_point(false);
            (EncodingKey::from_ec_der(&der), DecodingKey::from_ec_der(public.as_bytes()))
        }
        _ => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::traits::PublicKeyParts;
            // A 2048-bit key, as identity providers use; generation only
            // fails if the system's random source does.
            let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("the system's random source works");
            let der = private.to_pkcs1_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
            let (n, e) = (private.n().to_bytes_be(), private.e().to_bytes_be());
            (EncodingKey::from_rsa_der(&der), DecodingKey::from_rsa_raw_components(&n, &e))
        }
    }
}

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

    #[test]
    fn test_issuers_sign_what_the_service_accepts() {
        for algorithms in [&["HS384"][..], &["EdDSA"], &["ES256"], &["ES384", "RS256"], &["PS256"]] {
            let jwt = JwtSpec { algorithms, ..JWT };
            let issuer = TestIssuer::new(&jwt);
            assert_eq!(issuer.algorithm(), algorithms[0]);
            let h = http::HeaderValue::from_str(&issuer.bearer("ada", &["admin"])).expect("header");
            let p = issuer.verifier().verify(Some(&h)).expect("accepted");
            assert_eq!((p.subject.as_deref(), p.roles.as_slice()), (Some("ada"), &["admin".to_owned()][..]));
            // Another issuer's key is not accepted.
            let other = TestIssuer::new(&jwt).bearer("ada", &[]);
            let other = http::HeaderValue::from_str(&other).expect("header");
            assert!(issuer.verifier().verify(Some(&other)).is_err(), "{algorithms:?}");
        }
    }
}
