//! Encoded images (PNG, JPEG) against OpenCV's own decodings, and encoded Datums read from an LMDB.
//!
//! `tests/images/` holds small images made by its `make.py` (PIL and OpenCV 4.10's `imencode`) and, for each,
//! what `cv2.imdecode` gives with `IMREAD_UNCHANGED` (Caffe's native decoding), `IMREAD_COLOR` (`force_color`)
//! and `IMREAD_GRAYSCALE` (`force_gray`), stored losslessly as PNGs of the C x H planes stacked vertically.

use std::path::{Path, PathBuf};

use caffe_proto::{Datum, Phase, TransformationParameter};
use datasets::{decode_image, Batch, Batcher, ColorMode, Dataset, Error, LmdbDataset, LmdbWriter, Transformer};

fn images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(images().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// OpenCV's decoding of `file` in `mode`: (channels, height, width, CHW pixels).
fn opencv(file: &str, mode: &str) -> (usize, usize, usize, Vec<u8>) {
    let stem = file.replace('.', "_");
    let prefix = format!("{stem}.cv.{mode}.c");
    let name = std::fs::read_dir(images())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .find(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}*"));
    let channels: usize = name[prefix.len()..name.len() - 4].parse().unwrap();
    let mut planes = Vec::new();
    let shape = decode_image(&read(&name), ColorMode::Native, &mut planes).unwrap();
    assert_eq!(shape.channels(), 1);
    (channels, shape.height() / channels, shape.width(), planes)
}

fn ours(file: &str, mode: ColorMode) -> (usize, usize, usize, Vec<u8>) {
    let mut out = Vec::new();
    let s = decode_image(&read(file), mode, &mut out).unwrap_or_else(|e| panic!("{file}: {e}"));
    (s.channels(), s.height(), s.width(), out)
}

const MODES: [(&str, ColorMode); 3] = [
    ("native", ColorMode::Native),
    ("color", ColorMode::Color),
    ("gray", ColorMode::Gray),
];

#[test]
fn png_is_exactly_opencvs_in_every_mode() {
    for file in [
        "rgb.png",
        "rgba.png",
        "gray.png",
        "gray_alpha.png",
        "palette_trns.png",
        "gray1.png",
    ] {
        for (name, mode) in MODES {
            let expected = opencv(file, name);
            let got = ours(file, mode);
            assert_eq!(got.0, expected.0, "{file} {name}: channels");
            assert_eq!((got.1, got.2), (expected.1, expected.2), "{file} {name}: height, width");
            assert!(got.3 == expected.3, "{file} {name}: pixels differ from OpenCV's");
        }
    }
}

/// JPEG decoders differ in IDCT and chroma-upsampling rounding: OpenCV uses libjpeg-turbo (integer IDCT, fancy
/// upsampling), this crate zune-jpeg. Measured against OpenCV 4.10 on these 17x13 files, per value (channel x
/// pixel): at most 1 apart for gray output, at most 2 for colour; 0.5 to 3 % of values differ without chroma
/// subsampling, 13 % (4:2:2) to 23 % (4:2:0, what `cv::imencode` writes by default) with it. The bounds are those
/// measurements, so a regression fails them. PNG, being lossless, is exact (the test above).
#[test]
fn jpeg_against_opencv() {
    // (file, mode, max |difference|, most values that may differ, of 221 per channel).
    let cases = [
        ("gray.jpg", "native", 1, 6),
        ("gray.jpg", "color", 1, 18),
        ("gray.jpg", "gray", 1, 6),
        ("color444.jpg", "native", 2, 16),
        ("color444.jpg", "color", 2, 16),
        ("color444.jpg", "gray", 1, 2),
        ("color422.jpg", "native", 2, 85),
        ("color422.jpg", "gray", 1, 1),
        ("color420.jpg", "native", 2, 155),
        ("color420.jpg", "color", 2, 155),
        ("color420.jpg", "gray", 1, 2),
    ];
    for (file, name, max_diff, max_differing) in cases {
        let mode = MODES.iter().find(|m| m.0 == name).unwrap().1;
        let expected = opencv(file, name);
        let got = ours(file, mode);
        assert_eq!(
            (got.0, got.1, got.2),
            (expected.0, expected.1, expected.2),
            "{file} {name}"
        );
        let diffs: Vec<u8> = got.3.iter().zip(&expected.3).map(|(a, b)| a.abs_diff(*b)).collect();
        let worst = diffs.iter().copied().max().unwrap();
        let differing = diffs.iter().filter(|&&d| d > 0).count();
        eprintln!(
            "{file} {name}: max |diff| {worst}, {differing} of {} values differ",
            diffs.len()
        );
        assert!(worst <= max_diff, "{file} {name}: max |diff| {worst} > {max_diff}");
        assert!(
            differing <= max_differing,
            "{file} {name}: {differing} of {} values differ (measured: {max_differing})",
            diffs.len()
        );
    }
}

/// A PNG of `channels` (1 gray, 3 RGB) made with the png crate from HWC `pixels`.
fn png(width: u32, height: u32, channels: usize, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(if channels == 1 {
        png::ColorType::Grayscale
    } else {
        png::ColorType::Rgb
    });
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(pixels).unwrap();
    writer.finish().unwrap();
    out
}

fn encoded(bytes: Vec<u8>, label: i32) -> Datum {
    Datum {
        data: Some(bytes),
        label: Some(label),
        encoded: Some(true),
        ..Default::default()
    }
}

#[test]
fn encoded_datums_batch_in_bgr_chw_with_caffes_transform() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("encoded_lmdb");
    // 3x2 RGB images: pixel (y, x) = (10 y + x + k, 100 + k, 200 + k) for record k.
    let image = |k: u8| -> Vec<u8> {
        (0..2u8)
            .flat_map(|y| (0..3u8).flat_map(move |x| [10 * y + x + k, 100 + k, 200 + k]))
            .collect()
    };
    let mut writer = LmdbWriter::create(&db).unwrap();
    for k in 0..3u8 {
        writer
            .put_datum(
                format!("{k:08}_img{k}.png").as_bytes(),
                &encoded(png(3, 2, 3, &image(k)), 7 - i32::from(k)),
            )
            .unwrap();
    }
    writer.finish().unwrap();

    // Native: BGR planes. mean_value per channel (B, G, R), scale, TEST centre crop of 2 (w_off (3-2)/2 = 0).
    let lmdb = LmdbDataset::open(&db).unwrap();
    assert_eq!(lmdb.len(), 3);
    let param = TransformationParameter {
        scale: Some(0.5),
        mean_value: vec![1.0, 2.0, 3.0],
        crop_size: Some(2),
        ..Default::default()
    };
    let transformer = Transformer::new(&param, Phase::Test, None).unwrap();
    let mut batcher = Batcher::new(lmdb.reader().unwrap(), 2, transformer).unwrap();
    let mut batch = Batch::default();
    batcher.next_batch(&mut batch).unwrap();
    assert_eq!(batch.shape, [2, 3, 2, 2]);
    assert_eq!(batch.labels, [7.0, 6.0]);
    let mut expected = Vec::new();
    for k in 0..2u8 {
        let b = f32::from(200 + k);
        let g = f32::from(100 + k);
        for (c, m) in [(0, 1.0f32), (1, 2.0), (2, 3.0)] {
            for y in 0..2u8 {
                for x in 0..2u8 {
                    let v = [b, g, f32::from(10 * y + x + k)][c];
                    expected.push((v - m) * 0.5);
                }
            }
        }
    }
    assert_eq!(batch.data, expected);

    // force_gray: one channel by libpng's formula.
    let gray = LmdbDataset::open(&db).unwrap().with_color(ColorMode::Gray);
    let mut reader = gray.reader().unwrap();
    let record = reader.next().unwrap();
    assert_eq!(record.shape().to_string(), "1x2x3");
    let formula = |r: u32, g: u32, b: u32| ((9797 * r + 19234 * g + 3737 * b) >> 15) as f32;
    assert_eq!(record.values().get(4), Some(formula(11, 100, 200)));
}

