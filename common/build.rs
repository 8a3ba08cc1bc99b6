//! Compiles the coordinator ⇄ worker gRPC contract (`proto/earthcatalog/v1/*.proto`).
//!
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no system install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../proto";
    let file = "../proto/earthcatalog/v1/coordinator.proto";
    println!("cargo:rerun-if-changed={file}");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().build_server(true).build_client(true).compile_with_config(
        config,
        &[file],
        &[proto_root],
    )?;
    Ok(())
}
