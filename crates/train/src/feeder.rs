//! Feeding a net's data-layer tops before each forward pass: Caffe's `Data` layer over an LMDB or an MNIST IDX
//! pair and its `ImageData` layer over a list of image files ([`DataFeeder`]), or anything the caller computes
//! ([`FnFeeder`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use caffe_proto::{BlobProto, NetParameter, NetState};
use datasets::{
    Batch, Batcher, ColorMode, Dataset, Hdf5Data, IdxDataset, ImageDataset, ImageOptions, LeveldbDataset, LmdbDataset,
    Transformer,
};
use engine::{Net, NetOptions};

use crate::Error;

/// Sets a net's external inputs before each forward pass (Caffe's data layers, outside the net).
pub trait Feeder: Send {
    /// The shapes of the inputs this feeder sets, known before the net is built (they go into
    /// [`NetOptions::input_shapes`]).
    fn input_shapes(&self) -> Vec<(String, Vec<usize>)>;

    /// Sets the inputs for the next forward pass.
    fn feed(&mut self, net: &mut Net) -> Result<(), Error>;
}

/// A [`Feeder`] from a closure, for inputs the caller computes (e.g. `Input` layers in tests).
pub struct FnFeeder<F> {
    shapes: Vec<(String, Vec<usize>)>,
    feed: F,
}

impl<F: FnMut(&mut Net) -> Result<(), engine::Error> + Send> FnFeeder<F> {
    /// A feeder declaring `shapes` (may be empty when the net's layers fix every input shape) and calling `feed`
    /// (typically [`Net::set_input`]) before each forward pass.
    pub fn new(shapes: Vec<(String, Vec<usize>)>, feed: F) -> Self {
        FnFeeder { shapes, feed }
    }
}

impl<F: FnMut(&mut Net) -> Result<(), engine::Error> + Send> Feeder for FnFeeder<F> {
    fn input_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.shapes.clone()
    }

    fn feed(&mut self, net: &mut Net) -> Result<(), Error> {
        (self.feed)(net).map_err(|e| Error::engine("feeder", e))
    }
}

/// Where a `Data` or `ImageData` layer reads its records, overriding its `data_param.source` or
/// `image_data_param.source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Caffe LMDB folder of `Datum` records (read in key order).
    Lmdb(PathBuf),
    /// A Caffe LevelDB folder of `Datum` records (read in key order).
    Leveldb(PathBuf),
    /// An MNIST-style IDX images file and its labels file (gzipped or not).
    Idx {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
    },
    /// An `ImageData` list of `path label` lines (for `ImageData` layers only).
    ImageList(PathBuf),
    /// An `HDF5Data` list of `.h5` files (for `HDF5Data` layers only).
    Hdf5List(PathBuf),
}

/// How [`DataFeeder`] finds its data. The crate reads no mean file itself: decode the `.binaryproto` files the
/// nets name and pass them in `mean_files`.
#[derive(Clone, Debug, Default)]
pub struct DataOptions {
    /// The folder relative `source` paths are resolved against (Caffe resolves them against its working
    /// directory). Absolute sources are used as they are.
    pub base_dir: PathBuf,
    /// Sources by `Data` layer name for nets in the TRAIN phase, replacing `data_param.source` (e.g. an IDX pair).
    pub sources: BTreeMap<String, Source>,
    /// The same for nets in the TEST phase (a train and a test Data layer often share a name).
    pub test_sources: BTreeMap<String, Source>,
    /// Decoded mean blobs by the `transform_param.mean_file` value exactly as the net writes it.
    pub mean_files: BTreeMap<String, BlobProto>,
    /// Seed of the transformers' MT19937 (mirror, random crop); `None` keeps boost's default seed. Caffe derives
    /// its transformer seeds from its global RNG, which this crate does not reproduce.
    pub seed: Option<u32>,
}

impl DataOptions {
    /// Options resolving sources against `base_dir`, with no overrides, mean files or seed.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        DataOptions {
            base_dir: base_dir.into(),
            ..Default::default()
        }
    }
}

struct LayerFeed {
    layer: String,
    data_top: String,
    label_top: Option<String>,
    shape: [usize; 4],
    batcher: Batcher,
    batch: Batch,
    /// `[batch_size]`, the label top's shape.
    label_shape: [usize; 1],
    /// Records in the source.
    records: usize,
}

/// Which layer comes first in the net among those fed, indexing the feeder's lists.
#[derive(Clone, Copy, Debug)]
enum First {
    Data(usize),
    Hdf5(usize),
    Dummy(usize),
}

