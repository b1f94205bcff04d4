//! The gRPC interop test service, `grpc.testing.TestService`, served and
//! called through code protoc-gen-svc generates from the interop protos,
//! so that the official interop clients and servers of grpc-java and
//! grpc-go can check it case by case (see the contract's §8 and
//! `tests/e2e/test_interop.py`).
//!
//! - [`service::TestServiceImpl`]: what each method does, per the interop
//!   test descriptions.
//! - [`wire::Interop`]: the per-call work a handler cannot do through
//!   tonic: echoing `x-grpc-test-echo-initial` and
//!   `x-grpc-test-echo-trailing-bin`, telling a handler whether each
//!   request message arrived compressed, and compressing exactly the
//!   response messages the request asked to have compressed.
//! - [`flags`]: the interop binaries' `--name=value` flags.
#![deny(warnings)]

/// Code generated from `grpc/testing/{test,messages,empty}.proto`.
#[allow(clippy::all, dead_code, missing_docs)]
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}

pub mod flags;
pub mod service;
pub mod wire;
