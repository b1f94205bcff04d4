//! A generated package's `FILE_DESCRIPTORS` describe it completely: following
//! its links reaches every import of every file, the well-known types
//! included, so reflection needs nothing else; and each file's bytes are
//! embedded once in the generated tree.

use svc_runtime::codegen::FileDescriptors;
use svc_runtime::codegen::prost::Message;
use svc_runtime::codegen::prost_types::{FileDescriptorProto, FileDescriptorSet};

fn decode(node: &'static FileDescriptors) -> Vec<FileDescriptorProto> {
    node.files().into_iter().map(|bytes| FileDescriptorProto::decode(bytes).expect("decodes")).collect()
}

#[test]
fn generated_descriptors_reach_every_import() {
    for (package, node) in [
        ("greeter.v1", &svc_tests::default::greeter::v1::FILE_DESCRIPTORS),
        ("shop.v1", &svc_tests::default::shop::v1::FILE_DESCRIPTORS),
    ] {
        let files = decode(node);
        let names: Vec<&str> = files.iter().map(|f| f.name()).collect();
        for (i, file) in files.iter().enumerate() {
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
        let set = FileDescriptorSet::decode(node.encode_set().as_slice()).expect("the set decodes");
        assert_eq!(set.file, files);
    }
    let greeter = decode(&svc_tests::default::greeter::v1::FILE_DESCRIPTORS);
    assert!(greeter.iter().any(|f| f.name() == "google/protobuf/timestamp.proto"));
}

#[test]
fn imported_files_are_embedded_once() {
    // Both packages import svc/options.proto and the well-known types: the
    // packages' own statics hold only their own files and share the rest.
    let own = |node: &FileDescriptors| -> Vec<String> {
        node.files.iter().map(|b| FileDescriptorProto::decode(*b).expect("decodes").name().to_owned()).collect()
    };
    assert_eq!(own(&svc_tests::default::greeter::v1::FILE_DESCRIPTORS), ["greeter/v1/greeter.proto"]);
    let greeter = svc_tests::default::greeter::v1::FILE_DESCRIPTORS.files();
    let shop = svc_tests::default::shop::v1::FILE_DESCRIPTORS.files();
    let options = |files: &[&'static [u8]]| -> *const u8 {
        files
            .iter()
            .find(|b| FileDescriptorProto::decode(**b).expect("decodes").name() == "svc/options.proto")
            .expect("svc/options.proto is reachable")
            .as_ptr()
    };
    assert_eq!(options(&greeter), options(&shop), "one copy of svc/options.proto");
}

#[test]
fn packages_that_import_each_other_link_both_ways() {
    let names = |node: &'static FileDescriptors| -> Vec<String> {
        decode(node).into_iter().map(|f| f.name().to_owned()).collect()
    };
    let all = ["cycle/a/base.proto", "cycle/b/shape.proto", "cycle/a/drawing.proto"];
    for node in [&svc_tests::cyclic::cycle::a::FILE_DESCRIPTORS, &svc_tests::cyclic::cycle::b::FILE_DESCRIPTORS] {
        let reached = names(node);
        for file in all {
            assert_eq!(reached.iter().filter(|n| *n == file).count(), 1, "{file} once in {reached:?}");
        }
    }
    // The service's spec reaches every file too.
    let spec = &svc_tests::cyclic::cycle::a::canvas_svc::SERVICE;
    assert_eq!(names(spec.descriptors).len(), names(&svc_tests::cyclic::cycle::a::FILE_DESCRIPTORS).len());
}
