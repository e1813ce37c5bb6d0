//! Compiles `proto/*.proto` with protox (no `protoc` binary), then generates
//! prost types and their canonical protobuf-JSON serde impls (pbjson).
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/client.proto", "proto/bus.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("descriptors.bin");
    fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;

    let descriptors = fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .ignore_unknown_fields()
        .build(&[".im.gateway.v1"])?;
    Ok(())
}
