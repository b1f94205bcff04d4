//! Panic recovery: a panicking handler answers `INTERNAL` and is logged.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use tonic::Status;
use tonic::body::Body;

use crate::context::RequestId;
use crate::log::{Level, Logger, Value};
use crate::trace::TraceContext;

/// Runs `f` (the handler's call, or a poll of its future), catching a
/// panic.
#[inline]
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Box<dyn Any + Send>> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
}

/// The answer to a call whose handler panicked: `INTERNAL`, after an
/// `error` record naming the method, request id, trace id and panic
/// message.
pub(crate) fn answer(
    logger: Logger,
    path: &str,
    id: &RequestId,
    trace: &TraceContext,
    panic: &(dyn Any + Send),
) -> http::Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic)");
    logger.log(
        Level::Error,
        "handler panicked",
        &[
            ("method", Value::Str(path)),
            ("request_id", Value::Str(id.as_str())),
            ("trace_id", Value::Hex(&trace.trace_id)),
            ("panic", Value::Str(message)),
        ],
    );
    Status::internal("the handler failed unexpectedly").into_http()
}
