//! Compiles `proto/caffe.proto` with protox (no system `protoc`), generates the
//! prost types from the resulting descriptors, and stores the encoded
//! `FileDescriptorSet` next to them for run-time reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let proto_dir = manifest_dir.join("../../proto");
    let proto_file = proto_dir.join("caffe.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());

    let descriptors = match protox::compile([&proto_file], [&proto_dir]) {
        Ok(set) => set,
        Err(err) => panic!("cannot compile {}: {err:?}", proto_file.display()),
    };

    fs::write(out_dir.join("caffe_descriptor_set.bin"), descriptors.encode_to_vec())
        .expect("write the descriptor set to OUT_DIR");

    let mut config = prost_build::Config::new();
    config.out_dir(&out_dir);
    config
        .compile_fds(descriptors)
        .expect("generate Rust code for caffe.proto");
}
