//! Manifest generation beyond the golden files: both template engines agree,
//! `templates=DIR` overrides, one `port` annotation reaches every place a
//! port appears, and impossible deployment settings stop generation.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use protoc_gen_svc::emit::manifests::{self, Targets};
use protoc_gen_svc::emit::templates::{BUILT_IN, Overrides};
use protoc_gen_svc::{GeneratedFile, Options};

const BOTH: Targets = Targets { k8s: true, docker: true };

fn input(file: &Path, include: &Path) -> protoc_gen_svc::Input {
    protoc_gen_svc::source::compile(&[file.to_path_buf()], &[include.to_path_buf()]).expect("fixture compiles")
}

fn fixtures() -> Vec<(PathBuf, PathBuf)> {
    let (dir, file) = example();
    let maximal = repo().join("tests/protos/maximal");
    let auth = repo().join("tests/protos/auth");
    vec![(file, dir), (maximal.join("shop.proto"), maximal), (auth.join("vault.proto"), auth)]
}

fn generate(input: &protoc_gen_svc::Input, params: &str) -> Result<Vec<GeneratedFile>, String> {
    let options = Options::parse(params).map_err(|e| e.to_string())?;
    protoc_gen_svc::generate(input, &options).map_err(|e| e.to_string())
}

#[test]
fn built_in_templates_render_the_same_through_the_override_engine() {
    // Copies of the built-in templates given as overrides go through
    // minijinja; the output must match askama's byte for byte, so a copied
    // template is a faithful starting point for customisation.
    let copies = Overrides::from_sources("copies", BUILT_IN.iter().map(|(n, s)| ((*n).to_owned(), (*s).to_owned())));
    for (file, include) in fixtures() {
        let packages = protoc_gen_svc::read_ir(&input(&file, &include)).expect("ir");
        let askama = manifests::emit(&packages, BOTH, &Overrides::none(), Default::default()).expect("built in");
        let minijinja = manifests::emit(&packages, BOTH, &copies, Default::default()).expect("overrides");
        assert!(!askama.is_empty());
        for (a, m) in askama.iter().zip(&minijinja) {
            assert_eq!(a, m, "{} differs between the engines", a.name);
        }
        assert_eq!(askama.len(), minijinja.len());
    }
}

#[test]
fn an_override_directory_replaces_only_its_templates() {
    let dir = temp_dir("template-overrides");
    let (_, deployment) = BUILT_IN.iter().find(|(n, _)| *n == "deployment.yaml").expect("built in");
    let custom =
        deployment.replace("      annotations:\n", "      annotations:\n        team: {{ meta.name }}-owners\n");
    std::fs::write(dir.join("deployment.yaml"), &custom).expect("write override");
    let (proto_dir, file) = example();
    let input = input(&file, &proto_dir);
    let plain = generate(&input, "target=k8s").expect("plain");
    let custom = generate(&input, &format!("target=k8s,templates={}", dir.display())).expect("custom");
    assert_eq!(plain.len(), custom.len());
    for (p, c) in plain.iter().zip(&custom) {
        if p.name == "greeter/deployment.yaml" {
            assert!(c.content.contains("        team: greeter-owners\n"), "{}", c.content);
            assert_eq!(c.content.replace("        team: greeter-owners\n", ""), p.content);
        } else {
            assert_eq!(p, c, "{} changed without an override", p.name);
        }
    }
}

#[test]
fn override_mistakes_are_reported_with_the_file() {
    let (proto_dir, file) = example();
    let input = input(&file, &proto_dir);

    let dir = temp_dir("template-overrides-misspelt");
    std::fs::write(dir.join("deploymnet.yaml"), "x").expect("write");
    let e = generate(&input, &format!("target=k8s,templates={}", dir.display())).expect_err("misspelt");
    assert!(e.contains("deploymnet.yaml is not the name of a template"), "{e}");
    assert!(e.contains("deployment.yaml, service.yaml"), "lists the names: {e}");

    let dir = temp_dir("template-overrides-syntax");
    std::fs::write(dir.join("pdb.yaml"), "a: 1\nb: {{ meta.name }\n").expect("write");
    let e = generate(&input, &format!("target=k8s,templates={}", dir.display())).expect_err("syntax");
    assert!(e.contains(&format!("{}:2", dir.join("pdb.yaml").display())), "names file and line: {e}");

    let dir = temp_dir("template-overrides-field");
    std::fs::write(dir.join("hpa.yaml"), "max: {{ max_replica }}\n").expect("write");
    let e = generate(&input, &format!("target=k8s,templates={}", dir.display())).expect_err("unknown field");
    assert!(e.contains("template hpa.yaml") && e.contains("undefined"), "{e}");

    let e = generate(&input, "target=k8s,templates=/nonexistent/templates").expect_err("missing dir");
    assert!(e.contains("cannot read directory \"/nonexistent/templates\""), "{e}");
}

/// The example's proto with its ports changed.
fn example_with_ports(grpc: u16, metrics: u16) -> protoc_gen_svc::Input {
    let (proto_dir, file) = example();
    let text = std::fs::read_to_string(&file).expect("example proto");
    assert!(text.contains("port: 50051") && text.contains("metrics_port: 9090"));
    let changed = text.replace("50051", &grpc.to_string()).replace("9090", &metrics.to_string());
    let dir = temp_dir(&format!("ports-{grpc}-{metrics}"));
    let target = dir.join("greeter/v1/greeter.proto");
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    std::fs::write(&target, changed).expect("write proto");
    protoc_gen_svc::source::compile(&[target], &[dir, proto_dir]).expect("compiles")
}

