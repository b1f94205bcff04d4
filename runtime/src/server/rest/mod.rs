//! HTTP/JSON transcoding (feature `rest`): the methods' `google.api.http`
//! bindings, served on the HTTP port by the same process. A call is turned
//! into a gRPC request and handed, in process, to the same service the gRPC
//! listener serves, behind the same middleware (request id, tracing,
//! metrics, auth, rate limits, validation, deadlines): both surfaces give
//! the same answer to the same call.
//!
//! - Requests: path fields from the template, then (unless `body: "*"`)
//!   query parameters for the other fields (`a.b=1`, repeated fields by
//!   repeating the key), then the JSON body (the whole message for
//!   `body: "*"`, one field's value for `body: "field"`), read with the
//!   canonical proto3 JSON mapping; unknown fields are refused.
//! - Metadata: `Authorization`, `X-Request-Id`, `traceparent`,
//!   `tracestate` and `Grpc-Timeout` pass as they are, `Grpc-Metadata-<key>`
//!   headers as `<key>`; response metadata comes back as
//!   `Grpc-Metadata-<key>` (headers) and `Grpc-Trailer-<key>` (trailers).
//! - Responses: the response message as JSON (`response_body` picks one
//!   field); errors as `google.rpc.Status` JSON (`code`, `message`,
//!   `details`) with grpc-gateway's code-to-HTTP mapping.
//! - Server streaming: newline-delimited JSON, one `{"result": message}`
//!   per line and `{"error": status}` if the call fails after it began
//!   (grpc-gateway's shape, `application/x-ndjson`); with `Accept:
//!   text/event-stream`, Server-Sent Events, one `data:` event per message
//!   and an `event: error` at a failure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use tokio::net::TcpListener;
use tonic::body::Body;

use crate::codegen::{HttpRule, MethodKind, ServiceSpec};
use crate::log::{Level, Logger, Value as LogValue};

mod json;
mod route;

/// The body of an HTTP/JSON response.
type RestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The routes of every binding of the served services.
pub(crate) struct Rest {
    routes: Vec<Route>,
    status: MessageDescriptor,
    max_body: usize,
    /// The services' OpenAPI documents as one, for `/openapi.json`.
    openapi: Option<Bytes>,
}

