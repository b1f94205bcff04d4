"""Benchmark: how long a clean debug build of a fresh `protoc-gen-svc new`
scaffold takes, against a bare tonic greeter (tonic, prost, tonic-prost-build
with protoc; the same service: one unary and one server-streaming method),
measured in alternating rounds in one run on this machine. Dependencies are
downloaded before timing; each build starts from an empty target directory.

Prints each build's wall time and number of compiled units, then the
medians and the scaffold/greeter ratio. The scaffold is built against this
checkout (`new --runtime-path`), exactly as its users would build the
published crates.

usage: python3 bench/scaffold_build.py [--rounds N] [--with-auth]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))

GREETER_PROTO = """syntax = "proto3";

package hello.v1;

service Hello {
  rpc Greet(GreetRequest) returns (GreetReply);
  rpc GreetMany(GreetRequest) returns (stream GreetReply);
}

message GreetRequest {
  string name = 1;
}

message GreetReply {
  string message = 1;
}
"""

GREETER_MAIN = """use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub mod pb {
    tonic::include_proto!("hello.v1");
}

use pb::hello_server::{Hello, HelloServer};
use pb::{GreetReply, GreetRequest};

#[derive(Default)]
struct Greeter;

#[tonic::async_trait]
impl Hello for Greeter {
    async fn greet(&self, request: Request<GreetRequest>) -> Result<Response<GreetReply>, Status> {
        let message = format!("hello {}", request.into_inner().name);
        Ok(Response::new(GreetReply { message }))
    }

    type GreetManyStream = Pin<Box<dyn Stream<Item = Result<GreetReply, Status>> + Send>>;

    async fn greet_many(&self, request: Request<GreetRequest>) -> Result<Response<Self::GreetManyStream>, Status> {
        let message = format!("hello {}", request.into_inner().name);
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(GreetReply { message })]))))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = "0.0.0.0:50051".parse()?;
    tonic::transport::Server::builder().add_service(HelloServer::new(Greeter)).serve(addr).await?;
    Ok(())
}
"""


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def protoc():
    for candidate in [os.environ.get("PROTOC"), ROOT / ".tools" / "protoc" / "protoc", shutil.which("protoc")]:
        if candidate and Path(candidate).exists():
            return str(candidate)
    sys.exit("the greeter needs protoc (tonic-prost-build runs it): run scripts/setup-tools.sh")


def greeter(where):
    crate = where / "tonic-greeter"
    (crate / "proto").mkdir(parents=True)
    (crate / "src").mkdir()
    (crate / "proto" / "hello.proto").write_text(GREETER_PROTO)
    (crate / "src" / "main.rs").write_text(GREETER_MAIN)
    (crate / "build.rs").write_text(
        'fn main() -> Result<(), Box<dyn std::error::Error>> {\n'
        '    tonic_prost_build::compile_protos("proto/hello.proto")?;\n    Ok(())\n}\n'
    )
    (crate / "Cargo.toml").write_text(
        """[package]
name = "tonic-greeter"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
tonic = "0.14"
tonic-prost = "0.14"
prost = "0.14"
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }
tokio-stream = "0.1"

[build-dependencies]
tonic-prost-build = "0.14"

[workspace]
"""
    )
    return crate


def scaffold(where, with_auth):
    plugin = PLUGIN_TARGET / "debug" / "protoc-gen-svc"
    args = [plugin, "new", "hello-service", "--path", where, "--runtime-path", ROOT]
    if with_auth:
        args += ["--proto", ROOT / "tests" / "protos" / "auth" / "vault.proto", "-I", ROOT / "tests" / "protos" / "auth"]
    sh(args)
    return where / "hello-service"


def clean_build(crate, env):
    shutil.rmtree(crate / "target", ignore_errors=True)
    start = time.monotonic()
    r = subprocess.run(["cargo", "build"], cwd=crate, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"building {crate.name} failed:\n{r.stderr[-4000:]}")
    units = sum(1 for line in r.stderr.splitlines() if line.strip().startswith("Compiling "))
    return elapsed, units


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--with-auth", action="store_true", help="scaffold an HS256 JWT service (the jwt feature)")
    args = parser.parse_args()
    sh(["cargo", "build", "-q", "-p", "protoc-gen-svc"], cwd=ROOT)
    work = Path(tempfile.mkdtemp(prefix="scaffold-build-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGO_TARGET")}
    env["PROTOC"] = protoc()
    env["CARGO_TERM_COLOR"] = "never"
    try:
        crates = {"scaffold": scaffold(work, args.with_auth), "tonic greeter": greeter(work)}
        for crate in crates.values():
            sh(["cargo", "fetch"], cwd=crate, env=env)
        results = {name: [] for name in crates}
        for round_ in range(args.rounds):
            order = list(crates.items()) if round_ % 2 == 0 else list(crates.items())[::-1]
            for name, crate in order:
                elapsed, units = clean_build(crate, env)
                results[name].append((elapsed, units))
                print(f"round {round_ + 1}: {name:14} {elapsed:6.1f} s  {units} units", flush=True)
        medians = {name: statistics.median(t for t, _ in runs) for name, runs in results.items()}
        units = {name: runs[0][1] for name, runs in results.items()}
        for name in crates:
            print(f"{name:14} median {medians[name]:6.1f} s, {units[name]} units")
        ratio = medians["scaffold"] / medians["tonic greeter"]
        print(f"scaffold / tonic greeter: {ratio:.2f}x wall time, {units['scaffold'] / units['tonic greeter']:.2f}x units")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
