//! `interop-server`: `grpc.testing.TestService` on the generated server
//! (default middleware: access log, metrics, deadlines, limits; health and
//! reflection), taking the official interop servers' flags:
//!
//! ```text
//! interop-server --port=10000 [--use_tls --tls_cert_file=F --tls_key_file=F]
//! ```
//!
//! `--port=0` picks a free port; the first line on stderr names the
//! address. Metrics and health go to `SVC_METRICS_ADDR` (default
//! 127.0.0.1 on a free port, so several servers can run side by side).
#![deny(warnings)]

use std::net::SocketAddr;
use std::process::ExitCode;

use svc_interop::flags::Flags;
use svc_interop::generated::grpc::testing::test_service_svc;
use svc_interop::service::TestServiceImpl;
use svc_interop::wire::Interop;
use svc_runtime::log::Logger;
use svc_runtime::server::{Config, Server};
use svc_runtime::tls::TlsFiles;

const FLAGS: &[(&str, bool)] = &[("port", false), ("use_tls", true), ("tls_cert_file", false), ("tls_key_file", false)];

async fn run() -> Result<(), String> {
    let flags = Flags::parse(std::env::args().skip(1), FLAGS)?;
    let port: u16 = flags.number("port", 10000)?;
    let env = |k: &str| std::env::var(k).ok();
    let spec = &test_service_svc::SERVICE;
    let mut config = Config::from_env(spec).map_err(|e| e.to_string())?;
    config.grpc_addr = SocketAddr::from(([0, 0, 0, 0], port));
    if env("SVC_METRICS_ADDR").is_none() {
        config.metrics_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    }
    let logger = Logger::from_layers(None, env).map_err(|e| e.to_string())?;
    let mut server = Server::with_config(spec, config).logger(logger);
    if flags.bool("use_tls", false)? {
        let file = |name: &str| {
            flags.get(name).map(Into::into).ok_or_else(|| format!("--use_tls needs --{name} (a PEM file)"))
        };
        server = server.tls(TlsFiles { cert: file("tls_cert_file")?, key: file("tls_key_file")?, client_ca: None });
    }
    let service = Interop::new(test_service_svc::server(TestServiceImpl::default()));
    server.serve(service).await.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop-server: {e}");
            ExitCode::from(2)
        }
    }
}
