//! Compiles `proto/onnx.proto` (this project's subset of ONNX's schema) with protox, no system
//! `protoc`, and generates the prost types.

use std::{env, path::PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let proto_dir = manifest_dir.join("../../proto");
    let proto_file = proto_dir.join("onnx.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());
    let descriptors = match protox::compile([&proto_file], [&proto_dir]) {
        Ok(set) => set,
        Err(err) => panic!("cannot compile {}: {err:?}", proto_file.display()),
    };
    let mut config = prost_build::Config::new();
    config.out_dir(&out_dir);
    config
        .compile_fds(descriptors)
        .expect("generate Rust code for onnx.proto");
}
