//! Bare tonic: the echo service with `Server::builder()` defaults and no
//! middleware (see `svc_bench::serve_bare`).

use svc_bench::EchoImpl;
use svc_bench::proto::bench::v1::echo_server::EchoServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    svc_bench::serve_bare(EchoServer::new(EchoImpl)).await
}
