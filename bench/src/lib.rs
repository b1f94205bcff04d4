//! The benchmark service, generated from proto/ and shared by both servers.

/// Generated code.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}

use proto::bench::v1::Msg;
use proto::bench::v1::echo_server::Echo;
use svc_runtime::tonic::{self, Request, Response, Status};

/// Echoes the request.
#[derive(Debug, Default, Clone)]
pub struct EchoImpl;

#[tonic::async_trait]
impl Echo for EchoImpl {
    async fn say(&self, request: Request<Msg>) -> Result<Response<Msg>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}
