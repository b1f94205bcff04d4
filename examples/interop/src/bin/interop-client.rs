//! `interop-client`: the gRPC interop test cases, run through the client
//! protoc-gen-svc generates (its pool, deadlines and compression), taking
//! the official interop clients' flags:
//!
//! ```text
//! interop-client --server_host=127.0.0.1 --server_port=10000 --test_case=large_unary \
//!     [--use_tls [--use_test_ca --ca_file=ca.pem] [--server_host_override=foo.test.google.fr]]
//! ```
//!
//! `--test_case=all` runs every case in turn. Each case prints one line,
//! `PASS <case>` or `FAIL <case>: <why>`; the exit code is 0 only when
//! every case passed. The official clients carry their test CA inside;
//! this one is given it with `--ca_file`.
#![deny(warnings)]

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use svc_interop::flags::Flags;
use svc_interop::generated::grpc::testing::{
    BoolValue, EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest, StreamingInputCallRequest,
    StreamingOutputCallRequest, test_service_svc, unimplemented_service_svc,
};
use svc_runtime::client::{ClientTls, Compression};
use svc_runtime::tonic::metadata::{MetadataMap, MetadataValue};
use svc_runtime::tonic::{Code, Request, Status};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

const FLAGS: &[(&str, bool)] = &[
    ("server_host", false),
    ("server_port", false),
    ("test_case", false),
    ("use_tls", true),
    ("use_test_ca", true),
    ("ca_file", false),
    ("server_host_override", false),
];

/// Every case this client runs, in the order `--test_case=all` runs them.
const CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
];

type Client = test_service_svc::Client;
type Outcome = Result<(), String>;

/// Where and how to connect.
struct Peer {
    target: String,
    tls: Option<ClientTls>,
}

impl Peer {
    async fn client(&self, compression: Option<Compression>) -> Result<Client, String> {
        let mut builder = test_service_svc::Client::builder(&self.target).compression(compression);
        if let Some(tls) = &self.tls {
            builder = builder.tls(tls.clone());
        }
        builder.build().await.map_err(|e| format!("connecting to {}: {e}", self.target))
    }
}

fn zeros(n: usize) -> Option<Payload> {
    Some(Payload { r#type: 0, body: vec![0; n] })
}

fn yes(value: bool) -> Option<BoolValue> {
    Some(BoolValue { value })
}

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(()) } else { Err(what()) }
}

fn failed(what: &str) -> impl FnOnce(Status) -> String + '_ {
    move |s| format!("{what}: {:?} {:?}", s.code(), s.message())
}

fn expect_code<T>(result: Result<T, Status>, code: Code, what: &str) -> Outcome {
    match result {
        Ok(_) => Err(format!("{what}: succeeded, {code:?} was expected")),
        Err(s) if s.code() == code => Ok(()),
        Err(s) => Err(format!("{what}: {:?} {:?}, {code:?} was expected", s.code(), s.message())),
    }
}

fn large_request() -> SimpleRequest {
    SimpleRequest { response_size: 314159, payload: zeros(271828), ..SimpleRequest::default() }
}

async fn large_unary_with(client: &mut Client, request: SimpleRequest, what: &str) -> Outcome {
    let response = client.unary_call(request).await.map_err(failed(what))?.into_inner();
    let body = response.payload.map(|p| p.body).unwrap_or_default();
    ensure(body.len() == 314159 && body.iter().all(|b| *b == 0), || {
        format!("{what}: a payload of {} bytes came back, 314159 zeros were asked for", body.len())
    })
}

fn output_request(sizes: &[(i32, bool)], payload: usize) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: sizes
            .iter()
            .map(|&(size, compressed)| ResponseParameters { size, compressed: yes(compressed), ..Default::default() })
            .collect(),
        payload: zeros(payload),
        ..StreamingOutputCallRequest::default()
    }
}

async fn server_streaming_with(client: &mut Client, sizes: &[(i32, bool)]) -> Outcome {
    let mut stream = client.streaming_output_call(output_request(sizes, 0)).await.map_err(failed("call"))?.into_inner();
    let mut got = Vec::new();
    while let Some(response) = stream.next().await {
        got.push(response.map_err(failed("response"))?.payload.map_or(0, |p| p.body.len() as i32));
    }
    let want: Vec<i32> = sizes.iter().map(|s| s.0).collect();
    ensure(got == want, || format!("responses of {got:?} bytes came, {want:?} were asked for"))
}

