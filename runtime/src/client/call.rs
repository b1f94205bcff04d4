//! One call through the client: its deadline, its attempts (gRFC A6
//! retries and transparent retries), its metadata and its metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Code, Status};

use super::Shared;
use super::backoff::retry_wait;
use super::connection::{ResponseBody, SendError};
use super::retry::{MAX_ATTEMPTS, Replay};
use crate::codegen::MethodSpec;
use crate::metrics::ClientSeries;

/// Sends of a call that never reached a server, beyond its attempts.
const TRANSPARENT_RETRIES: u32 = 3;

static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
static PREVIOUS_ATTEMPTS: http::HeaderName = http::HeaderName::from_static("grpc-previous-rpc-attempts");
static PUSHBACK: http::HeaderName = http::HeaderName::from_static("grpc-retry-pushback-ms");

/// Records a call's end in its series.
pub(crate) struct Finish {
    series: &'static ClientSeries,
    started: std::time::Instant,
}

impl Finish {
    pub(crate) fn finish(self, code: u8) {
        self.series.calls.finish(code, self.started.elapsed());
    }
}

/// `grpc-timeout` for `d` in the finest unit its eight digits allow:
/// microseconds up to 100 s, then milliseconds, then seconds (rounded
/// up, never zero).
pub(crate) fn grpc_timeout(d: Duration) -> http::HeaderValue {
    let us = d.as_nanos().div_ceil(1_000).max(1);
    let ms = d.as_nanos().div_ceil(1_000_000);
    let text = if us < 100_000_000 {
        format!("{us}u")
    } else if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", d.as_secs().min(99_999_999))
    };
    http::HeaderValue::from_str(&text).unwrap_or_else(|_| http::HeaderValue::from_static("1m"))
}

/// The wait a server asked for before the next attempt: `Some(None)` when
/// it asked for no retry (a negative or malformed value), `None` when it
/// said nothing.
fn pushback(headers: &http::HeaderMap) -> Option<Option<Duration>> {
    let mut values = headers.get_all(&PUSHBACK).iter();
    let value = values.next()?;
    if values.next().is_some() {
        // More than one value: not a wait the client can trust.
        return Some(None);
    }
    Some(value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_millis))
}

fn code_of(headers: &http::HeaderMap) -> Option<Code> {
    crate::completion::status_of(headers).map(|c| Code::from_i32(i32::from(c)))
}

