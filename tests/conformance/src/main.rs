//! The protovalidate conformance executor (run by `protovalidate-conformance`):
//! reads a `TestConformanceRequest` on stdin, validates each case with the
//! validators protoc-gen-svc generated, writes a `TestConformanceResponse`.

use std::collections::HashMap;
use std::io::{Read, Write};

use prost::Message;

#[allow(clippy::all, dead_code, missing_docs)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}

/// Why a case is not valid.
enum Failure {
    /// Its violations.
    Invalid(svc_runtime::validate::Violations),
    /// A rule's expression could not be evaluated.
    Error(String),
    /// Its message's rules were rejected by the generator (the harness
    /// expects a compilation error).
    Rejected(&'static str),
}

fn rejected(why: &'static str) -> Failure {
    Failure::Rejected(why)
}

fn checked(result: Result<(), svc_runtime::validate::Failure>) -> Result<(), Failure> {
    result.map_err(|f| match f {
        svc_runtime::validate::Failure::Invalid(v) => Failure::Invalid(v),
        svc_runtime::validate::Failure::Error(e) => Failure::Error(e),
    })
}

mod registry {
    include!(concat!(env!("OUT_DIR"), "/registry.rs"));
}

/// `buf.validate.conformance.harness.TestConformanceRequest` (the
/// descriptor set is not read: the validators were generated from it).
#[derive(Clone, PartialEq, Message)]
struct TestConformanceRequest {
    #[prost(map = "string, message", tag = "3")]
    cases: HashMap<String, prost_types::Any>,
}

/// `TestConformanceResponse`.
#[derive(Clone, PartialEq, Message)]
struct TestConformanceResponse {
    #[prost(map = "string, message", tag = "1")]
    results: HashMap<String, TestResult>,
}

/// `TestResult`.
#[derive(Clone, PartialEq, Message)]
struct TestResult {
    #[prost(oneof = "Outcome", tags = "1, 2, 3, 4, 5")]
    result: Option<Outcome>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Outcome {
    #[prost(bool, tag = "1")]
    Success(bool),
    #[prost(message, tag = "2")]
    ValidationError(svc_runtime::validate::wire::Violations),
    #[prost(string, tag = "3")]
    CompilationError(String),
    #[prost(string, tag = "4")]
    RuntimeError(String),
    #[prost(string, tag = "5")]
    UnexpectedError(String),
}

fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("stdin");
    let request = TestConformanceRequest::decode(&input[..]).expect("a TestConformanceRequest on stdin");
    let mut results = HashMap::new();
    for (name, case) in request.cases {
        let outcome = match registry::validate(&case.type_url, &case.value) {
            None => Outcome::UnexpectedError(format!("no validator for {}", case.type_url)),
            Some(Err(e)) => Outcome::UnexpectedError(format!("cannot decode {}: {e}", case.type_url)),
            Some(Ok(Ok(()))) => Outcome::Success(true),
            Some(Ok(Err(Failure::Invalid(violations)))) => Outcome::ValidationError((&violations).into()),
            Some(Ok(Err(Failure::Rejected(why)))) => Outcome::CompilationError(why.to_owned()),
            Some(Ok(Err(Failure::Error(why)))) => Outcome::RuntimeError(why),
        };
        results.insert(name, TestResult { result: Some(outcome) });
    }
    let response = TestConformanceResponse { results };
    std::io::stdout().write_all(&response.encode_to_vec()).expect("stdout");
}
