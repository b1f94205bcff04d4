//! The greeter example: a server for `greeter.v1.Greeter` built on the code
//! protoc-gen-svc generated into `gen/` (regenerate with `buf generate` or
//! `protoc-gen-svc generate`, see README.md).
//!
//! Run: `cargo run -p greeter-example` (gRPC on SVC_GRPC_ADDR, default
//! 0.0.0.0:50051; health and metrics on SVC_METRICS_ADDR, default
//! 0.0.0.0:9090; prints `svc: serving greeter.v1.Greeter on ADDR ...`).
#![deny(warnings)]

#[path = "../gen/mod.rs"]
mod generated;

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use generated::greeter::v1::greeter_server::Greeter;
use generated::greeter::v1::{GreeterError, HelloReply, HelloRequest, HelloStreamRequest, greeter_svc};
use svc_runtime::TypedErrors;
use svc_runtime::tonic::{self, Request, Response, Status, Streaming};
use tokio_stream::{Stream, StreamExt};

/// The service implementation.
#[derive(Debug, Default)]
pub struct GreeterImpl;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send + 'static>>;

fn reply(message: String) -> HelloReply {
    HelloReply { message, created_at: Some(SystemTime::now().into()) }
}

/// Names the greeter refuses, answered with the typed error `NAME_BLOCKED`.
const BLOCKED: &[&str] = &["Voldemort"];

/// Lengths and counts are the proto's `buf.validate` rules, checked by the
/// generated server before a request reaches these handlers.
fn check_name(name: &str) -> Result<(), Status> {
    if BLOCKED.contains(&name) {
        return Err(GreeterError::NameBlocked.error().with("name", name).into());
    }
    Ok(())
}

#[tonic::async_trait]
impl Greeter for GreeterImpl {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        check_name(&name)?;
        Ok(Response::new(reply(format!("Hello, {name}!"))))
    }

    type SayHelloStreamStream = ReplyStream;

    async fn say_hello_stream(
        &self,
        request: Request<HelloStreamRequest>,
    ) -> Result<Response<Self::SayHelloStreamStream>, Status> {
        let req = request.into_inner();
        check_name(&req.name)?;
        let interval = Duration::from_millis(u64::from(req.interval_ms.min(1000)));
        let name = req.name;
        let stream = tokio_stream::iter(1..=req.count).then(move |i| {
            let name = name.clone();
            async move {
                if i > 1 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                Ok(reply(format!("Hello #{i}, {name}!")))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn collect_hellos(&self, request: Request<Streaming<HelloRequest>>) -> Result<Response<HelloReply>, Status> {
        let mut stream = request.into_inner();
        let mut names = Vec::new();
        while let Some(req) = stream.next().await {
            let req = req?;
            check_name(&req.name)?;
            names.push(req.name);
        }
        Ok(Response::new(reply(format!("Hello, {}!", names.join(", ")))))
    }

    type ChatStream = ReplyStream;

    async fn chat(&self, request: Request<Streaming<HelloRequest>>) -> Result<Response<Self::ChatStream>, Status> {
        let stream = request.into_inner().map(|req| {
            let req = req?;
            check_name(&req.name)?;
            Ok(reply(format!("Hello, {}!", req.name)))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tokio::main]
async fn main() -> Result<(), svc_runtime::server::Error> {
    // One call: listeners from SVC_GRPC_ADDR / SVC_METRICS_ADDR (defaults
    // from the annotations), health, reflection, /healthz and /readyz,
    // graceful shutdown on SIGTERM/SIGINT.
    greeter_svc::serve(GreeterImpl).await?;
    Ok(())
}
