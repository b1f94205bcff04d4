//! Generated validators and the servers that enforce them, on 127.0.0.1:
//! `tests/protos/validation/rules.proto` (every family of standard rules)
//! served by generated code; requests that break the rules never reach the
//! handler, `skip_validation` lets them through, and the status carries
//! `buf.validate.Violations` and `google.rpc.BadRequest`.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message as _;
use svc_runtime::client::{Builder, Channel};
use svc_runtime::server::{Config, Server};
use svc_runtime::tonic::{self, Code, Request, Response, Status, Streaming};
use svc_runtime::validate::{MAX_DETAILS_BYTES, Subscript, Validate, Violations, invalid_argument, wire};
use svc_tests::default::rules::v1::checked_client::CheckedClient;
use svc_tests::default::rules::v1::checked_server::Checked;
use svc_tests::default::rules::v1::{Address, Kind, Line, Order, Receipt, checked_svc, order};
use tokio_stream::StreamExt;

struct Handlers;

#[tonic::async_trait]
impl Checked for Handlers {
    async fn strict(&self, request: Request<Order>) -> Result<Response<Receipt>, Status> {
        Ok(Response::new(Receipt { seen: request.into_inner().id }))
    }

    async fn lenient(&self, request: Request<Order>) -> Result<Response<Receipt>, Status> {
        Ok(Response::new(Receipt { seen: format!("lenient:{}", request.into_inner().id) }))
    }

    async fn upload(&self, request: Request<Streaming<Line>>) -> Result<Response<Receipt>, Status> {
        let mut lines = request.into_inner();
        let mut seen = Vec::new();
        while let Some(line) = lines.next().await {
            seen.push(line?.text);
        }
        Ok(Response::new(Receipt { seen: seen.join("|") }))
    }
}

fn good() -> Order {
    Order {
        id: "order-1".into(),
        email: "ada@example.com".into(),
        callback: "hooks.example.com:443".into(),
        quantity: 3,
        discount: 0.25,
        kind: Kind::Retail as i32,
        tags: vec!["red".into(), "big".into()],
        attributes: HashMap::from([("colour".to_owned(), "red".to_owned())]),
        token: vec![7; 16],
        ship_to: Some(Address { line: "1 Main St".into(), country: "GB".into() }),
        note: String::new(),
        payment: Some(order::Payment::Account(42)),
    }
}

/// Rule ids and field paths of `violations`, sorted.
fn summary(violations: &Violations) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = violations.0.iter().map(|v| (v.field_path(), v.rule_id.to_string())).collect();
    out.sort();
    out
}

#[test]
fn a_good_order_is_valid_and_a_bad_one_names_every_broken_rule() {
    assert_eq!(good().validate(), Ok(()));
    let mut bad = good();
    bad.id = "Order 1".into();
    bad.email = "ada@".into();
    bad.callback = "hooks.example.com".into();
    bad.quantity = 0;
    bad.discount = f64::NAN;
    bad.kind = 7;
    bad.tags = vec!["red".into(), "red".into(), String::new()];
    bad.attributes = HashMap::from([("Bad-Key".to_owned(), String::new())]);
    bad.token = vec![1, 2, 3];
    bad.ship_to = Some(Address { line: String::new(), country: "XX".into() });
    bad.note = "hey".into();
    bad.payment = None;
    let found = bad.validate().expect_err("invalid");
    let pairs: Vec<(&str, &str)> = vec![
        // NaN is not <= 0.5, and 0 items are fewer than 10.
        ("", "order.bulk_discount"),
        ("attributes[\"Bad-Key\"]", "string.min_len"),
        ("attributes[\"Bad-Key\"]", "string.pattern"),
        ("callback", "string.host_and_port"),
        ("discount", "double.finite"),
        ("discount", "double.gt_lt"),
        ("email", "string.email"),
        ("id", "string.pattern"),
        ("kind", "enum.defined_only"),
        ("note", "string.min_len"),
        ("payment", "required"),
        ("quantity", "uint32.gte_lte"),
        ("ship_to.country", "string.in"),
        ("ship_to.line", "string.min_len"),
        ("tags", "repeated.unique"),
        ("tags[2]", "string.min_len"),
        ("token", "bytes.len"),
    ];
    let expected: Vec<(String, String)> = pairs.iter().map(|(f, r)| ((*f).to_owned(), (*r).to_owned())).collect();
    assert_eq!(summary(&found), expected);
    // The map key's own violation is marked for_key, its value's is not.
    let key = found
        .0
        .iter()
        .find(|v| v.rule_id == "string.pattern" && v.field_path().starts_with("attributes"))
        .expect("key");
    assert!(key.for_key);
    assert_eq!(key.field[0].subscript, Some(Subscript::String("Bad-Key".into())));
    assert_eq!((key.field[0].key_type, key.field[0].value_type), (Some(9), Some(9)));
    let value = found
        .0
        .iter()
        .find(|v| v.rule_id == "string.min_len" && v.field_path().starts_with("attributes"))
        .expect("value");
    assert!(!value.for_key);
    // Rule paths follow the rules' descriptors: repeated.items.string.min_len.
    let item = found.0.iter().find(|v| v.field_path() == "tags[2]").expect("item");
    assert_eq!(item.rule_path(), "repeated.items.string.min_len");
    assert_eq!(item.message, "must be at least 1 characters");
    // The oneof is named without number or type, as protovalidate does.
    let oneof = found.0.iter().find(|v| v.rule_id == "required").expect("oneof");
    assert_eq!((oneof.field[0].field_number, oneof.field[0].field_type), (0, 0));
    // The ignored-if-empty note is not checked when empty.
    let mut quiet = good();
    quiet.note = String::new();
    assert_eq!(quiet.validate(), Ok(()));
}

