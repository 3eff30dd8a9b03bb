//! `caffe-convert`: converts between Caffe's file forms, and upgrades legacy ones.
//!
//! The output format follows the output's extension: `.prototxt` (or `.txt`, or `-` for stdout) is protobuf text,
//! `.npz` is NumPy (`--layout sparse|scipy|dense|codebook|han`), `.caffez` is the compressed model (a quantized
//! caffemodel with its weights arithmetic-coded; a `.caffez` input is given back byte for byte), `.onnx` is an ONNX
//! model of the net `--net` defines with the input's weights, anything else is binary. `IN.npz --into BASE.caffemodel` puts the
//! arrays back into a copy of BASE. MNIST-format IDX images (`IMAGES.idx[.gz] --labels LABELS -o DB`) become a Caffe
//! LMDB as Caffe's `convert_mnist_data` writes it. Thin glue over the `caffemodel` and `datasets` crates.

use anyhow::{bail, Context, Result};
use caffemodel::text::{self, Schema};
use caffemodel::{upgrade, BinaryKind};
use clap::Parser;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Convert Caffe files: upgrade V0/V1 nets and solvers to the modern layout, print a caffemodel as prototxt text.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Examples:\n  \
        caffe-convert old_v1.caffemodel -o new.caffemodel --upgrade\n  \
        caffe-convert pruned.caffemodel -o pruned.npz --index-bits 5      (the tutorial's sparse dict)\n  \
        caffe-convert pruned.caffemodel -o - | less                      (the net as text, weights left out)\n  \
        caffe-convert quantized.caffemodel -o model.caffez               (Deep Compression's coded file)\n  \
        caffe-convert model.caffez -o quantized.caffemodel               (and back, byte for byte)\n  \
        caffe-convert model.caffemodel --net deploy.prototxt -o model.onnx (ONNX, Caffe's outputs)\n  \
        caffe-convert t10k-images-idx3-ubyte.gz -o mnist_test_lmdb       (IDX to a Caffe LMDB)"
)]
struct Args {
    /// Input: .caffemodel (or a legacy weights file), .caffez, .prototxt, .solverstate or .binaryproto.
    input: PathBuf,
    /// Output file; its extension picks the format (.prototxt/.txt = text, .npz, .caffez, .onnx). `-` writes text to
    /// stdout.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Upgrade V0/V1 nets (and old solver files) to the modern layout, as Caffe's upgrade_net_proto_* tools do.
    #[arg(long)]
    upgrade: bool,
    /// Include blob values when writing text (left out by default so two models can be diffed by structure).
    #[arg(long)]
    with_weights: bool,
    /// Read with this caffe.proto (a fork's schema) instead of the built-in one.
    #[arg(long, value_name = "PATH")]
    proto: Option<PathBuf>,
    /// With an IDX input: replace an existing LMDB folder at OUT (an output never replaces an input, whatever the
    /// flags).
    #[arg(long)]
    force: bool,
    /// NPZ output layout: the tutorial's sparse net dict (the default), one scipy.sparse file per weight blob (OUT
    /// is a folder), or every blob dense.
    #[arg(long, value_enum)]
    layout: Option<NpzLayout>,
    /// Bits per relative index in the sparse and codebook layouts (default 8; 5 is the paper's LeNet setting).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    index_bits: Option<u8>,
    /// Compressed format of the scipy layout (default csc).
    #[arg(long, value_enum)]
    scipy_format: Option<SparseFormat>,
    /// With an .npz input: the caffemodel whose blobs the arrays replace (the rest of its bytes are kept).
    #[arg(long, value_name = "BASE")]
    into: Option<PathBuf>,
    /// With an IDX images input (MNIST format, gzipped or not): its labels file; OUT becomes a Caffe LMDB folder
    /// of Datum records, as Caffe's convert_mnist_data writes it. Default: the images name with images-idx3 ->
    /// labels-idx1.
    #[arg(long, value_name = "LABELS")]
    labels: Option<PathBuf>,
    /// With an .onnx output: the net definition (deploy prototxt, any generation; legacy `input_dim` fields are
    /// upgraded) whose TEST-phase layers are exported with the input's weights.
    #[arg(long, value_name = "DEPLOY.prototxt")]
    net: Option<PathBuf>,
    /// With an .onnx output: the ONNX operator set version (13 to 21).
    #[arg(long, value_name = "N", default_value_t = onnx_export::DEFAULT_OPSET)]
    opset: i64,
    /// With an .onnx output: the input blob's shape (comma-separated, e.g. 1,3,224,224) when the net does not give
    /// it or should be exported for another batch size.
    #[arg(long, value_name = "DIMS", value_delimiter = ',')]
    input_shape: Vec<usize>,
    /// With an .onnx output: keep the codebook of quantized weight blobs (uint8 indices and a Gather, about 4x
    /// smaller); blobs with more than 256 distinct values stay dense.
    #[arg(long)]
    codebook: bool,
    #[command(flatten)]
    common: clikit::Common,
}

