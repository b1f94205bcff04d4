//! The `protoc-gen-svc` binary: a protoc/buf plugin when run without
//! arguments on a pipe, and a CLI otherwise.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

const HELP: &str = "\
protoc-gen-svc — complete Rust gRPC services from annotated .proto files

USAGE:
    protoc-gen-svc                      run as a protoc/buf plugin (request on stdin)
    protoc-gen-svc generate [OPTIONS] FILE...
                                        compile FILEs without protoc and write the code
    protoc-gen-svc new NAME [--proto FILE -I DIR] [--path DIR] [--runtime-path CHECKOUT]
                                        create a complete service crate (sample proto
                                        without --proto); its Cargo.toml asks for the
                                        crates.io releases, --runtime-path builds it
                                        against a protoc-gen-svc checkout instead
    protoc-gen-svc protos DIR           write the built-in .proto files (svc/options.proto,
                                        buf/validate, google/api, google/rpc) under DIR,
                                        for use with protoc -I DIR
    protoc-gen-svc --version | --help

GENERATE OPTIONS:
    -I, --include DIR     directory to search for imports (repeatable)
    -o, --out DIR         output directory (required)
        --opt K=V[,K=V]   generation parameter, as for --svc_opt (repeatable)

PARAMETERS (--svc_opt, buf opt:, --opt):
    target=rust|k8s|docker|all   messages=BOOL   server=BOOL   client=BOOL   validate=BOOL
    runtime_crate=PATH   extern_path=.pkg=::path   type_attribute=PATH=ATTR
    field_attribute=PATH=ATTR   bytes=PATH   btree_map=PATH   include_file=NAME   templates=DIR

protoc:  protoc --plugin=protoc-gen-svc --svc_out=gen -I proto proto/a.proto
buf:     buf.gen.yaml v2 → plugins: [{ local: protoc-gen-svc, out: gen, strategy: all }]
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("protoc-gen-svc: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    match args.first().map(String::as_str) {
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("{HELP}");
                eprintln!("\nprotoc-gen-svc: no request on stdin; run it through protoc or buf, or use `generate`");
                return Ok(ExitCode::from(2));
            }
            let mut request = Vec::new();
            std::io::stdin().read_to_end(&mut request).context("reading the CodeGeneratorRequest from stdin")?;
            let response = protoc_gen_svc::plugin::execute(&request);
            std::io::stdout().write_all(&response).context("writing the CodeGeneratorResponse to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Some("--version" | "-V") => {
            println!("protoc-gen-svc {}", protoc_gen_svc::VERSION);
            Ok(ExitCode::SUCCESS)
        }
        Some("--help" | "-h" | "help") => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Some("generate") => generate(&args[1..]),
        Some("new") => new(&args[1..]),
        Some("protos") => {
            let [dir] = &args[1..] else { bail!("usage: protoc-gen-svc protos DIR") };
            for (name, source) in protoc_gen_svc::source::bundled_protos() {
                let path = PathBuf::from(dir).join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::write(&path, source).with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => bail!("unknown command {other:?}; run `protoc-gen-svc --help`"),
    }
}

fn generate(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut includes = Vec::new();
    let mut files = Vec::new();
    let mut out = None;
    let mut options = protoc_gen_svc::Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().cloned().with_context(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "-I" | "--include" => includes.push(value(arg)?),
            "-o" | "--out" => out = Some(value(arg)?),
            "--opt" => options.apply(&value(arg)?).map_err(|e| anyhow::anyhow!("{e}"))?,
            s if s.starts_with("-I") && s.len() > 2 => includes.push(s[2..].to_owned()),
            s if s.starts_with("--out=") => out = Some(s[6..].to_owned()),
            s if s.starts_with("--opt=") => options.apply(&s[6..]).map_err(|e| anyhow::anyhow!("{e}"))?,
            s if s.starts_with('-') => bail!("unknown option {s:?}; run `protoc-gen-svc --help`"),
            file => files.push(file.to_owned()),
        }
    }
    let Some(out) = out else { bail!("generate needs --out DIR") };
    if files.is_empty() {
        bail!("generate needs at least one .proto file");
    }
    if includes.is_empty() {
        includes.push(".".to_owned());
    }
    let input = protoc_gen_svc::source::compile(&files, &includes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let generated = protoc_gen_svc::generate(&input, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
    protoc_gen_svc::builder::write_files(&PathBuf::from(out), &generated).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}

const NEW_USAGE: &str = "protoc-gen-svc new NAME [--proto FILE -I DIR] [--path DIR] [--runtime-path CHECKOUT]";

fn new(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut name = None;
    let mut proto = None;
    let mut includes = Vec::new();
    let mut path = None;
    let mut checkout = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().cloned().with_context(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--proto" => proto = Some(PathBuf::from(value(arg)?)),
            "-I" | "--include" => includes.push(PathBuf::from(value(arg)?)),
            "--path" => path = Some(PathBuf::from(value(arg)?)),
            "--runtime-path" => checkout = Some(PathBuf::from(value(arg)?)),
            s if s.starts_with('-') => bail!("unknown option {s:?}; run `protoc-gen-svc --help`"),
            s if name.is_none() => name = Some(s.to_owned()),
            s => bail!("unexpected argument {s:?}; usage: {NEW_USAGE}"),
        }
    }
    let Some(name) = name else { bail!("usage: {NEW_USAGE}") };
    let deps = match checkout {
        None => protoc_gen_svc::scaffold::Dependencies::Registry,
        Some(dir) => {
            let missing: Vec<&str> = ["runtime/Cargo.toml", "protoc-gen-svc/Cargo.toml"]
                .into_iter()
                .filter(|f| !dir.join(f).is_file())
                .collect();
            if !missing.is_empty() {
                bail!(
                    "--runtime-path {}: not a protoc-gen-svc checkout (no {}); give the directory that holds runtime/ and protoc-gen-svc/",
                    dir.display(),
                    missing.join(" or ")
                );
            }
            let root = std::fs::canonicalize(&dir).with_context(|| format!("--runtime-path {}", dir.display()))?;
            protoc_gen_svc::scaffold::Dependencies::Checkout(root)
        }
    };
    let source = match proto {
        Some(file) => {
            if includes.is_empty() {
                includes.push(file.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")));
            }
            Some(protoc_gen_svc::scaffold::ProtoSource { file, includes })
        }
        None if !includes.is_empty() => bail!("-I needs --proto FILE"),
        None => None,
    };
    let dir = path.unwrap_or_else(|| PathBuf::from(".")).join(&name);
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty; choose another NAME or --path", dir.display());
    }
    let files =
        protoc_gen_svc::scaffold::scaffold(&name, source.as_ref(), &deps).map_err(|e| anyhow::anyhow!("{e}"))?;
    protoc_gen_svc::builder::write_files(&dir, &files).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created {} — cd there and `cargo run` / `cargo test`", dir.display());
    Ok(ExitCode::SUCCESS)
}