#[test]
fn cel_rules_of_messages_fields_items_and_predefined_extensions_are_enforced() {
    let mut bad = good();
    // Message rule: a big discount on a small order.
    bad.discount = 0.75;
    // Item rule, field rule with its own message, predefined rule.
    bad.tags = vec!["two words".into()];
    bad.note = " hello".into();
    bad.ship_to = Some(Address { line: "Straße 1".into(), country: "DE".into() });
    let found = bad.validate().expect_err("invalid");
    let pairs: Vec<(&str, &str)> = vec![
        ("", "order.bulk_discount"),
        ("note", "note.no_leading_space"),
        ("ship_to.line", "string.ascii_only"),
        ("tags[0]", "tag.no_spaces"),
    ];
    let expected: Vec<(String, String)> = pairs.iter().map(|(f, r)| ((*f).to_owned(), (*r).to_owned())).collect();
    assert_eq!(summary(&found), expected);
    let by_id = |id: &str| found.0.iter().find(|v| v.rule_id == id).expect(id);
    // Messages: the rule's, or the one the expression gives.
    assert_eq!(by_id("order.bulk_discount").message, "a discount above 0.5 needs at least 10 items");
    assert_eq!(by_id("note.no_leading_space").message, "must not start with a space");
    // Rule paths: none for message rules, cel[i] under items, the
    // extension's bracketed name for predefined rules.
    assert_eq!(by_id("order.bulk_discount").rule_path(), "");
    assert_eq!(by_id("tag.no_spaces").rule_path(), "repeated.items.cel[0]");
    assert_eq!(by_id("note.no_leading_space").rule_path(), "cel[0]");
    assert_eq!(by_id("string.ascii_only").rule_path(), "string.[rules.v1.ascii_only]");
    // A big order may have a big discount; cel_expression rules name
    // themselves.
    let mut bulk = good();
    bulk.discount = 0.75;
    bulk.quantity = 10;
    assert_eq!(bulk.validate(), Ok(()));
    let mut us = good();
    us.ship_to = Some(Address { line: "1 A".into(), country: "US".into() });
    let found = us.validate().expect_err("invalid");
    assert_eq!(found.0.len(), 1);
    assert_eq!(found.0[0].rule_id, "this.country != 'US' || size(this.line) > 3");
    assert_eq!(found.0[0].message, "\"this.country != 'US' || size(this.line) > 3\" returned false");
    assert_eq!(found.0[0].field_path(), "ship_to");
    // getField(this, 'text') reads the field.
    assert_eq!(Line { text: "a b".into() }.validate(), Ok(()));
    let found = Line { text: "   ".into() }.validate().expect_err("blank");
    assert_eq!(found.0[0].rule_id, "line.not_blank");
}

#[test]
fn a_status_with_many_violations_stays_small_and_says_what_it_left_out() {
    let mut bad = good();
    bad.tags = (0..5000).map(|i| format!("this tag is far too long {i}")).collect();
    let found = bad.validate().expect_err("invalid");
    assert!(found.0.len() > 5000);
    let status = invalid_argument(&found);
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.details().len() <= MAX_DETAILS_BYTES, "{} bytes", status.details().len());
    assert!(status.message().contains("more violations left out"), "{}", status.message());
    let decoded = wire::RpcStatus::decode(status.details()).expect("google.rpc.Status");
    let shown = wire::Violations::decode(&decoded.details[0].value[..]).expect("Violations").violations.len();
    let listed = wire::BadRequest::decode(&decoded.details[1].value[..]).expect("BadRequest").field_violations.len();
    assert!(shown > 10 && shown == listed, "{shown} shown, {listed} listed");
}

struct Running {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve() -> Running {
    let config = Config {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        shutdown_grace: Duration::from_millis(200),
    };
    let quiet = svc_runtime::log::Logger::new(svc_runtime::log::Level::Warn, true);
    let bound = Server::with_config(&checked_svc::SERVICE, config).logger(quiet).bind().await.expect("bind");
    let addr = bound.grpc_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(checked_svc::server(Handlers), async {
        let _ = stopped.await;
    }));
    Running { addr, stop: Some(stop) }
}