/// NPZ layouts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum NpzLayout {
    /// Prunable weights as values + uint gaps + shape, the rest dense.
    Sparse,
    /// A folder with a scipy.sparse npz per weight blob.
    Scipy,
    /// Every blob dense in its stored shape.
    Dense,
    /// The tutorial's quantized dict: per weight blob a float32 codebook, uint8 codes and uint8 gaps (a quantized
    /// model: at most 255 shared values per blob).
    Codebook,
    /// Han's released binary layout (Deep-Compression-AlexNet decode.py): counts, then per conv/fc/ip layer a
    /// codebook (8 bits for conv, 4 else), the bias, packed codes and 4-bit gaps (a quantized model).
    Han,
}

/// scipy compressed formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SparseFormat {
    /// Compressed sparse column.
    Csc,
    /// Compressed sparse row.
    Csr,
}

/// The tool's command-line definition (for shell completions and man pages, `cargo xtask completions` and `man`).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// The whole tool: parses the process's arguments, runs, and gives the exit code (`src/main.rs` only calls this).
pub fn main() -> ExitCode {
    let args = match clikit::parse_args::<Args>("caffe-convert") {
        Ok(args) => args,
        Err(code) => return code,
    };
    clikit::finish("caffe-convert", args.common.run(|| run(&args)))
}

/// The conversions, each with the flags that apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    IdxToLmdb,
    NpzImport,
    NpzExport,
    Compress,
    Onnx,
    Convert,
}

impl Mode {
    fn of(args: &Args) -> Mode {
        if args.labels.is_some() || is_idx_images(&args.input) {
            Mode::IdxToLmdb
        } else if has_extension(&args.input, "npz") {
            Mode::NpzImport
        } else if has_extension(&args.output, "caffez") {
            Mode::Compress
        } else if has_extension(&args.output, "onnx") {
            Mode::Onnx
        } else if has_extension(&args.output, "npz")
            || (matches!(args.layout, Some(NpzLayout::Scipy | NpzLayout::Han)) && args.output.as_os_str() != "-")
        {
            Mode::NpzExport
        } else {
            Mode::Convert
        }
    }

