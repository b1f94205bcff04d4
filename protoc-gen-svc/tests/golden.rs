//! Golden fixtures: generated output for each case is compared with the
//! files under tests/golden/<case>/. Run with UPDATE_GOLDEN=1 to rewrite
//! them, then review the diff.

mod common;

use std::path::PathBuf;

use common::*;

struct Case {
    name: &'static str,
    /// Where the expected files are, relative to the repository root;
    /// default `protoc-gen-svc/tests/golden/<name>`.
    dir: Option<&'static str>,
    files: &'static [&'static str],
    includes: &'static [&'static str],
    params: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "validation",
        dir: None,
        files: &["tests/protos/validation/rules.proto"],
        includes: &["tests/protos/validation"],
        params: "",
    },
    Case {
        name: "maximal",
        dir: None,
        files: &["tests/protos/maximal/shop.proto"],
        includes: &["tests/protos/maximal"],
        params: "",
    },
    Case {
        name: "http",
        dir: None,
        files: &["tests/protos/http/library.proto"],
        includes: &["tests/protos/http"],
        params: "",
    },
    Case {
        name: "example_openapi",
        dir: None,
        files: &["examples/01-greeter/proto/greeter/v1/greeter.proto"],
        includes: &["examples/01-greeter/proto"],
        params: "target=openapi",
    },
    Case {
        name: "http_openapi",
        dir: None,
        files: &["tests/protos/http/library.proto"],
        includes: &["tests/protos/http"],
        params: "target=openapi",
    },
    Case {
        name: "adversarial",
        dir: None,
        files: &["tests/protos/adversarial/keywords.proto", "tests/protos/adversarial/legacy.proto"],
        includes: &["tests/protos/adversarial"],
        params: "",
    },
    Case {
        name: "services_only",
        dir: None,
        files: &["tests/protos/maximal/shop.proto"],
        includes: &["tests/protos/maximal"],
        params: "messages=false,client=false,include_file=",
    },
    Case {
        name: "messages_only",
        dir: None,
        files: &["tests/protos/maximal/shop.proto"],
        includes: &["tests/protos/maximal"],
        params: "server=false,client=false,bytes=.,btree_map=.shop.v1.Item.labels",
    },
    Case {
        name: "example_k8s",
        dir: Some("examples/01-greeter/deploy"),
        files: &["examples/01-greeter/proto/greeter/v1/greeter.proto"],
        includes: &["examples/01-greeter/proto"],
        params: "target=k8s",
    },
    Case {
        name: "example_docker",
        dir: None,
        files: &["examples/01-greeter/proto/greeter/v1/greeter.proto"],
        includes: &["examples/01-greeter/proto"],
        params: "target=docker",
    },
    Case {
        name: "maximal_k8s",
        dir: None,
        files: &["tests/protos/maximal/shop.proto"],
        includes: &["tests/protos/maximal"],
        params: "target=k8s",
    },
    Case {
        name: "auth_k8s",
        dir: None,
        files: &["tests/protos/auth/vault.proto"],
        includes: &["tests/protos/auth"],
        params: "target=k8s",
    },
];

#[test]
fn golden_outputs() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in CASES {
        let files: Vec<PathBuf> = case.files.iter().map(|f| repo().join(f)).collect();
        let includes: Vec<PathBuf> = case.includes.iter().map(|f| repo().join(f)).collect();
        let input = protoc_gen_svc::source::compile(&files, &includes).expect("fixture compiles");
        let options = protoc_gen_svc::Options::parse(case.params).expect("params parse");
        let generated = protoc_gen_svc::generate(&input, &options).expect("generates");
        let dir = match case.dir {
            Some(dir) => repo().join(dir),
            None => repo().join("protoc-gen-svc/tests/golden").join(case.name),
        };
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            protoc_gen_svc::builder::write_files(&dir, &generated).expect("write golden");
            continue;
        }
        let mut actual: Vec<(String, String)> = generated.into_iter().map(|f| (f.name, f.content)).collect();
        actual.sort();
        let expected = if dir.exists() { read_tree(&dir) } else { Vec::new() };
        if actual != expected {
            failures.push(case.name);
        }
    }
    assert!(
        failures.is_empty(),
        "golden output differs for {failures:?}; run UPDATE_GOLDEN=1 cargo test -p protoc-gen-svc --test golden and review the diff"
    );
}