/// Caffe's data layers for one net, fed before each forward pass:
/// * `Data`: the next `batch_size` records of an LMDB or LevelDB of raw or encoded Datums (a folder holding
///   LevelDB's `CURRENT` and no `data.mdb` is read as a LevelDB), or of an IDX pair;
/// * `ImageData`: the next `batch_size` PNG or JPEG files of its list (`root_folder` and relative paths resolved
///   against [`DataOptions::base_dir`]), shuffled with [`DataOptions::seed`] when `shuffle` is set;
/// * `HDF5Data`: the next `batch_size` rows of every top's dataset in its list of `.h5` files (no transform, as in
///   Caffe), shuffled with [`DataOptions::seed`] when `shuffle` is set;
/// * `DummyData`: tops of the given shapes filled by the given fillers, constant ones once, others before every
///   pass from a random stream named by layer, top and pass (runs repeat exactly; Caffe's draws are not reproduced).
///
/// Records are transformed by the layer's `transform_param` for the net's phase, in key (file) order from the
/// first record, wrapping to the first after the last. `Input` layers are left to the caller; other data-reading
/// layer types are refused.
///
/// A `Data` layer's `data_param.rand_skip` in the TRAIN phase drops [`rand_skip_count`] records before the first
/// batch, as Caffe's Data layer did at setup before its DataReader (2015; Caffe 1.0 ignores the field). TEST nets
/// start at the first record, so a test pass covers the data in order. Multi-solver sharding is not modelled.
pub struct DataFeeder {
    layers: Vec<LayerFeed>,
    dummies: Vec<DummyFeed>,
    hdf5: Vec<Hdf5Feed>,
    first: Option<First>,
    phase: caffe_proto::Phase,
    /// Whether [`DataFeeder::advance`] has read a batch.
    advanced: bool,
}

/// An `HDF5Data` layer: its source, tops and batch buffers.
struct Hdf5Feed {
    layer: String,
    tops: Vec<String>,
    shapes: Vec<Vec<usize>>,
    batch_size: usize,
    data: Hdf5Data,
    batch: Vec<Vec<f32>>,
}

/// One top of a `DummyData` layer.
struct DummyTop {
    name: String,
    shape: Vec<usize>,
    filler: caffe_proto::FillerParameter,
    /// Refilled before every forward pass (a non-constant filler), else filled once.
    refill: bool,
    values: Vec<f32>,
}

/// A `DummyData` layer: its tops, and how many passes it has fed (to name each refill's random stream).
struct DummyFeed {
    layer: String,
    tops: Vec<DummyTop>,
    passes: u64,
}

impl DummyFeed {
    /// Caffe's `DummyDataLayer::LayerSetUp`: fillers (none: constant 0; one for all tops; or one per top) and
    /// shapes (`shape`: one for all or one per top; else legacy num/channels/height/width, each one or one per
    /// top), constant fillers applied once.
    fn new(layer: &caffe_proto::LayerParameter) -> Result<DummyFeed, String> {
        let param = layer.dummy_data_param.clone().unwrap_or_default();
        let tops = layer.top.len();
        let pick = |count: usize, what: &str| -> Result<Box<dyn Fn(usize) -> usize>, String> {
            match count {
                1 => Ok(Box::new(|_| 0)),
                n if n == tops => Ok(Box::new(|i| i)),
                n => Err(format!("{n} {what} given for {tops} tops; give 1 or one per top")),
            }
        };
        let fillers = if param.data_filler.is_empty() {
            vec![caffe_proto::FillerParameter::default()]
        } else {
            param.data_filler.clone()
        };
        let filler_of = pick(fillers.len(), "data_fillers")?;
        let legacy = [&param.num, &param.channels, &param.height, &param.width];
        let legacy_given = legacy.iter().any(|v| !v.is_empty());
        if legacy_given && !param.shape.is_empty() {
            return Err("both shape and num/channels/height/width are given; give one".into());
        }
        let mut feed = DummyFeed {
            layer: layer.name().to_string(),
            tops: Vec::new(),
            passes: 0,
        };
        for (index, name) in layer.top.iter().enumerate() {
            let shape: Vec<usize> = if legacy_given {
                let mut dims = Vec::new();
                for (values, what) in legacy.iter().zip(["num", "channels", "height", "width"]) {
                    let at = pick(values.len(), what)?;
                    dims.push(values[at(index)] as usize);
                }
                dims
            } else {
                if param.shape.is_empty() {
                    return Err("no shape given (shape, or num/channels/height/width)".into());
                }
                let at = pick(param.shape.len(), "shapes")?;
                param.shape[at(index)]
                    .dim
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| format!("top '{name}': negative dimension {d}")))
                    .collect::<Result<_, _>>()?
            };
            let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if count.is_none_or(|n| n > (1 << 31)) {
                return Err(format!("top '{name}': shape {shape:?} is too large"));
            }
            let filler = fillers[filler_of(index)].clone();
            let refill = filler.r#type() != "constant";
            feed.tops.push(DummyTop {
                name: name.clone(),
                values: if refill {
                    Vec::new()
                } else {
                    engine::filled(&shape, &filler, name).map_err(|e| format!("top '{name}': {e}"))?
                },
                shape,
                filler,
                refill,
            });
        }
        Ok(feed)
    }

    /// Refills the random tops for the next pass (Caffe's `Forward_cpu`).
    fn refill(&mut self) -> Result<(), String> {
        for top in self.tops.iter_mut().filter(|t| t.refill) {
            let stream = format!("{}/{}/{}", self.layer, top.name, self.passes);
            top.values =
                engine::filled(&top.shape, &top.filler, &stream).map_err(|e| format!("top '{}': {e}", top.name))?;
        }
        self.passes += 1;
        Ok(())
    }
}

