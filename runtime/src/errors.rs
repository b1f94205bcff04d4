//! Typed business errors from enums marked `(svc.errors)`.
//!
//! For such an enum the generator implements [`TypedErrors`]; a handler then
//! returns `Err(ShopError::ItemNotFound.error().with("sku", sku).into())`,
//! and the client gets a `Status` whose details carry
//! `google.rpc.ErrorInfo { reason: "ITEM_NOT_FOUND", domain, metadata }`
//! (plus `google.rpc.RetryInfo` for retryable errors), which any gRPC
//! client can read. [`TypedErrors::from_status`] turns it back into the
//! typed error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Code, message and retry advice of one error value, from `(svc.error)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorSpec {
    /// `ErrorInfo.reason`: the enum value's proto name.
    pub reason: &'static str,
    /// The gRPC status code.
    pub code: Code,
    /// Message template; `{key}` is replaced by the metadata value of `key`.
    pub message: &'static str,
    /// `RetryInfo.retry_delay`, for retryable errors.
    pub retry_delay: Option<Duration>,
}

/// Implemented by the generator for every enum marked `(svc.errors)`.
pub trait TypedErrors: Copy + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// `ErrorInfo.domain`.
    const DOMAIN: &'static str;

    /// The spec of this value; `None` for values without `(svc.error)`
    /// (such as `..._UNSPECIFIED`).
    fn spec(self) -> Option<&'static ErrorSpec>;

    /// The value's proto name.
    fn reason(self) -> &'static str;

    /// The value with proto name `reason`.
    fn from_reason(reason: &str) -> Option<Self>;

    /// This value as an error, to which metadata can be added.
    fn error(self) -> TypedError<Self> {
        TypedError::new(self)
    }

    /// This value as a `Status`, without metadata.
    fn status(self) -> Status {
        TypedError::new(self).to_status()
    }

    /// Recovers the typed error from a `Status` carrying an `ErrorInfo` of
    /// this enum's domain; `None` for any other status.
    fn from_status(status: &Status) -> Option<TypedError<Self>> {
        let details = status.get_error_details();
        let info = details.error_info()?;
        if info.domain != Self::DOMAIN {
            return None;
        }
        let kind = Self::from_reason(&info.reason)?;
        Some(TypedError { kind, metadata: info.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect() })
    }
}

/// A typed error value with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedError<E> {
    kind: E,
    metadata: BTreeMap<String, String>,
}

impl<E: TypedErrors> TypedError<E> {
    /// An error of kind `kind` without metadata.
    pub fn new(kind: E) -> Self {
        TypedError { kind, metadata: BTreeMap::new() }
    }

    /// Adds `ErrorInfo.metadata[key] = value` (also used by `{key}` in the
    /// message).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The enum value.
    pub fn kind(&self) -> E {
        self.kind
    }

    /// The metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The status code (`UNKNOWN` for values without `(svc.error)`).
    pub fn code(&self) -> Code {
        self.kind.spec().map_or(Code::Unknown, |s| s.code)
    }

    /// The message with `{key}` placeholders filled from the metadata;
    /// placeholders without a value are left as written.
    pub fn message(&self) -> String {
        let template = self.kind.spec().map_or(self.kind.reason(), |s| s.message);
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let key = &after[..close];
                    match self.metadata.get(key) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push('{');
                            out.push_str(key);
                            out.push('}');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The `Status`: code, message, and details with `ErrorInfo` (and
    /// `RetryInfo` when the error is retryable).
    pub fn to_status(&self) -> Status {
        let metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        let mut details = ErrorDetails::with_error_info(self.kind.reason(), E::DOMAIN, metadata);
        if let Some(delay) = self.kind.spec().and_then(|s| s.retry_delay) {
            details.set_retry_info(Some(delay));
        }
        Status::with_error_details(self.code(), self.message(), details)
    }
}

impl<E: TypedErrors> From<E> for TypedError<E> {
    fn from(kind: E) -> Self {
        TypedError::new(kind)
    }
}

impl<E: TypedErrors> From<TypedError<E>> for Status {
    fn from(e: TypedError<E>) -> Status {
        e.to_status()
    }
}

impl<E: TypedErrors> fmt::Display for TypedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{}): {}", self.kind.reason(), E::DOMAIN, code_name(self.code()), self.message())
    }
}

impl<E: TypedErrors> std::error::Error for TypedError<E> {}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Shop {
        Unspecified,
        NotFound,
        Busy,
    }

    impl TypedErrors for Shop {
        const DOMAIN: &'static str = "shop.example.com";
        fn spec(self) -> Option<&'static ErrorSpec> {
            const NOT_FOUND: ErrorSpec = ErrorSpec {
                reason: "NOT_FOUND",
                code: Code::NotFound,
                message: "item {sku} not found in {store}",
                retry_delay: None,
            };
            const BUSY: ErrorSpec = ErrorSpec {
                reason: "BUSY",
                code: Code::Unavailable,
                message: "busy",
                retry_delay: Some(Duration::from_millis(1500)),
            };
            match self {
                Shop::NotFound => Some(&NOT_FOUND),
                Shop::Busy => Some(&BUSY),
                Shop::Unspecified => None,
            }
        }
        fn reason(self) -> &'static str {
            match self {
                Shop::Unspecified => "SHOP_UNSPECIFIED",
                Shop::NotFound => "NOT_FOUND",
                Shop::Busy => "BUSY",
            }
        }
        fn from_reason(reason: &str) -> Option<Self> {
            [Shop::Unspecified, Shop::NotFound, Shop::Busy].into_iter().find(|s| s.reason() == reason)
        }
    }

    #[test]
    fn status_carries_error_info_and_round_trips() {
        let status: Status = Shop::NotFound.error().with("sku", "A-1").into();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "item A-1 not found in {store}");
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("NOT_FOUND", "shop.example.com"));
        assert_eq!(info.metadata.get("sku").map(String::as_str), Some("A-1"));
        assert!(details.retry_info().is_none());
        let back = Shop::from_status(&status).expect("typed");
        assert_eq!(back.kind(), Shop::NotFound);
        assert_eq!(back.metadata().get("sku").map(String::as_str), Some("A-1"));
    }

    #[test]
    fn retryable_errors_carry_retry_info() {
        let status = Shop::Busy.status();
        assert_eq!(status.code(), Code::Unavailable);
        let details = status.get_error_details();
        assert_eq!(details.retry_info().and_then(|r| r.retry_delay), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn foreign_statuses_are_not_typed() {
        assert!(Shop::from_status(&Status::not_found("plain")).is_none());
        let other = Status::with_error_details(
            Code::NotFound,
            "x",
            ErrorDetails::with_error_info("NOT_FOUND", "other.example.com", HashMap::new()),
        );
        assert!(Shop::from_status(&other).is_none());
    }

    #[test]
    fn values_without_spec_are_unknown() {
        let e = Shop::Unspecified.error();
        assert_eq!(e.code(), Code::Unknown);
        assert_eq!(e.to_string(), "SHOP_UNSPECIFIED (shop.example.com/UNKNOWN): SHOP_UNSPECIFIED");
    }
}
