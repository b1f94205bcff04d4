//! One call through the client: its deadline, its attempts (gRFC A6
//! retries and transparent retries), its metadata and its metrics.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Code, Status};

use super::Shared;
use super::backoff::retry_wait;
use super::connection::{ResponseBody, SendError, past_deadline};
use super::retry::{MAX_ATTEMPTS, Replay};
use super::target::Address;
use crate::codegen::{HedgingSpec, MethodSpec, RetrySpec};
use crate::log::{Level, Logger, Value};
use crate::metrics::ClientSeries;

/// Sends of a call that never reached a server, beyond its attempts.
const TRANSPARENT_RETRIES: u32 = 3;

static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
static PREVIOUS_ATTEMPTS: http::HeaderName = http::HeaderName::from_static("grpc-previous-rpc-attempts");
static PUSHBACK: http::HeaderName = http::HeaderName::from_static("grpc-retry-pushback-ms");

/// Records a call's end in its series and, when it failed, as a
/// structured record (level `warn`; `debug` for calls the caller
/// cancelled).
pub(crate) struct Finish {
    series: &'static ClientSeries,
    started: std::time::Instant,
    log: Logger,
    path: String,
    target: Arc<str>,
    /// Attempts sent (retries and hedges included) and the endpoint of the
    /// last one, once the attempts are over.
    attempts: u32,
    peer: Option<Address>,
}

impl Finish {
    pub(crate) fn finish(self, code: u8, message: &str) {
        let elapsed = self.started.elapsed();
        self.series.calls.finish(code, elapsed);
        if code == 0 {
            return;
        }
        let log = self.log;
        let level = if code == Code::Cancelled as u8 { Level::Debug } else { Level::Warn };
        if level < log.level() || log.level() == Level::Off {
            return;
        }
        let peer = self.peer.as_ref().map(Address::to_string);
        log.log(
            level,
            "call failed",
            &[
                ("target", Value::Str(&self.target)),
                ("method", Value::Str(&self.path)),
                ("code", Value::Str(crate::metrics::code_name(code))),
                ("message", Value::Str(message)),
                ("attempts", Value::Num(f64::from(self.attempts))),
                ("peer", peer.as_deref().map_or(Value::None, Value::Str)),
                ("duration_ms", Value::Millis(elapsed)),
            ],
        );
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
    let started = std::time::Instant::now();
    let sent = Sent::default();
    let outcome = attempts(&shared, method, series, request, &sent).await;
    let deadline = *sent.deadline.lock().unwrap_or_else(|e| e.into_inner());
    let finish = Finish {
        series,
        started,
        log: shared.log,
        path,
        target: shared.target.clone(),
        attempts: sent.count.load(Ordering::Relaxed),
        peer: sent.peer.into_inner().unwrap_or_else(|e| e.into_inner()),
    };
    match outcome {
        Ok((response, Some((recv, in_flight)))) => {
            Ok(response.map(|()| ResponseBody::streaming(recv, finish, in_flight, deadline)))
        }
        Ok((response, None)) => {
            let code = crate::completion::status_of(response.headers()).unwrap_or(2);
            if code == 0 {
                finish.finish(code, "");
            } else {
                let status = Status::from_header_map(response.headers());
                finish.finish(code, status.as_ref().map_or("", |s| s.message()));
            }
            Ok(response.map(|()| ResponseBody::empty()))
        }
        Err(status) => {
            finish.finish(status.code() as u8, status.message());
            Err(Box::new(status))
        }
    }
}

/// What a call's attempts leave for its record: how many were sent, and
/// to which endpoint the last one went.
#[derive(Default)]
struct Sent {
    count: AtomicU32,
    peer: Mutex<Option<Address>>,
    /// The call's deadline, once known.
    deadline: Mutex<Option<Instant>>,
}

type Attempted = (http::Response<()>, Option<(h2::RecvStream, super::connection::InFlight)>);

/// How a call is repeated: retried after failures, or hedged.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Repeat {
    Retry(RetrySpec),
    Hedge(HedgingSpec),
}

/// A call's request as every attempt sends it.
struct Call<'a> {
    shared: &'a Arc<Shared>,
    series: &'static ClientSeries,
    sent: &'a Sent,
    parts: http::request::Parts,
    replay: Replay,
    deadline: Option<Instant>,
}

/// What one attempt came back with.
enum Reply {
    /// The response began (headers without a status): the call is
    /// committed to this attempt.
    Begun(Attempted),
    /// A trailers-only response: its code and any pushback.
    Ended(http::Response<()>, Code, Option<Option<Duration>>),
    /// A transport failure after the request may have reached the server.
    Failed(Status),
    /// The request never reached a server.
    Unprocessed(String),
}