#[test]
fn gray_png_datum_and_force_color() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gray_lmdb");
    let pixels: Vec<u8> = (0..12).map(|v| v * 20).collect();
    let mut writer = LmdbWriter::create(&db).unwrap();
    writer.put_datum(b"a", &encoded(png(4, 3, 1, &pixels), 1)).unwrap();
    writer.finish().unwrap();
    let native = LmdbDataset::open(&db).unwrap();
    let mut reader = native.reader().unwrap();
    let record = reader.next().unwrap();
    assert_eq!(record.shape().to_string(), "1x3x4");
    assert_eq!(record.values(), datasets::RecordValues::Bytes(&pixels));
    drop(reader);
    let color = native.with_color(ColorMode::from_transform(&TransformationParameter {
        force_color: Some(true),
        ..Default::default()
    }));
    let mut reader = color.reader().unwrap();
    let record = reader.next().unwrap();
    assert_eq!(record.shape().to_string(), "3x3x4");
    let all: Vec<u8> = pixels.iter().chain(&pixels).chain(&pixels).copied().collect();
    assert_eq!(record.values(), datasets::RecordValues::Bytes(&all));
    // force_color passes the transformer's channel check for a decoded gray image.
    let mut t = Transformer::new(
        &TransformationParameter {
            force_color: Some(true),
            ..Default::default()
        },
        Phase::Test,
        None,
    )
    .unwrap();
    assert_eq!(t.transform(&record).unwrap().len(), 36);
}

