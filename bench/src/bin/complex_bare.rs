//! Bare tonic serving bench.complex.v1.Greeter (bench/peers.py) with
//! `Server::builder()` defaults and no middleware (see
//! `svc_bench::serve_bare`).

use svc_bench::GreeterImpl;
use svc_bench::proto::bench::complex::v1::greeter_server::GreeterServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    svc_bench::serve_bare(GreeterServer::new(GreeterImpl)).await
}
