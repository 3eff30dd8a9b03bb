//! `caffe-prune`: magnitude pruning of a Caffe model, stage 2 of Deep Compression, and the evaluation of the result.
//!
//! `caffe-prune IN.caffemodel --keep conv1=0.3,ip1=0.01 -o OUT.caffemodel [--npz OUT.npz]`. The output differs from
//! the input only in the float payloads of pruned blobs. `caffe-prune eval`, `forward` and `sweep` run the net.
//! Thin glue: `prune` holds the rules, `caffemodel` the file, `engine` and `datasets` the evaluation.

mod compress;
mod eval;
mod plan;
mod plot;
mod quant;
mod sweep;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Prune a Caffe model by weight magnitude (biases are never pruned, except with --filters), and evaluate nets.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  \
        caffe-prune testdata/lenet.caffemodel --keep conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2 \\\n      \
        -o pruned.caffemodel --npz pruned.npz\n  \
        caffe-prune testdata/lenet.caffemodel --global-keep 0.05          (report only, nothing written)\n\n\
        Each subcommand has its own --help with an example."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Fixed-order arithmetic: the same input and seed give the same bytes on every x86-64 CPU and with any thread
    /// count (training takes about 1.3x the time).
    #[arg(long, global = true)]
    deterministic: bool,
    #[command(flatten)]
    common: clikit::Common,
    #[command(flatten)]
    prune: Args,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Accuracy (top-1, top-5), mean loss and speed of a net on a test set (Caffe LMDB or IDX).
    #[command(after_help = "Example:\n  \
        caffe-prune eval --net testdata/lenet_train_test.prototxt --weights pruned.caffemodel \\\n      \
        --data t10k-images-idx3-ubyte.gz --predictions labels.npy")]
    Eval(eval::EvalArgs),
    /// One forward pass on given input arrays; every top blob written as DIR/<blob>.npy. With --backward, Caffe's
    /// backward pass too, its gradients in DIR/diff/ and DIR/param_diff/.
    #[command(after_help = "Example:\n  \
        caffe-prune forward --net testdata/lenet.prototxt --weights testdata/lenet.caffemodel \\\n      \
        --input data=x.npy -o blobs/      (x.npy: float32, shape 1x1x28x28)\n  \
        caffe-prune forward --net net.prototxt --weights w.caffemodel --input x=x.npy -o blobs/ \\\n      \
        --backward --top-diff y=dy.npy    (gradients as pycaffe's net.backward())")]
    Forward(eval::ForwardArgs),
    /// Prune one layer at a time over a grid of keep fractions and measure each setting's accuracy: a table, CSV,
    /// SVG or PNG plot, and with --budget a suggested --keep; --shard I/N and --merge split it across machines.
    #[command(after_help = "Example:\n  \
        caffe-prune sweep --net lenet_test.prototxt --weights lenet.caffemodel --data mnist_test_lmdb \\\n      \
        --grid ip1=0.01:0.2:5 --csv sweep.csv --plot sweep.svg --budget 0.5\n\n\
        On many machines (docs/sharded-sweeps.md): shard I of N, 0-based, on each, then the merge:\n  \
        caffe-prune sweep --net lenet_test.prototxt --weights lenet.caffemodel --data mnist_test_lmdb \\\n      \
        --shard 0/4 --csv shard-0.csv       (and 1/4, 2/4, 3/4)\n  \
        caffe-prune sweep --merge shard-*.csv --csv sweep.csv --plot sweep.svg")]
    Sweep(sweep::SweepArgs),
    /// Train a net from a solver prototxt, as `caffe train`: progress bar, tests, snapshots Caffe can resume.
    #[command(after_help = "Examples:\n  \
        caffe-prune train --solver testdata/lenet_solver.prototxt\n  \
        caffe-prune train --solver testdata/lenet_solver.prototxt --resume lenet_iter_5000.solverstate")]
    Train(train::TrainArgs),
    /// Prune a trained model, then retrain it with the pruned weights held at exactly zero; accuracy per round.
    #[command(after_help = "Example:\n  \
        caffe-prune retrain --solver testdata/lenet_solver.prototxt --weights lenet.caffemodel \\\n      \
        --keep conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2 --rounds 12 --steps 500 -o retrained.caffemodel --plot rounds.svg")]
    Retrain(train::RetrainArgs),
    /// Share weights (Deep Compression stage 2): per layer, k-means over the nonzero weights to at most 2^B - 1
    /// values, the pruning mask kept exactly; the bytes after pruning, quantization and Huffman coding.
    #[command(after_help = "Example:\n  \
        caffe-prune quantize retrained.caffemodel --bits conv1=8,conv2=8,ip1=5,ip2=5 -o quantized.caffemodel")]
    Quantize(quant::QuantizeArgs),
    /// Deep Compression in one command: prune and retrain with the mask held, share the weights and fine-tune the
    /// shared values, code the result as a .caffez; accuracy, weights kept, bytes and ratio per stage.
    #[command(after_help = "Example (Deep Compression's LeNet-5 rates and bits):\n  \
        caffe-prune compress lenet.caffemodel --solver testdata/lenet_solver.prototxt \\\n      \
        --keep conv1=0.66,conv2=0.12,ip1=0.08,ip2=0.19 --bits conv1=8,conv2=8,ip1=5,ip2=5 -o lenet.caffez\n\n\
        `caffe-convert lenet.caffez -o lenet_q.caffemodel` gives the quantized caffemodel back for real Caffe.")]
    Compress(compress::CompressArgs),
}

