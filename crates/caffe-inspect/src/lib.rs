//! `caffe-inspect`: what is inside a Caffe file, without Caffe.
//!
//! Thin glue: the `caffemodel` crate reads the file; this binary computes the figures and prints them.

mod compression;
mod report;
mod stats;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Look inside a Caffe file: .caffemodel (modern, V1 or V0), .caffez, .prototxt, .solverstate or .binaryproto.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Example:\n  caffe-inspect testdata/lenet.caffemodel --net testdata/lenet.prototxt\n  \
                  (a row per layer with weights: shapes, params, nonzeros, sparsity, dense and sparse bytes)\n  \
                  caffe-inspect model.caffez --index-bits 5\n  \
                  (and, for a quantized model, Deep Compression's Table 3: bits per weight and index, bytes, ratios)"
)]
struct Args {
    /// The file to inspect.
    file: PathBuf,
    /// A net definition to check the weights against (which layers get weights, which are ignored).
    #[arg(long, value_name = "NET.prototxt", alias = "prototxt")]
    net: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Read with this caffe.proto (a fork's schema) instead of the built-in one.
    #[arg(long, value_name = "PATH")]
    proto: Option<PathBuf>,
    /// Index bits of the relative-index (gap) form used for the sparse size column.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=16))]
    index_bits: u8,
    #[command(flatten)]
    common: clikit::Common,
}

/// The tool's command-line definition (for shell completions and man pages, `cargo xtask completions` and `man`).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// The whole tool: parses the process's arguments, runs, and gives the exit code (`src/main.rs` only calls this).
pub fn main() -> ExitCode {
    let args = match clikit::parse_args::<Args>("caffe-inspect") {
        Ok(args) => args,
        Err(code) => return code,
    };
    let result = args.common.run(|| {
        let text = report::run(
            &args.file,
            args.net.as_deref(),
            args.proto.as_deref(),
            args.json,
            args.index_bits,
        )?;
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth a message.
        let _ = out.write_all(text.as_bytes());
        Ok(())
    });
    clikit::finish("caffe-inspect", result)
}
