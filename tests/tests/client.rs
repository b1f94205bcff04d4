//! The generated client against generated servers on 127.0.0.1: grpc-go's
//! retry tables (test/retry_test.go) ported, retries driven by an
//! `rpc-behavior` header in the style of the xDS interop server, stream
//! limits, balancing, and bad input.
//!
//! The fault-injecting greeter reads `rpc-behavior` (comma-separated):
//! `sleep-N` (milliseconds), `error-code-N`, `pushback-V` (sent as
//! `grpc-retry-pushback-ms` with the error), `succeed-on-retry-attempt-N`
//! (answer normally when `grpc-previous-rpc-attempts` is N, whatever else
//! is asked). Without the header it follows its script, one code per call.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use svc_runtime::client::{Builder, Channel};
use svc_runtime::codegen::{
    FailurePercentageEjectionSpec, HedgingSpec, MethodSpec, OutlierDetectionSpec, RetrySpec, RetryThrottlingSpec,
    ServerSpec, ServiceSpec,
};
use svc_runtime::server::{Config, Server};
use svc_runtime::tonic::metadata::MetadataValue;
use svc_runtime::tonic::{self, Code, Request, Response, Status, Streaming};
use svc_tests::default::greeter::v1::greeter_client::GreeterClient;
use svc_tests::default::greeter::v1::greeter_server::Greeter;
use svc_tests::default::greeter::v1::{HelloReply, HelloRequest, HelloStreamRequest, greeter_svc};
use tokio_stream::{Stream, StreamExt};

type ReplyStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send + 'static>>;

/// One attempt as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    previous: Option<u32>,
    deadline: Option<String>,
    authorization: Option<String>,
}

