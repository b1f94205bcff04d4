//! The runtime server with generated services over 127.0.0.1:0: per-method
//! deadlines, panic recovery, request ids (greeter.v1) and JWT
//! authentication with roles (vault.v1, HS256).

use std::pin::Pin;
use std::time::{Duration, Instant};

use svc_runtime::auth::{Principal, Verifier};
use svc_runtime::server::{Config, Server};
use svc_runtime::tonic::{self, Code, Request, Response, Status, Streaming};
use svc_tests::default::greeter::v1::greeter_client::GreeterClient;
use svc_tests::default::greeter::v1::greeter_server::Greeter;
use svc_tests::default::greeter::v1::{HelloReply, HelloRequest, HelloStreamRequest, greeter_svc};
use svc_tests::default::vault::v1::vault_client::VaultClient;
use svc_tests::default::vault::v1::vault_server::Vault;
use svc_tests::default::vault::v1::{Secret, vault_svc};
use tokio_stream::Stream;

struct Probe;

type Replies = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

#[tonic::async_trait]
impl Greeter for Probe {
    async fn say_hello(&self, r: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let id = r
            .extensions()
            .get::<svc_runtime::middleware::RequestId>()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        match r.into_inner().name.as_str() {
            "slow" => tokio::time::sleep(Duration::from_secs(10)).await,
            "panic" => panic!("greeting book corrupted"),
            _ => {}
        }
        Ok(Response::new(HelloReply { message: id, created_at: None }))
    }
    type SayHelloStreamStream = Replies;
    async fn say_hello_stream(&self, _: Request<HelloStreamRequest>) -> Result<Response<Replies>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }
    async fn collect_hellos(&self, _: Request<Streaming<HelloRequest>>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("not needed"))
    }
    type ChatStream = Replies;
    async fn chat(&self, _: Request<Streaming<HelloRequest>>) -> Result<Response<Replies>, Status> {
        Err(Status::unimplemented("not needed"))
    }
}

struct Safe;

#[tonic::async_trait]
impl Vault for Safe {
    async fn peek(&self, r: Request<Secret>) -> Result<Response<Secret>, Status> {
        let subject = r.extensions().get::<Principal>().and_then(|p| p.subject.clone()).unwrap_or_default();
        Ok(Response::new(Secret { name: r.into_inner().name, subject }))
    }
    async fn open(&self, r: Request<Secret>) -> Result<Response<Secret>, Status> {
        Ok(Response::new(r.into_inner()))
    }
    async fn status(&self, r: Request<Secret>) -> Result<Response<Secret>, Status> {
        Ok(Response::new(r.into_inner()))
    }
}

fn config() -> Config {
    Config {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        shutdown_grace: Duration::from_secs(2),
    }
}

struct Running {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().expect("once").send(());
        self.task.take().expect("once").await.expect("server task");
    }
}

async fn start<S: svc_runtime::server::GrpcService>(server: Server, service: S) -> Running
where
    S::Future: Send + 'static,
{
    let bound = server.bind().await.expect("bind");
    let addr = bound.grpc_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        bound
            .serve(service, async {
                let _ = stopped.await;
            })
            .await
            .expect("serves");
    });
    Running { addr, stop: Some(stop), task: Some(task) }
}

async fn greeter() -> (Running, greeter_svc::Client) {
    let spec = &greeter_svc::SERVICE;
    let running = start(Server::with_config(spec, config()), greeter_svc::server(Probe)).await;
    let client = greeter_svc::Client::connect(&running.addr).await.expect("connect");
    (running, client)
}

#[tokio::test]
async fn annotated_deadline_answers_deadline_exceeded() {
    let (running, mut client) = greeter().await;
    let started = Instant::now();
    let err = client.say_hello(HelloRequest { name: "slow".into() }).await.expect_err("deadline");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "SayHello timeout is 2s: {elapsed:?}"
    );
    // A shorter caller deadline wins.
    let mut req = Request::new(HelloRequest { name: "slow".into() });
    req.set_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let err = client.say_hello(req).await.expect_err("deadline");
    assert!(matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    client.say_hello(HelloRequest { name: "fast".into() }).await.expect("fast calls are unaffected");
    running.stop().await;
}