#[test]
fn changing_a_port_in_the_proto_changes_every_place_it_appears() {
    let (proto_dir, file) = example();
    let before = generate(&input(&file, &proto_dir), "target=all").expect("before");
    let after = generate(&example_with_ports(47123, 47124), "target=all").expect("after");
    assert_eq!(before.len(), after.len());
    let mut places = 0;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.name, a.name);
        places += b.content.matches("50051").count() + b.content.matches("9090").count();
        if b.name == "greeter.v1.rs" {
            // The embedded descriptor set is binary; the spec is not.
            assert!(
                a.content.contains("port: 47123u16,") && a.content.contains("metrics_port: 47124u16,"),
                "{}",
                a.name
            );
            continue;
        }
        // The only differences are the ports, everywhere they occur.
        assert!(!a.content.contains("50051") && !a.content.contains("9090"), "{} keeps an old port", a.name);
        assert_eq!(b.content.replace("50051", "47123").replace("9090", "47124"), a.content, "{}", b.name);
    }
    // Container ports, three probes, both Service ports, NetworkPolicy,
    // config file, scrape annotation, Dockerfile EXPOSE, server spec.
    assert!(places >= 12, "ports found in only {places} places");
}

#[test]
fn impossible_deployments_are_generation_errors_with_a_line() {
    let dir = repo().join("tests/protos/bad");
    let input = input(&dir.join("bad_annotations.proto"), &dir);
    let e = generate(&input, "target=k8s").expect_err("bad");
    for needle in [
        "bad_annotations.proto:9:3: service bad.v1.Bad: deploy.autoscale.min_replicas 5 is above max_replicas 3",
        "bad_annotations.proto:9:3: service bad.v1.Bad: deploy.resources.cpu_request: \"1.5Gb\"",
        "deploy.resources.cpu_limit 500m is below cpu_request 2",
        "deploy.pdb_min_available 5 is not below the replica count 5",
    ] {
        let found = e.lines().any(|l| l.contains(needle) || (needle.contains("1.5Gb") && l.contains("\"1.5Gb\"")));
        assert!(found, "missing {needle:?} in:\n{e}");
    }
}

#[test]
fn manifests_are_only_for_annotated_services_and_names_must_fit() {
    let dir = temp_dir("unannotated");
    let long = "A".repeat(30) + &"b".repeat(30);
    std::fs::write(
        dir.join("x.proto"),
        format!(
            "syntax = \"proto3\";\npackage x.v1;\nimport \"svc/options.proto\";\nmessage M {{}}\n\
             service Plain {{ rpc Get(M) returns (M); }}\n\
             service {long} {{ option (svc.service) = {{ port: 50051 }}; rpc Get(M) returns (M); }}\n"
        ),
    )
    .expect("write");
    let input = protoc_gen_svc::source::compile(&[dir.join("x.proto")], &[dir]).expect("compiles");
    let e = generate(&input, "target=k8s").expect_err("too long");
    assert!(e.contains("x.proto: service x.v1.") && e.contains("is longer than 54 characters"), "{e}");
    assert!(!e.contains("Plain"), "{e}");
}

#[test]
fn latest_only_when_asked_for() {
    let dir = temp_dir("latest");
    let proto = |image: &str| {
        format!(
            "syntax = \"proto3\";\npackage x.v1;\nimport \"svc/options.proto\";\nmessage M {{}}\n\
             service Box {{ option (svc.service) = {{ deploy {{ image: \"{image}\" }} }}; rpc Get(M) returns (M); }}\n"
        )
    };
    std::fs::write(dir.join("x.proto"), proto("registry.local:5000/box:latest")).expect("write");
    let input = protoc_gen_svc::source::compile(&[dir.join("x.proto")], std::slice::from_ref(&dir)).expect("compiles");
    let files = generate(&input, "target=k8s").expect("explicit :latest is the user's choice");
    let deployment = files.iter().find(|f| f.name == "box/deployment.yaml").expect("deployment");
    assert!(
        deployment.content.contains("image: \"registry.local:5000/box:latest\"\n          imagePullPolicy: Always")
    );
    std::fs::write(dir.join("x.proto"), proto("registry.local:5000/box")).expect("write");
    let input = protoc_gen_svc::source::compile(&[dir.join("x.proto")], &[dir]).expect("compiles");
    let e = generate(&input, "target=k8s").expect_err("untagged");
    assert!(e.contains("x.proto:5:") && e.contains("has no tag or digest"), "{e}");
}

#[test]
fn left_out_resources_adapt_to_written_ones() {
    let dir = temp_dir("resources");
    std::fs::write(
        dir.join("x.proto"),
        "syntax = \"proto3\";\npackage x.v1;\nimport \"svc/options.proto\";\nmessage M {}\n\
         service Tiny { option (svc.service) = { deploy { resources { memory_limit: \"64Mi\" cpu_request: \"2\" } } }; \
         rpc Get(M) returns (M); }\n",
    )
    .expect("write");
    let input = protoc_gen_svc::source::compile(&[dir.join("x.proto")], std::slice::from_ref(&dir)).expect("compiles");
    let files = generate(&input, "target=k8s").expect("generates");
    let deployment = &files.iter().find(|f| f.name == "tiny/deployment.yaml").expect("deployment").content;
    // The written values stand; the defaults give way (request 128Mi would
    // exceed the 64Mi limit, limit 1 would be below the 2-CPU request).
    let resources = "requests:\n              cpu: \"2\"\n              memory: \"64Mi\"\n            \
                     limits:\n              cpu: \"2\"\n              memory: \"64Mi\"\n";
    assert!(deployment.contains(resources), "{deployment}");
}
