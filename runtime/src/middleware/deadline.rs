//! Per-method deadlines: the annotated `timeout` or the caller's
//! `grpc-timeout`, whichever is sooner, answered with `DEADLINE_EXCEEDED`.
//! (tonic's own timeout answers `CANCELLED` and knows no per-method
//! defaults.) A deadline bounds the time to the response headers, which
//! for unary and client-streaming calls is the whole handler.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::body::Body;

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m,
/// u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    parse_timeout_bytes(value.as_bytes())
}

fn parse_timeout_bytes(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How long a call may take: the method's `annotated` timeout or the
/// caller's `grpc-timeout` header, whichever is sooner.
#[inline]
pub(crate) fn limit(annotated: Option<Duration>, header: Option<&http::HeaderValue>) -> Option<Duration> {
    let caller = header.and_then(|v| parse_timeout_bytes(v.as_bytes()));
    match (annotated, caller) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// Waits for a call's deadline. The timer starts on the first poll that
/// finds the call still running, so calls answered at once (most unary
/// ones) never touch the timer wheel or allocate one.
pub(crate) fn poll_expired(
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: Option<(Instant, Duration)>,
    cx: &mut Context<'_>,
) -> Poll<http::Response<Body>> {
    let Some((at, limit)) = deadline else { return Poll::Pending };
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
    ready!(timer.as_mut().poll(cx));
    let message = format!("deadline of {}ms exceeded", limit.as_millis());
    Poll::Ready(Status::deadline_exceeded(message).into_http())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789S", "10x", "-1S", "1.5S", "1é", "é", "+1S", "1 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
