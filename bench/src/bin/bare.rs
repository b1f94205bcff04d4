//! Bare tonic: the same service with `Server::builder()` defaults and no
//! middleware. Listens on BENCH_ADDR, prints `listening on ADDR`. Accepted
//! connections get TCP_NODELAY, as `Server::serve(addr)` would set.

use svc_bench::EchoImpl;
use svc_bench::proto::bench::v1::echo_server::EchoServer;
use svc_runtime::tonic;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(EchoServer::new(EchoImpl))
        .serve_with_incoming(tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            |conn| conn.inspect(|tcp| drop(tcp.set_nodelay(true))),
        ))
        .await?;
    Ok(())
}
