//! `caffe-convert`: the binary. The tool lives in the library (`src/lib.rs`), where `cargo xtask completions` and `man`
//! read its command-line definition too.

fn main() -> std::process::ExitCode {
    caffe_convert::main()
}
