//! The generated server: `echo_svc::serve` with its full default middleware
//! (request id, metrics, JWT auth, rate limit, load shedding, deadline,
//! panic recovery) and health, reflection, probes.

use svc_bench::EchoImpl;
use svc_bench::proto::bench::v1::echo_svc;

#[tokio::main]
async fn main() -> Result<(), svc_runtime::server::Error> {
    echo_svc::serve(EchoImpl).await
}