impl Call<'_> {
    /// Sends attempt number `attempt` (0 for the first) to a connection the
    /// pool picks, and waits for its response headers, within the
    /// deadline.
    async fn send(&self, attempt: u32) -> Result<Reply, Status> {
        let remaining = match self.deadline {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(Status::deadline_exceeded("deadline exceeded before the call could be sent")),
            },
            None => None,
        };
        let conn = self.shared.pool.pick(self.deadline).await?;
        let mut headers = self.parts.headers.clone();
        if let Some(left) = remaining {
            headers.insert(&GRPC_TIMEOUT, grpc_timeout(left));
        }
        if attempt > 0 {
            headers.insert(&PREVIOUS_ATTEMPTS, http::HeaderValue::from(attempt));
        }
        let mut req = http::Request::new(self.replay.attempt());
        *req.method_mut() = self.parts.method.clone();
        *req.uri_mut() = self.parts.uri.clone();
        *req.headers_mut() = headers;
        self.series.attempt();
        self.sent.count.fetch_add(1, Ordering::Relaxed);
        *self.sent.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.address.clone());
        let sent = conn.send(&self.shared.pool.dial, req);
        let sent = match self.deadline {
            Some(at) => match tokio::time::timeout_at(at, sent).await {
                Ok(sent) => sent,
                Err(_) => return Err(Status::deadline_exceeded("deadline exceeded waiting for the response")),
            },
            None => sent.await,
        };
        Ok(match sent {
            Err(SendError::Unprocessed(why)) => Reply::Unprocessed(why),
            Err(SendError::Failed(status)) => {
                let status = past_deadline(self.deadline, status);
                conn.stats.outcome(status.code() as u8);
                Reply::Failed(status)
            }
            Ok((response, in_flight)) => {
                let (head, recv) = response.into_parts();
                let response = http::Response::from_parts(head, ());
                match code_of(response.headers()) {
                    None => Reply::Begun((response, Some((recv, in_flight)))),
                    Some(code) => {
                        in_flight.outcome(code as u8);
                        let pushed = pushback(response.headers());
                        Reply::Ended(response, code, pushed)
                    }
                }
            }
        })
    }

    fn succeeded(&self) {
        if let Some(t) = &self.shared.throttle {
            t.success();
        }
    }

    /// A failure the policy would repeat: takes a throttle token; false
    /// when the throttle stops repeats.
    fn throttle_allows(&self) -> bool {
        self.shared.throttle.as_ref().is_none_or(|t| t.failure())
    }
}

async fn attempts(
    shared: &Arc<Shared>,
    method: Option<&'static MethodSpec>,
    series: &'static ClientSeries,
    request: http::Request<tonic::body::Body>,
    sent: &Sent,
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
    *sent.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
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
    let repeat = shared.repeat_override.or_else(|| {
        let m = method?;
        m.hedging.map(Repeat::Hedge).or(m.retry.map(Repeat::Retry))
    });
    let body = if shared.validate_requests { checked_body(body).await? } else { body };
    let replay = Replay::new(body, shared.replay_budget.clone());
    let call = Call { shared, series, sent, parts, replay, deadline };
    match repeat {
        Some(Repeat::Hedge(policy)) => hedge(&call, &policy).await,
        Some(Repeat::Retry(policy)) => retry(&call, Some(&policy)).await,
        None => retry(&call, None).await,
    }
}