fn input(size: usize, expect_compressed: Option<bool>) -> StreamingInputCallRequest {
    StreamingInputCallRequest {
        payload: zeros(size),
        expect_compressed: expect_compressed.map(|v| BoolValue { value: v }),
    }
}

async fn client_streaming_with(client: &mut Client, requests: Vec<StreamingInputCallRequest>, want: i32) -> Outcome {
    let response =
        client.streaming_input_call(tokio_stream::iter(requests)).await.map_err(failed("call"))?.into_inner();
    ensure(response.aggregated_payload_size == want, || {
        format!("aggregated_payload_size {}, {want} was expected", response.aggregated_payload_size)
    })
}

/// Checks a call ended by its caller comes back CANCELLED without
/// disturbing the connection: a call after it succeeds.
async fn after_cancel(client: &mut Client, cancelled: impl Future<Output = Outcome>) -> Outcome {
    cancelled.await?;
    client.empty_call(Empty {}).await.map_err(failed("a call after the cancelled one"))?;
    Ok(())
}

fn echo_metadata(map: &mut MetadataMap) {
    map.insert("x-grpc-test-echo-initial", MetadataValue::from_static("test_initial_metadata_value"));
    map.insert_bin("x-grpc-test-echo-trailing-bin", MetadataValue::from_bytes(&[0xab, 0xab, 0xab]));
}

fn check_echo(headers: &MetadataMap, trailers: &MetadataMap, what: &str) -> Outcome {
    let initial = headers.get("x-grpc-test-echo-initial").map(|v| v.as_bytes().to_vec());
    ensure(initial.as_deref() == Some(b"test_initial_metadata_value"), || {
        format!("{what}: initial metadata x-grpc-test-echo-initial came back as {initial:?}")
    })?;
    let trailing = trailers.get_bin("x-grpc-test-echo-trailing-bin").map(|v| v.to_bytes());
    ensure(matches!(&trailing, Some(Ok(b)) if b[..] == [0xab, 0xab, 0xab]), || {
        format!("{what}: trailing metadata x-grpc-test-echo-trailing-bin came back as {trailing:?}")
    })
}

const SPECIAL_MESSAGE: &str = "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n";

async fn status_with(client: &mut Client, message: &str) -> Outcome {
    let status = Some(EchoStatus { code: 2, message: message.to_owned() });
    let check = |result: Result<(), Status>, what: &str| match result {
        Err(s) if s.code() == Code::Unknown && s.message() == message => Ok(()),
        Err(s) => Err(format!("{what}: {:?} {:?}, UNKNOWN {message:?} was expected", s.code(), s.message())),
        Ok(()) => Err(format!("{what}: succeeded, UNKNOWN was expected")),
    };
    let unary = client
        .unary_call(SimpleRequest { response_status: status.clone(), ..SimpleRequest::default() })
        .await
        .map(drop);
    check(unary, "UnaryCall")?;
    let request = StreamingOutputCallRequest { response_status: status, ..StreamingOutputCallRequest::default() };
    let duplex = async {
        let mut stream = client.full_duplex_call(tokio_stream::iter([request])).await?.into_inner();
        while stream.message().await?.is_some() {}
        Ok(())
    };
    check(duplex.await, "FullDuplexCall")
}

