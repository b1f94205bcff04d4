fn main() -> Result<(), Box<dyn std::error::Error>> {
    // bench.v1 (run.py's echo service) and bench.complex.v1 (peers.py's
    // payload, served by every peer).
    protoc_gen_svc::configure().compile(&["proto/bench/v1/bench.proto", "peers/complex.proto"], &["proto", "peers"])?;
    Ok(())
}
