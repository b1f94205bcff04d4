fn main() -> Result<(), Box<dyn std::error::Error>> {
    protoc_gen_svc::configure().compile(&["proto/bench/v1/bench.proto"], &["proto"])?;
    Ok(())
}
