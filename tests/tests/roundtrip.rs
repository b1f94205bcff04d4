//! The generated server and client talk to each other over a real socket
//! on 127.0.0.1:0, for every kind of method.

use std::pin::Pin;

use svc_runtime::tonic::{self, Request, Response, Status, Streaming};
use svc_tests::default::greeter::v1::greeter_server::{Greeter, GreeterServer};
use svc_tests::default::greeter::v1::{HelloReply, HelloRequest, HelloStreamRequest, greeter_svc};
use tokio_stream::{Stream, StreamExt};

struct Echo;

type Replies = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

fn reply(message: String) -> HelloReply {
    HelloReply { message, created_at: None }
}

#[tonic::async_trait]
impl Greeter for Echo {
    async fn say_hello(&self, r: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(reply(format!("hi {}", r.into_inner().name))))
    }
    type SayHelloStreamStream = Replies;
    async fn say_hello_stream(&self, r: Request<HelloStreamRequest>) -> Result<Response<Replies>, Status> {
        let r = r.into_inner();
        let items = (0..r.count).map(move |i| Ok(reply(format!("{}#{i}", r.name))));
        Ok(Response::new(Box::pin(tokio_stream::iter(items.collect::<Vec<_>>()))))
    }
    async fn collect_hellos(&self, r: Request<Streaming<HelloRequest>>) -> Result<Response<HelloReply>, Status> {
        let names: Vec<String> = r.into_inner().map(|m| m.map(|m| m.name)).collect::<Result<_, _>>().await?;
        Ok(Response::new(reply(names.join("+"))))
    }
    type ChatStream = Replies;
    async fn chat(&self, r: Request<Streaming<HelloRequest>>) -> Result<Response<Replies>, Status> {
        Ok(Response::new(Box::pin(r.into_inner().map(|m| m.map(|m| reply(m.name.to_uppercase()))))))
    }
}

#[tokio::test]
async fn all_method_kinds_round_trip() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GreeterServer::new(Echo))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = greeter_svc::Client::connect(&addr.to_string()).await.expect("connect");

    let one = client.say_hello(HelloRequest { name: "a".into() }).await.expect("unary").into_inner();
    assert_eq!(one.message, "hi a");

    let many: Vec<String> = client
        .say_hello_stream(HelloStreamRequest { name: "s".into(), count: 3, interval_ms: 0 })
        .await
        .expect("server streaming")
        .into_inner()
        .map(|r| r.expect("item").message)
        .collect()
        .await;
    assert_eq!(many, ["s#0", "s#1", "s#2"]);

    let names = tokio_stream::iter(["x", "y"].map(|n| HelloRequest { name: n.into() }));
    let joined = client.collect_hellos(names).await.expect("client streaming").into_inner();
    assert_eq!(joined.message, "x+y");

    let chat = tokio_stream::iter(["p", "q"].map(|n| HelloRequest { name: n.into() }));
    let echoed: Vec<String> =
        client.chat(chat).await.expect("bidi").into_inner().map(|r| r.expect("item").message).collect().await;
    assert_eq!(echoed, ["P", "Q"]);
    server.abort();
}