    /// What the conversion is, for error messages.
    fn describe(self) -> &'static str {
        match self {
            Mode::IdxToLmdb => "an IDX to LMDB conversion",
            Mode::NpzImport => "an npz import (--into)",
            Mode::NpzExport => "an npz export",
            Mode::Compress => "a compression to .caffez",
            Mode::Onnx => "an ONNX export",
            Mode::Convert => "a conversion to text or binary protobuf",
        }
    }

    /// Refuses every flag given that this conversion would ignore.
    fn check_flags(self, args: &Args) -> Result<()> {
        let layout = args.layout.unwrap_or(NpzLayout::Sparse);
        let given = [
            ("--upgrade", args.upgrade, self == Mode::Convert),
            ("--with-weights", args.with_weights, self == Mode::Convert),
            ("--force", args.force, self == Mode::IdxToLmdb),
            ("--layout", args.layout.is_some(), self == Mode::NpzExport),
            (
                "--index-bits",
                args.index_bits.is_some(),
                self == Mode::NpzExport && matches!(layout, NpzLayout::Sparse | NpzLayout::Codebook),
            ),
            (
                "--scipy-format",
                args.scipy_format.is_some(),
                self == Mode::NpzExport && layout == NpzLayout::Scipy,
            ),
            ("--into", args.into.is_some(), self == Mode::NpzImport),
            ("--net", args.net.is_some(), self == Mode::Onnx),
            ("--opset", args.opset != onnx_export::DEFAULT_OPSET, self == Mode::Onnx),
            ("--input-shape", !args.input_shape.is_empty(), self == Mode::Onnx),
            ("--codebook", args.codebook, self == Mode::Onnx),
            (
                "--proto",
                args.proto.is_some(),
                matches!(self, Mode::Convert | Mode::NpzExport | Mode::NpzImport | Mode::Onnx),
            ),
        ];
        for (flag, is_given, applies) in given {
            if is_given && !applies {
                let what = match (self, flag) {
                    (Mode::NpzExport, "--index-bits" | "--scipy-format") => "this layout",
                    _ => self.describe(),
                };
                return Err(clikit::usage_error(format!("{flag} does not apply to {what}")));
            }
        }
        Ok(())
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn is_text_path(path: &Path) -> bool {
    path.as_os_str() == "-"
        || matches!(
            path.extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("prototxt" | "pbtxt" | "txt")
        )
}

/// Where the converted bytes go.
fn emit(args: &Args, bytes: &[u8]) -> Result<()> {
    if args.output.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        return match out.write_all(bytes).and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing to stdout"),
        };
    }
    outfile::write_atomic(&args.output, |w| w.write_all(bytes))?;
    Ok(())
}

fn report(steps: &upgrade::UpgradeReport, what: &Path) {
    if steps.steps.is_empty() {
        clikit::note(format!(
            "{}: already in the modern layout, nothing to upgrade",
            what.display()
        ));
    }
    for step in &steps.steps {
        clikit::note(format!("{}: upgraded: {step}", what.display()));
    }
}

