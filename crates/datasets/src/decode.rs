//! PNG and JPEG images decoded as Caffe decodes them with OpenCV (`cv::imdecode`): 8-bit pixels, colour in BGR
//! order, laid out channel-major (C, then H, then W) as Caffe's transformer reads a `cv::Mat`.
//!
//! # Fidelity to OpenCV
//! * PNG is decoded losslessly, so pixels are exactly OpenCV's for 1-, 2-, 4- and 8-bit images without a gamma
//!   chunk. Conversions follow OpenCV's libpng settings: palette and `tRNS` expanded, gray replicated into B, G, R
//!   for colour, alpha dropped unless decoding natively (then BGRA), colour to gray by libpng's truncating
//!   integer formula `(9797 R + 19234 G + 3737 B) >> 15` (OpenCV asks for 0.299/0.587). A file with `gAMA`,
//!   `sRGB` or `iCCP` turned to gray may differ: libpng then converts through its gamma tables. 16-bit PNGs are
//!   refused (Caffe's transformer requires 8-bit images).
//! * JPEG is lossy and the decoders differ: OpenCV uses libjpeg(-turbo) with its integer IDCT and fancy
//!   upsampling; this crate uses `zune-jpeg`. The test `jpeg_against_opencv` measures the difference on files
//!   decoded by OpenCV 4.10: values at most 1 apart for gray output and 2 for colour; about 2 % of values differ
//!   without chroma subsampling, up to 23 % with 4:2:0 (see the test for the figures).
//!   Gray output of a colour JPEG is the luma plane, as libjpeg gives it. CMYK JPEGs are refused.
//! * EXIF orientation is not applied: OpenCV 2.4 (Caffe's era) and `IMREAD_UNCHANGED` (native decoding) ignore it
//!   too, but OpenCV 3.1 and later rotate JPEGs by it under `IMREAD_COLOR` and `IMREAD_GRAYSCALE`.

use std::io::Cursor;

use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::dataset::Shape;

/// How an encoded image becomes channels: Caffe's `DecodeDatumToCVMatNative` or `DecodeDatumToCVMat(is_color)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ColorMode {
    /// The file's own channels (`cv::imdecode(.., IMREAD_UNCHANGED)`): gray 1, colour 3 (BGR), with alpha or a
    /// PNG transparency chunk on a colour or palette image 4 (BGRA).
    #[default]
    Native,
    /// Three channels, BGR (`force_color`, or `is_color` of ImageData).
    Color,
    /// One channel (`force_gray`, or ImageData with `is_color: false`).
    Gray,
}

impl ColorMode {
    /// The mode Caffe's `DataTransformer` decodes encoded Datums with under `transform_param`: `force_color`,
    /// `force_gray`, else native. (Both set is refused by [`crate::Transformer::new`].)
    pub fn from_transform(param: &caffe_proto::TransformationParameter) -> Self {
        if param.force_color.unwrap_or(false) {
            ColorMode::Color
        } else if param.force_gray.unwrap_or(false) {
            ColorMode::Gray
        } else {
            ColorMode::Native
        }
    }
}

/// Decodes a PNG or JPEG (recognised by its signature) into `out` (replaced) as 8-bit CHW pixels in BGR(A)
/// order, and returns the shape. The error is one line saying what is wrong with the bytes.
pub fn decode_image(bytes: &[u8], mode: ColorMode, out: &mut Vec<u8>) -> Result<Shape, String> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes, mode, out)
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes, mode, out)
    } else {
        let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Err(format!(
            "{} bytes that are neither PNG nor JPEG (they start with {})",
            bytes.len(),
            if head.is_empty() { "nothing".to_string() } else { head }
        ))
    }
}