#[tokio::test]
async fn panics_become_internal_and_the_server_keeps_serving() {
    let (running, mut client) = greeter().await;
    for _ in 0..3 {
        let err = client.say_hello(HelloRequest { name: "panic".into() }).await.expect_err("panic");
        assert_eq!(err.code(), Code::Internal, "{err:?}");
        assert_eq!(err.message(), "the handler failed unexpectedly");
    }
    client.say_hello(HelloRequest { name: "ok".into() }).await.expect("still serving");
    running.stop().await;
}

#[tokio::test]
async fn request_ids_are_accepted_or_minted_and_echoed() {
    let (running, mut client) = greeter().await;
    let mut req = Request::new(HelloRequest { name: "id".into() });
    req.metadata_mut().insert("x-request-id", "trace-me-42".parse().expect("value"));
    let response = client.say_hello(req).await.expect("call");
    assert_eq!(response.metadata().get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-me-42"));
    assert_eq!(response.into_inner().message, "trace-me-42", "the handler sees it too");
    let minted = client.say_hello(HelloRequest { name: "id".into() }).await.expect("call");
    let id = minted.metadata().get("x-request-id").and_then(|v| v.to_str().ok()).expect("minted id").to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(minted.into_inner().message, id);
    running.stop().await;
}

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode")
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    req
}

#[tokio::test]
async fn jwt_authentication_and_roles() {
    let spec = &vault_svc::SERVICE;
    let jwt = spec.auth.as_ref().expect("vault requires auth");
    assert!(Server::with_config(spec, config()).bind().await.is_err(), "no key, no server");
    let verifier = Verifier::from_lookup(jwt, |k| (k == "SVC_JWT_SECRET").then(|| SECRET.to_owned())).expect("key");
    let running = start(Server::with_config(spec, config()).verifier(verifier), vault_svc::server(Safe)).await;
    let mut client = vault_svc::Client::connect(&running.addr).await.expect("connect");
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 300;
    let secret = || Secret { name: "s".into(), subject: String::new() };

    let err = client.peek(secret()).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(client.status(secret()).await.expect("public").into_inner().name, "s");

    let user = token(serde_json::json!({"iss": "https://issuer.test", "aud": "vault", "exp": exp, "sub": "ada"}));
    assert_eq!(client.peek(with_token(secret(), &user)).await.expect("peek").into_inner().subject, "ada");
    let err = client.open(with_token(secret(), &user)).await.expect_err("no admin role");
    assert_eq!(err.code(), Code::PermissionDenied);

    let admin =
        token(serde_json::json!({"iss": "https://issuer.test", "aud": "vault", "exp": exp, "roles": ["admin"]}));
    client.open(with_token(secret(), &admin)).await.expect("admin opens");

    let wrong_aud = token(serde_json::json!({"iss": "https://issuer.test", "aud": "other", "exp": exp}));
    assert_eq!(client.peek(with_token(secret(), &wrong_aud)).await.expect_err("aud").code(), Code::Unauthenticated);
    running.stop().await;
}

mod meter {
    use super::*;
    use svc_runtime::tonic_types::StatusExt;
    use svc_tests::default::meter::v1::meter_server::Meter;
    use svc_tests::default::meter::v1::{Tick, meter_svc};

    struct M;

    #[tonic::async_trait]
    impl Meter for M {
        async fn global(&self, r: Request<Tick>) -> Result<Response<Tick>, Status> {
            Ok(Response::new(r.into_inner()))
        }
        async fn per_peer(&self, r: Request<Tick>) -> Result<Response<Tick>, Status> {
            Ok(Response::new(r.into_inner()))
        }
        async fn slow(&self, r: Request<Tick>) -> Result<Response<Tick>, Status> {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(Response::new(r.into_inner()))
        }
    }