struct Route {
    rule: &'static HttpRule,
    grpc_path: &'static str,
    streaming: bool,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

impl Rest {
    /// The routes of `specs`, whose descriptors are `files`; `None` when no
    /// method has a binding.
    pub(crate) fn new(
        specs: &[&'static ServiceSpec],
        files: prost_types::FileDescriptorSet,
    ) -> Result<Option<Rest>, crate::Error> {
        let bad = |e: String| crate::Error::Reflection(e);
        if specs.iter().all(|s| s.methods.iter().all(|m| m.http.is_empty())) {
            return Ok(None);
        }
        let mut pool = DescriptorPool::global();
        pool.add_file_descriptor_set(files).map_err(|e| bad(format!("descriptors for HTTP/JSON: {e}")))?;
        let errors = prost_types::FileDescriptorSet::decode(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .map_err(|e| bad(format!("google.rpc descriptors: {e}")))?;
        pool.add_file_descriptor_set(errors).map_err(|e| bad(format!("google.rpc descriptors: {e}")))?;
        let message = |name: &str| {
            pool.get_message_by_name(name).ok_or_else(|| bad(format!("no message {name} in the descriptors")))
        };
        let status = message("google.rpc.Status")?;
        let mut routes = Vec::new();
        for spec in specs {
            for m in spec.methods {
                if m.http.is_empty() {
                    continue;
                }
                let (service, name) = m.path.trim_start_matches('/').split_once('/').unwrap_or_default();
                let method = pool
                    .get_service_by_name(service)
                    .and_then(|s| s.methods().find(|d| d.name() == name))
                    .ok_or_else(|| bad(format!("no method {} in the descriptors", m.path)))?;
                for rule in m.http {
                    routes.push(Route {
                        rule,
                        grpc_path: m.path,
                        streaming: m.kind == MethodKind::ServerStreaming,
                        input: method.input(),
                        output: method.output(),
                    });
                }
            }
        }
        let max_body = specs.iter().map(|s| s.server.max_recv_message_size).max().unwrap_or(4 << 20);
        let openapi = merged_openapi(specs.iter().filter_map(|s| s.openapi)).map(Bytes::from);
        Ok(Some(Rest { routes, status, max_body, openapi }))
    }
}

/// One OpenAPI document of several services: their paths, schemas and
/// security schemes together (each service's own when there is one).
fn merged_openapi<'a>(documents: impl Iterator<Item = &'a str>) -> Option<Vec<u8>> {
    let documents: Vec<&str> = documents.collect();
    match documents.as_slice() {
        [] => None,
        [one] => Some(one.as_bytes().to_vec()),
        many => {
            let mut merged: Option<serde_json::Value> = None;
            for text in many {
                let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else { continue };
                let Some(into) = merged.as_mut() else {
                    merged = Some(doc);
                    continue;
                };
                for section in [&["paths"][..], &["components", "schemas"], &["components", "securitySchemes"]] {
                    let from = section.iter().try_fold(&doc, |v, k| v.get(*k)).and_then(|v| v.as_object());
                    let Some(from) = from else { continue };
                    let mut to = &mut *into;
                    for key in section {
                        to = to.as_object_mut()?.entry(*key).or_insert_with(|| serde_json::json!({}));
                    }
                    let to = to.as_object_mut()?;
                    for (k, v) in from {
                        to.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                let title = format!(
                    "{}, {}",
                    into["info"]["title"].as_str().unwrap_or(""),
                    doc["info"]["title"].as_str().unwrap_or("")
                );
                into["info"]["title"] = serde_json::json!(title);
            }
            merged.and_then(|m| serde_json::to_vec_pretty(&m).ok())
        }
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes, handing each
/// call to `service`; connections then finish their current request.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    rest: Arc<Rest>,
    service: S,
    logger: Logger,
    shutdown: tokio::sync::watch::Receiver<bool>,
) where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let local = listener.local_addr().ok();
    let mut stop = shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    logger.log(Level::Warn, "HTTP accept failed", &[("error", LogValue::Str(&e.to_string()))]);
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let (rest, service, mut stop) = (rest.clone(), service.clone(), shutdown.clone());
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |req| {
                let (rest, service) = (rest.clone(), service.clone());
                async move { Ok::<_, Infallible>(handle(&rest, service, peer, local, req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), handler);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// Names of request headers passed to the gRPC call as they are.
const PASSED: [&str; 5] = ["authorization", "x-request-id", "traceparent", "tracestate", "grpc-timeout"];

async fn handle<S, B>(
    rest: &Rest,
    mut service: S,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    req: http::Request<B>,
) -> http::Response<RestBody>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if path == "/openapi.json"
        && matches!(parts.method, http::Method::GET | http::Method::HEAD)
        && let Some(document) = &rest.openapi
    {
        let mut response = http::Response::new(Full::new(document.clone()).boxed());
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        return response;
    }
    let mut best: Option<(&Route, route::Match)> = None;
    let mut other_method = false;
    for r in &rest.routes {
        let Some(m) = route::matches(r.rule, path) else { continue };
        if r.rule.method != parts.method.as_str() {
            other_method = true;
            continue;
        }
        if best.as_ref().is_none_or(|(_, b)| m.rank > b.rank) {
            best = Some((r, m));
        }
    }
    let Some((route, matched)) = best else {
        let (code, what) = if other_method { (12, "is not allowed on") } else { (5, "has no binding at") };
        let message = format!("{} {what} {path}", parts.method);
        let status = if other_method { http::StatusCode::METHOD_NOT_ALLOWED } else { http::StatusCode::NOT_FOUND };
        return error(rest, status, code, &message);
    };
    let Some(query) = route::query_pairs(parts.uri.query().unwrap_or("")) else {
        return failure(rest, 3, "the query string has a malformed %-escape");
    };
    let body = match Limited::new(body, rest.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => failure(rest, 8, &format!("the body is larger than {} bytes", rest.max_body)),
                None => failure(rest, 3, &format!("the body could not be read: {e}")),
            };
        }
    };
    let message = match json::request(&route.input, route.rule, &matched.fields, &query, &body) {
        Ok(message) => message,
        Err(problem) => return failure(rest, 3, &problem),
    };
    let mut frame = BytesMut::with_capacity(5 + message.encoded_len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.encoded_len()).unwrap_or(u32::MAX));
    message.encode_raw(&mut frame);
    let mut grpc = http::Request::new(Body::new(Full::new(frame.freeze())));
    *grpc.method_mut() = http::Method::POST;
    *grpc.uri_mut() = http::Uri::from_static(route.grpc_path);
    *grpc.version_mut() = http::Version::HTTP_2;
    let headers = grpc.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    for (name, value) in &parts.headers {
        if PASSED.contains(&name.as_str()) {
            headers.append(name, value.clone());
        } else if let Some(key) = name.as_str().strip_prefix("grpc-metadata-")
            && let Ok(key) = http::HeaderName::from_bytes(key.as_bytes())
        {
            headers.append(key, value.clone());
        }
    }
    grpc.extensions_mut()
        .insert(tonic::transport::server::TcpConnectInfo { local_addr: local, remote_addr: Some(peer) });
    if std::future::poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
        return failure(rest, 14, "the service is not ready");
    }
    let Ok(response) = service.call(grpc).await;
    let sse =
        parts.headers.get_all(http::header::ACCEPT).iter().any(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if route.streaming { stream(rest, route, response, sse).await } else { unary(rest, route, response).await }
}

/// The response to a unary call: its message (or field) as JSON, or its
/// error.
async fn unary(rest: &Rest, route: &Route, response: http::Response<Body>) -> http::Response<RestBody> {
    let (parts, mut body) = response.into_parts();
    if let Some(code) = crate::completion::status_of(&parts.headers) {
        return status_response(rest, code, &parts.headers, &parts.headers, &http::HeaderMap::new());
    }
    let mut data = BytesMut::new();
    let mut trailers = http::HeaderMap::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().unwrap_or_default(),
            },
            Err(status) => return failure(rest, status.code() as u8, status.message()),
        }
    }
    let code = crate::completion::status_of(&trailers).unwrap_or(2);
    if code != 0 {
        return status_response(rest, code, &trailers, &parts.headers, &trailers);
    }
    let mut data = data.freeze();
    let message = match next_message(&mut data) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return failure(rest, 13, "the call ended without a response message"),
        Err(problem) => return failure(rest, 13, &problem),
    };
    let message = match DynamicMessage::decode(route.output.clone(), message) {
        Ok(message) => message,
        Err(e) => return failure(rest, 13, &format!("the response does not decode: {e}")),
    };
    match json::response(&message, route.rule.response_body) {
        Ok(json) => json_response(http::StatusCode::OK, json, &parts.headers, &trailers),
        Err(problem) => failure(rest, 13, &problem),
    }
}

