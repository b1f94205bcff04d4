//! `svc_runtime::proto!` compiles .proto files at macro-expansion time, without
//! protoc, into the same modules the other front ends write as files.
#![deny(warnings)]

svc_runtime::proto!(
    "../examples/01-greeter/proto/greeter/v1/greeter.proto",
    includes = ["../examples/01-greeter/proto"]
);

use greeter::v1::{HelloRequest, greeter_svc};
use prost::Message;

#[test]
fn types_and_specs_are_generated() {
    let request = HelloRequest { name: "Ada".into() };
    let bytes = request.encode_to_vec();
    assert_eq!(HelloRequest::decode(bytes.as_slice()).expect("decodes"), request);
    let spec = &greeter_svc::SERVICE;
    assert_eq!(spec.name, "greeter.v1.Greeter");
    assert_eq!(spec.port, 50051);
    assert_eq!(spec.server.max_concurrent_streams, 128);
    let say_hello = spec.method("/greeter.v1.Greeter/SayHello").expect("method spec");
    assert!(say_hello.idempotent);
    assert_eq!(say_hello.timeout, Some(std::time::Duration::from_secs(2)));
    let retry = say_hello.retry.expect("retry policy");
    assert_eq!(retry.max_attempts, 3);
    assert_eq!(
        retry.retryable_codes,
        &[svc_runtime::tonic::Code::ResourceExhausted, svc_runtime::tonic::Code::Unavailable]
    );
    assert!(spec.method("/greeter.v1.Greeter/Chat").expect("chat").audit);
}

#[test]
fn embedded_descriptors_describe_the_service() {
    let set = prost_types::FileDescriptorSet::decode(greeter::v1::FILE_DESCRIPTORS.encode_set().as_slice())
        .expect("valid set");
    let names: Vec<_> = set.file.iter().map(|f| f.name().to_owned()).collect();
    assert!(names.contains(&"greeter/v1/greeter.proto".to_owned()), "{names:?}");
    assert!(names.contains(&"svc/options.proto".to_owned()));
    // The set is self-contained: every import, the well-known types included,
    // is reachable, so reflection can serve it without a registry of its own.
    for file in &set.file {
        for dep in &file.dependency {
            assert!(names.contains(dep), "{} imports {dep}, which is missing from {names:?}", file.name());
        }
    }
    assert!(names.contains(&"google/protobuf/descriptor.proto".to_owned()), "{names:?}");
    let greeter = set.file.iter().find(|f| f.name() == "greeter/v1/greeter.proto").expect("greeter file");
    assert_eq!(greeter.service[0].method.len(), 4);
}