async fn run_case(case: &str, peer: &Peer) -> Outcome {
    let mut client = peer.client(None).await?;
    match case {
        "empty_unary" => {
            client.empty_call(Empty {}).await.map_err(failed("EmptyCall"))?;
            Ok(())
        }
        "large_unary" => large_unary_with(&mut client, large_request(), "UnaryCall").await,
        "client_compressed_unary" => {
            let probe = SimpleRequest { expect_compressed: yes(true), ..large_request() };
            expect_code(client.unary_call(probe.clone()).await, Code::InvalidArgument, "uncompressed probe")?;
            let mut gzip = peer.client(Some(Compression::Gzip)).await?;
            large_unary_with(&mut gzip, probe, "compressed request").await?;
            let plain = SimpleRequest { expect_compressed: yes(false), ..large_request() };
            large_unary_with(&mut client, plain, "uncompressed request").await
        }
        "server_compressed_unary" => {
            for compressed in [true, false] {
                let request = SimpleRequest { response_compressed: yes(compressed), ..large_request() };
                large_unary_with(&mut client, request, &format!("response_compressed={compressed}")).await?;
            }
            Ok(())
        }
        "client_streaming" => {
            let requests = [27182, 8, 1828, 45904].map(|n| input(n, None)).to_vec();
            client_streaming_with(&mut client, requests, 74922).await
        }
        "client_compressed_streaming" => {
            let probe = client.streaming_input_call(tokio_stream::iter([input(27182, Some(true))])).await;
            expect_code(probe, Code::InvalidArgument, "uncompressed probe")?;
            // This client compresses every message of a compressed call;
            // the second one does not ask to be checked.
            let mut gzip = peer.client(Some(Compression::Gzip)).await?;
            client_streaming_with(&mut gzip, vec![input(27182, Some(true)), input(45904, Some(false))], 73086).await
        }
        "server_streaming" => {
            server_streaming_with(&mut client, &[(31415, false), (9, false), (2653, false), (58979, false)]).await
        }
        "server_compressed_streaming" => server_streaming_with(&mut client, &[(31415, true), (92653, false)]).await,
        "ping_pong" => {
            let (tx, rx) = mpsc::channel(1);
            let pairs = [(27182, 31415), (8, 9), (1828, 2653), (45904, 58979)];
            // The first request goes out with the call: a server may hold
            // its response headers until it has read one.
            tx.send(output_request(&[(pairs[0].1, false)], pairs[0].0)).await.map_err(|_| "the call ended early")?;
            let mut stream = client
                .full_duplex_call(Request::new(ReceiverStream::new(rx)))
                .await
                .map_err(failed("FullDuplexCall"))?
                .into_inner();
            for (i, (request, response)) in pairs.into_iter().enumerate() {
                if i > 0 {
                    tx.send(output_request(&[(response, false)], request)).await.map_err(|_| "the call ended early")?;
                }
                let got = stream.message().await.map_err(failed("response"))?;
                let size = got.and_then(|r| r.payload).map(|p| p.body.len());
                ensure(size == Some(response as usize), || {
                    format!("a response of {size:?} bytes came, {response} were asked for")
                })?;
            }
            drop(tx);
            let end = stream.message().await.map_err(failed("end of stream"))?;
            ensure(end.is_none(), || "a response came after the last one".to_owned())
        }
        "empty_stream" => {
            let mut stream =
                client.full_duplex_call(tokio_stream::empty()).await.map_err(failed("FullDuplexCall"))?.into_inner();
            let first = stream.message().await.map_err(failed("end of stream"))?;
            ensure(first.is_none(), || "a response came to an empty stream".to_owned())
        }
        "cancel_after_begin" => {
            let mut caller = client.clone();
            let cancelled = async move {
                let (_tx, rx) = mpsc::channel::<StreamingInputCallRequest>(1);
                let call = caller.streaming_input_call(ReceiverStream::new(rx));
                // Cancelling a call is dropping it: the stream is reset with
                // CANCEL and the caller sees CANCELLED.
                match tokio::time::timeout(Duration::from_millis(200), call).await {
                    Err(_elapsed) => Ok(()),
                    Ok(result) => Err(format!("the call ended by itself before it was cancelled: {result:?}")),
                }
            };
            after_cancel(&mut client, cancelled).await
        }
        "cancel_after_first_response" => {
            let mut caller = client.clone();
            let cancelled = async move {
                let (tx, rx) = mpsc::channel(1);
                tx.send(output_request(&[(31415, false)], 27182)).await.map_err(|_| "the call ended early")?;
                let mut stream = caller
                    .full_duplex_call(Request::new(ReceiverStream::new(rx)))
                    .await
                    .map_err(failed("FullDuplexCall"))?
                    .into_inner();
                let first = stream.message().await.map_err(failed("first response"))?;
                ensure(first.is_some(), || "the stream ended before its first response".to_owned())?;
                drop(stream);
                drop(tx);
                Ok(())
            };
            after_cancel(&mut client, cancelled).await
        }
        "timeout_on_sleeping_server" => {
            let (tx, rx) = mpsc::channel(1);
            let mut request = Request::new(ReceiverStream::new(rx));
            request.set_timeout(Duration::from_millis(1));
            let _ = tx.send(output_request(&[(31415, false)], 27182)).await;
            let result = async {
                let mut stream = client.full_duplex_call(request).await?.into_inner();
                while stream.message().await?.is_some() {}
                Ok(())
            };
            let outcome = expect_code(result.await, Code::DeadlineExceeded, "FullDuplexCall with a 1 ms deadline");
            drop(tx);
            outcome
        }
        "custom_metadata" => {
            let mut request =
                Request::new(SimpleRequest { response_size: 314159, payload: zeros(271828), ..Default::default() });
            echo_metadata(request.metadata_mut());
            let response = client.unary_call(request).await.map_err(failed("UnaryCall"))?;
            // A unary response's metadata holds its headers and trailers.
            check_echo(response.metadata(), response.metadata(), "UnaryCall")?;
            let mut request = Request::new(tokio_stream::iter([output_request(&[(314159, false)], 271828)]));
            echo_metadata(request.metadata_mut());
            let response = client.full_duplex_call(request).await.map_err(failed("FullDuplexCall"))?;
            let headers = response.metadata().clone();
            let mut stream = response.into_inner();
            while stream.message().await.map_err(failed("response"))?.is_some() {}
            let trailers = stream.trailers().await.map_err(failed("trailers"))?.unwrap_or_default();
            check_echo(&headers, &trailers, "FullDuplexCall")
        }
        "status_code_and_message" => status_with(&mut client, "test status message").await,
        "special_status_message" => status_with(&mut client, SPECIAL_MESSAGE).await,
        "unimplemented_method" => {
            expect_code(client.unimplemented_call(Empty {}).await, Code::Unimplemented, "UnimplementedCall")
        }
        "unimplemented_service" => {
            let mut other = unimplemented_service_svc::Client::builder(&peer.target);
            if let Some(tls) = &peer.tls {
                other = other.tls(tls.clone());
            }
            let mut other = other.build().await.map_err(|e| format!("connecting: {e}"))?;
            let result = other.unimplemented_call(Empty {}).await;
            expect_code(result, Code::Unimplemented, "UnimplementedService/UnimplementedCall")
        }
        other => Err(unknown_case(other)),
    }
}