/// The response to a server-streaming call: one line (or event) per
/// message as the messages arrive.
async fn stream(rest: &Rest, route: &Route, response: http::Response<Body>, sse: bool) -> http::Response<RestBody> {
    let (parts, mut body) = response.into_parts();
    if let Some(code) = crate::completion::status_of(&parts.headers) {
        // Trailers-only: the call failed (or sent nothing) before it began.
        if code != 0 {
            return status_response(rest, code, &parts.headers, &parts.headers, &http::HeaderMap::new());
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (output, status, response_body) = (route.output.clone(), rest.status.clone(), route.rule.response_body);
    tokio::spawn(async move {
        let mut data = BytesMut::new();
        let mut trailers = None;
        let mut failed = None;
        'frames: while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    failed = Some(status_json(&status, e.code() as u8, e.message(), None));
                    break;
                }
            };
            match frame.into_data() {
                Ok(bytes) => {
                    data.extend_from_slice(&bytes);
                    let mut ready = data.split().freeze();
                    loop {
                        match next_message(&mut ready) {
                            Ok(Some(message)) => {
                                let json = DynamicMessage::decode(output.clone(), message)
                                    .map_err(|e| format!("a response message does not decode: {e}"))
                                    .and_then(|m| json::response(&m, response_body));
                                let line = match json {
                                    Ok(json) => event(sse, false, &json),
                                    Err(problem) => {
                                        failed = Some(status_json(&status, 13, &problem, None));
                                        break 'frames;
                                    }
                                };
                                if tx.send(line).await.is_err() {
                                    return; // the caller went away; dropping the body cancels the call
                                }
                            }
                            Ok(None) => break,
                            Err(problem) => {
                                failed = Some(status_json(&status, 13, &problem, None));
                                break 'frames;
                            }
                        }
                    }
                    data.extend_from_slice(&ready);
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        if failed.is_none() {
            let trailers = trailers.unwrap_or_default();
            let code = crate::completion::status_of(&trailers).unwrap_or(2);
            if code != 0 {
                failed = Some(status_from(&status, code, &trailers));
            }
        }
        if let Some(error) = failed {
            let _ = tx.send(event(sse, true, &error)).await;
        }
    });
    let frames = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |bytes| {
        Ok::<_, Infallible>(http_body::Frame::data(bytes))
    });
    let mut response = http::Response::new(StreamBody::new(frames).boxed());
    let content_type = if sse { "text/event-stream" } else { "application/x-ndjson" };
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    copy_metadata(response.headers_mut(), &parts.headers, "grpc-metadata-");
    response
}

/// One streamed message (or the final error) as an NDJSON line or an SSE
/// event.
fn event(sse: bool, error: bool, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 16);
    match (sse, error) {
        (true, false) => out.extend_from_slice(b"data: "),
        (true, true) => out.extend_from_slice(b"event: error\ndata: "),
        (false, false) => out.extend_from_slice(b"{\"result\":"),
        (false, true) => out.extend_from_slice(b"{\"error\":"),
    }
    out.extend_from_slice(json);
    out.extend_from_slice(if sse { b"\n\n" } else { b"}\n" });
    Bytes::from(out)
}

