//! The four front ends (plugin, `generate`, build-script builder, proc-macro
//! expansion) produce identical bytes for the example, equal to the
//! committed `examples/01-greeter/gen/`.

mod common;

use std::process::Command;

use common::*;
use prost::Message;

fn committed() -> Vec<(String, String)> {
    read_tree(&repo().join("examples/01-greeter/gen"))
}

#[test]
fn plugin_matches_committed_output() {
    let (dir, file) = example();
    let request = request_for(&[file], &[dir], "");
    let response = protoc_gen_svc::plugin::CodeGeneratorResponse::decode(
        protoc_gen_svc::plugin::execute(&request.encode_to_vec()).as_slice(),
    )
    .expect("decodes");
    assert_eq!(response.error, None);
    let mut files: Vec<(String, String)> =
        response.file.into_iter().map(|f| (f.name.unwrap_or_default(), f.content.unwrap_or_default())).collect();
    files.sort();
    assert_eq!(
        files,
        committed(),
        "examples/01-greeter/gen is stale: regenerate it with scripts/regen.sh and review the diff"
    );
}

#[test]
fn plugin_binary_reads_stdin() {
    let (dir, file) = example();
    let request = request_for(&[file], &[dir], "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_protoc-gen-svc"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(&request.encode_to_vec()).expect("write request");
    let out = child.wait_with_output().expect("plugin exits");
    assert!(out.status.success());
    let response = protoc_gen_svc::plugin::CodeGeneratorResponse::decode(out.stdout.as_slice()).expect("decodes");
    assert_eq!(response.error, None);
    assert_eq!(response.file.len(), 2);
}

#[test]
fn generate_command_matches() {
    let (dir, file) = example();
    let out = temp_dir("frontends-generate");
    let status = Command::new(env!("CARGO_BIN_EXE_protoc-gen-svc"))
        .arg("generate")
        .arg("-I")
        .arg(&dir)
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run generate");
    assert!(status.success());
    assert_eq!(read_tree(&out), committed());
}

#[test]
fn builder_matches() {
    let (dir, file) = example();
    let out = temp_dir("frontends-builder");
    protoc_gen_svc::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[file], &[dir])
        .expect("builder compiles");
    assert_eq!(read_tree(&out), committed());
}

#[test]
fn macro_expansion_matches() {
    let request = protoc_gen_svc::macro_support::MacroRequest {
        files: vec!["examples/01-greeter/proto/greeter/v1/greeter.proto".into()],
        includes: vec!["examples/01-greeter/proto".into()],
        options: String::new(),
    };
    let expansion = protoc_gen_svc::macro_support::expand(&request, &repo()).expect("expands");
    let committed = committed();
    let (_, package_file) = committed.iter().find(|(n, _)| n == "greeter.v1.rs").expect("package file");
    // The macro inlines each package's code (everything after the header
    // line) in the module tree the include file declares.
    let body = package_file.split_once('\n').expect("header line").1;
    let inline: String =
        body.lines().map(|l| if l.is_empty() { "\n".to_owned() } else { format!("        {l}\n") }).collect();
    assert!(expansion.code.contains(&inline), "macro expansion differs from greeter.v1.rs");
    assert!(expansion.tracked.iter().any(|p| p.ends_with("greeter/v1/greeter.proto")));
}

#[test]
fn help_and_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_protoc-gen-svc")).arg("--version").output().expect("runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("protoc-gen-svc {}", protoc_gen_svc::VERSION));
    let out = Command::new(env!("CARGO_BIN_EXE_protoc-gen-svc")).arg("--help").output().expect("runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("generate [OPTIONS] FILE"));
    let out = Command::new(env!("CARGO_BIN_EXE_protoc-gen-svc")).arg("frobnicate").output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"frobnicate\""));
}

#[test]
fn generate_reports_missing_imports_and_bad_syntax() {
    let dir = temp_dir("frontends-bad");
    std::fs::write(dir.join("missing.proto"), "syntax = \"proto3\";\nimport \"nope/gone.proto\";\n").expect("write");
    std::fs::write(dir.join("broken.proto"), "syntax = \"proto3\";\nmessage A { string x = ; }\n").expect("write");
    for (file, needle) in [("missing.proto", "nope/gone.proto"), ("broken.proto", "broken.proto:2:")] {
        let out = Command::new(env!("CARGO_BIN_EXE_protoc-gen-svc"))
            .args(["generate", "-I"])
            .arg(&dir)
            .arg(dir.join(file))
            .arg("--out")
            .arg(dir.join("out"))
            .output()
            .expect("runs");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{file}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn macro_errors_name_the_proto_file_and_line() {
    let request = protoc_gen_svc::macro_support::MacroRequest {
        files: vec!["tests/protos/bad/bad_annotations.proto".into()],
        includes: vec![],
        options: String::new(),
    };
    let error = protoc_gen_svc::macro_support::expand(&request, &repo()).expect_err("bad annotations").to_string();
    assert!(error.contains("bad_annotations.proto:9:3: service bad.v1.Bad: port 70000 is out of range"), "{error}");
    let request = protoc_gen_svc::macro_support::MacroRequest {
        files: vec!["tests/protos/nope.proto".into()],
        ..Default::default()
    };
    let error = protoc_gen_svc::macro_support::expand(&request, &repo()).expect_err("missing file").to_string();
    assert!(error.contains("nope.proto"), "{error}");
    let request = protoc_gen_svc::macro_support::MacroRequest { options: "bogus=1".into(), ..request };
    let error = protoc_gen_svc::macro_support::expand(&request, &repo()).expect_err("bad option").to_string();
    assert!(error.contains("parameter bogus: unknown parameter"), "{error}");
}
