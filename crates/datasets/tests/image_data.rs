//! ImageData: list files, images read, resized as OpenCV resizes them, shuffled as Caffe shuffles them.

use std::path::Path;

use caffe_proto::{ImageDataParameter, Phase, TransformationParameter};
use datasets::{
    decode_image, resize_linear, Batch, Batcher, ColorMode, Dataset, Error, ImageDataset, ImageOptions, RecordValues,
    Shape, Transformer,
};

fn images() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images")
}

fn decode(path: &Path, mode: ColorMode) -> (Shape, Vec<u8>) {
    let mut out = Vec::new();
    let shape = decode_image(&std::fs::read(path).unwrap(), mode, &mut out).unwrap();
    (shape, out)
}

#[test]
fn resize_is_exactly_opencvs_inter_linear() {
    // tests/images/<image>.<mode>.resize<H>x<W>.png: cv2.resize(cv2.imread(image, mode), (W, H)) by OpenCV
    // 4.10, C x H planes stacked.
    let mut checked = 0;
    for entry in std::fs::read_dir(images()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let Some((head, size)) = name.strip_suffix(".png").and_then(|n| n.split_once(".resize")) else {
            continue;
        };
        let (image, mode) = head.split_once('.').unwrap();
        let mode = if mode == "color" {
            ColorMode::Color
        } else {
            ColorMode::Gray
        };
        let (h, w) = size.split_once('x').unwrap();
        let (h, w): (usize, usize) = (h.parse().unwrap(), w.parse().unwrap());
        let (from, src) = decode(&images().join(format!("{image}.png")), mode);
        let to = Shape::new(from.channels(), h, w).unwrap();
        let mut ours = Vec::new();
        resize_linear(&src, from, to, &mut ours);
        let (_, theirs) = decode(&images().join(&name), ColorMode::Native);
        assert!(ours == theirs, "{name}: differs from OpenCV's");
        checked += 1;
    }
    assert_eq!(checked, 28);
}

fn png_gray(path: &Path, width: u32, height: u32, pixels: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Grayscale);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(pixels).unwrap();
}

/// A folder with images `a b.png` (2x3, values 0..6), `c.png` (2x3, 10..16), `d.png` (2x3, 20..26), `e.png`
/// (2x3, 30..36) under `root/`, and a list of them.
fn setup(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    for (name, base) in [("a b.png", 0u8), ("c.png", 10), ("d.png", 20), ("e.png", 30)] {
        let pixels: Vec<u8> = (0..6).map(|v| base + v).collect();
        png_gray(&root.join(name), 3, 2, &pixels);
    }
    let list = dir.join("list.txt");
    std::fs::write(&list, "a b.png 0\r\nc.png 1\nd.png 2\ne.png -3\n").unwrap();
    list
}

fn options(dir: &Path) -> ImageOptions {
    ImageOptions {
        root_folder: format!("{}/root/", dir.display()),
        ..Default::default()
    }
}

#[test]
fn batches_in_list_order_with_labels_colour_and_transform() {
    let tmp = tempfile::tempdir().unwrap();
    let list = setup(tmp.path());
    let param = ImageDataParameter {
        root_folder: Some(format!("{}/root/", tmp.path().display())),
        is_color: Some(false),
        ..Default::default()
    };
    let gray = ImageDataset::open(&list, ImageOptions::from_param(&param)).unwrap();
    assert_eq!(gray.len(), 4);
    assert_eq!(gray.lines()[0], ("a b".to_string() + ".png", 0));
    assert_eq!(gray.lines()[3].1, -3);
    let transform = TransformationParameter {
        scale: Some(0.5),
        mean_value: vec![1.0],
        mirror: Some(false),
        ..Default::default()
    };
    let t = Transformer::new(&transform, Phase::Test, None).unwrap();
    let mut batcher = Batcher::new(gray.reader().unwrap(), 3, t).unwrap();
    let mut batch = Batch::default();
    batcher.next_batch(&mut batch).unwrap();
    assert_eq!(batch.shape, [3, 1, 2, 3]);
    assert_eq!(batch.labels, [0.0, 1.0, 2.0]);
    let expected: Vec<f32> = [0u8, 10, 20]
        .iter()
        .flat_map(|&b| (0..6).map(move |v| (f32::from(b + v) - 1.0) * 0.5))
        .collect();
    assert_eq!(batch.data, expected);
    // Wraps after the last line, as Caffe's ImageData does.
    batcher.next_batch(&mut batch).unwrap();
    assert_eq!(batch.labels, [-3.0, 0.0, 1.0]);

    // is_color (the default): gray replicated into B, G, R; resized to 4x6 (2x upscaling).
    let color = ImageDataset::open(
        &list,
        ImageOptions {
            new_height: 4,
            new_width: 6,
            ..options(tmp.path())
        },
    )
    .unwrap();
    let mut reader = color.reader().unwrap();
    let record = reader.next().unwrap();
    assert_eq!(record.shape().to_string(), "3x4x6");
    assert_eq!(record.key(), Some(&b"a b.png"[..]));
    let RecordValues::Bytes(bytes) = record.values() else {
        panic!()
    };
    assert_eq!(&bytes[..24], &bytes[24..48]);
    // OpenCV's 2x bilinear of the row [0 1 2]: 0 0 1 1 2 2 in fixed point (weights 1/4, 3/4): by hand,
    // x 0: clamped -> 0; x 1: 0.75*0 + 0.25*1 -> 0.25 -> 0; x 2: 0.25*0 + 0.75*1 = 0.75 -> 1; ...
    // Rows blend the image's rows 0 (0 1 2) and 1 (3 4 5) the same way.
    assert_eq!(&bytes[..6], &[0, 0, 1, 1, 2, 2]);
    assert_eq!(&bytes[18..24], &[3, 3, 4, 4, 5, 5]);
}