/// A step of the streaming table's server side.
#[derive(Debug, Clone)]
enum Op {
    /// Expect request `n`.
    Req(&'static str),
    /// Expect `grpc-previous-rpc-attempts: n`.
    Attempts(u32),
    /// Send the response headers.
    Hdr,
    /// Send reply `n`.
    Res(&'static str),
    /// End with this code.
    Fail(Code),
    /// Expect the end of the requests.
    CloseSend,
    /// Add `grpc-retry-pushback-ms: v` to the end.
    Pushback(&'static str),
}

#[derive(Default)]
struct Faulty {
    /// Codes to answer, one per call, then OK.
    script: Mutex<VecDeque<Code>>,
    seen: Mutex<Vec<Seen>>,
    /// The streaming table's server steps and how far they ran.
    ops: Mutex<(Vec<Op>, usize)>,
    /// Handler time for calls without `rpc-behavior`.
    delay: Mutex<Duration>,
    /// Every n-th call without `rpc-behavior` takes 500 ms (0: none).
    slow_every: AtomicUsize,
    /// Calls without `rpc-behavior` fail with UNAVAILABLE.
    failing: std::sync::atomic::AtomicBool,
    calls: AtomicUsize,
}

fn previous_attempts<T>(r: &Request<T>) -> Option<u32> {
    r.metadata().get("grpc-previous-rpc-attempts").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// The error a behavior asks for, with its pushback.
fn fail(code: i32, pushback: &[String]) -> Status {
    let mut status = Status::new(Code::from_i32(code), "injected");
    for p in pushback {
        if let Ok(v) = MetadataValue::try_from(p.as_str()) {
            status.metadata_mut().append("grpc-retry-pushback-ms", v);
        }
    }
    status
}

/// The service over shared state the test reads.
#[derive(Clone)]
struct Fault(Arc<Faulty>);

impl std::ops::Deref for Fault {
    type Target = Faulty;
    fn deref(&self) -> &Faulty {
        &self.0
    }
}

#[tonic::async_trait]
impl Greeter for Fault {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let previous = previous_attempts(&request);
        let header = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (deadline, authorization) = (header("grpc-timeout"), header("authorization"));
        self.seen.lock().expect("seen").push(Seen { at: Instant::now(), previous, deadline, authorization });
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let behavior = request.metadata().get("rpc-behavior").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let ok = || Ok(Response::new(HelloReply { message: "ok".into(), created_at: None }));
        let Some(behavior) = behavior else {
            if self.failing.load(Ordering::Relaxed) {
                return Err(Status::unavailable("failing"));
            }
            let every = self.slow_every.load(Ordering::Relaxed);
            let delay = if every > 0 && n.is_multiple_of(every) {
                Duration::from_millis(500)
            } else {
                *self.delay.lock().expect("delay")
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            return match self.script.lock().expect("script").pop_front() {
                Some(code) if code != Code::Ok => Err(Status::new(code, "scripted")),
                _ => ok(),
            };
        };
        let mut error = None;
        let mut pushback = Vec::new();
        for part in behavior.split(',').map(str::trim) {
            if let Some(n) = part.strip_prefix("succeed-on-retry-attempt-") {
                if previous.unwrap_or(0).to_string() == n {
                    return ok();
                }
            } else if let Some(ms) = part.strip_prefix("sleep-") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            } else if let Some(code) = part.strip_prefix("error-code-") {
                error = code.parse::<i32>().ok();
            } else if let Some(v) = part.strip_prefix("pushback-") {
                pushback.push(v.to_owned());
            }
        }
        match error {
            Some(code) => Err(fail(code, &pushback)),
            None => ok(),
        }
    }

    type SayHelloStreamStream = ReplyStream;

    async fn say_hello_stream(&self, _: Request<HelloStreamRequest>) -> Result<Response<ReplyStream>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn collect_hellos(&self, _: Request<Streaming<HelloRequest>>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("not used"))
    }

    type ChatStream = ReplyStream;

    /// Runs the streaming table's server steps, as grpc-go's stub server
    /// does: steps before the first response in the handler, the rest in
    /// the response stream.
    async fn chat(&self, request: Request<Streaming<HelloRequest>>) -> Result<Response<ReplyStream>, Status> {
        let previous = previous_attempts(&request);
        let mut requests = request.into_inner();
        let this = self.clone();
        let next = move || {
            let mut ops = this.ops.lock().expect("ops");
            let op = ops.0.get(ops.1).cloned();
            if op.is_some() {
                ops.1 += 1;
            }
            op
        };
        let mut pushback = Vec::new();
        let mut pending = None;
        while let Some(op) = next() {
            match step(op, &mut requests, previous, &mut pushback).await {
                Step::Continue => {}
                Step::End(status) => return Err(status),
                Step::Respond(first) => {
                    pending = Some(first);
                    break;
                }
            }
        }
        let Some(first) = pending else { return Ok(Response::new(Box::pin(tokio_stream::empty()))) };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            if let Some(reply) = first {
                let _ = tx.send(Ok(reply)).await;
            }
            while let Some(op) = next() {
                match step(op, &mut requests, previous, &mut pushback).await {
                    Step::Continue => {}
                    Step::End(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    Step::Respond(reply) => {
                        if let Some(reply) = reply {
                            let _ = tx.send(Ok(reply)).await;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// A streaming case: description, server steps, requests the client
/// sends, whether it then closes its side, replies expected, final code.
type StreamCase = (&'static str, Vec<Op>, Vec<&'static str>, bool, Vec<&'static str>, Code);

enum Step {
    Continue,
    /// Headers go out (with a reply when there is one).
    Respond(Option<HelloReply>),
    End(Status),
}

async fn step(
    op: Op,
    requests: &mut Streaming<HelloRequest>,
    previous: Option<u32>,
    pushback: &mut Vec<String>,
) -> Step {
    let internal = |why: String| Step::End(Status::internal(format!("server: {why}")));
    match op {
        Op::Req(want) => match requests.next().await {
            Some(Ok(r)) if r.name == want => Step::Continue,
            other => internal(format!("Recv() = {other:?}; want {want}")),
        },
        Op::Attempts(n) if previous == Some(n) => Step::Continue,
        Op::Attempts(n) => internal(format!("grpc-previous-rpc-attempts = {previous:?}; want {n}")),
        Op::Hdr => Step::Respond(None),
        Op::Res(m) => Step::Respond(Some(HelloReply { message: m.into(), created_at: None })),
        Op::Fail(code) => Step::End(fail(code as i32, pushback)),
        Op::CloseSend => match requests.next().await {
            None => Step::Continue,
            other => internal(format!("Recv() = {other:?}; want the end")),
        },
        Op::Pushback(v) => {
            pushback.push(v.to_owned());
            Step::Continue
        }
    }
}

/// The greeter's spec, with a server limited to `streams` concurrent
/// streams per connection.
fn limited(streams: u32) -> &'static ServiceSpec {
    let spec = greeter_svc::SERVICE;
    Box::leak(Box::new(ServiceSpec { server: ServerSpec { max_concurrent_streams: streams, ..spec.server }, ..spec }))
}

/// The greeter's spec without its rate limits (500 calls per second per
/// client address): the balancing tests send thousands of calls a second
/// from one address, as fast as the machine allows.
fn unlimited() -> &'static ServiceSpec {
    let spec = greeter_svc::SERVICE;
    let methods: Vec<MethodSpec> = spec.methods.iter().map(|m| MethodSpec { rate_limit: None, ..*m }).collect();
    Box::leak(Box::new(ServiceSpec { methods: Box::leak(methods.into_boxed_slice()), ..spec }))
}

struct Running {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(spec: &'static ServiceSpec, service: Arc<Faulty>) -> Running {
    serve_any(spec, Fault(service)).await
}

/// Serves `service` on 127.0.0.1:0 with `spec`, quietly.
async fn serve_any<T: Greeter>(spec: &'static ServiceSpec, service: T) -> Running {
    let config = Config {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        shutdown_grace: Duration::from_millis(200),
    };
    let quiet = svc_runtime::log::Logger::new(svc_runtime::log::Level::Warn, true);
    let bound = Server::with_config(spec, config).logger(quiet).bind().await.expect("bind");
    let addr = bound.grpc_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(greeter_svc::server(service), async {
        let _ = stopped.await;
    }));
    Running { addr, stop: Some(stop) }
}

fn policy(max_attempts: u32, codes: &'static [Code]) -> RetrySpec {
    RetrySpec {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        backoff_multiplier: 1.0,
        retryable_codes: codes,
    }
}

fn hello() -> HelloRequest {
    HelloRequest { name: "a".into() }
}

fn with_behavior(behavior: &str) -> Request<HelloRequest> {
    let mut r = Request::new(hello());
    r.metadata_mut().insert("rpc-behavior", behavior.parse().expect("ascii"));
    r
}

/// grpc-go's TestRetryUnary: the server answers by call index, the client
/// retries ALREADY_EXISTS up to 4 attempts.
#[tokio::test]
async fn grpc_go_retry_unary_table() {
    let faulty = Arc::new(Faulty::default());
    {
        // Calls 0, 2, 5 succeed; 6, 8, 11 fail INTERNAL; the rest ALREADY_EXISTS.
        let mut script = faulty.script.lock().expect("script");
        for i in 0..16 {
            script.push_back(match i {
                0 | 2 | 5 => Code::Ok,
                6 | 8 | 11 => Code::Internal,
                _ => Code::AlreadyExists,
            });
        }
    }
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let mut client = greeter_svc::Client::builder(&running.addr)
        .retry(policy(4, &[Code::AlreadyExists]))
        .build()
        .await
        .expect("connect");
    let table = [
        (Code::Ok, 0),
        (Code::Ok, 2),
        (Code::Ok, 5),
        (Code::Internal, 6),
        (Code::Internal, 8),
        (Code::Internal, 11),
        (Code::AlreadyExists, 15),
    ];
    for (case, (code, count)) in table.into_iter().enumerate() {
        let got = client.say_hello(hello()).await.map_or_else(|s| s.code(), |_| Code::Ok);
        assert_eq!(got, code, "case {case}");
        assert_eq!(faulty.calls.load(Ordering::Relaxed), count + 1, "case {case}: server calls");
    }
}

/// grpc-go's TestRetryThrottling: maxTokens 10, tokenRatio 0.5.
#[tokio::test]
async fn grpc_go_retry_throttling_table() {
    let faulty = Arc::new(Faulty::default());
    {
        let mut script = faulty.script.lock().expect("script");
        for i in 0..18 {
            let ok = matches!(i, 0 | 3 | 6 | 10 | 11 | 12 | 13 | 14 | 16 | 18);
            script.push_back(if ok { Code::Ok } else { Code::Unavailable });
        }
    }
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let mut client = greeter_svc::Client::builder(&running.addr)
        .retry(policy(4, &[Code::Unavailable]))
        .retry_throttling(Some(RetryThrottlingSpec { max_tokens: 10, token_ratio: 0.5 }))
        .build()
        .await
        .expect("connect");
    let table = [
        (Code::Ok, 0),
        (Code::Ok, 3),
        (Code::Ok, 6),
        (Code::Unavailable, 8),
        (Code::Unavailable, 9),
        (Code::Ok, 10),
        (Code::Ok, 11),
        (Code::Ok, 12),
        (Code::Ok, 13),
        (Code::Ok, 14),
        (Code::Ok, 16),
        (Code::Unavailable, 17),
    ];
    for (case, (code, count)) in table.into_iter().enumerate() {
        let got = client.say_hello(hello()).await.map_or_else(|s| s.code(), |_| Code::Ok);
        assert_eq!(got, code, "case {case}");
        assert_eq!(faulty.calls.load(Ordering::Relaxed), count + 1, "case {case}: server calls");
    }
}

/// grpc-go's TestRetryStreaming cases, on a method streaming both ways.
#[tokio::test]
async fn grpc_go_retry_streaming_table() {
    use Op::*;
    let unavailable = Code::Unavailable;
    // (description, server steps, requests the client sends (None: it
    // does not close its side), replies expected, final code)
    let table: Vec<StreamCase> = vec![
        ("non-retryable error code", vec![Req("1"), Fail(Code::Internal)], vec!["1"], false, vec![], Code::Internal),
        (
            "one retry necessary",
            vec![Req("1"), Fail(unavailable), Req("1"), Attempts(1), Res("1")],
            vec!["1"],
            false,
            vec!["1"],
            Code::Ok,
        ),
        (
            "exceed max attempts (4); check attempts header on server",
            vec![
                Req("1"),
                Fail(unavailable),
                Req("1"),
                Attempts(1),
                Fail(unavailable),
                Attempts(2),
                Req("1"),
                Fail(unavailable),
                Attempts(3),
                Req("1"),
                Fail(unavailable),
            ],
            vec!["1"],
            false,
            vec![],
            unavailable,
        ),
        (
            "multiple requests",
            vec![Req("1"), Req("2"), Fail(unavailable), Req("1"), Req("2"), Res("5")],
            vec!["1", "2"],
            false,
            vec!["5"],
            Code::Ok,
        ),
        (
            "no retry after receiving",
            vec![Req("1"), Fail(unavailable), Req("1"), Res("3"), Fail(unavailable)],
            vec!["1"],
            false,
            vec!["3"],
            unavailable,
        ),
        ("no retry after header", vec![Req("1"), Hdr, Fail(unavailable)], vec!["1"], false, vec![], unavailable),
        (
            "replaying close send",
            vec![
                Req("1"),
                Req("2"),
                CloseSend,
                Fail(unavailable),
                Req("1"),
                Req("2"),
                CloseSend,
                Res("1"),
                Res("3"),
                Res("5"),
            ],
            vec!["1", "2"],
            true,
            vec!["1", "3", "5"],
            Code::Ok,
        ),
        (
            "negative server pushback - no retry",
            vec![Req("1"), Pushback("-1"), Fail(unavailable)],
            vec!["1"],
            false,
            vec![],
            unavailable,
        ),
        (
            "non-numeric server pushback - no retry",
            vec![Req("1"), Pushback("xxx"), Fail(unavailable)],
            vec!["1"],
            false,
            vec![],
            unavailable,
        ),
        (
            "multiple server pushback values - no retry",
            vec![Req("1"), Pushback("100"), Pushback("10"), Fail(unavailable)],
            vec!["1"],
            false,
            vec![],
            unavailable,
        ),
        (
            "1s server pushback - delayed retry",
            vec![Req("1"), Pushback("1000"), Fail(unavailable), Req("1"), Res("2")],
            vec!["1"],
            false,
            vec!["2"],
            Code::Ok,
        ),
    ];
    let faulty = Arc::new(Faulty::default());
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let client = greeter_svc::Client::builder(&running.addr)
        .retry(policy(4, &[Code::Unavailable]))
        .build()
        .await
        .expect("connect");
    for (desc, ops, requests, close, replies, code) in table {
        let steps = ops.len();
        *faulty.ops.lock().expect("ops") = (ops, 0);
        let started = Instant::now();
        let (tx, rx) = tokio::sync::mpsc::channel::<HelloRequest>(8);
        for r in &requests {
            tx.send(HelloRequest { name: (*r).into() }).await.expect("queued");
        }
        // The client keeps its side open unless the case closes it.
        let keep = if close {
            drop(tx);
            None
        } else {
            Some(tx)
        };
        let mut client = client.clone();
        let outcome = client.chat(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
        let (got, end) = match outcome {
            Err(status) => (Vec::new(), status.code()),
            Ok(response) => {
                let mut stream = response.into_inner();
                let mut got = Vec::new();
                let mut end = Code::Ok;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(reply) => {
                            got.push(reply.message);
                            if got.len() == replies.len() && !close && code == Code::Ok {
                                break;
                            }
                        }
                        Err(status) => {
                            end = status.code();
                            break;
                        }
                    }
                }
                (got, end)
            }
        };
        drop(keep);
        assert_eq!(got, replies, "{desc}: replies");
        assert_eq!(end, code, "{desc}: final code");
        assert_eq!(faulty.ops.lock().expect("ops").1, steps, "{desc}: server steps run");
        if desc.starts_with("1s server pushback") {
            assert!(started.elapsed() >= Duration::from_secs(1), "{desc}: waited {:?}", started.elapsed());
        }
    }
}

/// UNAVAILABLE twice then OK: exactly three attempts, each retry after a
/// backoff inside gRFC A6's band for the annotated policy (50 ms ×2).
#[tokio::test]
async fn unavailable_n_times_then_ok_takes_n_plus_one_attempts_within_the_jitter_band() {
    let faulty = Arc::new(Faulty::default());
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let mut client = greeter_svc::Client::connect(&running.addr).await.expect("connect");
    let annotated = greeter_svc::SERVICE.methods[0].retry.expect("SayHello has a retry policy");
    assert_eq!(annotated.initial_backoff, Duration::from_millis(50));
    for round in 0..5 {
        faulty.seen.lock().expect("seen").clear();
        client.say_hello(with_behavior("error-code-14,succeed-on-retry-attempt-2")).await.expect("third attempt");
        let seen = faulty.seen.lock().expect("seen").clone();
        assert_eq!(seen.len(), 3, "round {round}: {seen:?}");
        assert_eq!(seen.iter().map(|s| s.previous).collect::<Vec<_>>(), [None, Some(1), Some(2)]);
        // Retry n waits uniformly in [0, min(50ms * 2^(n-1), 500ms)); the
        // rest of the gap is the call itself on a loaded machine.
        for (n, pair) in seen.windows(2).enumerate() {
            let gap = pair[1].at - pair[0].at;
            let bound = Duration::from_millis(50 << n);
            assert!(gap < bound + Duration::from_millis(40), "round {round}, retry {}: {gap:?}", n + 1);
        }
        assert!(seen.iter().all(|s| s.deadline.is_some()), "every attempt carries grpc-timeout");
    }
}

#[tokio::test]
async fn non_retryable_codes_are_never_retried() {
    let faulty = Arc::new(Faulty::default());
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let mut client = greeter_svc::Client::connect(&running.addr).await.expect("connect");
    for code in [3, 5, 7, 9, 13] {
        faulty.seen.lock().expect("seen").clear();
        let status = client.say_hello(with_behavior(&format!("error-code-{code}"))).await.expect_err("fails");
        assert_eq!(status.code() as i32, code);
        assert_eq!(faulty.seen.lock().expect("seen").len(), 1, "code {code} was retried");
    }
}

#[tokio::test]
async fn pushback_is_honoured_and_attempts_are_capped_at_five() {
    let faulty = Arc::new(Faulty::default());
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let mut client = greeter_svc::Client::builder(&running.addr)
        .retry(policy(9, &[Code::Unavailable]))
        .build()
        .await
        .expect("connect");
    client.say_hello(with_behavior("error-code-14,pushback-300,succeed-on-retry-attempt-1")).await.expect("retried");
    let seen = faulty.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(300), "{:?}", seen[1].at - seen[0].at);

    faulty.seen.lock().expect("seen").clear();
    let status = client.say_hello(with_behavior("error-code-14")).await.expect_err("always fails");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(faulty.seen.lock().expect("seen").len(), 5, "max_attempts 9 is capped at 5");
}

fn hedging(delay_ms: u64, non_fatal: &'static [Code]) -> HedgingSpec {
    HedgingSpec { max_attempts: 3, delay: Duration::from_millis(delay_ms), non_fatal_codes: non_fatal }
}

/// The `q` quantile of `samples` (sorted in place).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// A server whose every tenth call takes 500 ms: without hedging the p99
/// is the slow calls'; with a 50 ms hedging delay it is under the delay
/// plus the fast path's p99 (10 ms allowed for the timer firing late on a
/// loaded machine).
#[tokio::test]
async fn hedging_cuts_the_p99_of_a_server_with_slow_calls() {
    let faulty = Arc::new(Faulty::default());
    faulty.slow_every.store(10, Ordering::Relaxed);
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let timed = |mut client: greeter_svc::Client| async move {
        let mut times = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            client.say_hello(hello()).await.expect("call");
            times.push(started.elapsed());
        }
        times
    };
    let plain = greeter_svc::Client::builder(&running.addr).build().await.expect("connect");
    let mut without = timed(plain).await;
    let mut fast: Vec<Duration> = without.iter().copied().filter(|t| *t < Duration::from_millis(400)).collect();
    let fast_p99 = quantile(&mut fast, 0.99);
    let slow_p99 = quantile(&mut without, 0.99);
    assert!(slow_p99 >= Duration::from_millis(500), "the slow calls are real: {slow_p99:?}");

    let delay = Duration::from_millis(50);
    let hedged = greeter_svc::Client::builder(&running.addr).hedging(hedging(50, &[])).build().await.expect("connect");
    faulty.seen.lock().expect("seen").clear();
    let before = faulty.calls.load(Ordering::Relaxed);
    let mut with = timed(hedged).await;
    let hedged_p99 = quantile(&mut with, 0.99);
    let sent = faulty.calls.load(Ordering::Relaxed) - before;
    println!(
        "p99 without hedging {slow_p99:?}, with a 50 ms hedging delay {hedged_p99:?} (fast path p99 {fast_p99:?}); 200 calls sent {sent} attempts"
    );
    assert!(hedged_p99 < delay + fast_p99 + Duration::from_millis(10), "{hedged_p99:?}");
    let hedges = faulty.seen.lock().expect("seen").iter().filter(|s| s.previous == Some(1)).count();
    assert!(hedges >= 15, "the slow calls were hedged, with grpc-previous-rpc-attempts: {hedges}");
    assert!(sent < 260, "copies go only after the delay: {sent} attempts for 200 calls");
}

/// After a non-fatal code the next copy goes at once; a fatal code ends
/// the call at once; every copy failing non-fatally ends with the last.
#[tokio::test]
async fn hedging_goes_on_after_non_fatal_codes_and_stops_at_fatal_ones() {
    let faulty = Arc::new(Faulty::default());
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let mut client = greeter_svc::Client::builder(&running.addr)
        .hedging(hedging(1000, &[Code::Unavailable]))
        .build()
        .await
        .expect("connect");
    let started = Instant::now();
    let status = client.say_hello(with_behavior("error-code-14")).await.expect_err("every copy fails");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(faulty.seen.lock().expect("seen").len(), 3, "max_attempts copies");
    assert!(started.elapsed() < Duration::from_millis(500), "without waiting the delay: {:?}", started.elapsed());

    faulty.seen.lock().expect("seen").clear();
    client.say_hello(with_behavior("error-code-14,succeed-on-retry-attempt-1")).await.expect("second copy");
    assert_eq!(faulty.seen.lock().expect("seen").len(), 2);

    faulty.seen.lock().expect("seen").clear();
    let status = client.say_hello(with_behavior("error-code-5")).await.expect_err("fatal");
    assert_eq!(status.code(), Code::NotFound);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(faulty.seen.lock().expect("seen").len(), 1, "a fatal code sends no more copies");

    faulty.seen.lock().expect("seen").clear();
    let status = client.say_hello(with_behavior("error-code-14,pushback-300")).await.expect_err("fails");
    assert_eq!(status.code(), Code::Unavailable);
    let seen = faulty.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(300), "pushback delays the next copy");
}

/// Three servers, one failing every call: outlier detection (gRFC A50
/// failure percentage) ejects it, so calls stop failing; once it recovers
/// and its ejection time is over it takes its share again.
#[tokio::test]
async fn a_failing_server_is_ejected_and_readmitted_after_it_recovers() {
    let mut servers = Vec::new();
    let mut running = Vec::new();
    for _ in 0..3 {
        let faulty = Arc::new(Faulty::default());
        running.push(serve(&greeter_svc::SERVICE, faulty.clone()).await);
        servers.push(faulty);
    }
    servers[2].failing.store(true, Ordering::Relaxed);
    let target = format!("ipv4:{}", running.iter().map(|r| r.addr.as_str()).collect::<Vec<_>>().join(","));
    let detection = OutlierDetectionSpec {
        interval: Duration::from_millis(200),
        base_ejection_time: Duration::from_secs(1),
        max_ejection_time: Duration::from_secs(10),
        max_ejection_percent: 10,
        success_rate: None,
        failure_percentage: Some(FailurePercentageEjectionSpec {
            threshold: 85,
            enforcement_percentage: 100,
            minimum_hosts: 3,
            request_volume: 10,
        }),
    };
    // One attempt per call (no retries to hide the failures).
    let client = greeter_svc::Client::builder(&target)
        .load_balancing("round_robin")
        .retry(policy(1, &[]))
        .outlier_detection(Some(detection))
        .build()
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Calls for `d`: (succeeded, failed, calls each server took).
    let run = |d: Duration| {
        let (client, servers) = (client.clone(), servers.clone());
        async move {
            let before: Vec<usize> = servers.iter().map(|s| s.calls.load(Ordering::Relaxed)).collect();
            let until = Instant::now() + d;
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..4 {
                let mut client = client.clone();
                workers.spawn(async move {
                    let (mut ok, mut failed) = (0, 0);
                    while Instant::now() < until {
                        match client.say_hello(hello()).await {
                            Ok(_) => ok += 1,
                            Err(_) => failed += 1,
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    (ok, failed)
                });
            }
            let (mut ok, mut failed) = (0, 0);
            while let Some(done) = workers.join_next().await {
                let (o, f) = done.expect("worker");
                ok += o;
                failed += f;
            }
            let took: Vec<usize> =
                servers.iter().zip(before).map(|(s, b)| s.calls.load(Ordering::Relaxed) - b).collect();
            (ok, failed, took)
        }
    };
    let (_, failed, took) = run(Duration::from_millis(600)).await;
    println!("failing third server, first 600 ms: {failed} failed calls, calls per server {took:?}");
    assert!(failed > 0 && took[2] > 0, "the failing server took calls before it was found out");
    let (ok, failed, took) = run(Duration::from_millis(500)).await;
    println!("while ejected: {ok} ok, {failed} failed, calls per server {took:?}");
    assert_eq!((failed, took[2]), (0, 0), "the ejected server gets no calls: {took:?}");
    let first = took[0] as f64 / (took[0] + took[1]) as f64;
    assert!((first - 0.5).abs() < 0.1, "the others share its calls evenly: {took:?}");
    servers[2].failing.store(false, Ordering::Relaxed);
    // Readmitted within its ejection time (at most 2 s, had it been
    // ejected twice) plus an interval.
    let mut readmitted = false;
    for _ in 0..10 {
        let (_, _, took) = run(Duration::from_millis(500)).await;
        if took[2] > 0 {
            readmitted = true;
            break;
        }
    }
    assert!(readmitted, "the recovered server never got calls again");
    let (ok, failed, took) = run(Duration::from_millis(1000)).await;
    println!("recovered: {ok} ok, {failed} failed, calls per server {took:?}");
    assert_eq!(failed, 0);
    let share = took[2] as f64 / took.iter().sum::<usize>() as f64;
    assert!((share - 1.0 / 3.0).abs() < 0.1, "the recovered server takes its share again: {took:?}");
}

/// A deadline bounds the retries: no attempt starts after it.
#[tokio::test]
async fn retries_never_go_past_the_deadline() {
    let faulty = Arc::new(Faulty::default());
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let mut client = greeter_svc::Client::builder(&running.addr)
        .retry(RetrySpec { initial_backoff: Duration::from_millis(400), ..policy(5, &[Code::Unavailable]) })
        .build()
        .await
        .expect("connect");
    let mut request = with_behavior("error-code-14");
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.say_hello(request).await.expect_err("fails");
    assert!(matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded), "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(600), "{:?}", started.elapsed());
}

/// 1,000 concurrent calls through one client with `pool_size` 1 against a
/// server allowing 100 streams per connection: no call fails, because the
/// pool opens connections as the open ones fill.
#[tokio::test]
async fn a_busy_client_opens_connections_past_the_servers_stream_limit() {
    let faulty = Arc::new(Faulty::default());
    *faulty.delay.lock().expect("delay") = Duration::from_millis(100);
    let running = serve(limited(100), faulty.clone()).await;
    let channel: Channel = Builder::new(limited(100), &running.addr).pool_size(1).build().await.expect("connect");
    let client = GreeterClient::new(channel.clone());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let mut client = client.clone();
        calls.spawn(async move { client.say_hello(hello()).await.map(drop) });
    }
    let mut errors = Vec::new();
    while let Some(result) = calls.join_next().await {
        if let Err(status) = result.expect("task") {
            errors.push(status);
        }
    }
    assert!(errors.is_empty(), "{} calls failed, first: {:?}", errors.len(), errors.first());
    assert_eq!(faulty.calls.load(Ordering::Relaxed), 1000);
    let opened = channel.connections_opened();
    println!("pool_size 1, 1000 concurrent calls, server limit 100 streams: {opened} connections opened");
    assert!(opened >= 5, "the pool grew to carry the calls without queueing: {opened}");
}

/// Three servers, `delays` their handler times; `calls` calls with
/// `concurrency` in flight through one client of `policy`; the calls each
/// server took.
async fn spread(policy: &str, delays: [u64; 3], calls: usize, concurrency: usize) -> Vec<usize> {
    spread_with(policy, false, delays, calls, concurrency).await
}

async fn spread_with(policy: &str, ewma: bool, delays: [u64; 3], calls: usize, concurrency: usize) -> Vec<usize> {
    let mut servers = Vec::new();
    let mut running = Vec::new();
    for delay in delays {
        let faulty = Arc::new(Faulty::default());
        *faulty.delay.lock().expect("delay") = Duration::from_millis(delay);
        running.push(serve(unlimited(), faulty.clone()).await);
        servers.push(faulty);
    }
    let target = format!("ipv4:{}", running.iter().map(|r| r.addr.as_str()).collect::<Vec<_>>().join(","));
    let builder = greeter_svc::Client::builder(&target).load_balancing(policy);
    let builder = if ewma { builder.peak_ewma() } else { builder };
    let client = builder.build().await.expect("connect");
    // All three connected before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (mut client, next) = (client.clone(), next.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                client.say_hello(hello()).await.expect("call");
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("worker");
    }
    servers.iter().map(|s| s.calls.load(Ordering::Relaxed)).collect()
}

#[tokio::test]
async fn round_robin_and_p2c_spread_calls_evenly() {
    for policy in ["round_robin", "p2c"] {
        let counts = spread(policy, [0, 0, 0], 10_000, 32).await;
        let total: usize = counts.iter().sum();
        assert_eq!(total, 10_000);
        for c in &counts {
            let share = *c as f64 / total as f64;
            assert!((share - 1.0 / 3.0).abs() <= 0.1 / 3.0, "{policy}: {counts:?}");
        }
        println!("{policy}: 10,000 calls over three servers: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_sends_few_calls_to_a_server_ten_times_slower() {
    for (ewma, concurrency) in [(false, 16), (true, 16)] {
        let counts = spread_with("p2c", ewma, [5, 5, 50], 3_000, concurrency).await;
        let total: usize = counts.iter().sum();
        let slow = counts[2] as f64 / total as f64;
        println!(
            "p2c (peak EWMA {ewma}, {concurrency} in flight), third server 10x slower: {counts:?} ({:.1}% to the slow one)",
            slow * 100.0
        );
        // By calls in flight alone the slow server keeps about twice the
        // calls of a fast one (~10 %); weighing by response time leaves it
        // a few percent.
        let bound = if ewma { 0.10 } else { 0.15 };
        assert!(slow < bound, "peak EWMA {ewma}: {counts:?}");
    }
}

#[tokio::test]
async fn pick_first_sends_everything_to_the_first_reachable_endpoint() {
    let counts = spread("pick_first", [0, 0, 0], 300, 8).await;
    assert_eq!(counts, [300, 0, 0]);
}

#[tokio::test]
async fn bad_input_gets_errors_naming_what_and_where() {
    let e = |r: Result<greeter_svc::Client, svc_runtime::Error>| match r {
        Ok(_) => panic!("built a client where an error was due"),
        Err(e) => e.to_string(),
    };
    // Malformed targets name the target and the accepted forms.
    let msg = e(greeter_svc::Client::connect("http://greeter:50051").await);
    assert!(msg.contains("client of http://greeter:50051") && msg.contains("accepted forms"), "{msg}");
    let msg = e(greeter_svc::Client::connect("ipv4:1.2.3:50051").await);
    assert!(msg.contains("\"1.2.3\" is not an IP address"), "{msg}");
    // Unknown policies.
    let msg = e(greeter_svc::Client::builder("127.0.0.1:1").load_balancing("least_loaded").build().await);
    assert!(msg.contains("\"least_loaded\" is not a policy"), "{msg}");
    // An unreachable endpoint: the address and the OS error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let msg = e(greeter_svc::Client::connect(&closed.to_string()).await);
    assert!(msg.contains(&format!("no endpoint of {closed} is reachable ({closed}: cannot connect")), "{msg}");
    // A listener that never completes the HTTP/2 handshake: bounded by the
    // connect timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let started = Instant::now();
    let msg = e(greeter_svc::Client::builder(&addr).connect_timeout(Duration::from_millis(300)).build().await);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(msg.contains("within the connect timeout of 300ms"), "{msg}");
    drop(silent);
    // Bad TLS files name the file.
    let tls = svc_runtime::client::ClientTls::default().ca_file("/nonexistent/ca.pem");
    let msg = e(greeter_svc::Client::builder("127.0.0.1:1").tls(tls).build().await);
    assert!(msg.contains("CA file /nonexistent/ca.pem"), "{msg}");
    // An unresolvable name.
    let msg = e(greeter_svc::Client::builder("no-such-host.invalid:50051")
        .connect_timeout(Duration::from_secs(3))
        .build()
        .await);
    assert!(msg.contains("no-such-host.invalid"), "{msg}");
}

/// A lazy client waits for its first connection within the call's
/// deadline, and a server that comes back later gets calls again.
#[tokio::test]
async fn calls_go_only_to_connected_endpoints_and_return_after_a_restart() {
    let faulty = Arc::new(Faulty::default());
    let first = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let addr = first.addr.clone();
    let mut client = greeter_svc::Client::connect(&addr).await.expect("connect");
    client.say_hello(hello()).await.expect("first server");
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = client.say_hello(hello()).await.expect_err("server gone");
    assert!(matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded), "{status:?}");
    // The same address serves again: the client reconnects (within its
    // backoff) without being rebuilt.
    let config = Config {
        grpc_addr: addr.parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        shutdown_grace: Duration::from_millis(200),
    };
    let again = Arc::new(Faulty::default());
    let quiet = svc_runtime::log::Logger::new(svc_runtime::log::Level::Warn, true);
    let bound = Server::with_config(&greeter_svc::SERVICE, config).logger(quiet).bind().await.expect("rebind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = greeter_svc::server(Fault(again.clone()));
    tokio::spawn(bound.serve(server, async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client.say_hello(hello()).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the client never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.calls.load(Ordering::Relaxed) >= 1);
    let _ = stop.send(());
}

/// `grpc-timeout`, `traceparent` and `x-request-id` as a hop received them.
type Headers = (Option<String>, Option<String>, Option<String>);

/// A hop of the propagation chain: calls `next` (if any) from inside its
/// handler, with no code for the deadline, trace or request id; the last
/// one records what it received.
#[derive(Clone)]
struct Hop {
    next: Option<greeter_svc::Client>,
    received: Arc<Mutex<Option<Headers>>>,
}

#[tonic::async_trait]
impl Greeter for Hop {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let header = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let seen = (header("grpc-timeout"), header("traceparent"), header("x-request-id"));
        match &self.next {
            Some(next) => next.clone().say_hello(HelloRequest { name: "next".into() }).await,
            None => {
                *self.received.lock().expect("received") = Some(seen);
                Ok(Response::new(HelloReply { message: "end".into(), created_at: None }))
            }
        }
    }

    type SayHelloStreamStream = ReplyStream;

    async fn say_hello_stream(&self, _: Request<HelloStreamRequest>) -> Result<Response<ReplyStream>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn collect_hellos(&self, _: Request<Streaming<HelloRequest>>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("not used"))
    }

    type ChatStream = ReplyStream;

    async fn chat(&self, _: Request<Streaming<HelloRequest>>) -> Result<Response<ReplyStream>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

async fn serve_hop(hop: Hop) -> Running {
    serve_any(&greeter_svc::SERVICE, hop).await
}

/// A calls B calls C, all generated: C sees a deadline below the one A's
/// caller set, the same trace id and the same request id.
#[tokio::test]
async fn deadline_trace_and_request_id_flow_through_a_chain_of_services() {
    let received = Arc::new(Mutex::new(None));
    let c = serve_hop(Hop { next: None, received: received.clone() }).await;
    let to_c = greeter_svc::Client::connect(&c.addr).await.expect("connect to C");
    let b = serve_hop(Hop { next: Some(to_c), received: Arc::default() }).await;
    let to_b = greeter_svc::Client::connect(&b.addr).await.expect("connect to B");
    let a = serve_hop(Hop { next: Some(to_b), received: Arc::default() }).await;
    let mut caller = greeter_svc::Client::connect(&a.addr).await.expect("connect to A");

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = Request::new(hello());
    request.set_timeout(Duration::from_millis(900));
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().expect("ascii"));
    request.metadata_mut().insert("x-request-id", "chain-42".parse().expect("ascii"));
    caller.say_hello(request).await.expect("the chain answers");

    let (timeout, traceparent, request_id) = received.lock().expect("received").clone().expect("C was called");
    let timeout = timeout.expect("C got a grpc-timeout");
    let us: u64 = timeout.strip_suffix('u').expect("microseconds").parse().expect("number");
    // Without propagation C would get SayHello's annotated 2 s.
    assert!(us < 900_000, "C's deadline {us}us is not below the caller's 900ms");
    let traceparent = traceparent.expect("C got a traceparent");
    assert_eq!(traceparent.split('-').nth(1), Some(trace_id), "{traceparent}");
    assert_ne!(traceparent.split('-').nth(2), Some("00f067aa0ba902b7"), "C's parent is B's span, not the caller's");
    assert_eq!(request_id.as_deref(), Some("chain-42"));
}

/// A static token goes out as the bearer token of every call, retries
/// included.
#[tokio::test]
async fn a_static_token_is_sent_with_every_attempt() {
    let faulty = Arc::new(Faulty::default());
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let token = svc_runtime::client::TokenSource::Static("abc.def".into());
    let mut client = greeter_svc::Client::builder(&running.addr).token(token).build().await.expect("connect");
    client.say_hello(with_behavior("error-code-14,succeed-on-retry-attempt-1")).await.expect("retried");
    let seen = faulty.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.authorization.as_deref() == Some("Bearer abc.def")), "{seen:?}");
}

/// A TCP relay to `to` on 127.0.0.1:0, counting the connections open
/// through it (a connection counts until both sides have closed it).
async fn relay(to: &str) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let to = to.to_owned();
    let live = Arc::new(AtomicUsize::new(0));
    let counted = live.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let live = counted.clone();
            let to = to.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await else { return };
                live.fetch_add(1, Ordering::SeqCst);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                live.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, live)
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < give_up, "{what} within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Idle mode: quiet for the idle timeout, the client closes its
/// connections (the relay sees them end); the next call opens one again
/// and succeeds; calls in flight keep the client from going idle.
#[tokio::test]
async fn an_idle_client_closes_its_connections_and_the_next_call_reopens_them() {
    let faulty = Arc::new(Faulty::default());
    let running = serve(&greeter_svc::SERVICE, faulty.clone()).await;
    let (addr, live) = relay(&running.addr).await;
    let idle = Duration::from_millis(300);
    let channel: Channel = Builder::new(&greeter_svc::SERVICE, &addr)
        .pool_size(2)
        .idle_timeout(Some(idle))
        .build()
        .await
        .expect("connect");
    let mut client = GreeterClient::new(channel.clone());
    client.say_hello(hello()).await.expect("first call");
    until("both connections open", || live.load(Ordering::SeqCst) == 2).await;
    assert_eq!((channel.connections_open(), channel.connections_opened()), (2, 2));

    // Calls more often than the timeout: never idle.
    for _ in 0..8 {
        tokio::time::sleep(idle / 3).await;
        client.say_hello(hello()).await.expect("busy call");
    }
    assert!(!channel.is_idle());
    assert_eq!(channel.connections_opened(), 2, "no reconnect while busy");

    // A call in flight for longer than the timeout keeps it busy too.
    client.say_hello(with_behavior("sleep-700")).await.expect("slow call");
    assert!(!channel.is_idle(), "a call in flight is activity");
    assert_eq!(channel.connections_opened(), 2);

    // Quiet: the connections really close, on the wire.
    until("idle mode", || channel.is_idle()).await;
    until("the relay's connections closed", || live.load(Ordering::SeqCst) == 0).await;
    assert_eq!(channel.connections_open(), 0);

    // The next call wakes it, with no error.
    let woke = Instant::now();
    client.say_hello(hello()).await.expect("call after idle");
    println!("first call after idle mode took {:?}", woke.elapsed());
    assert!(!channel.is_idle());
    until("reconnected", || live.load(Ordering::SeqCst) == 2).await;
    assert_eq!(channel.connections_opened(), 4);
    assert_eq!(faulty.calls.load(Ordering::Relaxed), 11);
}

/// A greeter whose streams send one reply and then nothing, ever, under a
/// bare tonic server (no deadline middleware): only the client can end
/// such a call.
#[derive(Clone)]
struct Stalling;

#[tonic::async_trait]
impl Greeter for Stalling {
    async fn say_hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("not used"))
    }

