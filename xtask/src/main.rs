//! `cargo xtask`: project chores.
//!
//! - `roundtrip [FILE...]`: read and re-encode Caffe binary files, compare bytes (default: testdata/ and
//!   ../shared/fixtures).
//! - `testdata [--check]`: (re)generate the models in testdata/ from fixed seeds, or check they are current.
//! - `bench-prune`: prune + sparse export against the tutorial's numpy algorithm and a memcpy pass.
//! - `bench-inspect`: caffe-inspect on a generated VGG16-sized model against a plain read of the same file.
//! - `bench-eval`: `caffe-prune eval` of the dense and the pruned LeNet as whole processes, 1 and 2 threads,
//!   against real Caffe's recorded `caffe test`.
//! - `bench-train`: LeNet training iterations/s, measured as the fixtures measured real Caffe, against its figure.
//! - `completions [--out DIR]`, `man [--out DIR]`: bash, zsh, fish, elvish and PowerShell completions, and a man page
//!   per tool and subcommand, from the tools' clap definitions (default: target/completions, target/man).

mod bench;
mod bench_eval;
mod bench_kmeans;
mod bench_onnx;
mod bench_prune;
mod bench_train;
mod clidocs;
mod gen;
mod roundtrip;
mod testdata;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Project chores for the Caffe toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read then write every Caffe binary file and compare the bytes; exit 1 on any difference.
    Roundtrip {
        /// Files or folders (default: testdata/ and ../shared/fixtures).
        paths: Vec<PathBuf>,
    },
    /// Generate testdata/ from fixed seeds (with --check: verify the committed files are what the code generates).
    Testdata {
        /// Compare instead of writing; exit 1 on any difference.
        #[arg(long)]
        check: bool,
    },
    /// Benchmark prune + relative-index export against the tutorial's numpy algorithm and a memcpy pass.
    BenchPrune,
    /// Benchmark the ONNX export of a VGG16-sized model against a plain sequential read of its caffemodel.
    BenchOnnx {
        /// Timed runs of each side.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
        runs: u16,
    },
    /// Benchmark weight sharing (k-means, codes) against the tutorial's scipy kmeans + vq on the same weights.
    BenchKmeans,
    /// Benchmark `caffe-prune eval` (whole process, 10,000 MNIST images) of the dense LeNet and of the LeNet pruned at
    /// the tutorial's rates, with 1 and 2 threads, against real Caffe's recorded `caffe test`.
    BenchEval {
        /// Timed runs of each side per thread count.
        #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u16).range(1..))]
        runs: u16,
    },
    /// Benchmark LeNet training (batch 64, SGD) as the fixtures measured real Caffe, against Caffe's figure.
    BenchTrain,
    /// Benchmark caffe-inspect on a VGG16-sized model against a plain sequential read of the same file.
    BenchInspect {
        /// Timed runs of each side.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..))]
        runs: u16,
    },
    /// Write shell completions (bash, zsh, fish, elvish, PowerShell) for caffe-inspect, caffe-convert and caffe-prune.
    Completions {
        /// Output folder (default: target/completions in the repository).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Write a roff man page for each tool and each subcommand (caffe-prune.1, caffe-prune-eval.1, ...).
    Man {
        /// Output folder (default: target/man in the repository).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the repository")
        .to_path_buf()
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Roundtrip { paths } => roundtrip::run(paths),
        Command::Testdata { check } => testdata::run(check),
        Command::BenchPrune => bench_prune::run().map(|()| true),
        Command::BenchEval { runs } => bench_eval::run(runs.into()).map(|()| true),
        Command::BenchTrain => bench_train::run().map(|()| true),
        Command::BenchKmeans => bench_kmeans::run().map(|()| true),
        Command::BenchOnnx { runs } => bench_onnx::run(runs.into()).map(|()| true),
        Command::BenchInspect { runs } => bench::inspect(runs.into()).map(|()| true),
        Command::Completions { out } => clidocs::run(false, out),
        Command::Man { out } => clidocs::run(true, out),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
