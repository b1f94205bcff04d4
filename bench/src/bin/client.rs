//! Drives `Echo.Say` from one process for a while and prints one JSON line:
//! calls, errors, wall time and this process's CPU time.
//!
//! `bench-client ours|tonic TARGETS CONCURRENCY SECONDS`
//!
//! - `ours`: the generated client over `svc_runtime::client::Channel` (its
//!   pool, p2c over calls in flight, a retry policy for UNAVAILABLE, client
//!   metrics), TARGETS as a gRPC target (`ipv4:a:p,b:p`).
//! - `tonic`: a plain `tonic::transport::Channel` to one address, or
//!   `Channel::balance_list` over several (comma-separated `host:port`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use svc_bench::proto::bench::v1::echo_client::EchoClient;
use svc_bench::proto::bench::v1::{Msg, echo_svc};
use svc_runtime::codegen::RetrySpec;
use svc_runtime::tonic::{Code, transport};

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    // SC_CLK_TCK is 100 on Linux.
    ticks / 100.0
}

async fn run<T>(client: EchoClient<T>, concurrency: usize, seconds: f64) -> (u64, u64, f64, f64)
where
    T: svc_runtime::tonic::client::GrpcService<svc_runtime::tonic::body::Body> + Clone + Send + 'static,
    T::Future: Send,
    T::ResponseBody: svc_runtime::tonic::codegen::Body<Data = svc_runtime::tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as svc_runtime::tonic::codegen::Body>::Error: Into<svc_runtime::tonic::codegen::StdError> + Send,
{
    // Warm up: connections open, pools grown.
    let mut warm = client.clone();
    for _ in 0..200 {
        let _ = warm.say(Msg { text: "hello".into() }).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let cpu = cpu_seconds();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (mut client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.say(Msg { text: "hello".into() }).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), started.elapsed().as_secs_f64(), cpu_seconds() - cpu)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, targets, concurrency, seconds] = args.as_slice() else {
        return Err("usage: bench-client ours|tonic TARGETS CONCURRENCY SECONDS".into());
    };
    let concurrency: usize = concurrency.parse()?;
    let seconds: f64 = seconds.parse()?;
    let (ok, failed, wall, cpu) = match kind.as_str() {
        "ours" => {
            let retry = RetrySpec {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                backoff_multiplier: 2.0,
                retryable_codes: &[Code::Unavailable],
            };
            let client = echo_svc::Client::builder(targets).load_balancing("p2c").retry(retry).build().await?;
            run(client, concurrency, seconds).await
        }
        "tonic" => {
            let endpoints: Vec<transport::Endpoint> = targets
                .split(',')
                .map(|a| transport::Endpoint::from_shared(format!("http://{a}")))
                .collect::<Result<_, _>>()?;
            let channel = if endpoints.len() == 1 {
                endpoints[0].connect().await?
            } else {
                transport::Channel::balance_list(endpoints.into_iter())
            };
            run(EchoClient::new(channel), concurrency, seconds).await
        }
        other => return Err(format!("unknown client {other:?}: ours or tonic").into()),
    };
    println!(
        "{{\"client\":\"{kind}\",\"ok\":{ok},\"failed\":{failed},\"seconds\":{wall:.3},\"cpu_seconds\":{cpu:.3},\"calls_per_second\":{:.1},\"cpu_us_per_call\":{:.2}}}",
        ok as f64 / wall,
        cpu * 1e6 / ok.max(1) as f64
    );
    Ok(())
}