/// The next complete gRPC message in `data`, consumed from it.
fn next_message(data: &mut Bytes) -> Result<Option<Bytes>, String> {
    if data.len() < 5 {
        return Ok(None);
    }
    if data[0] != 0 {
        return Err("the response message is compressed".to_owned());
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data.len() < 5 + len {
        return Ok(None);
    }
    data.advance(5);
    Ok(Some(data.split_to(len)))
}

/// gRPC's code as an HTTP status, as grpc-gateway maps it.
fn http_status(code: u8) -> http::StatusCode {
    let status = match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    };
    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// The error response of a call whose status (`code`, with `grpc-message`
/// and `grpc-status-details-bin` in `at`) is not OK.
fn status_response(
    rest: &Rest,
    code: u8,
    at: &http::HeaderMap,
    headers: &http::HeaderMap,
    trailers: &http::HeaderMap,
) -> http::Response<RestBody> {
    json_response(http_status(code), status_from(&rest.status, code, at), headers, trailers)
}

/// `google.rpc.Status` JSON from the status in `headers`: the details
/// from `grpc-status-details-bin` when it decodes.
fn status_from(status: &MessageDescriptor, code: u8, headers: &http::HeaderMap) -> Vec<u8> {
    let message =
        headers.get("grpc-message").and_then(|m| m.to_str().ok()).and_then(route::percent_decode).unwrap_or_default();
    let details = headers.get("grpc-status-details-bin").and_then(|v| {
        use base64::Engine as _;
        let text = v.as_bytes();
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text.strip_suffix(b"==").or(text.strip_suffix(b"=")).unwrap_or(text))
            .ok()
    });
    status_json(status, code, &message, details.as_deref())
}