/// Runs one call to completion of its response headers.
pub(crate) async fn run(
    shared: Arc<Shared>,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<ResponseBody>, Box<dyn std::error::Error + Send + Sync>> {
    let path = request.uri().path().to_owned();
    let method: Option<&'static MethodSpec> = shared.methods.get(path.as_str()).copied();
    let series = shared.series.get(path.as_str()).copied().unwrap_or_else(|| crate::metrics::clients().unknown());
    series.calls.start();
    let finish = Finish { series, started: std::time::Instant::now() };
    match attempts(&shared, method, series, request).await {
        Ok((response, Some((recv, in_flight)))) => {
            Ok(response.map(|()| ResponseBody::streaming(recv, finish, in_flight)))
        }
        Ok((response, None)) => {
            let code = crate::completion::status_of(response.headers()).unwrap_or(2);
            finish.finish(code);
            Ok(response.map(|()| ResponseBody::empty()))
        }
        Err(status) => {
            finish.finish(status.code() as u8);
            Err(Box::new(status))
        }
    }
}

type Attempted = (http::Response<()>, Option<(h2::RecvStream, super::connection::InFlight)>);

async fn attempts(
    shared: &Arc<Shared>,
    method: Option<&'static MethodSpec>,
    series: &'static ClientSeries,
    request: http::Request<tonic::body::Body>,
) -> Result<Attempted, Status> {
    let (mut parts, body) = request.into_parts();
    // The caller's deadline (tonic's `Request::set_timeout`), the
    // method's, and the deadline of the call being served, whichever ends
    // first.
    let now = Instant::now();
    let caller = parts
        .headers
        .get(&GRPC_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::middleware::parse_grpc_timeout)
        .map(|t| now + t);
    let annotated = shared.timeout_override.or(method.and_then(|m| m.timeout)).map(|t| now + t);
    let inherited = crate::context::current_deadline().map(Instant::from_std);
    let deadline = [caller, annotated, inherited].into_iter().flatten().min();
    crate::context::propagate(&mut parts.headers);
    for (name, value) in shared.metadata.iter() {
        if !parts.headers.contains_key(name) {
            parts.headers.insert(name, value.clone());
        }
    }
    if let Some(token) = &shared.token {
        let value = token.header().await?;
        parts.headers.insert(http::header::AUTHORIZATION, value);
    }
    let policy = shared.retry_override.or(method.and_then(|m| m.retry));
    let max_attempts = policy.map_or(1, |p| p.max_attempts.clamp(1, MAX_ATTEMPTS));
    let replay = Replay::new(body, shared.replay_budget.clone());
    let mut attempt: u32 = 0;
    let mut transparent: u32 = 0;
    let mut last_wait_bound = 0u32;
    loop {
        let remaining = match deadline {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(Status::deadline_exceeded("deadline exceeded before the call could be sent")),
            },
            None => None,
        };
        let conn = shared.pool.pick(deadline).await?;
        let mut headers = parts.headers.clone();
        if let Some(left) = remaining {
            headers.insert(&GRPC_TIMEOUT, grpc_timeout(left));
        }
        if attempt > 0 {
            headers.insert(&PREVIOUS_ATTEMPTS, http::HeaderValue::from(attempt));
        }
        let mut req = http::Request::new(replay.attempt());
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.headers_mut() = headers;
        series.attempt();
        let sent = match deadline {
            Some(at) => match tokio::time::timeout_at(at, conn.send(&shared.pool.dial, req)).await {
                Ok(sent) => sent,
                Err(_) => return Err(Status::deadline_exceeded("deadline exceeded waiting for the response")),
            },
            None => conn.send(&shared.pool.dial, req).await,
        };
        let (code, pushed) = match sent {
            Err(SendError::Unprocessed(why)) => {
                // Never reached a server: send again, whatever the method.
                if transparent < TRANSPARENT_RETRIES && replay.replayable() {
                    transparent += 1;
                    continue;
                }
                return Err(Status::unavailable(why));
            }
            Err(SendError::Failed(status)) => {
                let code = status.code();
                if !retry_allowed(shared, policy.as_ref(), code, attempt + 1, max_attempts, &replay) {
                    return Err(status);
                }
                (code, None)
            }
            Ok((response, in_flight)) => {
                let (head, recv) = response.into_parts();
                let response = http::Response::from_parts(head, ());
                let Some(code) = code_of(response.headers()) else {
                    // Headers without a status: the response has begun,
                    // the call is committed to this attempt.
                    if let Some(t) = &shared.throttle {
                        t.success();
                    }
                    return Ok((response, Some((recv, in_flight))));
                };
                let pushed = pushback(response.headers());
                if code == Code::Ok
                    && let Some(t) = &shared.throttle
                {
                    t.success();
                }
                let retry = code != Code::Ok
                    && pushed != Some(None)
                    && retry_allowed(shared, policy.as_ref(), code, attempt + 1, max_attempts, &replay);
                if !retry {
                    return Ok((response, None));
                }
                (code, pushed.flatten())
            }
        };
        attempt += 1;
        let Some(policy) = policy else { return Err(Status::new(code, "retry without a policy")) };
        let wait = match pushed {
            // The server's wait; the backoff starts over after it.
            Some(wait) => {
                last_wait_bound = 0;
                wait
            }
            None => {
                last_wait_bound += 1;
                retry_wait(&policy, last_wait_bound)
            }
        };
        if let Some(at) = deadline
            && Instant::now() + wait >= at
        {
            return Err(Status::deadline_exceeded(format!(
                "deadline exceeded after {attempt} attempts (last: {code:?})"
            )));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Whether a failed attempt is retried: the policy lists the code,
/// attempts remain, the request can be replayed, and the throttle allows
/// (a retryable failure always takes a token).
fn retry_allowed(
    shared: &Shared,
    policy: Option<&crate::codegen::RetrySpec>,
    code: Code,
    done: u32,
    max_attempts: u32,
    replay: &Replay,
) -> bool {
    let Some(policy) = policy else { return false };
    if !policy.retryable_codes.contains(&code) {
        return false;
    }
    let throttled = shared.throttle.as_ref().is_some_and(|t| !t.failure());
    !throttled && done < max_attempts && replay.replayable()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_on_the_wire() {
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(grpc_timeout(Duration::from_nanos(1)), "1u");
        assert_eq!(grpc_timeout(Duration::from_nanos(1500)), "2u");
        assert_eq!(grpc_timeout(Duration::from_secs(150)), "150000m");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }

    #[test]
    fn pushback_values() {
        let mut h = http::HeaderMap::new();
        assert_eq!(pushback(&h), None);
        h.insert(&PUSHBACK, http::HeaderValue::from_static("300"));
        assert_eq!(pushback(&h), Some(Some(Duration::from_millis(300))));
        h.insert(&PUSHBACK, http::HeaderValue::from_static("-1"));
        assert_eq!(pushback(&h), Some(None));
        h.insert(&PUSHBACK, http::HeaderValue::from_static("soon"));
        assert_eq!(pushback(&h), Some(None));
        h.insert(&PUSHBACK, http::HeaderValue::from_static("100"));
        h.append(&PUSHBACK, http::HeaderValue::from_static("10"));
        assert_eq!(pushback(&h), Some(None), "several values");
    }
}
