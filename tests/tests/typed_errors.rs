//! Typed errors generated from `(svc.errors)` enums (tests/protos/maximal).

use std::time::Duration;

use svc_runtime::TypedErrors;
use svc_runtime::tonic::Code;
use svc_runtime::tonic_types::StatusExt;
use svc_tests::default::shop::v1::ShopError;

#[test]
fn generated_specs_follow_the_annotations() {
    assert_eq!(ShopError::DOMAIN, "shop.example.com");
    let not_found = ShopError::ItemNotFound.spec().expect("annotated");
    assert_eq!((not_found.reason, not_found.code, not_found.retry_delay), ("ITEM_NOT_FOUND", Code::NotFound, None));
    let stock = ShopError::OutOfStock.spec().expect("annotated");
    assert_eq!(stock.code, Code::FailedPrecondition);
    assert_eq!(stock.retry_delay, Some(Duration::from_secs(30)));
    assert!(ShopError::Unspecified.spec().is_none(), "values without (svc.error) have no spec");
    assert_eq!(ShopError::from_reason("OUT_OF_STOCK"), Some(ShopError::OutOfStock));
}

#[test]
fn status_round_trip() {
    let status: svc_runtime::tonic::Status = ShopError::ItemNotFound.error().with("sku", "B-7").into();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "item B-7 not found");
    let typed = ShopError::from_status(&status).expect("typed error recovered");
    assert_eq!(typed.kind(), ShopError::ItemNotFound);
    assert_eq!(typed.metadata().get("sku").map(String::as_str), Some("B-7"));

    let retry = ShopError::OutOfStock.status().get_error_details();
    assert_eq!(retry.retry_info().and_then(|r| r.retry_delay), Some(Duration::from_secs(30)));
}