/// The violations a status carries, decoded from its details.
fn violations_of(status: &Status) -> Vec<(String, String)> {
    let details = wire::RpcStatus::decode(status.details()).expect("google.rpc.Status");
    assert_eq!(details.details[0].type_url, "type.googleapis.com/buf.validate.Violations");
    assert_eq!(details.details[1].type_url, "type.googleapis.com/google.rpc.BadRequest");
    let violations = wire::Violations::decode(&details.details[0].value[..]).expect("Violations");
    let bad_request = wire::BadRequest::decode(&details.details[1].value[..]).expect("BadRequest");
    let mut from_violations: Vec<(String, String)> = violations
        .violations
        .iter()
        .map(|v| {
            let path: Vec<String> = v
                .field
                .as_ref()
                .map(|p| p.elements.iter().filter_map(|e| e.field_name.clone()).collect())
                .unwrap_or_default();
            (path.join("."), v.rule_id.clone().unwrap_or_default())
        })
        .collect();
    let mut from_bad_request: Vec<(String, String)> =
        bad_request.field_violations.iter().map(|f| (f.field.clone(), f.reason.clone())).collect();
    from_violations.sort();
    from_bad_request.sort();
    assert_eq!(from_violations, from_bad_request, "both details name the same violations");
    from_violations
}

#[tokio::test]
async fn servers_refuse_invalid_requests_before_the_handler_unless_the_method_skips_validation() {
    let running = serve().await;
    let channel: Channel = Builder::new(&checked_svc::SERVICE, &running.addr).build().await.expect("connect");
    let mut client = CheckedClient::new(channel);

    assert_eq!(client.strict(good()).await.expect("valid").into_inner().seen, "order-1");

    let mut bad = good();
    bad.quantity = 5000;
    bad.ship_to = Some(Address { line: "x".into(), country: "ZZ".into() });
    let status = client.strict(bad.clone()).await.expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("quantity: must be greater than or equal to 1 and less than or equal to 1000"));
    assert_eq!(
        violations_of(&status),
        vec![
            ("quantity".to_owned(), "uint32.gte_lte".to_owned()),
            ("ship_to.country".to_owned(), "string.in".to_owned())
        ]
    );

    // skip_validation: the handler sees the same request.
    assert_eq!(client.lenient(bad).await.expect("not validated").into_inner().seen, "lenient:order-1");

    // A stream: good lines pass, the first bad one ends the call.
    let lines = tokio_stream::iter(vec![Line { text: "a".into() }, Line { text: "b".into() }]);
    assert_eq!(client.upload(lines).await.expect("valid stream").into_inner().seen, "a|b");
    let lines =
        tokio_stream::iter(vec![Line { text: "a".into() }, Line { text: String::new() }, Line { text: "c".into() }]);
    let status = client.upload(lines).await.expect_err("one bad line");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations_of(&status), vec![("text".to_owned(), "string.min_len".to_owned())]);
}

#[tokio::test]
async fn clients_built_to_validate_refuse_invalid_requests_before_sending_them() {
    // Nothing listens here: a request that is sent fails to connect, one
    // that is refused by the client never gets that far.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = nowhere.local_addr().expect("addr").to_string();
    drop(nowhere);
    let channel: Channel = Builder::new(&checked_svc::SERVICE, &dead)
        .validate_requests(true)
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(2))
        .lazy()
        .build()
        .await
        .expect("lazy");
    let mut client = CheckedClient::new(channel);
    let mut bad = good();
    bad.quantity = 0;
    let status = client.strict(bad.clone()).await.expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violations_of(&status), vec![("quantity".to_owned(), "uint32.gte_lte".to_owned())]);
    let status = client.strict(good()).await.expect_err("sent, and nobody answers");
    assert_ne!(status.code(), Code::InvalidArgument, "{status:?}");
    // skip_validation methods are not checked by clients either.
    let status = client.lenient(bad.clone()).await.expect_err("sent");
    assert_ne!(status.code(), Code::InvalidArgument, "{status:?}");

    // Against a server: valid requests pass; without the option, the
    // server is the one that refuses.
    let running = serve().await;
    let checking: Channel =
        Builder::new(&checked_svc::SERVICE, &running.addr).validate_requests(true).build().await.expect("connect");
    let mut client = CheckedClient::new(checking);
    assert_eq!(client.strict(good()).await.expect("valid").into_inner().seen, "order-1");
    let lines = tokio_stream::iter(vec![Line { text: "a".into() }, Line { text: "b".into() }]);
    assert_eq!(client.upload(lines).await.expect("valid stream").into_inner().seen, "a|b");
    let lines = tokio_stream::iter(vec![Line { text: "a".into() }, Line { text: String::new() }]);
    client.upload(lines).await.expect_err("a bad line ends the stream");
    let plain: Channel = Builder::new(&checked_svc::SERVICE, &running.addr).build().await.expect("connect");
    let status = CheckedClient::new(plain).strict(bad).await.expect_err("the server refuses");
    assert_eq!(status.code(), Code::InvalidArgument);
}