/// Attempts one after another: the first, then (with a policy) retries
/// after retryable failures, with backoff or the server's pushback.
async fn retry(call: &Call<'_>, policy: Option<&RetrySpec>) -> Result<Attempted, Status> {
    let max_attempts = policy.map_or(1, |p| p.max_attempts.clamp(1, MAX_ATTEMPTS));
    let mut attempt: u32 = 0;
    let mut transparent: u32 = 0;
    let mut backoff_step = 0u32;
    loop {
        let retried = |code: Code| retry_allowed(call, policy, code, attempt + 1, max_attempts);
        let (code, pushed) = match call.send(attempt).await? {
            Reply::Unprocessed(why) => {
                // Never reached a server: send again, whatever the method.
                if transparent < TRANSPARENT_RETRIES && call.replay.replayable() {
                    transparent += 1;
                    continue;
                }
                return Err(Status::unavailable(why));
            }
            Reply::Failed(status) => {
                if !retried(status.code()) {
                    return Err(status);
                }
                (status.code(), None)
            }
            Reply::Begun(attempted) => {
                call.succeeded();
                return Ok(attempted);
            }
            Reply::Ended(response, code, pushed) => {
                if code == Code::Ok {
                    call.succeeded();
                }
                if code == Code::Ok || pushed == Some(None) || !retried(code) {
                    return Ok((response, None));
                }
                (code, pushed.flatten())
            }
        };
        attempt += 1;
        let wait = match (pushed, policy) {
            // The server's wait; the backoff starts over after it.
            (Some(wait), _) => {
                backoff_step = 0;
                wait
            }
            (None, Some(policy)) => {
                backoff_step += 1;
                retry_wait(policy, backoff_step)
            }
            (None, None) => Duration::ZERO,
        };
        if let Some(at) = call.deadline
            && Instant::now() + wait >= at
        {
            return Err(Status::deadline_exceeded(format!(
                "deadline exceeded after {attempt} attempts (last: {code:?})"
            )));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Hedged attempts (gRFC A6): the first at once, another every `delay`
/// until one answers, at once after a non-fatal failure (or after the
/// server's pushback). The first response that begins, succeeds or fails
/// fatally is the call's; the others are cancelled.
async fn hedge(call: &Call<'_>, policy: &HedgingSpec) -> Result<Attempted, Status> {
    use futures_util::stream::{FuturesUnordered, StreamExt};

    let max_attempts = policy.max_attempts.clamp(1, MAX_ATTEMPTS);
    let mut running = FuturesUnordered::new();
    let mut sent: u32 = 0;
    let mut transparent: u32 = 0;
    // When the next copy goes; `None` once no more will.
    let mut next_at = Some(Instant::now());
    let mut last: Option<Result<Attempted, Status>> = None;
    loop {
        while sent < max_attempts && next_at.is_some_and(|at| at <= Instant::now()) {
            running.push(call.send(sent));
            sent += 1;
            next_at = (sent < max_attempts).then(|| Instant::now() + policy.delay);
        }
        let reply = match (running.is_empty(), next_at) {
            // Waiting out a pushback with nothing in flight.
            (true, Some(at)) => {
                tokio::time::sleep_until(at).await;
                continue;
            }
            (false, Some(at)) => tokio::select! {
                reply = running.next() => reply,
                () = tokio::time::sleep_until(at) => continue,
            },
            (_, None) => running.next().await,
        };
        let Some(reply) = reply else {
            // Every copy failed non-fatally and no more will go.
            return last.unwrap_or_else(|| Err(Status::unavailable("no attempt could be sent")));
        };
        let (outcome, code, pushed) = match reply? {
            Reply::Begun(attempted) => {
                call.succeeded();
                return Ok(attempted);
            }
            Reply::Unprocessed(why) => {
                if transparent < TRANSPARENT_RETRIES && call.replay.replayable() {
                    // Sent again in its place at once.
                    transparent += 1;
                    running.push(call.send(sent.saturating_sub(1)));
                    continue;
                }
                (Err(Status::unavailable(why)), Code::Unavailable, None)
            }
            Reply::Failed(status) => {
                let code = status.code();
                (Err(status), code, None)
            }
            Reply::Ended(response, code, pushed) => (Ok((response, None)), code, pushed),
        };
        if code == Code::Ok {
            call.succeeded();
            return outcome;
        }
        if !policy.non_fatal_codes.contains(&code) {
            return outcome;
        }
        last = Some(outcome);
        if !call.throttle_allows() || !call.replay.replayable() {
            next_at = None;
        } else if sent < max_attempts {
            next_at = match pushed {
                Some(None) => None,
                Some(Some(wait)) => Some(Instant::now() + wait),
                None => Some(Instant::now()),
            };
        }
        if running.is_empty() && next_at.is_none() {
            return last.unwrap_or_else(|| Err(Status::unavailable("no attempt could be sent")));
        }
    }
}

/// Whether a failed attempt is retried: the policy lists the code,
/// attempts remain, the request can be replayed, and the throttle allows
/// (a retryable failure always takes a token).
fn retry_allowed(call: &Call<'_>, policy: Option<&RetrySpec>, code: Code, done: u32, max_attempts: u32) -> bool {
    let Some(policy) = policy else { return false };
    if !policy.retryable_codes.contains(&code) {
        return false;
    }
    call.throttle_allows() && done < max_attempts && call.replay.replayable()
}

/// The request body with validation on (see
/// [`crate::validate::ValidatingClientCodec`]): its first frame (a unary
/// request's message) is encoded here, so that a request that breaks its
/// rules fails with its status before any attempt.
async fn checked_body(body: tonic::body::Body) -> Result<tonic::body::Body, Status> {
    use http_body::Body as _;
    let mut body = Box::pin(crate::validate::CheckedBody::new(body));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(body.as_mut().poll_frame(cx))).await;
    match first {
        std::task::Poll::Ready(Some(Err(e))) => Err(e),
        std::task::Poll::Ready(Some(Ok(frame))) => {
            Ok(tonic::body::Body::new(crate::validate::CheckedBody::resumed(frame, body)))
        }
        std::task::Poll::Ready(None) | std::task::Poll::Pending => Ok(tonic::body::Body::new(body)),
    }
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