/// Pruning arguments (the command without a subcommand).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The trained model (.caffemodel, modern or V1/V0).
    #[arg(required = true)]
    pub input: Option<PathBuf>,
    /// Where to write the pruned model.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Per-layer keep fractions, e.g. conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2 (1 leaves a layer untouched).
    #[arg(long, value_name = "LAYER=T,...", value_delimiter = ',')]
    pub keep: Vec<String>,
    /// Keep fraction for every selected layer not named in --keep.
    #[arg(long, value_name = "T")]
    pub keep_all: Option<f64>,
    /// One magnitude threshold across all selected layers, keeping this fraction of their weights.
    #[arg(long, value_name = "F", conflicts_with_all = ["keep", "keep_all", "std"])]
    pub global_keep: Option<f64>,
    /// Han et al.'s rule: per selected layer, keep |w| > Q x std(W).
    #[arg(long, value_name = "Q", conflicts_with_all = ["keep", "keep_all"])]
    pub std: Option<f64>,
    /// Prune whole output filters (rows) by L1 norm: the keep fractions apply to filters, and the biases of dropped
    /// filters are zeroed too.
    #[arg(long, conflicts_with_all = ["global_keep", "std"])]
    pub filters: bool,
    /// Select layers by name (default: every layer of the selected types).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Select layers by type.
    #[arg(
        long,
        value_name = "TYPES",
        value_delimiter = ',',
        default_value = "Convolution,InnerProduct,Deconvolution"
    )]
    pub types: Vec<String>,
    /// Also write the pruned weights as the tutorial's sparse net dict (.npz).
    #[arg(long, value_name = "OUT.npz")]
    pub npz: Option<PathBuf>,
    /// Bits per relative index, for --npz and the sparse-size figures.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub index_bits: u8,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prunes; without -o or --npz, only reports what pruning would do.
fn run(args: &Args) -> Result<()> {
    let report = plan::prune_model(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

fn dispatch(cli: &Cli) -> Result<()> {
    if cli.deterministic {
        engine::set_arithmetic(engine::Arithmetic::Reproducible);
    }
    match &cli.command {
        None => run(&cli.prune),
        Some(Command::Eval(args)) => {
            let report = eval::eval(args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("images:    {}", report.images);
                println!("top-1:     {:.4}", report.top1);
                if let Some(t5) = report.top5 {
                    println!("top-5:     {t5:.4}");
                }
                if let Some(loss) = report.loss {
                    println!("loss:      {loss:.6}");
                }
                println!("images/s:  {:.0}", report.images_per_s);
            }
            Ok(())
        }
        Some(Command::Sweep(args)) => {
            let report = sweep::sweep(args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Some(Command::Train(args)) => {
            let report = train::train(args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Some(Command::Retrain(args)) => {
            let report = train::retrain(args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Some(Command::Quantize(args)) => {
            let report = quant::quantize_model(args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Some(Command::Compress(args)) => {
            let report = compress::compress(args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Some(Command::Forward(args)) => {
            let names = eval::forward(args)?;
            clikit::note(format!("wrote {} blobs to {}", names.len(), args.output.display()));
            Ok(())
        }
    }
}

/// The tool's command-line definition (for shell completions and man pages, `cargo xtask completions` and `man`).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// The whole tool: parses the process's arguments, runs, and gives the exit code (`src/main.rs` only calls this).
pub fn main() -> ExitCode {
    let cli = match clikit::parse_args::<Cli>("caffe-prune") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = if cli.command.is_none() {
        // Pruning a file is serial unless a blob has millions of weights.
        cli.common.run_on_this_thread(|| dispatch(&cli))
    } else {
        cli.common.run(|| dispatch(&cli))
    };
    clikit::finish("caffe-prune", result)
}