fn run(args: &Args) -> Result<()> {
    let schema = match &args.proto {
        Some(p) => Schema::from_proto_file(p)?,
        None => Schema::builtin(),
    };
    let to_text = is_text_path(&args.output);
    let mode = Mode::of(args);
    mode.check_flags(args)?;
    // Before any work: no output may replace an input (a scipy folder is checked file by file when its names are
    // known).
    let inputs: Vec<&Path> = [
        Some(args.input.as_path()),
        args.proto.as_deref(),
        args.into.as_deref(),
        args.labels.as_deref(),
        args.net.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if args.output.as_os_str() != "-" && args.layout != Some(NpzLayout::Scipy) {
        outfile::check_outputs(&[&args.output], &inputs)?;
    }
    match mode {
        Mode::IdxToLmdb => return idx_to_lmdb(args),
        Mode::NpzImport => return import_npz(args),
        Mode::NpzExport => return export_npz(args),
        Mode::Compress => return compress(args),
        Mode::Onnx => return export_onnx(args, &schema),
        Mode::Convert => {}
    }
    if is_text_path(&args.input) && args.input.as_os_str() != "-" {
        return convert_text(args, &schema, to_text);
    }
    let model = caffez::open_model(&args.input)?;
    match BinaryKind::from_path(&args.input) {
        BinaryKind::Net if args.upgrade => {
            // The typed path: every parameter must be moved, which needs the whole message.
            model.net()?;
            let mut net = caffemodel::decode_net(&model)?;
            let dropped = model.bytes().len() as i64 - caffemodel::encode(&net).len() as i64;
            if dropped != 0 {
                eprintln!(
                    "{}: warning: {dropped} bytes of fields unknown to the schema are not carried into the upgraded file",
                    args.input.display()
                );
            }
            let steps = upgrade::upgrade_net(&mut net).with_context(|| format!("{}: upgrade", args.input.display()))?;
            report(&steps, &args.input);
            if to_text {
                if !args.with_weights {
                    strip_blob_values(&mut net);
                }
                emit(args, text::to_text(&net, &schema, "NetParameter").as_bytes())
            } else {
                emit(args, &caffemodel::encode(&net))
            }
        }
        kind => {
            if args.upgrade {
                bail!(
                    "{}: --upgrade applies to nets and solver prototxts, not to a {}",
                    args.input.display(),
                    kind.message().proto_name()
                );
            }
            let tree = model.parse(kind.message())?;
            if to_text {
                let text = text::tree_to_text(&args.input, &tree, &schema, args.with_weights)?;
                emit(args, text.as_bytes())
            } else {
                let mut bytes = Vec::with_capacity(model.bytes().len());
                tree.encode_to(&mut bytes)?;
                emit(args, &bytes)
            }
        }
    }
}

/// `IN --net DEPLOY -o OUT.onnx`: the net built as the engine (and Caffe) builds it for TEST, the input's weights
/// loaded by layer name, then translated.
fn export_onnx(args: &Args, schema: &Schema) -> Result<()> {
    let Some(net_path) = &args.net else {
        return Err(clikit::usage_error(
            "an .onnx output needs --net DEPLOY.prototxt (the net to export; the input gives its weights)",
        ));
    };
    if !(13..=21).contains(&args.opset) {
        return Err(clikit::usage_error(format!("--opset {}: choose 13 to 21", args.opset)));
    }
    if args.input_shape.contains(&0) {
        return Err(clikit::usage_error(format!(
            "--input-shape {:?}: every dimension must be positive",
            args.input_shape
        )));
    }
    let param = text::read_net_upgraded(net_path, schema)?;
    if let Some(layer) = param
        .layer
        .iter()
        .find(|l| l.r#type() != "Input" && engine::DATA_LAYER_TYPES.contains(&l.r#type()))
    {
        bail!(
            "{}: layer '{}' is a {} layer: an ONNX export takes a deploy prototxt, whose Input layer names the input \
             blob and its shape",
            net_path.display(),
            layer.name(),
            layer.r#type()
        );
    }
    let mut options = engine::NetOptions::test();
    if !args.input_shape.is_empty() {
        let inputs: Vec<&str> = param
            .layer
            .iter()
            .filter(|l| l.r#type() == "Input")
            .flat_map(|l| l.top.iter().map(String::as_str))
            .collect();
        let [input] = inputs[..] else {
            bail!(
                "{}: --input-shape needs a net with exactly one Input blob, this one has {}",
                net_path.display(),
                inputs.len()
            );
        };
        options = options.with_input_shape(input, &args.input_shape);
    }
    let mut net = engine::Net::new(&param, &options).with_context(|| format!("{}", net_path.display()))?;
    let model = caffez::open_model(&args.input)?;
    let report = net
        .copy_from(&clikit::engine_weights(&model.net()?))
        .with_context(|| format!("{}: weights for {}", args.input.display(), net_path.display()))?;
    if report.copied.is_empty() {
        bail!(
            "{}: no layer of {} has weights in this file (layers are matched by name)",
            args.input.display(),
            net_path.display()
        );
    }
    let export_options = onnx_export::ExportOptions {
        opset: args.opset,
        codebook: args.codebook,
        ..Default::default()
    };
    let onnx = onnx_export::export(&param, &net, &export_options).with_context(|| format!("{}", net_path.display()))?;
    let written = onnx_export::write(onnx, &args.output, onnx_export::EXTERNAL_THRESHOLD)?;
    if let Some((data, bytes)) = &written.external {
        clikit::note(format!(
            "weights ({bytes} bytes) written to {} beside the model",
            data.display()
        ));
    }
    Ok(())
}

/// Empties blob payloads (shapes stay), for printing structure.
/// True for an IDX images file (magic 0x00000803), gzipped or not, judged by its name (`*-idx3-ubyte*`, `*.idx3`,
/// `*.idx`) or, for a plain file, by its first four bytes.
fn is_idx_images(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.contains("idx3") || has_extension(path, "idx") {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| magic == [0, 0, 8, 3])
}

/// IDX images + labels -> a new LMDB folder, written beside OUT under a temporary name and renamed into place,
/// so a failed run leaves nothing half-written. An existing OUT is refused unless --force.
fn idx_to_lmdb(args: &Args) -> Result<()> {
    let labels = match &args.labels {
        Some(l) => l.clone(),
        None => datasets::labels_path_for(&args.input)
            .with_context(|| format!("{}: give the labels file with --labels", args.input.display()))?,
    };
    if args.output.as_os_str() == "-" {
        bail!("an LMDB is a folder: give -o DB_FOLDER, not -");
    }
    let exists = args.output.symlink_metadata().is_ok();
    if exists && !args.force {
        bail!(
            "{}: already exists (Caffe's convert_mnist_data refuses too; pass --force to replace it)",
            args.output.display()
        );
    }
    let dataset = datasets::IdxDataset::open(&args.input, &labels)?;
    outfile::check_outputs(&[&args.output], &[&args.input, &labels])?;
    let folder = outfile::AtomicFolder::create(&args.output)?;
    let count = datasets::write_lmdb(&dataset, folder.path())?;
    folder.commit()?;
    clikit::note(format!(
        "{}: {count} records from {} and {}",
        args.output.display(),
        args.input.display(),
        labels.display()
    ));
    Ok(())
}

fn strip_blob_values(net: &mut caffe_proto::NetParameter) {
    let strip = |b: &mut caffe_proto::BlobProto| {
        b.data.clear();
        b.diff.clear();
        b.double_data.clear();
        b.double_diff.clear();
    };
    for layer in &mut net.layer {
        layer.blobs.iter_mut().for_each(strip);
    }
    for layer in &mut net.layers {
        layer.blobs.iter_mut().for_each(strip);
        if let Some(v0) = &mut layer.layer {
            v0.blobs.iter_mut().for_each(strip);
        }
    }
}

/// Text input: a net or solver prototxt. Upgrades on request; writes text or binary.
fn convert_text(args: &Args, schema: &Schema, to_text: bool) -> Result<()> {
    let source = text::read_text_file(&args.input)?;
    let net_parse = text::parse(&args.input, &source, schema, "NetParameter");
    let is_solver = net_parse.is_err() && text::parse(&args.input, &source, schema, "SolverParameter").is_ok();
    if is_solver {
        let mut solver = text::read_solver(&args.input, schema)?;
        if args.upgrade {
            let steps = upgrade::upgrade_solver(&mut solver)?;
            report(&steps, &args.input);
        }
        let bytes = if to_text {
            text::to_text(&solver, schema, "SolverParameter").into_bytes()
        } else {
            caffemodel::encode(&solver)
        };
        return emit(args, &bytes);
    }
    let dynamic = net_parse?;
    if !args.upgrade {
        // No upgrade: keep every field the schema (or the fork's schema) knows, by going through the dynamic message.
        let bytes = if to_text {
            text::format_text(&dynamic).into_bytes()
        } else {
            caffemodel::encode(&dynamic)
        };
        return emit(args, &bytes);
    }
    let mut net: caffe_proto::NetParameter = text::to_typed(&args.input, &dynamic)?;
    let steps = upgrade::upgrade_net(&mut net).with_context(|| format!("{}: upgrade", args.input.display()))?;
    report(&steps, &args.input);
    let bytes = if to_text {
        text::to_text(&net, schema, "NetParameter").into_bytes()
    } else {
        caffemodel::encode(&net)
    };
    emit(args, &bytes)
}

/// caffemodel -> npz (or a folder of scipy npz files).
fn export_npz(args: &Args) -> Result<()> {
    use caffemodel::npz;
    let model = caffez::open_model(&args.input)?;
    let net = model.net()?;
    let entries = match args.layout.unwrap_or(NpzLayout::Sparse) {
        NpzLayout::Sparse => npz::export_npz(
            &net,
            &args.output,
            npz::Layout::Sparse {
                index_bits: args.index_bits.unwrap_or(8),
            },
        )?,
        NpzLayout::Dense => npz::export_npz(&net, &args.output, npz::Layout::Dense)?,
        NpzLayout::Han => {
            let mut bytes = Vec::new();
            let layers = caffemodel::han::write_han(&net, &mut bytes)?;
            outfile::write_atomic(&args.output, |w| w.write_all(&bytes))?;
            let entries: usize = layers.iter().map(|(_, n)| n).sum();
            clikit::note(format!(
                "{}: Han's layout, {} layers, {entries} entries, {} bytes",
                args.output.display(),
                layers.len(),
                bytes.len()
            ));
            return Ok(());
        }
        NpzLayout::Codebook => npz::export_npz(
            &net,
            &args.output,
            npz::Layout::Codebook {
                index_bits: args.index_bits.unwrap_or(8),
            },
        )?,
        NpzLayout::Scipy => {
            let files = npz::scipy_files(&net, &args.output);
            let inputs = [args.input.as_path()];
            outfile::check_outputs(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>(), &inputs)?;
            let format = match args.scipy_format.unwrap_or(SparseFormat::Csc) {
                SparseFormat::Csc => npz::ScipyFormat::Csc,
                SparseFormat::Csr => npz::ScipyFormat::Csr,
            };
            npz::export_scipy(&net, &args.output, format)?
        }
    };
    let count: usize = entries.iter().map(|e| e.count).sum();
    let stored: usize = entries.iter().map(|e| e.stored).sum();
    clikit::note(format!(
        "{}: {} arrays, {count} values, {stored} stored entries",
        args.output.display(),
        entries.len()
    ));
    Ok(())
}

/// caffemodel -> .caffez: the quantized weight blobs arithmetic-coded, everything else kept.
fn compress(args: &Args) -> Result<()> {
    let model = caffez::open_model(&args.input)?;
    let compressed = caffez::compress(&model)?;
    outfile::write_atomic(&args.output, |w| w.write_all(&compressed.bytes))?;
    for blob in compressed.blobs.iter().filter(|b| b.bits.is_none()) {
        clikit::note(format!(
            "{}: layer '{}' keeps its {} weights as they are ({} distinct values: not quantized)",
            args.input.display(),
            blob.layer,
            blob.count,
            blob.distinct
        ));
    }
    let coded = compressed.blobs.iter().filter(|b| b.bits.is_some()).count();
    clikit::note(format!(
        "{}: {} bytes, {:.1}x smaller than the {}-byte model; {coded} weight blobs coded",
        args.output.display(),
        compressed.bytes.len(),
        compressed.model_len as f64 / compressed.bytes.len() as f64,
        compressed.model_len,
    ));
    Ok(())
}

/// npz + BASE.caffemodel -> caffemodel: BASE with its blobs replaced by the arrays; only payloads change.
fn import_npz(args: &Args) -> Result<()> {
    let Some(base) = &args.into else {
        bail!(
            "{}: an .npz input needs --into BASE.caffemodel (the net whose blobs it fills)",
            args.input.display()
        );
    };
    if is_text_path(&args.output) || has_extension(&args.output, "npz") {
        bail!("{}: the output of an npz import is a caffemodel", args.output.display());
    }
    let model = caffez::open_model(base)?;
    let mut net = model.net()?;
    let entries = caffemodel::npz::import_npz(&mut net, &args.input)?;
    outfile::write_atomic(&args.output, |w| net.encode_to(w))?;
    clikit::note(format!(
        "{}: {} blobs set from {}",
        args.output.display(),
        entries.len(),
        args.input.display()
    ));
    Ok(())
}