/// The state Caffe filters a net's layers with, as `engine::Net::new` forms it from the options.
pub(crate) fn net_state(param: &NetParameter, options: &NetOptions) -> NetState {
    let mut state = param.state.clone().unwrap_or_default();
    state.phase = Some(options.phase as i32);
    state.level = Some(options.level);
    state.stage.extend(options.stages.iter().cloned());
    state
}

/// How many records a TRAIN `Data` layer with `rand_skip` > 0 drops before its first batch: Caffe's
/// `caffe_rng_rand() % rand_skip`, the draw being the first output of an MT19937 seeded with `seed` (the solver's
/// `random_seed`; boost's default 5489 when unset) plus the layer's index in the filtered net, so runs repeat
/// exactly. Reduced modulo the `records` of the source (`records` > 0), since skipping wraps around after the last.
pub fn rand_skip_count(rand_skip: u32, seed: Option<u32>, layer_index: usize, records: usize) -> usize {
    if rand_skip == 0 || records == 0 {
        return 0;
    }
    let seed = seed.unwrap_or(5489).wrapping_add(layer_index as u32);
    let draw = datasets::Mt19937::new(seed).next_u32() % rand_skip;
    draw as usize % records
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl DataFeeder {
    /// The feeder for the `Data` layers of `param` built in `state` (phase, level and stages select the layers and
    /// the phase the transforms work in; [`SolverNets`](crate::SolverNets) holds each net's state). Opens every
    /// source and reads its first record to learn the batch shape.
    pub fn new(param: &NetParameter, state: &NetState, data: &DataOptions) -> Result<Self, Error> {
        let phase = state.phase();
        let layers = engine::graph::filter_layers(param, state).map_err(|e| Error::engine("data", e))?;
        let mut feeds = Vec::new();
        let mut dummies = Vec::new();
        let mut hdf5 = Vec::new();
        let mut first_fed = None;
        for (index, layer) in layers.iter().enumerate() {
            let name = layer.name().to_string();
            let layer_type = layer.r#type();
            let refuse = |message: String| Error::DataLayer {
                layer: name.clone(),
                layer_type: layer_type.to_string(),
                message,
            };
            match layer_type {
                "Data" | "ImageData" => {}
                "DummyData" => {
                    first_fed.get_or_insert(First::Dummy(dummies.len()));
                    dummies.push(DummyFeed::new(layer).map_err(refuse)?);
                    continue;
                }
                "HDF5Data" => {
                    let param = layer.hdf5_data_param.clone().unwrap_or_default();
                    let batch_size = param.batch_size() as usize;
                    if batch_size == 0 {
                        return Err(refuse("batch_size must be > 0".into()));
                    }
                    let overrides = if phase == caffe_proto::Phase::Test {
                        &data.test_sources
                    } else {
                        &data.sources
                    };
                    let list = match overrides.get(&name) {
                        Some(Source::Hdf5List(list)) => list.clone(),
                        Some(_) => {
                            return Err(refuse(
                                "an HDF5Data layer reads a list of .h5 files (Source::Hdf5List)".into(),
                            ))
                        }
                        None => {
                            let Some(source) = param.source.as_deref() else {
                                return Err(refuse("hdf5_data_param.source is not set".into()));
                            };
                            let path = resolve(&data.base_dir, source);
                            if !path.exists() {
                                return Err(Error::MissingSource { layer: name, path });
                            }
                            path
                        }
                    };
                    let seed = data.seed.unwrap_or(5489).wrapping_add(index as u32);
                    let hdf5_data =
                        Hdf5Data::open(&list, &layer.top, param.shuffle(), seed, &data.base_dir).map_err(|source| {
                            Error::Data {
                                layer: name.clone(),
                                source: Box::new(source),
                            }
                        })?;
                    first_fed.get_or_insert(First::Hdf5(hdf5.len()));
                    hdf5.push(Hdf5Feed {
                        layer: name.clone(),
                        tops: layer.top.clone(),
                        shapes: hdf5_data.top_shapes(batch_size),
                        batch_size,
                        data: hdf5_data,
                        batch: Vec::new(),
                    });
                    continue;
                }
                "Input" => continue,
                t if engine::DATA_LAYER_TYPES.contains(&t) => {
                    return Err(refuse(
                        "only Data and ImageData layers are read by DataFeeder; feed this one yourself".into(),
                    ))
                }
                _ => continue,
            }
            let data_param = layer.data_param.clone().unwrap_or_default();
            let image_param = layer.image_data_param.clone().unwrap_or_default();
            let is_image_data = layer_type == "ImageData";
            let (batch_size, source) = if is_image_data {
                (image_param.batch_size() as usize, image_param.source.as_deref())
            } else {
                (data_param.batch_size() as usize, data_param.source.as_deref())
            };
            if batch_size == 0 {
                return Err(refuse("batch_size must be > 0".into()));
            }
            let (data_top, label_top) = match layer.top.as_slice() {
                [data] => (data.clone(), None),
                [data, label] => (data.clone(), Some(label.clone())),
                tops => return Err(refuse(format!("has {} tops; a Data layer has 1 or 2", tops.len()))),
            };
            let data_err = |source: datasets::Error| Error::Data {
                layer: name.clone(),
                source: Box::new(source),
            };
            let overrides = if phase == caffe_proto::Phase::Test {
                &data.test_sources
            } else {
                &data.sources
            };
            let transform = layer.transform_param.clone().unwrap_or_default();
            // Encoded Datums are decoded as the transform says (force_color / force_gray, else native).
            let color = ColorMode::from_transform(&transform);
            let image_data = |list: &Path| -> Result<Box<dyn Dataset>, Error> {
                let mut options = ImageOptions::from_param(&image_param);
                options.relative_to = data.base_dir.clone();
                if let Some(seed) = data.seed {
                    options.seed = seed.wrapping_add(index as u32);
                }
                Ok(Box::new(ImageDataset::open(list, options).map_err(data_err)?))
            };
            let dataset: Box<dyn Dataset> = match overrides.get(&name) {
                Some(Source::ImageList(list)) if is_image_data => image_data(list)?,
                Some(_) if is_image_data => {
                    return Err(refuse(
                        "an ImageData layer reads a list of images (Source::ImageList)".into(),
                    ))
                }
                Some(Source::ImageList(list) | Source::Hdf5List(list)) => {
                    return Err(refuse(format!(
                        "'{}' is a list for an ImageData or HDF5Data layer; a Data layer reads an LMDB, a LevelDB or \
                         an IDX pair",
                        list.display()
                    )))
                }
                Some(Source::Lmdb(path)) => {
                    Box::new(LmdbDataset::open_unlocked(path).map_err(data_err)?.with_color(color))
                }
                Some(Source::Leveldb(path)) => {
                    Box::new(LeveldbDataset::open(path).map_err(data_err)?.with_color(color))
                }
                Some(Source::Idx { images, labels }) => Box::new(IdxDataset::open(images, labels).map_err(data_err)?),
                None => {
                    let Some(source) = source else {
                        return Err(refuse(format!(
                            "{}.source is not set",
                            if is_image_data {
                                "image_data_param"
                            } else {
                                "data_param"
                            }
                        )));
                    };
                    let path = resolve(&data.base_dir, source);
                    if !path.exists() {
                        return Err(Error::MissingSource { layer: name, path });
                    }
                    if is_image_data {
                        image_data(&path)?
                    } else if !path.join("data.mdb").exists() && path.join("CURRENT").is_file() {
                        // A LevelDB folder (backend: LEVELDB; the folder decides, as it holds one or the other).
                        Box::new(LeveldbDataset::open(&path).map_err(data_err)?.with_color(color))
                    } else {
                        Box::new(LmdbDataset::open_unlocked(&path).map_err(data_err)?.with_color(color))
                    }
                }
            };
            if dataset.is_empty() {
                return Err(refuse(format!(
                    "source '{}' holds no record",
                    dataset.source().display()
                )));
            }
            let mean = match &transform.mean_file {
                Some(file) => Some(data.mean_files.get(file).ok_or_else(|| {
                    refuse(format!(
                        "mean_file '{file}' was not supplied in DataOptions::mean_files"
                    ))
                })?),
                None => None,
            };
            let mut transformer = Transformer::new(&transform, phase, mean).map_err(data_err)?;
            if let Some(seed) = data.seed {
                transformer = transformer.with_seed(seed.wrapping_add(index as u32));
            }
            let mut peek = dataset.reader().map_err(data_err)?;
            let first = peek.next().map_err(data_err)?;
            let item = transformer.output_shape(&first).map_err(data_err)?;
            let shape = [batch_size, item.channels(), item.height(), item.width()];
            let mut batcher =
                Batcher::new(dataset.reader().map_err(data_err)?, batch_size, transformer).map_err(data_err)?;
            let rand_skip = if is_image_data { 0 } else { data_param.rand_skip() };
            if phase == caffe_proto::Phase::Train && rand_skip > 0 {
                batcher
                    .skip_records(rand_skip_count(rand_skip, data.seed, index, dataset.len()))
                    .map_err(data_err)?;
            }
            first_fed.get_or_insert(First::Data(feeds.len()));
            feeds.push(LayerFeed {
                layer: name,
                data_top,
                label_top,
                shape,
                batcher,
                batch: Batch::default(),
                label_shape: [batch_size],
                records: dataset.len(),
            });
        }
        Ok(DataFeeder {
            layers: feeds,
            dummies,
            hdf5,
            first: first_fed,
            phase,
            advanced: false,
        })
    }

    /// The `Data` layers fed, in net order.
    pub fn layers(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.layer.as_str()).collect()
    }

    /// Position (0-based, file order) of the record each layer's next batch starts with.
    pub fn positions(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.batcher.position()).collect()
    }

    /// Reads and drops `batches` batches of every layer (e.g. to continue a resumed run where the data stopped;
    /// Caffe itself restarts at the first record on resume).
    pub fn skip_batches(&mut self, batches: usize) -> Result<(), Error> {
        for feed in &mut self.layers {
            for _ in 0..batches {
                feed.batcher.next_batch(&mut feed.batch).map_err(|source| Error::Data {
                    layer: feed.layer.clone(),
                    source: Box::new(source),
                })?;
            }
        }
        for feed in &mut self.hdf5 {
            for _ in 0..batches {
                feed.data
                    .next_batch(feed.batch_size, &mut feed.batch)
                    .map_err(|source| Error::Data {
                        layer: feed.layer.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
        for dummy in &mut self.dummies {
            // Random tops draw a new stream per pass: skipping passes skips their streams.
            dummy.passes += batches as u64;
        }
        Ok(())
    }
}

impl DataFeeder {
    /// Reads the next batch of every data layer (what [`Feeder::feed`] then sets), for callers that keep or
    /// inspect the values themselves: [`DataFeeder::inputs`] and [`DataFeeder::labels`] give them.
    pub fn advance(&mut self) -> Result<(), Error> {
        for feed in &mut self.layers {
            feed.batcher.next_batch(&mut feed.batch).map_err(|source| Error::Data {
                layer: feed.layer.clone(),
                source: Box::new(source),
            })?;
            feed.label_shape = [feed.batch.shape[0]];
        }
        for feed in &mut self.hdf5 {
            feed.data
                .next_batch(feed.batch_size, &mut feed.batch)
                .map_err(|source| Error::Data {
                    layer: feed.layer.clone(),
                    source: Box::new(source),
                })?;
        }
        for dummy in &mut self.dummies {
            dummy.refill().map_err(|message| Error::DataLayer {
                layer: dummy.layer.clone(),
                layer_type: "DummyData".into(),
                message,
            })?;
        }
        self.advanced = true;
        Ok(())
    }

    /// The values the last [`DataFeeder::advance`] read: each input blob's name, shape and values, in the order of
    /// [`Feeder::input_shapes`]. Empty before the first `advance`.
    pub fn inputs(&self) -> Vec<(&str, &[usize], &[f32])> {
        let mut out: Vec<(&str, &[usize], &[f32])> = Vec::new();
        if !self.advanced {
            return out;
        }
        for feed in &self.layers {
            out.push((&feed.data_top, &feed.batch.shape, &feed.batch.data));
            if let Some(label) = &feed.label_top {
                out.push((label, &feed.label_shape, &feed.batch.labels));
            }
        }
        for dummy in &self.dummies {
            for top in &dummy.tops {
                out.push((&top.name, &top.shape, &top.values));
            }
        }
        for feed in &self.hdf5 {
            for ((top, shape), values) in feed.tops.iter().zip(&feed.shapes).zip(&feed.batch) {
                out.push((top, shape, values));
            }
        }
        out
    }

    /// The first data layer of the net that this feeder feeds (net order), with its type.
    pub fn first_layer(&self) -> Option<(&str, &'static str)> {
        Some(match self.first? {
            First::Data(i) => (self.layers[i].layer.as_str(), "Data"),
            First::Hdf5(i) => (self.hdf5[i].layer.as_str(), "HDF5Data"),
            First::Dummy(i) => (self.dummies[i].layer.as_str(), "DummyData"),
        })
    }

    /// Items in one batch of the first data layer (its tops' first axis).
    pub fn batch_size(&self) -> Option<usize> {
        Some(match self.first? {
            First::Data(i) => self.layers[i].shape[0],
            First::Hdf5(i) => self.hdf5[i].batch_size,
            First::Dummy(i) => self.dummies[i].tops[0].shape.first().copied().unwrap_or(1),
        })
    }

    /// The labels of the first data layer's last batch, one per item: a `Data` or `ImageData` layer's record
    /// labels (whether or not it has a label top); for `HDF5Data` and `DummyData`, the second top's values when it
    /// holds one value per item. `None` otherwise, or before the first [`DataFeeder::advance`].
    pub fn labels(&self) -> Option<&[f32]> {
        let one_per_item = |values: &[f32], items: usize| (values.len() == items && items > 0).then_some(());
        match self.first? {
            _ if !self.advanced => None,
            First::Data(i) => Some(&self.layers[i].batch.labels),
            First::Hdf5(i) => {
                let feed = &self.hdf5[i];
                let values = feed.batch.get(1)?;
                one_per_item(values, feed.batch_size)?;
                Some(values)
            }
            First::Dummy(i) => {
                let dummy = &self.dummies[i];
                let items = dummy.tops[0].shape.first().copied().unwrap_or(1);
                let values = &dummy.tops.get(1)?.values;
                one_per_item(values, items)?;
                Some(values)
            }
        }
    }

    /// Items in one pass over the first data layer's source: a `Data` or `ImageData` layer's records, an
    /// `HDF5Data` layer's rows over all its files (each file's first top is opened to count them), a `DummyData`
    /// layer's batch.
    pub fn epoch_len(&self) -> Result<Option<usize>, Error> {
        let Some(first) = self.first else { return Ok(None) };
        Ok(Some(match first {
            First::Data(i) => self.layers[i].records,
            First::Hdf5(i) => {
                let feed = &self.hdf5[i];
                feed.data.total_rows().map_err(|source| Error::Data {
                    layer: feed.layer.clone(),
                    source: Box::new(source),
                })?
            }
            First::Dummy(_) => self.batch_size().unwrap_or(1),
        }))
    }
}

impl Feeder for DataFeeder {
    fn input_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        for feed in &self.layers {
            shapes.push((feed.data_top.clone(), feed.shape.to_vec()));
            if let Some(label) = &feed.label_top {
                shapes.push((label.clone(), vec![feed.shape[0]]));
            }
        }
        for dummy in &self.dummies {
            shapes.extend(dummy.tops.iter().map(|t| (t.name.clone(), t.shape.clone())));
        }
        for feed in &self.hdf5 {
            shapes.extend(feed.tops.iter().cloned().zip(feed.shapes.iter().cloned()));
        }
        shapes
    }

    fn feed(&mut self, net: &mut Net) -> Result<(), Error> {
        self.advance()?;
        let phase = if self.phase == caffe_proto::Phase::Train {
            "train"
        } else {
            "test"
        };
        for (blob, shape, values) in self.inputs() {
            net.set_input(blob, shape, values)
                .map_err(|e| Error::engine(phase, e))?;
        }
        Ok(())
    }
}