fn unknown_case(case: &str) -> String {
    format!("unknown test case {case:?}; this client runs {}, or all of them with --test_case=all", CASES.join(", "))
}

async fn run() -> Result<bool, String> {
    let flags = Flags::parse(std::env::args().skip(1), FLAGS)?;
    let host = flags.string("server_host", "localhost");
    let port: u16 = flags.number("server_port", 10000)?;
    let case = flags.string("test_case", "large_unary");
    let tls = if flags.bool("use_tls", false)? {
        let mut tls = ClientTls::default();
        if flags.bool("use_test_ca", false)? {
            let ca =
                flags.get("ca_file").ok_or("--use_test_ca needs --ca_file: the PEM test CA that signed the server")?;
            tls = tls.ca_file(ca);
        } else if let Some(ca) = flags.get("ca_file") {
            tls = tls.ca_file(ca);
        }
        if let Some(name) = flags.get("server_host_override").filter(|n| !n.is_empty()) {
            tls = tls.server_name(name);
        }
        Some(tls)
    } else {
        None
    };
    let peer = Peer { target: format!("{host}:{port}"), tls };
    let cases: Vec<&str> = match case.as_str() {
        "all" => CASES.to_vec(),
        one if CASES.contains(&one) => vec![one],
        other => return Err(unknown_case(other)),
    };
    let mut all_passed = true;
    for case in cases {
        match run_case(case, &peer).await {
            Ok(()) => println!("PASS {case}"),
            Err(why) => {
                all_passed = false;
                println!("FAIL {case}: {why}");
            }
        }
    }
    Ok(all_passed)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("interop-client: {e}");
            ExitCode::from(2)
        }
    }
}
