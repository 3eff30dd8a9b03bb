//! `caffe-prune eval` and `caffe-prune forward`: the engine run on real data or given arrays.

use anyhow::{bail, Context, Result};
use caffemodel::text::{self, Schema};
use caffemodel::ModelFile;
use datasets::{ImageDataset, ImageOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::Feeder as _;

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

/// Where `--data` points for a data layer of type `layer_type`: an `ImageData` or `HDF5Data` layer's list, else an
/// LMDB or LevelDB folder (the folder says which: LevelDB's `CURRENT` without LMDB's `data.mdb`) or an IDX images
/// file, whose labels file is `labels` or found from the images file's name.
pub(crate) fn source_of(path: &Path, labels: Option<&Path>, layer_type: &str) -> Result<train::Source> {
    match layer_type {
        "ImageData" => return Ok(train::Source::ImageList(path.to_path_buf())),
        "HDF5Data" => return Ok(train::Source::Hdf5List(path.to_path_buf())),
        _ => {}
    }
    if path.is_dir() {
        if !path.join("data.mdb").exists() && path.join("CURRENT").is_file() {
            return Ok(train::Source::Leveldb(path.to_path_buf()));
        }
        return Ok(train::Source::Lmdb(path.to_path_buf()));
    }
    let labels = match labels {
        Some(l) => l.to_path_buf(),
        None => datasets::labels_path_for(path).with_context(|| {
            format!(
                "{}: not an LMDB or LevelDB folder, and no labels file can be found from the name (expected \
                 *images-idx3*; or give --labels)",
                path.display()
            )
        })?,
    };
    Ok(train::Source::Idx {
        images: path.to_path_buf(),
        labels,
    })
}

/// The folder relative data paths are read from (Caffe reads them from its working directory): the working
/// directory when every path in `needed` is there, else the first folder from `net_dir` up to the root that holds
/// them all, else the working directory (whose missing path is then reported).
pub(crate) fn data_root(needed: &[PathBuf], net_dir: &Path) -> PathBuf {
    let mut candidates = vec![PathBuf::from(".")];
    candidates.extend(net_dir.ancestors().map(Path::to_path_buf));
    candidates
        .into_iter()
        .find(|dir| needed.iter().all(|s| dir.join(s).exists()))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The first path a list names, relative as written (with an ImageData layer's `root_folder` before it), so that
/// [`data_root`] finds the folder the list's paths are relative to.
fn first_listed(list: &Path, layer: &caffe_proto::LayerParameter) -> Option<PathBuf> {
    let text = std::fs::read_to_string(list).ok()?;
    if layer.r#type() == "ImageData" {
        let options = ImageOptions::from_param(&layer.image_data_param.clone().unwrap_or_default());
        let first = ImageDataset::open(list, options.clone())
            .ok()?
            .lines()
            .first()?
            .0
            .clone();
        return Some(PathBuf::from(format!("{}{first}", options.root_folder)));
    }
    text.split_whitespace().next().map(PathBuf::from)
}

/// The TEST net's data wiring and test images, ready to run: what `eval` streams and `sweep` reuses.
pub struct TestSet {
    /// The net to build.
    pub spec: NetSpec,
    /// The batches.
    pub stream: BatchStream,
}

/// What builds the TEST net.
pub struct NetSpec {
    /// The net definition and weights.
    pub loaded: Loaded,
    /// Options to build the TEST net with (input shapes set for the batches).
    pub options: engine::NetOptions,
}

impl NetSpec {
    /// Builds the TEST net with the weights loaded.
    pub fn build_net(&self) -> Result<engine::Net> {
        let mut net = engine::Net::new(&self.loaded.param, &self.options)?;
        net.copy_from(&self.loaded.weights)?;
        Ok(net)
    }
}

/// The inputs of one forward pass and the labels its first `items` outputs are scored against.
#[derive(Clone, Debug)]
pub struct Pass {
    /// Each input blob's name, shape and values.
    pub inputs: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// One label per item of the batch.
    pub labels: Vec<f32>,
}

/// Batches covering the data once, in Caffe's order, read by the training crate's [`train::DataFeeder`] from the
/// TEST net's data layers.
pub struct BatchStream {
    /// Items in one pass over the first data layer's source (the last batch may wrap around past them).
    pub images: usize,
    feeder: train::DataFeeder,
    layer: String,
}

impl BatchStream {
    /// Reads the next batch of every data layer.
    fn next_pass(&mut self) -> Result<Pass> {
        self.feeder.advance()?;
        let labels = self.feeder.labels().with_context(|| {
            format!(
                "data layer '{}': no labels to score against (a Data or ImageData layer's records, or an HDF5Data or \
                 DummyData layer's second top with one value per item)",
                self.layer
            )
        })?;
        Ok(Pass {
            inputs: self
                .feeder
                .inputs()
                .into_iter()
                .map(|(name, shape, values)| (name.to_string(), shape.to_vec(), values.to_vec()))
                .collect(),
            labels: labels.to_vec(),
        })
    }

    /// Gives every batch covering the data once, in order, to `each` with the number of its items to count (the
    /// last batch may wrap around to the first items: those are not counted twice).
    ///
    /// With more than one thread in the pool, the next batch is read while `each` runs on this one, as Caffe's
    /// data layers prefetch: reading and decoding would otherwise leave the other threads idle between passes.
    pub fn for_each(&mut self, mut each: impl FnMut(&Pass, usize) -> Result<()>) -> Result<()> {
        let images = self.images;
        let layer = self.layer.clone();
        let take = |pass: &Pass, done: usize| pass.labels.len().min(images - done);
        if rayon::current_num_threads() < 2 {
            let mut done = 0;
            while done < images {
                let pass = self.next_pass()?;
                let take = take(&pass, done);
                each(&pass, take)?;
                done += take;
            }
            return Ok(());
        }
        std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<Pass>>(1);
            let stream = &mut *self;
            scope.spawn(move || {
                let mut done = 0;
                while done < images {
                    let pass = stream.next_pass();
                    let step = pass.as_ref().map_or(0, |pass| take(pass, done));
                    // Stop after passing on an error (or an empty batch), or when `each` failed.
                    if sender.send(pass).is_err() || step == 0 {
                        break;
                    }
                    done += step;
                }
            });
            let mut done = 0;
            while done < images {
                let pass = receiver.recv().context("the data reader stopped")??;
                let take = take(&pass, done);
                if take == 0 {
                    bail!("data layer '{layer}' gave an empty batch");
                }
                each(&pass, take)?;
                done += take;
            }
            Ok(())
        })
    }
}