    async fn meter() -> (Running, meter_svc::Client) {
        let spec = &meter_svc::SERVICE;
        let running = start(Server::with_config(spec, config()), meter_svc::server(M)).await;
        let client = meter_svc::Client::connect(&running.addr).await.expect("connect");
        (running, client)
    }

    #[tokio::test]
    async fn empty_bucket_answers_resource_exhausted_with_retry_info() {
        let (running, mut client) = meter().await;
        for n in 0..3 {
            client.global(Tick { n }).await.expect("within burst");
        }
        let err = client.global(Tick { n: 3 }).await.expect_err("limited");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        let delay = err.get_error_details().retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
        assert!(delay > Duration::ZERO && delay <= Duration::from_millis(500), "{delay:?}");
        tokio::time::sleep(delay + Duration::from_millis(50)).await;
        client.global(Tick { n: 4 }).await.expect("refilled");
        // A method with its own limit has its own bucket.
        client.per_peer(Tick { n: 0 }).await.expect("own bucket");
        running.stop().await;
    }

    #[tokio::test]
    async fn calls_beyond_the_concurrency_limit_are_shed_not_queued() {
        let (running, client) = meter().await;
        let started = Instant::now();
        let calls: Vec<_> = (0..10)
            .map(|n| {
                let mut c = client.clone();
                tokio::spawn(async move { c.slow(Tick { n }).await.map(|_| ()).map_err(|e| e.code()) })
            })
            .collect();
        let mut ok = 0;
        let mut shed = 0;
        for call in calls {
            match call.await.expect("task") {
                Ok(()) => ok += 1,
                Err(Code::ResourceExhausted) => shed += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((ok, shed), (4, 6), "limit is 4");
        assert!(started.elapsed() < Duration::from_millis(1500), "shed calls return at once");
        running.stop().await;
    }
}

#[tokio::test]
async fn several_services_share_one_server() {
    use svc_runtime::client::{Builder, Channel};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let jwt = vault_svc::SERVICE.auth.as_ref().expect("vault requires auth");
    let server = Server::with_config(&greeter_svc::SERVICE, config()).add_service(&vault_svc::SERVICE, None);
    assert!(server.bind().await.is_err(), "the second service's key is required too");
    let verifier = Verifier::from_lookup(jwt, |k| (k == "SVC_JWT_SECRET").then(|| SECRET.to_owned())).expect("key");
    let server = Server::with_config(&greeter_svc::SERVICE, config()).add_service(&vault_svc::SERVICE, Some(verifier));
    let bound = server.bind().await.expect("bind");
    let addr = bound.grpc_addr().to_string();
    let routes =
        svc_runtime::tonic::service::Routes::new(greeter_svc::server(Probe)).add_service(vault_svc::server(Safe));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        bound
            .serve_routes(routes, async {
                let _ = stopped.await;
            })
            .await
            .expect("serves");
    });

    // One channel for both services and health: the first service's
    // client defaults, shared by every typed client made from it.
    let channel: Channel = Builder::new(&greeter_svc::SERVICE, addr).build().await.expect("connect");
    // Greeter needs no token; the vault's rules still apply to its methods.
    let mut greeter = GreeterClient::new(channel.clone());
    greeter.say_hello(HelloRequest { name: "a".into() }).await.expect("greeter answers");
    let mut vault = VaultClient::new(channel.clone());
    let secret = Secret { name: "s".into(), subject: String::new() };
    assert_eq!(vault.peek(secret.clone()).await.expect_err("no token").code(), Code::Unauthenticated);
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 300;
    let user = token(serde_json::json!({"iss": "https://issuer.test", "aud": "vault", "exp": exp, "sub": "ada"}));
    assert_eq!(vault.peek(with_token(secret, &user)).await.expect("peek").into_inner().subject, "ada");
    // Health knows both.
    let mut health = HealthClient::new(channel);
    for name in ["greeter.v1.Greeter", "vault.v1.Vault", ""] {
        let reply = health.check(HealthCheckRequest { service: name.into() }).await.expect("health").into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32, "{name}");
    }
    let _ = stop.send(());
    task.await.expect("server task");
}
