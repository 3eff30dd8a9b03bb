//! `caffe-prune eval` and `caffe-prune forward`: the engine run on real data or given arrays.

use anyhow::{bail, Context, Result};
use caffemodel::text::{self, Schema};
use caffemodel::ModelFile;
use datasets::{
    Batch, Batcher, ColorMode, Dataset, IdxDataset, ImageDataset, ImageOptions, LeveldbDataset, LmdbDataset,
    Transformer,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments shared by the commands that run a net.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// The net definition (.prototxt; V1 and legacy-input nets are upgraded on the fly).
    #[arg(long, value_name = "NET.prototxt")]
    pub net: PathBuf,
    /// The weights (.caffemodel, any generation).
    #[arg(long, value_name = "W.caffemodel")]
    pub weights: PathBuf,
    /// Read the prototxt with this caffe.proto (a fork's schema).
    #[arg(long, value_name = "PATH")]
    pub proto: Option<PathBuf>,
}

/// The test data and the TEST net's state: what `eval` and `sweep` share besides the net and weights.
#[derive(clap::Args, Debug, Clone)]
pub struct TestArgs {
    /// The test data: a Caffe LMDB or LevelDB folder, or an IDX images file (gzipped or not) with its labels beside it; for a
    /// net whose TEST data layer is ImageData, its list of `path label` lines.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// The IDX labels file (default: the images file's name with images-idx3 -> labels-idx1).
    #[arg(long, value_name = "PATH")]
    pub labels: Option<PathBuf>,
    /// Images per forward pass (default: the Data layer's batch_size, else 100).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Stages of the TEST net, added to the net's own (layers are chosen by Caffe's include/exclude rules).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub stage: Vec<String>,
    /// The TEST net's level, compared with the rules' min_level/max_level (it replaces the net's own, as in Caffe's
    /// tools).
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub level: i32,
}

/// `caffe-prune eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The net and its weights.
    #[command(flatten)]
    pub net: NetArgs,
    /// The test data and the TEST net's stages and level.
    #[command(flatten)]
    pub test: TestArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the predicted label of every image (uint8 or int32 .npy).
    #[arg(long, value_name = "FILE.npy")]
    pub predictions: Option<PathBuf>,
}

