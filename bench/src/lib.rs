//! The benchmark services, generated from proto/ and peers/ and shared by
//! the servers: `Echo` (run.py) and the complex-payload `Greeter`
//! (peers.py).

/// Generated code.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}

use proto::bench::v1::Msg;
use proto::bench::v1::echo_server::Echo;
use svc_runtime::tonic::{self, Request, Response, Status};

/// Echoes the request.
#[derive(Debug, Default, Clone)]
pub struct EchoImpl;

#[tonic::async_trait]
impl Echo for EchoImpl {
    async fn say(&self, request: Request<Msg>) -> Result<Response<Msg>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

use proto::bench::complex::v1::greeter_server::Greeter;
use proto::bench::complex::v1::{HelloReply, HelloRequest};

/// Echoes the request's `Hello`, as every server of bench/peers.py does.
#[derive(Debug, Default, Clone)]
pub struct GreeterImpl;

#[tonic::async_trait]
impl Greeter for GreeterImpl {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply { response: request.into_inner().request }))
    }
}

/// Serves `service` with bare tonic: `Server::builder()` defaults, no
/// middleware. Listens on BENCH_ADDR (default 127.0.0.1:0) and prints
/// `listening on ADDR`; accepted connections get TCP_NODELAY, as
/// `Server::serve(addr)` would set.
pub async fn serve_bare<S>(service: S) -> Result<(), Box<dyn std::error::Error>>
where
    S: svc_runtime::server::GrpcService,
    S::Future: Send + 'static,
{
    let addr = std::env::var("BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            |conn| conn.inspect(|tcp| drop(tcp.set_nodelay(true))),
        ))
        .await?;
    Ok(())
}
