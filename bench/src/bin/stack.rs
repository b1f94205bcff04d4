//! The middleware's own cost, without the network: the echo service
//! called in-process on one thread, bare and behind the generated
//! server's whole default middleware (JWT with a cached token, a rate
//! limit that never trips, access records written to stderr), alternating
//! rounds; once more with access records off (`SVC_LOG=warn`). Prints
//! nanoseconds per call and ratios.
//!
//! usage: bench-stack [calls per round] [bare|full|quiet] 2>/dev/null
//!
//! With a configuration named, only that one runs (one round, no
//! comparison): for a profiler such as
//! `valgrind --tool=callgrind bench-stack 20000 full`.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use svc_bench::EchoImpl;
use svc_bench::proto::bench::v1::{echo_server::EchoServer, echo_svc};
use svc_runtime::tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

const SECRET: &str = "benchmark-secret-benchmark-secret-0123456789";
/// HS256 over `{"iss":"https://bench.test","aud":"bench","exp":4102444800,"sub":"bench"}`.
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2JlbmNoLnRlc3QiLCJhdWQiOiJiZW5jaCIsImV4cCI6NDEwMjQ0NDgwMCwic3ViIjoiYmVuY2gifQ.STYCXJSLZ2jUwqoUNdDsRLhYlG7UGDcQSMApk4A62R0";

fn request() -> http::Request<Body> {
    // gRPC frame: uncompressed, length 7, Msg { text: "hello" }.
    let frame = Bytes::from_static(b"\x00\x00\x00\x00\x07\x0a\x05hello");
    http::Request::builder()
        .method("POST")
        .uri("/bench.v1.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::new(http_body_util::Full::new(frame).map_err(|e| match e {})))
        .expect("request")
}

async fn call<S>(service: &mut S) -> usize
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Error: std::fmt::Debug,
{
    std::future::poll_fn(|cx| service.poll_ready(cx)).await.expect("ready");
    let response = service.call(request()).await.expect("response");
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]), "call failed");
    collected.to_bytes().len()
}

async fn round<S>(service: &mut S, calls: u32) -> f64
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let started = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(call(service).await);
    }
    started.elapsed().as_nanos() as f64 / f64::from(calls)
}

fn stack(level: svc_runtime::log::Level) -> svc_runtime::server::Stacked<EchoServer<EchoImpl>> {
    let spec = &echo_svc::SERVICE;
    let jwt = spec.auth.as_ref().expect("the benchmark service has JWT rules");
    let verifier =
        svc_runtime::auth::Verifier::from_lookup(jwt, |k| (k == "SVC_JWT_SECRET").then(|| SECRET.to_owned()))
            .expect("key");
    svc_runtime::server::Stack::new(
        vec![(spec, Some(verifier))],
        svc_runtime::log::Logger::new(level, true),
        svc_runtime::metrics::Registry::new(&[spec]).forever(),
        svc_runtime::middleware::TraceLayer::new(),
    )
    .layer(EchoServer::new(EchoImpl))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let calls: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mut bare = EchoServer::new(EchoImpl);
    let mut full = stack(svc_runtime::log::Level::Info);
    let mut quiet = stack(svc_runtime::log::Level::Warn);
    match std::env::args().nth(2).as_deref() {
        None => {}
        Some(only) => {
            let ns = match only {
                "bare" => round(&mut bare, calls).await,
                "full" => round(&mut full, calls).await,
                "quiet" => round(&mut quiet, calls).await,
                other => {
                    eprintln!("bench-stack: unknown configuration {other:?}: expected bare, full or quiet");
                    std::process::exit(2);
                }
            };
            println!("{only}: {ns:.0} ns/call over {calls} calls");
            return;
        }
    }
    round(&mut bare, calls / 10).await;
    round(&mut full, calls / 10).await;
    round(&mut quiet, calls / 10).await;
    let (mut b, mut f, mut q) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        b.push(round(&mut bare, calls).await);
        f.push(round(&mut full, calls).await);
        q.push(round(&mut quiet, calls).await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, f, q) = (median(&mut b), median(&mut f), median(&mut q));
    println!("in-process, one thread, median of 5 rounds of {calls} calls");
    println!("bare service                    {b:8.0} ns/call");
    println!("full middleware                 {f:8.0} ns/call  (+{:.0} ns, {:.2}x)", f - b, f / b);
    println!("full middleware, no access log  {q:8.0} ns/call  (+{:.0} ns, {:.2}x)", q - b, q / b);
}