/// `google.rpc.Status` JSON: `details` (an encoded Status, as gRPC sends
/// it) when given and readable, else `code` and `message` alone.
fn status_json(status: &MessageDescriptor, code: u8, message: &str, details: Option<&[u8]>) -> Vec<u8> {
    let decoded = details.and_then(|bytes| DynamicMessage::decode(status.clone(), bytes).ok());
    if let Some(json) = decoded.and_then(|m| json::to_json(&m, &prost_reflect::SerializeOptions::new()).ok()) {
        return json;
    }
    serde_json::to_vec(&serde_json::json!({ "code": code, "message": message, "details": [] })).unwrap_or_default()
}

fn failure(rest: &Rest, code: u8, message: &str) -> http::Response<RestBody> {
    error(rest, http_status(code), code, message)
}

fn error(rest: &Rest, status: http::StatusCode, code: u8, message: &str) -> http::Response<RestBody> {
    let body = status_json(&rest.status, code, message, None);
    json_response(status, body, &http::HeaderMap::new(), &http::HeaderMap::new())
}

fn json_response(
    status: http::StatusCode,
    json: Vec<u8>,
    headers: &http::HeaderMap,
    trailers: &http::HeaderMap,
) -> http::Response<RestBody> {
    let mut response = http::Response::new(Full::new(Bytes::from(json)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    copy_metadata(response.headers_mut(), headers, "grpc-metadata-");
    copy_metadata(response.headers_mut(), trailers, "grpc-trailer-");
    response
}

/// The call's metadata in `from`, as `<prefix><key>` headers; the request
/// id as it is.
fn copy_metadata(to: &mut http::HeaderMap, from: &http::HeaderMap, prefix: &str) {
    for (name, value) in from {
        let name = name.as_str();
        if name == "x-request-id" {
            to.insert(http::HeaderName::from_static("x-request-id"), value.clone());
            continue;
        }
        if name == "content-type" || name.starts_with("grpc-") || name.ends_with("-bin") {
            continue;
        }
        if let Ok(header) = http::HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) {
            to.append(header, value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_as_grpc_gateway_maps_them() {
        let expected = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401];
        for (code, http) in expected.into_iter().enumerate() {
            assert_eq!(http_status(code as u8).as_u16(), http, "code {code}");
        }
    }

    #[test]
    fn messages_are_cut_from_frames() {
        let mut data = Bytes::from_static(b"\x00\x00\x00\x00\x02hi\x00\x00\x00\x00\x01x\x00\x00");
        assert_eq!(next_message(&mut data).expect("ok"), Some(Bytes::from_static(b"hi")));
        assert_eq!(next_message(&mut data).expect("ok"), Some(Bytes::from_static(b"x")));
        assert_eq!(next_message(&mut data).expect("ok"), None);
        assert_eq!(data.len(), 2, "a partial frame stays");
        let mut compressed = Bytes::from_static(b"\x01\x00\x00\x00\x00");
        assert!(next_message(&mut compressed).is_err());
    }

    #[test]
    fn streamed_lines_and_events() {
        assert_eq!(&event(false, false, b"{}")[..], b"{\"result\":{}}\n");
        assert_eq!(&event(false, true, b"{\"code\":2}")[..], b"{\"error\":{\"code\":2}}\n");
        assert_eq!(&event(true, false, b"{}")[..], b"data: {}\n\n");
        assert_eq!(&event(true, true, b"{}")[..], b"event: error\ndata: {}\n\n");
    }
}