/// A decoder's error on one line (zune-jpeg's messages can span lines).
fn one_line(format: &str, error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    format!("{format}: {}", text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// OpenCV's `CV_IO_MAX_IMAGE_PIXELS` default: larger images are refused before any pixel memory is allocated.
const MAX_PIXELS: usize = 1 << 30;

fn check_size(format: &str, width: usize, height: usize) -> Result<(), String> {
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(format!(
            "{format} of {width}x{height} pixels is larger than OpenCV's limit of 2^30 pixels"
        ));
    }
    Ok(())
}

fn shape(channels: usize, height: usize, width: usize) -> Result<Shape, String> {
    Shape::new(channels, height, width).ok_or_else(|| format!("image of {width}x{height} pixels has no pixel"))
}

/// libpng's `png_do_rgb_to_gray` for 8-bit samples without gamma, with the coefficients OpenCV sets
/// (`png_set_rgb_to_gray(.., 0.299, 0.587)` -> 29900 * 32768 / 100000 = 9797, 19234, and 32768 - both = 3737).
#[inline]
fn libpng_gray(r: u8, g: u8, b: u8) -> u8 {
    if r == g && r == b {
        return r;
    }
    ((9797 * u32::from(r) + 19234 * u32::from(g) + 3737 * u32::from(b)) >> 15) as u8
}

fn decode_png(bytes: &[u8], mode: ColorMode, out: &mut Vec<u8>) -> Result<Shape, String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| one_line("PNG", &e))?;
    let info = reader.info();
    if info.bit_depth == png::BitDepth::Sixteen {
        return Err("16-bit PNG: Caffe's transformer takes 8-bit images only".into());
    }
    let (width, height) = (info.width as usize, info.height as usize);
    check_size("PNG", width, height)?;
    let has_trns = info.trns.is_some();
    let native = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha | png::ColorType::Rgba => 4,
        png::ColorType::Rgb | png::ColorType::Indexed => {
            if has_trns {
                4
            } else {
                3
            }
        }
    };
    let channels = match mode {
        ColorMode::Native => native,
        ColorMode::Color => 3,
        ColorMode::Gray => 1,
    };
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| format!("PNG of {width}x{height} pixels is too large"))?;
    let mut raw = vec![0u8; size];
    let frame = reader.next_frame(&mut raw).map_err(|e| one_line("PNG", &e))?;
    let (color, depth) = (frame.color_type, frame.bit_depth);
    if depth != png::BitDepth::Eight {
        return Err(format!("PNG: expanded to {depth:?}-bit samples, expected 8"));
    }
    let samples = color.samples();
    let line = frame.line_size;
    let shape = shape(channels, height, width)?;
    let plane = height * width;
    out.clear();
    out.resize(shape.count(), 0);
    for y in 0..height {
        let row = &raw[y * line..y * line + width * samples];
        for (x, px) in row.chunks_exact(samples).enumerate() {
            let i = y * width + x;
            // (b, g, r, a) of the expanded pixel; gray replicated as png_set_gray_to_rgb does.
            let (b, g, r, a) = match samples {
                1 => (px[0], px[0], px[0], 255),
                2 => (px[0], px[0], px[0], px[1]),
                3 => (px[2], px[1], px[0], 255),
                _ => (px[2], px[1], px[0], px[3]),
            };
            match channels {
                1 => out[i] = if samples <= 2 { px[0] } else { libpng_gray(r, g, b) },
                _ => {
                    out[i] = b;
                    out[plane + i] = g;
                    out[2 * plane + i] = r;
                    if channels == 4 {
                        out[3 * plane + i] = a;
                    }
                }
            }
        }
    }
    Ok(shape)
}

fn decode_jpeg(bytes: &[u8], mode: ColorMode, out: &mut Vec<u8>) -> Result<Shape, String> {
    let mut probe = JpegDecoder::new(Cursor::new(bytes));
    probe.decode_headers().map_err(|e| one_line("JPEG", &e))?;
    let input = probe
        .input_colorspace()
        .ok_or_else(|| "JPEG: no colour space in the headers".to_string())?;
    if let Some(info) = probe.info() {
        check_size("JPEG", usize::from(info.width), usize::from(info.height))?;
    }
    let gray_input = matches!(input, ColorSpace::Luma);
    if matches!(input, ColorSpace::CMYK | ColorSpace::YCCK) {
        return Err(format!(
            "JPEG in {input:?}: only gray and YCbCr/RGB JPEGs are supported"
        ));
    }
    let channels = match mode {
        ColorMode::Native if gray_input => 1,
        ColorMode::Native | ColorMode::Color => 3,
        ColorMode::Gray => 1,
    };
    let out_space = if channels == 1 {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(out_space)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut decoder = JpegDecoder::new_with_options(Cursor::new(bytes), options);
    let raw = decoder.decode().map_err(|e| one_line("JPEG", &e))?;
    let info = decoder.info().ok_or_else(|| "JPEG: no image information".to_string())?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    let shape = shape(channels, height, width)?;
    if raw.len() != shape.count() {
        return Err(format!(
            "JPEG: decoder gave {} bytes for a {width}x{height} image of {channels} channels",
            raw.len()
        ));
    }
    out.clear();
    if channels == 1 {
        out.extend_from_slice(&raw);
    } else {
        // RGB interleaved -> B, G, R planes.
        out.resize(shape.count(), 0);
        let plane = height * width;
        for (i, px) in raw.chunks_exact(3).enumerate() {
            out[i] = px[2];
            out[plane + i] = px[1];
            out[2 * plane + i] = px[0];
        }
    }
    Ok(shape)
}