#[test]
fn corrupt_or_unsupported_images_name_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad_lmdb");
    let mut good = png(2, 2, 1, &[1, 2, 3, 4]);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 20);
    let mut writer = LmdbWriter::create(&db).unwrap();
    writer
        .put_datum(b"0_garbage", &encoded(b"not an image".to_vec(), 0))
        .unwrap();
    writer.put_datum(b"1_truncated", &encoded(truncated, 0)).unwrap();
    writer
        .put_datum(b"2_jpeg_header_only", &encoded(vec![0xff, 0xd8, 0xff], 0))
        .unwrap();
    writer.put_datum(b"3_empty", &encoded(Vec::new(), 0)).unwrap();
    good[30] ^= 0xff; // inside IDAT: the CRC no longer matches
    writer.put_datum(b"4_bad_crc", &encoded(good, 0)).unwrap();
    writer.finish().unwrap();
    let lmdb = LmdbDataset::open(&db).unwrap();
    let mut reader = lmdb.reader().unwrap();
    let mut messages = Vec::new();
    for _ in 0..5 {
        let err = reader.next().map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::ImageDecode { .. }), "{err}");
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("bad_lmdb: record"), "{msg}");
        messages.push(msg);
    }
    assert!(
        messages[0]
            .contains("(key '0_garbage'): 12 bytes that are neither PNG nor JPEG (they start with 6e6f7420616e2069)"),
        "{}",
        messages[0]
    );
    assert!(messages[1].contains("(key '1_truncated'): PNG"), "{}", messages[1]);
    assert!(
        messages[2].contains("(key '2_jpeg_header_only'): JPEG"),
        "{}",
        messages[2]
    );
    assert!(
        messages[3].contains("(key '3_empty'): 0 bytes that are neither PNG nor JPEG (they start with nothing)"),
        "{}",
        messages[3]
    );
    assert!(messages[4].contains("(key '4_bad_crc'): PNG"), "{}", messages[4]);
    // 16-bit PNGs are refused as Caffe's transformer refuses them.
    let mut sixteen = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut sixteen, 1, 1);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Sixteen);
        let mut w = encoder.write_header().unwrap();
        w.write_image_data(&[1, 2]).unwrap();
    }
    let msg = decode_image(&sixteen, ColorMode::Native, &mut Vec::new()).unwrap_err();
    assert_eq!(msg, "16-bit PNG: Caffe's transformer takes 8-bit images only");
}

#[test]
fn damaged_images_give_errors_or_pixels_never_a_panic() {
    // Every fixture, cut short at many lengths and with bytes flipped at many places (a fixed xorshift stream),
    // in every mode: decode_image returns, and what it returns fills its shape.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(images()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.contains(".cv.") || name.contains(".resize") || name.ends_with(".py") {
            continue;
        }
        let bytes = read(&name);
        for trial in 0..200 {
            let mut damaged = bytes.clone();
            if trial % 4 == 0 {
                damaged.truncate(next() as usize % bytes.len());
            } else {
                for _ in 0..1 + trial % 3 {
                    let at = next() as usize % damaged.len();
                    damaged[at] ^= 1 << (next() % 8);
                }
            }
            for (_, mode) in MODES {
                if let Ok(shape) = decode_image(&damaged, mode, &mut out) {
                    assert_eq!(out.len(), shape.count(), "{name} trial {trial}");
                }
            }
        }
    }
}

#[test]
fn images_past_opencvs_pixel_limit_are_refused_before_decoding() {
    // A PNG header claiming 65536 x 32768 pixels (2^31 > 2^30) and one tiny IDAT chunk.
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, 65536, 32768);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])
            .unwrap();
    }
    let msg = decode_image(&bytes, ColorMode::Native, &mut Vec::new()).unwrap_err();
    assert_eq!(
        msg,
        "PNG of 65536x32768 pixels is larger than OpenCV's limit of 2^30 pixels"
    );
}
