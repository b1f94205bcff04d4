//! The generated server for bench.complex.v1.Greeter (bench/peers.py):
//! `greeter_svc::serve` with its full default middleware (request id,
//! tracing span, metrics, access log, load shedding, deadline, panic
//! recovery) and health, reflection, probes.

use svc_bench::GreeterImpl;
use svc_bench::proto::bench::complex::v1::greeter_svc;

#[tokio::main]
async fn main() -> Result<(), svc_runtime::server::Error> {
    greeter_svc::serve(GreeterImpl).await
}
