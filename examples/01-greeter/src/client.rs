//! The greeter example's client: calls all four methods of
//! `greeter.v1.Greeter` through the generated client's pool, or (with
//! `--rate`) drives SayHello at a steady rate and prints what happened as
//! one JSON line.
//!
//! ```text
//! greeter-client [--target T] [--name NAME] [--gzip] [--pool-size N] [--policy P]
//!                [--ca FILE [--cert FILE --key FILE] [--server-name NAME]]
//!                [--rate CALLS_PER_SECOND --seconds S] [--dns-refresh SECONDS]
//! ```
//!
//! The target (default `$GREETER_TARGET`, else `127.0.0.1:50051`) is any
//! gRPC target: `host:port`, `dns:///host:port`,
//! `ipv4:10.0.0.1:50051,10.0.0.2:50051`, `unix:/path`.
#![deny(warnings)]

#[path = "../gen/mod.rs"]
mod generated;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use generated::greeter::v1::{HelloRequest, HelloStreamRequest, greeter_svc};
use svc_runtime::client::{ClientTls, Compression};
use tokio_stream::StreamExt;

struct Args {
    target: String,
    name: String,
    gzip: bool,
    pool_size: Option<usize>,
    policy: Option<String>,
    tls: Option<ClientTls>,
    rate: Option<f64>,
    seconds: f64,
    dns_refresh: Option<f64>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        target: std::env::var("GREETER_TARGET").unwrap_or_else(|_| "127.0.0.1:50051".to_owned()),
        name: "world".to_owned(),
        gzip: false,
        pool_size: None,
        policy: None,
        tls: None,
        rate: None,
        seconds: 5.0,
        dns_refresh: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let tls = |args: &mut Args| args.tls.take().unwrap_or_default();
        match flag.as_str() {
            "--target" => args.target = value()?,
            "--name" => args.name = value()?,
            "--gzip" => args.gzip = true,
            "--pool-size" => args.pool_size = Some(value()?.parse().map_err(|e| format!("--pool-size: {e}"))?),
            "--policy" => args.policy = Some(value()?),
            "--ca" => {
                let v = value()?;
                args.tls = Some(tls(&mut args).ca_file(v));
            }
            "--cert" | "--key" => {
                let v = value()?;
                let mut t = tls(&mut args);
                let (cert, key) = t.identity.take().unwrap_or_default();
                t.identity = Some(if flag == "--cert" { (v.into(), key) } else { (cert, v.into()) });
                args.tls = Some(t);
            }
            "--server-name" => {
                let v = value()?;
                args.tls = Some(tls(&mut args).server_name(v));
            }
            "--rate" => args.rate = Some(value()?.parse().map_err(|e| format!("--rate: {e}"))?),
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--dns-refresh" => {
                args.dns_refresh = Some(value()?.parse().map_err(|e| format!("--dns-refresh: {e}"))?);
            }
            other => return Err(format!("unknown flag {other}; see the comment at the top of src/client.rs")),
        }
    }
    Ok(args)
}

async fn connect(args: &Args) -> Result<greeter_svc::Client, svc_runtime::Error> {
    let mut builder = greeter_svc::Client::builder(&args.target);
    if args.gzip {
        builder = builder.compression(Some(Compression::Gzip));
    }
    if let Some(n) = args.pool_size {
        builder = builder.pool_size(n);
    }
    if let Some(p) = &args.policy {
        builder = builder.load_balancing(p);
    }
    if let Some(tls) = &args.tls {
        builder = builder.tls(tls.clone());
    }
    if let Some(seconds) = args.dns_refresh {
        builder = builder.dns_refresh(Duration::from_secs_f64(seconds));
    }
    builder.build().await
}

/// One call of each method, printed as it answers.
async fn every_method(client: &mut greeter_svc::Client, name: &str) -> Result<(), svc_runtime::tonic::Status> {
    let hello = |name: &str| HelloRequest { name: name.to_owned() };
    let reply = client.say_hello(hello(name)).await?.into_inner();
    println!("SayHello: {}", reply.message);
    let request = HelloStreamRequest { name: name.to_owned(), count: 3, interval_ms: 0 };
    let mut stream = client.say_hello_stream(request).await?.into_inner();
    while let Some(reply) = stream.next().await {
        println!("SayHelloStream: {}", reply?.message);
    }
    let names = tokio_stream::iter([hello("Ada"), hello("Grace"), hello(name)]);
    let reply = client.collect_hellos(names).await?.into_inner();
    println!("CollectHellos: {}", reply.message);
    let mut chat = client.chat(tokio_stream::iter([hello("Ada"), hello(name)])).await?.into_inner();
    while let Some(reply) = chat.next().await {
        println!("Chat: {}", reply?.message);
    }
    Ok(())
}

/// SayHello at `rate` calls per second for `seconds`; prints one JSON line.
async fn drive(client: greeter_svc::Client, name: String, rate: f64, seconds: f64) -> bool {
    let started = Instant::now();
    let calls = (rate * seconds).round() as u64;
    let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(every);
    for _ in 0..calls {
        tick.tick().await;
        let (mut client, name) = (client.clone(), name.clone());
        tasks.spawn(async move { client.say_hello(HelloRequest { name }).await.map(drop).map_err(|s| s.code()) });
    }
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok = 0u64;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => ok += 1,
            Ok(Err(code)) => *codes.entry(format!("{code:?}")).or_default() += 1,
            Err(_) => *codes.entry("panicked".to_owned()).or_default() += 1,
        }
    }
    let metrics = svc_runtime::metrics::clients().render();
    let attempts: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("grpc_client_attempts_total{") && l.contains("grpc_method=\"SayHello\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let failed: Vec<String> = codes.iter().map(|(c, n)| format!("\"{c}\":{n}")).collect();
    println!(
        "{{\"calls\":{calls},\"ok\":{ok},\"failed\":{{{}}},\"attempts\":{attempts},\"seconds\":{:.3}}}",
        failed.join(","),
        started.elapsed().as_secs_f64()
    );
    ok == calls
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("greeter-client: {problem}");
            return ExitCode::from(2);
        }
    };
    let mut client = match connect(&args).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("greeter-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(rate) = args.rate {
        return if drive(client, args.name, rate, args.seconds).await { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    match every_method(&mut client, &args.name).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(status) => {
            eprintln!("greeter-client: {:?}: {}", status.code(), status.message());
            ExitCode::FAILURE
        }
    }
}
