//! Reading a VGG16-sized model from its `.caffez` against reading the same model's `.caffemodel`, in the same run.
//!
//! The model: VGG16's layers and weight shapes (13 3x3 convolutions, fully connected 25088x4096, 4096x4096,
//! 4096x1000; 138,357,544 parameters, 553 MB as a caffemodel), synthetic weights (`quantize::synthetic::weights`,
//! roughly normal with std 0.05), each weight blob pruned to its largest 10% by magnitude and shared by the
//! quantize crate's k-means, 8 bits for the convolutions and 5 for the fully connected layers, as Deep
//! Compression does; biases dense. Built once (about a minute), shared by every benchmark.
//!
//! * `decompress`: the `.caffez` bytes (in memory) to the caffemodel bytes, `caffez::decompress`;
//! * `plain_read` (the baseline): what the tools do with a `.caffemodel` in the page cache:
//!   `caffemodel::ModelFile::open`, `net()`, every blob's values copied out with `to_vec_f32`;
//! * `caffez_read`: the same through `caffez::open_model` on the `.caffez` file (decompress, then parse and copy);
//! * `compress`: the caffemodel (in memory) to `.caffez` bytes, `caffez::compress`.
//!
//! The ratio that matters is `decompress / plain_read` (target: within 3x). Outputs are dropped outside the
//! timed region (one iteration a sample, so at most one 553 MB output is alive).
//!
//! `cargo bench -p caffez --bench caffez` (needs about 2.5 GB of memory and 553 MB in the temporary folder).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use caffe_proto::{
    BlobProto, BlobShape, ConvolutionParameter, InnerProductParameter, InputParameter, LayerParameter, NetParameter,
    PoolingParameter,
};
use caffemodel::ModelFile;
use divan::{black_box, Bencher};
use prost::Message;

fn main() {
    // Built before divan starts, so its note prints above the table.
    fixture();
    divan::main();
    if let Some(fixture) = FIXTURE.get() {
        let _ = std::fs::remove_file(&fixture.caffemodel_path);
        let _ = std::fs::remove_file(&fixture.caffez_path);
    }
}

/// The quantized VGG16 in both forms.
struct Fixture {
    /// The caffemodel, parsed from memory (for `compress`).
    model: ModelFile,
    /// Its `.caffez` bytes.
    caffez: Vec<u8>,
    /// The caffemodel and the `.caffez` written to the temporary folder (removed when the run ends).
    caffemodel_path: PathBuf,
    caffez_path: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let start = Instant::now();
        let bytes = vgg16_quantized().encode_to_vec();
        let built = start.elapsed();
        let model = ModelFile::from_bytes("vgg16-quantized.caffemodel", bytes).expect("a caffemodel");
        let start = Instant::now();
        let compressed = caffez::compress(&model).expect("quantized");
        let compress_time = start.elapsed();
        let back = caffez::decompress(&compressed.bytes).expect("a valid .caffez");
        assert!(back == model.bytes(), "the .caffez gives the model back byte for byte");
        drop(back);
        let dir = std::env::temp_dir();
        let caffemodel_path = dir.join(format!("caffez-bench-{}.caffemodel", std::process::id()));
        let caffez_path = caffemodel_path.with_extension("caffez");
        std::fs::write(&caffemodel_path, model.bytes()).expect("writing the caffemodel");
        std::fs::write(&caffez_path, &compressed.bytes).expect("writing the .caffez");
        let (kept, count) = compressed
            .blobs
            .iter()
            .fold((0, 0), |(k, c), b| (k + b.kept, c + b.count));
        eprintln!(
            "VGG16, pruned to 10% and shared (conv 8 bits, fc 5): {} weight blobs, {kept} of {count} weights kept; \
             caffemodel {} bytes, .caffez {} bytes ({:.1}x; skeleton {} bytes); built in {:.1} s, compressed once \
             in {:.2} s",
            compressed.blobs.len(),
            model.bytes().len(),
            compressed.bytes.len(),
            model.bytes().len() as f64 / compressed.bytes.len() as f64,
            compressed.skeleton_bytes,
            built.as_secs_f64(),
            compress_time.as_secs_f64(),
        );
        Fixture {
            model,
            caffez: compressed.bytes,
            caffemodel_path,
            caffez_path,
        }
    })
}