impl EvalArgs {
    /// The files the command reads as given on the command line (the net's own data and mean files aside).
    pub fn inputs(&self) -> Vec<&Path> {
        [
            Some(self.net.net.as_path()),
            Some(self.net.weights.as_path()),
            self.net.proto.as_deref(),
            self.test.data.as_deref(),
            self.test.labels.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// `caffe-prune forward`.
#[derive(clap::Args, Debug, Clone)]
pub struct ForwardArgs {
    /// The net and its weights.
    #[command(flatten)]
    pub net: NetArgs,
    /// Input arrays, NAME=x.npy (float32), one per input blob.
    #[arg(long, value_name = "NAME=x.npy")]
    pub input: Vec<String>,
    /// Folder for every top blob as <blob>.npy ('/' in names becomes '__').
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// After the forward pass, run Caffe's backward pass (as pycaffe's `net.backward()`; loss tops seeded with their
    /// loss weight, `force_backward` and `propagate_down` honoured) and write DIR/diff/<blob>.npy for every blob that
    /// received a gradient and DIR/param_diff/<layer>/<i>.npy for every parameter blob.
    #[arg(long)]
    pub backward: bool,
    /// With --backward: the gradient given to a top, NAME=g.npy (float32, the blob's shape); tops not named get
    /// zero (a loss top its loss weight). Repeat for several tops.
    #[arg(long, value_name = "NAME=g.npy", requires = "backward")]
    pub top_diff: Vec<String>,
}

/// The parsed, upgraded net definition and the weights as the engine takes them.
pub struct Loaded {
    /// The modern net definition.
    pub param: caffe_proto::NetParameter,
    /// The weights, by layer.
    pub weights: Vec<engine::LayerWeights>,
}

/// Reads the prototxt (upgrading legacy layouts) and the weights.
pub fn load(args: &NetArgs) -> Result<Loaded> {
    let schema = match &args.proto {
        Some(p) => Schema::from_proto_file(p)?,
        None => Schema::builtin(),
    };
    let param = text::read_net_upgraded(&args.net, &schema)?;
    let weights = weights_of(&caffez::open_model(&args.weights)?)?;
    Ok(Loaded { param, weights })
}

/// The weights of every layer with blobs, as the engine takes them (any file generation).
pub fn weights_of(model: &ModelFile) -> Result<Vec<engine::LayerWeights>> {
    Ok(clikit::engine_weights(&model.net()?))
}

/// What `eval` measured.
#[derive(Serialize, Debug)]
pub struct EvalReport {
    /// Top-1 accuracy over the images.
    pub top1: f64,
    /// Top-5 accuracy (when there are at least 5 classes).
    pub top5: Option<f64>,
    /// Mean of the loss layer's output over the batches.
    pub loss: Option<f64>,
    /// Images evaluated.
    pub images: usize,
    /// Images per second, data transformation included.
    pub images_per_s: f64,
}

/// The test data: `--data` or the data layer's source; an LMDB's encoded images are decoded in `color` mode (the
/// transform's force_color / force_gray). `image_data` is the layer's parameters when it is an ImageData layer.
fn open_dataset(
    args: &TestArgs,
    source: Option<&str>,
    net_dir: &Path,
    color: ColorMode,
    image_data: Option<&caffe_proto::ImageDataParameter>,
) -> Result<Box<dyn Dataset>> {
    let path = match (&args.data, source) {
        (Some(p), _) => p.clone(),
        (None, Some(s)) => beside(s, net_dir),
        (None, None) => bail!("no --data given and the net has no Data layer source"),
    };
    if let Some(param) = image_data {
        // Image paths (root_folder + listed path) as the source: from the working directory when they are
        // there, else from the net's folder.
        let mut options = ImageOptions::from_param(param);
        let first = ImageDataset::open(&path, options.clone())?;
        let probe = format!("{}{}", options.root_folder, first.lines()[0].0);
        if !Path::new(&probe).exists() {
            options.relative_to = net_dir.to_path_buf();
        }
        return Ok(Box::new(ImageDataset::open(&path, options)?));
    }
    if path.is_dir() {
        // The folder says which backend wrote it: LMDB's data.mdb, or LevelDB's CURRENT.
        if !path.join("data.mdb").exists() && path.join("CURRENT").is_file() {
            return Ok(Box::new(LeveldbDataset::open(&path)?.with_color(color)));
        }
        return Ok(Box::new(LmdbDataset::open(&path)?.with_color(color)));
    }
    let labels = match &args.labels {
        Some(l) => l.clone(),
        None => datasets::labels_path_for(&path)
            .with_context(|| format!("{}: give the labels file with --labels", path.display()))?,
    };
    Ok(Box::new(IdxDataset::open(&path, &labels)?))
}

/// The TEST net's data wiring and test images, ready to run: what `eval` streams and `sweep` reuses.
pub struct TestSet {
    /// The net to build.
    pub spec: NetSpec,
    /// The batches.
    pub stream: BatchStream,
}

/// What builds the TEST net and feeds it.
pub struct NetSpec {
    /// The net definition and weights.
    pub loaded: Loaded,
    /// Options to build the TEST net with (input shapes set for the batches).
    pub options: engine::NetOptions,
    /// Which input blobs the batches go to.
    pub wiring: Wiring,
}

impl NetSpec {
    /// Builds the TEST net with the weights loaded.
    pub fn build_net(&self) -> Result<engine::Net> {
        let mut net = engine::Net::new(&self.loaded.param, &self.options)?;
        net.copy_from(&self.loaded.weights)?;
        Ok(net)
    }
}

/// The input blobs a batch is fed into.
pub struct Wiring {
    /// The image input blob.
    pub data_blob: String,
    /// The label input blob, when the net has one.
    pub label_blob: Option<String>,
}

/// Batches covering a dataset once, in Caffe's order.
pub struct BatchStream {
    /// Images in the dataset (the last batch may wrap around past them).
    pub images: usize,
    batcher: Batcher,
    first: Option<Batch>,
}

impl BatchStream {
    /// Gives every batch covering the dataset once, in order, to `each` with the number of its images to count
    /// (the last batch may wrap around to the first images: those are not counted twice).
    pub fn for_each(&mut self, mut each: impl FnMut(&Batch, usize) -> Result<()>) -> Result<()> {
        let mut done = 0;
        let mut batch = self.first.take().context("the test batches were already read")?;
        while done < self.images {
            if done > 0 {
                self.batcher.next_batch(&mut batch)?;
            }
            let take = batch.shape[0].min(self.images - done);
            each(&batch, take)?;
            done += take;
        }
        Ok(())
    }
}

impl TestSet {
    /// Reads the net, the weights and opens the data as the TEST Data layer (or `--data`) says.
    pub fn open(net: &NetArgs, args: &TestArgs) -> Result<TestSet> {
        let loaded = load(net)?;
        let mut options = engine::NetOptions::test();
        options.stages = args.stage.clone();
        options.level = args.level;
        // The Data layer the TEST net keeps under Caffe's rules (phase, level, stages): its batch size, transform
        // and source.
        let kept = engine::graph::filter_layers(&loaded.param, &options.state(&loaded.param))?;
        let data_layer = kept.iter().find(|l| matches!(l.r#type(), "Data" | "ImageData"));
        let image_data = data_layer
            .filter(|l| l.r#type() == "ImageData")
            .map(|l| l.image_data_param.clone().unwrap_or_default());
        let transform = data_layer.and_then(|l| l.transform_param.clone()).unwrap_or_default();
        let (source, layer_batch) = match &image_data {
            Some(p) => (p.source.clone(), Some(p.batch_size() as usize)),
            None => {
                let p = data_layer.and_then(|l| l.data_param.as_ref());
                (p.map(|p| p.source().to_string()), p.map(|p| p.batch_size() as usize))
            }
        };
        let batch_size = args.batch.or(layer_batch).unwrap_or(100);
        let net_dir = net.net.parent().unwrap_or(Path::new("."));
        let dataset = open_dataset(
            args,
            source.as_deref(),
            net_dir,
            ColorMode::from_transform(&transform),
            image_data.as_ref(),
        )?;
        let mean = match &transform.mean_file {
            Some(m) => Some(read_mean(m, net_dir)?),
            None => None,
        };
        let transformer = Transformer::new(&transform, caffe_proto::Phase::Test, mean.as_ref())?;
        let mut batcher = Batcher::new(dataset.reader()?, batch_size, transformer)?;
        let images = dataset.len();
        if images == 0 {
            bail!("{}: the dataset is empty", dataset.source().display());
        }
        let mut first = Batch::default();
        batcher.next_batch(&mut first)?;
        // Inputs: the image top and (when the net has one) the label top of the data layer, or the Input layer's top.
        let inputs: Vec<String> = match data_layer {
            Some(l) => l.top.clone(),
            None => kept
                .iter()
                .find(|l| l.r#type() == "Input")
                .map(|l| l.top.clone())
                .unwrap_or_default(),
        };
        let data_blob = inputs.first().cloned().context("the net has no input blob")?;
        let label_blob = inputs.get(1).cloned();
        options = options.with_input_shape(&data_blob, &first.shape);
        if let Some(label) = &label_blob {
            options = options.with_input_shape(label, &[first.shape[0]]);
        }
        Ok(TestSet {
            spec: NetSpec {
                loaded,
                options,
                wiring: Wiring { data_blob, label_blob },
            },
            stream: BatchStream {
                images,
                batcher,
                first: Some(first),
            },
        })
    }

    /// Every batch covering the dataset once, in memory (for evaluating many weight settings).
    pub fn preload(mut self) -> Result<Preloaded> {
        let mut batches = Vec::new();
        self.stream.for_each(|batch, take| {
            batches.push((batch.clone(), take));
            Ok(())
        })?;
        Ok(Preloaded {
            spec: self.spec,
            images: self.stream.images,
            batches,
        })
    }
}

/// A [`TestSet`] with its batches read once.
pub struct Preloaded {
    /// The net and its wiring.
    pub spec: NetSpec,
    /// Images in the dataset.
    pub images: usize,
    batches: Vec<(Batch, usize)>,
}

impl Preloaded {
    /// The batches in order, each with the number of its images that count (the last may wrap around).
    pub fn batches(&self) -> impl Iterator<Item = (&Batch, usize)> {
        self.batches.iter().map(|(batch, take)| (batch, *take))
    }

    /// Evaluates `net` (built by [`NetSpec::build_net`]) on every preloaded batch.
    pub fn evaluate(&self, net: &mut engine::Net) -> Result<Tally> {
        let mut tally = Tally::new(net, self.images)?;
        for (batch, take) in &self.batches {
            tally.run(net, &self.spec.wiring, batch, *take)?;
        }
        Ok(tally)
    }
}

/// Running counts of an evaluation.
pub struct Tally {
    scores: String,
    loss_blob: Option<String>,
    /// Predicted label of every image so far.
    pub predictions: Vec<i32>,
    top1: usize,
    top5: usize,
    loss_sum: f64,
    batches: usize,
    classes: usize,
}

impl Tally {
    /// Finds the score and loss blobs of `net`.
    fn new(net: &engine::Net, images: usize) -> Result<Tally> {
        let layers: Vec<&engine::LayerInfo> = net.layers().collect();
        let scores = layers
            .iter()
            .find(|l| l.layer_type == "Accuracy" || l.layer_type == "SoftmaxWithLoss")
            .map(|l| l.bottoms[0].clone())
            .or_else(|| net.outputs().last().map(|s| s.to_string()))
            .context("no output blob to read scores from")?;
        let loss_blob = layers
            .iter()
            .find(|l| l.layer_type == "SoftmaxWithLoss")
            .map(|l| l.tops[0].clone());
        Ok(Tally {
            scores,
            loss_blob,
            predictions: Vec::with_capacity(images),
            top1: 0,
            top5: 0,
            loss_sum: 0.0,
            batches: 0,
            classes: 0,
        })
    }

    /// Runs one batch, counting its first `take` images.
    fn run(&mut self, net: &mut engine::Net, wiring: &Wiring, batch: &Batch, take: usize) -> Result<()> {
        net.set_input(&wiring.data_blob, &batch.shape, &batch.data)?;
        if let Some(label) = &wiring.label_blob {
            net.set_input(label, &[batch.shape[0]], &batch.labels)?;
        }
        net.forward()?;
        let out = net.blob(&self.scores).context("score blob missing after forward")?;
        let n = batch.shape[0];
        let classes = out.data().len() / n;
        self.classes = classes;
        for i in 0..take {
            let row = &out.data()[i * classes..(i + 1) * classes];
            let label = batch.labels[i] as usize;
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (k, v)| if *v > row[b] { k } else { b });
            self.predictions.push(best as i32);
            self.top1 += usize::from(best == label);
            let better = row.iter().filter(|v| **v > row[label.min(classes - 1)]).count();
            self.top5 += usize::from(label < classes && better < 5);
        }
        if let Some(l) = &self.loss_blob {
            self.loss_sum += f64::from(net.blob(l).map_or(0.0, |t| t.data()[0]));
            self.batches += 1;
        }
        Ok(())
    }

    /// The figures, with the speed measured over `seconds`.
    pub fn report(&self, seconds: f64) -> EvalReport {
        let images = self.predictions.len();
        EvalReport {
            top1: self.top1 as f64 / images as f64,
            top5: (self.classes >= 5).then(|| self.top5 as f64 / images as f64),
            loss: (self.batches > 0).then(|| self.loss_sum / self.batches as f64),
            images,
            images_per_s: images as f64 / seconds,
        }
    }
}

/// A path from a net or solver file: as given when it exists (or is absolute), else relative to `base`.
pub fn beside(path: &str, base: &Path) -> PathBuf {
    let given = PathBuf::from(path);
    if given.exists() || given.is_absolute() {
        given
    } else {
        base.join(given)
    }
}

/// A `transform_param.mean_file` (a .binaryproto blob), found by [`beside`] from `base`, the folder the data
/// sources are resolved against.
pub fn read_mean(name: &str, base: &Path) -> Result<caffe_proto::BlobProto> {
    let path = beside(name, base);
    Ok(caffemodel::decode_blob(&ModelFile::open(&path)?)?)
}

/// Runs `eval`.
pub fn eval(args: &EvalArgs) -> Result<EvalReport> {
    if let Some(predictions) = &args.predictions {
        outfile::check_outputs(&[predictions], &args.inputs())?;
    }
    let mut set = TestSet::open(&args.net, &args.test)?;
    let mut net = set.spec.build_net()?;
    let mut tally = Tally::new(&net, set.stream.images)?;
    let bar = clikit::progress_bar(
        set.stream.images as u64,
        "eval [{bar:30}] {pos}/{len} images ({per_sec}, ETA {eta})",
    );
    let start = Instant::now();
    set.stream.for_each(|batch, take| {
        tally.run(&mut net, &set.spec.wiring, batch, take)?;
        bar.inc(take as u64);
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(path) = &args.predictions {
        write_predictions(path, &tally.predictions, tally.classes)?;
    }
    Ok(tally.report(seconds))
}

fn write_predictions(path: &Path, predictions: &[i32], classes: usize) -> Result<()> {
    if classes <= 256 {
        let labels: Vec<u8> = predictions.iter().map(|&p| p as u8).collect();
        sparse::write_npy(path, &[labels.len()], &labels)?;
    } else {
        sparse::write_npy(path, &[predictions.len()], predictions)?;
    }
    Ok(())
}

/// Runs `forward`: feeds the arrays, writes every top blob.
pub fn forward(args: &ForwardArgs) -> Result<Vec<String>> {
    let loaded = load(&args.net)?;
    let mut arrays = Vec::new();
    let mut options = engine::NetOptions::test();
    for spec in &args.input {
        let (name, path) = spec
            .split_once('=')
            .with_context(|| format!("--input '{spec}' is not NAME=x.npy"))?;
        let array = sparse::read_npy::<f32>(path)?;
        options = options.with_input_shape(name, &array.shape);
        arrays.push((name.to_string(), array));
    }
    let mut net = engine::Net::new(&loaded.param, &options)?;
    net.copy_from(&loaded.weights)?;
    for (name, array) in &arrays {
        net.set_input(name, &array.shape, &array.data)?;
    }
    // Every file this will write, checked against every input before the pass.
    let names: Vec<String> = net.blob_names().map(str::to_string).collect();
    let files: Vec<PathBuf> = names
        .iter()
        .map(|name| args.output.join(format!("{}.npy", name.replace('/', "__"))))
        .collect();
    let mut inputs = vec![args.net.net.as_path(), args.net.weights.as_path()];
    inputs.extend(args.net.proto.as_deref());
    inputs.extend(
        args.input
            .iter()
            .filter_map(|spec| spec.split_once('='))
            .map(|(_, p)| Path::new(p)),
    );
    inputs.extend(
        args.top_diff
            .iter()
            .filter_map(|spec| spec.split_once('='))
            .map(|(_, p)| Path::new(p)),
    );
    outfile::check_outputs(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>(), &inputs)?;
    // The top gradients are read and checked before the pass, so a bad one writes nothing.
    let mut top_diffs = Vec::new();
    for spec in &args.top_diff {
        let (name, path) = spec
            .split_once('=')
            .with_context(|| format!("--top-diff '{spec}' is not NAME=g.npy"))?;
        let array = sparse::read_npy::<f32>(path)?;
        let Some(blob) = net.blob(name) else {
            bail!("--top-diff {name}: the net has no blob '{name}'");
        };
        if array.shape != blob.shape() {
            bail!(
                "--top-diff {name}: {path} has shape {:?}, the blob {:?}",
                array.shape,
                blob.shape()
            );
        }
        top_diffs.push((name.to_string(), array.data));
    }
    net.forward()?;
    std::fs::create_dir_all(&args.output).with_context(|| args.output.display().to_string())?;
    for (name, file) in names.iter().zip(&files) {
        let blob = net.blob(name).expect("listed blob exists");
        sparse::write_npy(file, blob.shape(), blob.data())?;
    }
    if args.backward {
        backward(&mut net, &top_diffs, &args.output)?;
    }
    Ok(names)
}

/// Caffe's backward pass after `forward`, given top gradients, and its gradients written under `dir`.
fn backward(net: &mut engine::Net, top_diffs: &[(String, Vec<f32>)], dir: &Path) -> Result<()> {
    // A named loss top's gradient replaces its loss weight, as setting the diff in pycaffe does: the engine seeds
    // the weight, so the difference is added.
    let layers: Vec<engine::LayerInfo> = net.layers().cloned().collect();
    let extras: Vec<(String, Vec<f32>)> = top_diffs
        .iter()
        .map(|(name, g)| {
            let weight = layers
                .iter()
                .rev()
                .find_map(|l| l.tops.iter().position(|t| t == name).map(|i| l.loss_weights[i]))
                .unwrap_or(0.0);
            (name.clone(), g.iter().map(|v| v - weight).collect())
        })
        .collect();
    let refs: Vec<(&str, &[f32])> = extras.iter().map(|(n, g)| (n.as_str(), g.as_slice())).collect();
    net.clear_param_diffs();
    net.backward_with(&refs)?;
    // The blobs that took part: tops of layers that ran backward, bottoms they sent a gradient to, named tops.
    let mut received: Vec<&str> = top_diffs.iter().map(|(n, _)| n.as_str()).collect();
    for layer in &layers {
        let Some((needed, bottoms_need)) = net.layer_needs_backward(&layer.name) else {
            continue;
        };
        if needed {
            received.extend(layer.tops.iter().map(String::as_str));
            received.extend(
                layer
                    .bottoms
                    .iter()
                    .zip(bottoms_need)
                    .filter(|(_, &need)| need)
                    .map(|(b, _)| b.as_str()),
            );
        }
    }
    received.sort_unstable();
    received.dedup();
    let diff_dir = dir.join("diff");
    std::fs::create_dir_all(&diff_dir).with_context(|| diff_dir.display().to_string())?;
    for name in received {
        if let Some(diff) = net.blob_diff(name) {
            sparse::write_npy(
                diff_dir.join(format!("{}.npy", name.replace('/', "__"))),
                diff.shape(),
                diff.data(),
            )?;
        }
    }
    for layer in &layers {
        let Some(diffs) = net.param_diffs(&layer.name) else {
            continue;
        };
        if diffs.is_empty() {
            continue;
        }
        let folder = dir.join("param_diff").join(layer.name.replace('/', "__"));
        std::fs::create_dir_all(&folder).with_context(|| folder.display().to_string())?;
        for (i, diff) in diffs.iter().enumerate() {
            sparse::write_npy(folder.join(format!("{i}.npy")), diff.shape(), diff.data())?;
        }
    }
    Ok(())
}