#[test]
fn shuffling_is_caffes_algorithm_seeded_and_reshuffles_each_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let list = setup(tmp.path());
    let shuffled = ImageDataset::open(
        &list,
        ImageOptions {
            shuffle: true,
            ..options(tmp.path())
        },
    )
    .unwrap();
    let labels = |dataset: &ImageDataset, n: usize| -> Vec<i32> {
        let mut reader = dataset.reader().unwrap();
        (0..n).map(|_| reader.next().unwrap().label()).collect()
    };
    // MT19937(5489) gives 3499211612, 581869302, 3890346734, then 3586334585, 545404204, 4161255391.
    // boost::uniform_int(0, i) = draw / (2^32 / (i + 1)): pass 1 swaps 3<->3, 2<->0, 1<->1: lines 2 1 0 3;
    // pass 2 (reshuffling that order) swaps 3<->3, 2<->0, 1<->1: lines 0 1 2 3.
    assert_eq!(labels(&shuffled, 8), [2, 1, 0, -3, 0, 1, 2, -3]);
    // Same seed, same order; another seed, another order.
    assert_eq!(labels(&shuffled, 8), labels(&shuffled, 8));
    let other = ImageDataset::open(
        &list,
        ImageOptions {
            shuffle: true,
            seed: 1701,
            ..options(tmp.path())
        },
    )
    .unwrap();
    let mut first = labels(&other, 4);
    assert_ne!(first, labels(&shuffled, 4));
    first.sort();
    assert_eq!(first, [-3, 0, 1, 2]);
}

#[test]
fn bad_lists_and_images_give_one_line_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let list = setup(tmp.path());
    let one_line = |e: Error| {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        msg
    };
    let missing = tmp.path().join("no_list.txt");
    let msg = one_line(ImageDataset::open(&missing, ImageOptions::default()).err().unwrap());
    assert!(msg.starts_with(&format!("{}: ", missing.display())), "{msg}");
    for (text, expected) in [
        ("a.png 1\nnolabel\n", "line 2: 'nolabel' is not 'path label'"),
        ("a.png one\n", "line 1: label 'one' is not an integer"),
        ("", "the list holds no line"),
    ] {
        let bad = tmp.path().join("bad.txt");
        std::fs::write(&bad, text).unwrap();
        let msg = one_line(ImageDataset::open(&bad, ImageOptions::default()).err().unwrap());
        assert_eq!(msg, format!("{}: {expected}", bad.display()));
    }
    let msg = one_line(
        ImageDataset::open(
            &list,
            ImageOptions {
                new_height: 3,
                ..ImageOptions::default()
            },
        )
        .err()
        .unwrap(),
    );
    assert!(
        msg.ends_with("new_height 3 and new_width 0: set both or neither (as Caffe requires)"),
        "{msg}"
    );

    std::fs::write(tmp.path().join("root/c.png"), b"\x89PNG\r\n\x1a\ncorrupt").unwrap();
    std::fs::remove_file(tmp.path().join("root/d.png")).unwrap();
    let dataset = ImageDataset::open(&list, options(tmp.path())).unwrap();
    let mut reader = dataset.reader().unwrap();
    reader.next().unwrap();
    let msg = one_line(reader.next().map(|_| ()).unwrap_err());
    let root = format!("{}/root/", tmp.path().display());
    assert!(
        msg.starts_with(&format!("{}: record 1 (key 'c.png'): {root}c.png: PNG", list.display())),
        "{msg}"
    );
    let msg = one_line(reader.next().map(|_| ()).unwrap_err());
    assert!(
        msg.starts_with(&format!(
            "{}: record 2 (key 'd.png'): cannot read {root}d.png: ",
            list.display()
        )),
        "{msg}"
    );
}

#[test]
fn relative_image_paths_resolve_against_relative_to() {
    let tmp = tempfile::tempdir().unwrap();
    let list = setup(tmp.path());
    let relative = ImageOptions {
        root_folder: "root/".into(),
        relative_to: tmp.path().to_path_buf(),
        ..Default::default()
    };
    let dataset = ImageDataset::open(&list, relative).unwrap();
    let mut reader = dataset.reader().unwrap();
    assert_eq!(reader.next().unwrap().values().get(5), Some(5.0));
    // An absolute root_folder ignores relative_to.
    let absolute = ImageOptions {
        relative_to: "/nonexistent".into(),
        ..options(tmp.path())
    };
    let mut reader = ImageDataset::open(&list, absolute).unwrap().reader().unwrap();
    assert_eq!(reader.next().unwrap().label(), 0);
}
