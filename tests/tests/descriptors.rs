//! A generated `FILE_DESCRIPTOR_SET` describes its package completely: every
//! import of every file is in it, the well-known types included, so
//! reflection needs nothing else.

use svc_runtime::codegen::prost::Message;
use svc_runtime::codegen::prost_types::FileDescriptorSet;

#[test]
fn generated_descriptor_sets_hold_every_import() {
    for (package, bytes) in [
        ("greeter.v1", svc_tests::default::greeter::v1::FILE_DESCRIPTOR_SET),
        ("shop.v1", svc_tests::default::shop::v1::FILE_DESCRIPTOR_SET),
    ] {
        let set = FileDescriptorSet::decode(bytes).expect("decodes");
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        for (i, file) in set.file.iter().enumerate() {
            for dep in &file.dependency {
                let at = names.iter().position(|n| n == dep);
                assert!(
                    at.is_some_and(|at| at < i),
                    "{package}: {} imports {dep}, which must come before it",
                    file.name()
                );
            }
            assert!(file.source_code_info.is_none(), "{package}: no source info");
        }
        assert!(names.contains(&"google/protobuf/descriptor.proto"), "{package}: {names:?}");
    }
    let greeter = FileDescriptorSet::decode(svc_tests::default::greeter::v1::FILE_DESCRIPTOR_SET).expect("decodes");
    assert!(greeter.file.iter().any(|f| f.name() == "google/protobuf/timestamp.proto"));
}
