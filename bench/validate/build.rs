fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/vbench/v1/vbench.proto"];
    protoc_gen_svc::configure().build_server(false).build_client(false).compile(&protos, &["proto"])?;
    // The descriptors (imports included) for prost-protovalidate's pool.
    let input = protoc_gen_svc::source::compile(&protos, &["proto"])?;
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR")?);
    std::fs::write(out.join("vbench.binpb"), &input.descriptor_set)?;
    Ok(())
}