    type SayHelloStreamStream = ReplyStream;

    async fn say_hello_stream(&self, _: Request<HelloStreamRequest>) -> Result<Response<ReplyStream>, Status> {
        let first = HelloReply { message: "first".into(), created_at: None };
        let stalled = tokio_stream::once(Ok(first)).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(stalled)))
    }

    async fn collect_hellos(&self, _: Request<Streaming<HelloRequest>>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("not used"))
    }

    type ChatStream = ReplyStream;

    async fn chat(&self, _: Request<Streaming<HelloRequest>>) -> Result<Response<ReplyStream>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

/// The deadline holds after the response has begun: a stream whose server
/// stops sending fails with DEADLINE_EXCEEDED when the deadline passes.
#[tokio::test]
async fn the_deadline_ends_a_stream_the_server_stopped_sending_on() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc_tests::default::greeter::v1::greeter_server::GreeterServer::new(Stalling))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = greeter_svc::Client::connect(&addr).await.expect("connect");
    let mut request = Request::new(HelloStreamRequest { name: "a".into(), count: 2, interval_ms: 0 });
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let mut stream = client.say_hello_stream(request).await.expect("the stream begins").into_inner();
    let first = stream.message().await.expect("a first reply");
    assert_eq!(first.map(|r| r.message).as_deref(), Some("first"));
    let next = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    let status = next.expect("the call ends within its deadline, not never").expect_err("the deadline ends the stream");
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(elapsed >= Duration::from_millis(290) && elapsed < Duration::from_millis(1500), "{elapsed:?}");
    server.abort();
}
