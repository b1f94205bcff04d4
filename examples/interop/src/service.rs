//! `grpc.testing.TestService` as the interop test descriptions define it:
//! payloads of the requested sizes, echoed statuses, per-message
//! compression checks and choices (through [`crate::wire`]), intervals
//! between streamed responses, and clean ends when a client cancels.

use std::pin::Pin;
use std::time::Duration;

use svc_runtime::tonic::{self, Code, Request, Response, Status, Streaming};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::generated::grpc::testing::test_service_server::TestService;
use crate::generated::grpc::testing::{
    BoolValue, EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use crate::wire::Compression;

/// The test service. `server_id` is what `fill_server_id` asks for.
#[derive(Debug, Clone)]
pub struct TestServiceImpl {
    /// Identifies this server process in responses that ask for it.
    pub server_id: String,
}

impl Default for TestServiceImpl {
    fn default() -> Self {
        TestServiceImpl { server_id: format!("svc-interop-{}", std::process::id()) }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<StreamingOutputCallResponse, Status>> + Send + 'static>>;

/// A payload of `size` zero bytes of the requested type.
fn payload(kind: i32, size: i32) -> Result<Payload, Status> {
    if kind != PayloadType::Compressable as i32 {
        return Err(Status::invalid_argument(format!("payload type {kind} is not supported (only COMPRESSABLE)")));
    }
    let size = usize::try_from(size)
        .map_err(|_| Status::invalid_argument(format!("a response of {size} bytes was asked for")))?;
    Ok(Payload { r#type: kind, body: vec![0; size] })
}

/// The status a request asks to be answered with, if any.
fn echo_status(status: Option<&EchoStatus>) -> Option<Status> {
    status.filter(|s| s.code != 0).map(|s| Status::new(Code::from_i32(s.code), s.message.clone()))
}

fn is_set(flag: Option<&BoolValue>) -> bool {
    flag.is_some_and(|b| b.value)
}

/// Refuses a message that should have arrived compressed and did not.
fn check_compressed(expect: Option<&BoolValue>, compression: Option<&Compression>) -> Result<(), Status> {
    let compressed = compression.is_some_and(Compression::next_received_compressed);
    if is_set(expect) && !compressed {
        return Err(Status::invalid_argument("the request was expected to be compressed, and it arrived uncompressed"));
    }
    Ok(())
}

/// Streams the responses `parameters` ask for into `tx`; false once the
/// client has gone.
async fn respond(
    tx: &mpsc::Sender<Result<StreamingOutputCallResponse, Status>>,
    kind: i32,
    parameters: &[ResponseParameters],
    compression: Option<&Compression>,
) -> bool {
    for p in parameters {
        if p.interval_us > 0 {
            tokio::time::sleep(Duration::from_micros(p.interval_us.unsigned_abs().into())).await;
        }
        let response = payload(kind, p.size).map(|payload| StreamingOutputCallResponse { payload: Some(payload) });
        if let (Some(c), Ok(_)) = (compression, &response) {
            c.compress_next(is_set(p.compressed.as_ref()));
        }
        let failed = response.is_err();
        if tx.send(response).await.is_err() || failed {
            return false;
        }
    }
    true
}

#[tonic::async_trait]
impl TestService for TestServiceImpl {
    async fn empty_call(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        if let Some(c) = request.extensions().get::<Compression>() {
            c.compress_next(false);
        }
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(&self, request: Request<SimpleRequest>) -> Result<Response<SimpleResponse>, Status> {
        let compression = request.extensions().get::<Compression>().cloned();
        let req = request.into_inner();
        check_compressed(req.expect_compressed.as_ref(), compression.as_ref())?;
        if let Some(status) = echo_status(req.response_status.as_ref()) {
            return Err(status);
        }
        let payload = payload(req.response_type, req.response_size)?;
        if let Some(c) = &compression {
            c.compress_next(is_set(req.response_compressed.as_ref()));
        }
        Ok(Response::new(SimpleResponse {
            payload: Some(payload),
            server_id: if req.fill_server_id { self.server_id.clone() } else { String::new() },
            ..SimpleResponse::default()
        }))
    }

    async fn cacheable_unary_call(&self, request: Request<SimpleRequest>) -> Result<Response<SimpleResponse>, Status> {
        self.unary_call(request).await
    }

    type StreamingOutputCallStream = ResponseStream;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let compression = request.extensions().get::<Compression>().cloned();
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            if respond(&tx, req.response_type, &req.response_parameters, compression.as_ref()).await
                && let Some(status) = echo_status(req.response_status.as_ref())
            {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let compression = request.extensions().get::<Compression>().cloned();
        let mut stream = request.into_inner();
        let mut total = 0usize;
        while let Some(req) = stream.next().await {
            let req = req?;
            check_compressed(req.expect_compressed.as_ref(), compression.as_ref())?;
            total += req.payload.map_or(0, |p| p.body.len());
        }
        if let Some(c) = &compression {
            c.compress_next(false);
        }
        let aggregated_payload_size =
            i32::try_from(total).map_err(|_| Status::invalid_argument("more than 2 GiB of payload"))?;
        Ok(Response::new(StreamingInputCallResponse { aggregated_payload_size }))
    }

    type FullDuplexCallStream = ResponseStream;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let compression = request.extensions().get::<Compression>().cloned();
        let mut stream = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(req) = stream.next().await {
                let req = match req {
                    Ok(req) => req,
                    // The client cancelled or broke the stream: nothing to
                    // answer.
                    Err(_) => return,
                };
                if let Some(status) = echo_status(req.response_status.as_ref()) {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                if !respond(&tx, req.response_type, &req.response_parameters, compression.as_ref()).await {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type HalfDuplexCallStream = ResponseStream;

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        let compression = request.extensions().get::<Compression>().cloned();
        let mut stream = request.into_inner();
        let mut requests = Vec::new();
        while let Some(req) = stream.next().await {
            requests.push(req?);
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for req in requests {
                if !respond(&tx, req.response_type, &req.response_parameters, compression.as_ref()).await {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn unimplemented_call(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is not implemented, as the interop tests expect",
        ))
    }
}
