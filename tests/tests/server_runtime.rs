//! The runtime server with the generated `shop.v1` service: per-method
//! deadlines, panic recovery, request ids, all over 127.0.0.1:0.

use std::pin::Pin;
use std::time::{Duration, Instant};

use svc::server::{Config, Server};
use svc::tonic::{self, Code, Request, Response, Status};
use svc_tests::default::shop::v1::shop_client::ShopClient;
use svc_tests::default::shop::v1::shop_server::Shop;
use svc_tests::default::shop::v1::{GetItemRequest, Item, Order, PlaceOrderRequest, shop_svc};
use tokio_stream::Stream;

struct SlowAndBroken;

#[tonic::async_trait]
impl Shop for SlowAndBroken {
    async fn get_item(&self, r: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        let sku = r.into_inner().sku;
        if sku == "slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Ok(Response::new(Item { sku, ..Default::default() }))
    }
    async fn place_order(&self, _: Request<PlaceOrderRequest>) -> Result<Response<Order>, Status> {
        panic!("order book corrupted");
    }
    async fn ping(&self, r: Request<()>) -> Result<Response<()>, Status> {
        let id = r.extensions().get::<svc::middleware::RequestId>().map(|id| id.0.clone()).unwrap_or_default();
        let mut response = Response::new(());
        response.metadata_mut().insert("seen-request-id", id.parse().map_err(|_| Status::internal("id"))?);
        Ok(response)
    }
    type WatchInventoryStream = Pin<Box<dyn Stream<Item = Result<Item, Status>> + Send>>;
    async fn watch_inventory(&self, _: Request<()>) -> Result<Response<Self::WatchInventoryStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }
}

async fn start() -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let config = Config {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        shutdown_grace: Duration::from_secs(2),
    };
    let bound = Server::with_config(&shop_svc::SERVICE, config).bind().await.expect("bind");
    let addr = format!("http://{}", bound.grpc_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        bound
            .serve(shop_svc::server(SlowAndBroken), async {
                let _ = stopped.await;
            })
            .await
            .expect("serves");
    });
    (addr, stop, task)
}

#[tokio::test]
async fn annotated_deadline_answers_deadline_exceeded() {
    let (addr, stop, task) = start().await;
    let mut client = ShopClient::connect(addr).await.expect("connect");
    let started = Instant::now();
    let err = client.get_item(GetItemRequest { sku: "slow".into() }).await.expect_err("deadline");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(3),
        "GetItem timeout is 750ms: {elapsed:?}"
    );
    // A shorter caller deadline wins.
    let mut req = Request::new(GetItemRequest { sku: "slow".into() });
    req.set_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let err = client.get_item(req).await.expect_err("deadline");
    assert!(matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(700));
    // Fast calls are unaffected.
    assert_eq!(client.get_item(GetItemRequest { sku: "ok".into() }).await.expect("fast").into_inner().sku, "ok");
    let _ = stop.send(());
    task.await.expect("server task");
}

#[tokio::test]
async fn panics_become_internal_and_the_server_keeps_serving() {
    let (addr, stop, task) = start().await;
    let mut client = ShopClient::connect(addr).await.expect("connect");
    for _ in 0..3 {
        let err = client.place_order(PlaceOrderRequest::default()).await.expect_err("panic");
        assert_eq!(err.code(), Code::Internal, "{err:?}");
        assert_eq!(err.message(), "the handler failed unexpectedly");
    }
    client.ping(()).await.expect("still serving");
    let _ = stop.send(());
    task.await.expect("server task");
}

#[tokio::test]
async fn request_ids_are_accepted_or_minted_and_echoed() {
    let (addr, stop, task) = start().await;
    let mut client = ShopClient::connect(addr).await.expect("connect");
    let mut req = Request::new(());
    req.metadata_mut().insert("x-request-id", "trace-me-42".parse().expect("value"));
    let response = client.ping(req).await.expect("ping");
    assert_eq!(response.metadata().get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-me-42"));
    assert_eq!(response.metadata().get("seen-request-id").and_then(|v| v.to_str().ok()), Some("trace-me-42"));
    let minted = client.ping(()).await.expect("ping");
    let id = minted.metadata().get("x-request-id").and_then(|v| v.to_str().ok()).expect("minted id").to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let _ = stop.send(());
    task.await.expect("server task");
}
