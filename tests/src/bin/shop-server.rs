//! A `shop.v1.Shop` server (tests/protos/maximal) for the end-to-end suite:
//! JWT authentication with RS256/ES256, roles, a public method.

use std::pin::Pin;

use svc_runtime::auth::Principal;
use svc_runtime::tonic::{self, Request, Response, Status};
use svc_tests::default::shop::v1::shop_server::Shop;
use svc_tests::default::shop::v1::{GetItemRequest, Item, Order, PlaceOrderRequest, shop_svc};
use tokio_stream::Stream;

struct ShopImpl;

#[tonic::async_trait]
impl Shop for ShopImpl {
    async fn get_item(&self, r: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        let who = r.extensions().get::<Principal>().and_then(|p| p.subject.clone()).unwrap_or_default();
        Ok(Response::new(Item { sku: r.into_inner().sku, title: who, ..Default::default() }))
    }
    async fn place_order(&self, r: Request<PlaceOrderRequest>) -> Result<Response<Order>, Status> {
        Ok(Response::new(Order { id: r.into_inner().idempotency_key, state: None }))
    }
    async fn ping(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
    type WatchInventoryStream = Pin<Box<dyn Stream<Item = Result<Item, Status>> + Send>>;
    async fn watch_inventory(&self, _: Request<()>) -> Result<Response<Self::WatchInventoryStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }
}

#[tokio::main]
async fn main() -> Result<(), svc_runtime::server::Error> {
    shop_svc::serve(ShopImpl).await
}