/// Every blob's values, copied out as the tools read a model.
fn copy_every_blob(model: &ModelFile) -> Vec<Vec<f32>> {
    let net = model.net().expect("a net");
    net.layers()
        .iter()
        .flat_map(|layer| layer.blobs())
        .map(|blob| blob.data().to_vec_f32())
        .collect()
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn decompress(bencher: Bencher) {
    let fixture = fixture();
    bencher.bench_local(|| caffez::decompress(black_box(&fixture.caffez)).expect("a valid .caffez"));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn plain_read(bencher: Bencher) {
    let fixture = fixture();
    bencher.bench_local(|| {
        let model = ModelFile::open(black_box(&fixture.caffemodel_path)).expect("a caffemodel");
        copy_every_blob(&model)
    });
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn caffez_read(bencher: Bencher) {
    let fixture = fixture();
    bencher.bench_local(|| {
        let model = caffez::open_model(black_box(&fixture.caffez_path)).expect("a .caffez");
        copy_every_blob(&model)
    });
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn compress(bencher: Bencher) {
    let fixture = fixture();
    bencher.bench_local(|| caffez::compress(black_box(&fixture.model)).expect("quantized"));
}

/// VGG16's weight blobs: 13 convolutions (outputs, inputs), then the fully connected layers (outputs, inputs).
const CONVS: [(i64, i64); 13] = [
    (64, 3),
    (64, 64),
    (128, 64),
    (128, 128),
    (256, 128),
    (256, 256),
    (256, 256),
    (512, 256),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
];
const FCS: [(&str, i64, i64); 3] = [("fc6", 4096, 25088), ("fc7", 4096, 4096), ("fc8", 1000, 4096)];
/// The convolutions of each stage, before its max pooling.
const STAGES: [usize; 5] = [2, 2, 3, 3, 3];

/// `len` synthetic weights, the largest 10% by magnitude kept and shared to `bits` bits.
fn pruned_and_shared(len: usize, seed: u64, bits: u32) -> Vec<f32> {
    let mut weights = quantize::synthetic::weights(len, seed);
    let mut magnitudes: Vec<f32> = weights.iter().map(|w| w.abs()).collect();
    let at = len - len / 10;
    let (_, &mut cut, _) = magnitudes.select_nth_unstable_by(at, f32::total_cmp);
    drop(magnitudes);
    for w in &mut weights {
        if w.abs() < cut {
            *w = 0.0;
        }
    }
    let shared = quantize::quantize(&weights, &quantize::KMeansOptions::new(bits)).expect("finite weights");
    drop(weights);
    shared.reconstruct()
}

fn layer(name: &str, kind: &str, bottom: &str, top: &str) -> LayerParameter {
    LayerParameter {
        name: Some(name.into()),
        r#type: Some(kind.into()),
        bottom: if bottom.is_empty() { vec![] } else { vec![bottom.into()] },
        top: vec![top.into()],
        ..Default::default()
    }
}

fn blob(dims: Vec<i64>, data: Vec<f32>) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape { dim: dims }),
        data,
        ..Default::default()
    }
}

/// VGG16 (configuration D) with its weights pruned and shared, biases 0.1.
fn vgg16_quantized() -> NetParameter {
    let mut layers = vec![LayerParameter {
        input_param: Some(InputParameter {
            shape: vec![BlobShape {
                dim: vec![1, 3, 224, 224],
            }],
        }),
        ..layer("data", "Input", "", "data")
    }];
    let mut bottom = "data".to_string();
    let mut convs = CONVS.iter().enumerate();
    for (s, &count) in STAGES.iter().enumerate() {
        for (c, (i, &(outputs, inputs))) in convs.by_ref().take(count).enumerate() {
            let name = format!("conv{}_{}", s + 1, c + 1);
            let mut conv = layer(&name, "Convolution", &bottom, &name);
            conv.convolution_param = Some(ConvolutionParameter {
                num_output: Some(outputs as u32),
                kernel_size: vec![3],
                pad: vec![1],
                ..Default::default()
            });
            let weights = pruned_and_shared((outputs * inputs * 9) as usize, i as u64 + 1, 8);
            conv.blobs = vec![
                blob(vec![outputs, inputs, 3, 3], weights),
                blob(vec![outputs], vec![0.1; outputs as usize]),
            ];
            layers.push(conv);
            layers.push(layer(&format!("relu{}_{}", s + 1, c + 1), "ReLU", &name, &name));
            bottom = name;
        }
        let pool = format!("pool{}", s + 1);
        let mut pooling = layer(&pool, "Pooling", &bottom, &pool);
        pooling.pooling_param = Some(PoolingParameter {
            pool: Some(caffe_proto::pooling_parameter::PoolMethod::Max as i32),
            kernel_size: Some(2),
            stride: Some(2),
            ..Default::default()
        });
        layers.push(pooling);
        bottom = pool;
    }
    for (i, &(name, outputs, inputs)) in FCS.iter().enumerate() {
        let mut fc = layer(name, "InnerProduct", &bottom, name);
        fc.inner_product_param = Some(InnerProductParameter {
            num_output: Some(outputs as u32),
            ..Default::default()
        });
        let weights = pruned_and_shared((outputs * inputs) as usize, 100 + i as u64, 5);
        fc.blobs = vec![
            blob(vec![outputs, inputs], weights),
            blob(vec![outputs], vec![0.1; outputs as usize]),
        ];
        layers.push(fc);
        if name != "fc8" {
            layers.push(layer(&name.replace("fc", "relu"), "ReLU", name, name));
            layers.push(layer(&name.replace("fc", "drop"), "Dropout", name, name));
        }
        bottom = name.to_string();
    }
    layers.push(layer("prob", "Softmax", &bottom, "prob"));
    let net = NetParameter {
        name: Some("VGG_ILSVRC_16_layers".into()),
        layer: layers,
        ..Default::default()
    };
    let parameters: usize = net.layer.iter().flat_map(|l| &l.blobs).map(|b| b.data.len()).sum();
    assert_eq!(parameters, 138_357_544, "VGG16's parameter count");
    net
}