impl TestSet {
    /// Reads the net and the weights and opens the data of the TEST net's data layers (`Data`, `ImageData`,
    /// `HDF5Data`, `DummyData`), `--data` replacing the first one's source; a net whose input is an `Input` layer
    /// reads `--data` as a `Data` layer without transform.
    pub fn open(net: &NetArgs, args: &TestArgs) -> Result<TestSet> {
        let loaded = load(net)?;
        let mut options = engine::NetOptions::test();
        options.stages = args.stage.clone();
        options.level = args.level;
        // Evaluation reads only the scores and the outputs, never a blob that only a pooling reads.
        options.fuse_pooling = true;
        let state = options.state(&loaded.param);
        // The data layers the TEST net keeps under Caffe's rules (phase, level, stages).
        let kept = engine::graph::filter_layers(&loaded.param, &state)?;
        const FED: [&str; 4] = ["Data", "ImageData", "HDF5Data", "DummyData"];
        let first = kept.iter().find(|l| FED.contains(&l.r#type()));
        let net_dir = net.net.parent().unwrap_or(Path::new("."));
        // What the feeder reads: the net's layers, with --batch set and an Input layer turned into a Data layer.
        let mut feed_param = loaded.param.clone();
        let first: caffe_proto::LayerParameter = match first {
            Some(layer) => layer.clone(),
            None => {
                let Some(input) = kept.iter().find(|l| l.r#type() == "Input") else {
                    bail!(
                        "{}: the TEST net has no data layer (Data, ImageData, HDF5Data, DummyData) and no Input layer \
                         to feed",
                        net.net.display()
                    );
                };
                if args.data.is_none() {
                    bail!(
                        "{}: the net's input is the Input layer '{}': give the test data with --data",
                        net.net.display(),
                        input.name()
                    );
                }
                let layer = feed_param
                    .layer
                    .iter_mut()
                    .find(|l| l.name == input.name && l.r#type() == "Input")
                    .context("the Input layer vanished")?;
                layer.r#type = Some("Data".into());
                layer.input_param = None;
                layer.data_param = Some(caffe_proto::DataParameter {
                    batch_size: Some(100),
                    ..Default::default()
                });
                layer.clone()
            }
        };
        let layer_type = first.r#type().to_string();
        if let Some(batch) = args.batch {
            let batch = u32::try_from(batch).context("--batch is too large")?;
            let layer = feed_param
                .layer
                .iter_mut()
                .find(|l| l.name == first.name && l.r#type() == layer_type)
                .context("the data layer vanished")?;
            match layer_type.as_str() {
                "Data" => layer.data_param.get_or_insert_with(Default::default).batch_size = Some(batch),
                "ImageData" => layer.image_data_param.get_or_insert_with(Default::default).batch_size = Some(batch),
                "HDF5Data" => layer.hdf5_data_param.get_or_insert_with(Default::default).batch_size = Some(batch),
                _ => bail!(
                    "--batch does not apply to the DummyData layer '{}': its shape sets the batch",
                    first.name()
                ),
            }
        }
        let mut data = train::DataOptions::default();
        let mut needed = Vec::new();
        if let Some(path) = &args.data {
            if layer_type == "DummyData" {
                bail!(
                    "--data does not apply: the TEST net's data layer '{}' is DummyData (its tops are filled, not read)",
                    first.name()
                );
            }
            data.test_sources.insert(
                first.name().to_string(),
                source_of(path, args.labels.as_deref(), &layer_type)?,
            );
            if matches!(layer_type.as_str(), "ImageData" | "HDF5Data") {
                needed.extend(first_listed(path, &first));
            }
        }
        for layer in kept.iter().filter(|l| FED.contains(&l.r#type())) {
            let source = match layer.r#type() {
                "Data" => layer.data_param.as_ref().and_then(|p| p.source.clone()),
                "ImageData" => layer.image_data_param.as_ref().and_then(|p| p.source.clone()),
                "HDF5Data" => layer.hdf5_data_param.as_ref().and_then(|p| p.source.clone()),
                _ => None,
            };
            if !data.test_sources.contains_key(layer.name()) {
                needed.extend(source.map(PathBuf::from));
            }
            needed.extend(
                layer
                    .transform_param
                    .as_ref()
                    .and_then(|t| t.mean_file.clone())
                    .map(PathBuf::from),
            );
        }
        data.base_dir = data_root(&needed, net_dir);
        for layer in &kept {
            if let Some(mean) = layer.transform_param.as_ref().and_then(|t| t.mean_file.as_ref()) {
                let blob = read_mean(mean, &data.base_dir)?;
                data.mean_files.insert(mean.clone(), blob);
            }
        }
        let feeder = train::DataFeeder::new(&feed_param, &state, &data)?;
        let images = feeder.epoch_len()?.unwrap_or(0);
        if images == 0 {
            bail!("data layer '{}': the data is empty", first.name());
        }
        for (blob, shape) in feeder.input_shapes() {
            options = options.with_input_shape(&blob, &shape);
        }
        Ok(TestSet {
            spec: NetSpec { loaded, options },
            stream: BatchStream {
                images,
                feeder,
                layer: first.name().to_string(),
            },
        })
    }

    /// Every batch covering the dataset once, in memory (for evaluating many weight settings).
    pub fn preload(mut self) -> Result<Preloaded> {
        let mut batches = Vec::new();
        self.stream.for_each(|pass, take| {
            batches.push((pass.clone(), take));
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
    /// The net to build.
    pub spec: NetSpec,
    /// Images in the dataset.
    pub images: usize,
    batches: Vec<(Pass, usize)>,
}

impl Preloaded {
    /// The batches in order, each with the number of its images that count (the last may wrap around).
    pub fn batches(&self) -> impl Iterator<Item = (&Pass, usize)> {
        self.batches.iter().map(|(batch, take)| (batch, *take))
    }

    /// Evaluates `net` (built by [`NetSpec::build_net`]) on every preloaded batch.
    pub fn evaluate(&self, net: &mut engine::Net) -> Result<Tally> {
        let mut tally = Tally::new(net, self.images)?;
        for (pass, take) in &self.batches {
            tally.run(net, pass, *take)?;
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

    /// Runs one batch, counting its first `take` items.
    fn run(&mut self, net: &mut engine::Net, pass: &Pass, take: usize) -> Result<()> {
        for (name, shape, values) in &pass.inputs {
            net.set_input(name, shape, values)?;
        }
        net.forward()?;
        let out = net.blob(&self.scores).context("score blob missing after forward")?;
        let n = pass.labels.len();
        let classes = out.data().len() / n;
        if classes == 0 || out.data().len() % n != 0 {
            bail!(
                "the score blob '{}' has shape {:?}, not one row per item of the batch of {n}",
                self.scores,
                out.shape()
            );
        }
        self.classes = classes;
        for i in 0..take {
            let row = &out.data()[i * classes..(i + 1) * classes];
            let label = pass.labels[i] as usize;
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

/// The files the net's layers kept in `options`' state write (`HDF5Output`'s `file_name`), to check against the
/// inputs before any pass.
pub(crate) fn written_by_net(param: &caffe_proto::NetParameter, options: &engine::NetOptions) -> Result<Vec<PathBuf>> {
    let kept = engine::graph::filter_layers(param, &options.state(param))?;
    Ok(kept
        .iter()
        .filter(|l| l.r#type() == "HDF5Output")
        .filter_map(|l| l.hdf5_output_param.as_ref()?.file_name.clone())
        .map(PathBuf::from)
        .collect())
}

/// Runs `eval`.
pub fn eval(args: &EvalArgs) -> Result<EvalReport> {
    if let Some(predictions) = &args.predictions {
        outfile::check_outputs(&[predictions], &args.inputs())?;
    }
    let mut set = TestSet::open(&args.net, &args.test)?;
    let mut outputs = written_by_net(&set.spec.loaded.param, &set.spec.options)?;
    outputs.extend(args.predictions.clone());
    outfile::check_outputs(
        &outputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        &args.inputs(),
    )?;
    let mut net = set.spec.build_net()?;
    let mut tally = Tally::new(&net, set.stream.images)?;
    let bar = clikit::progress_bar(
        set.stream.images as u64,
        "eval [{bar:30}] {pos}/{len} images ({per_sec}, ETA {eta})",
    );
    let start = Instant::now();
    set.stream.for_each(|pass, take| {
        tally.run(&mut net, pass, take)?;
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
    let mut files: Vec<PathBuf> = names
        .iter()
        .map(|name| args.output.join(format!("{}.npy", name.replace('/', "__"))))
        .collect();
    files.extend(written_by_net(&loaded.param, &options)?);
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
