//! Caffe's `ImageData` layer: a text file of `path label` lines, each image read from `root_folder + path`,
//! decoded in colour or gray, optionally resized as `cv::resize(.., INTER_LINEAR)` does, optionally shuffled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use caffe_proto::ImageDataParameter;

use crate::dataset::{location, Dataset, Record, RecordReader, RecordValues, Shape};
use crate::decode::{decode_image, ColorMode};
use crate::rng::Mt19937;
use crate::Error;

/// How an [`ImageDataset`] reads its list and images (the fields of Caffe's `image_data_param` it uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageOptions {
    /// Prepended as a string to every listed path (Caffe: `root_folder + path`, so it usually ends with `/`).
    pub root_folder: String,
    /// Three channels, BGR (`is_color: true`, Caffe's default), else one gray channel.
    pub is_color: bool,
    /// Resize every image to `(new_height, new_width)` when both are non-zero (OpenCV's bilinear `cv::resize`).
    pub new_height: usize,
    /// See `new_height`; Caffe requires both or neither.
    pub new_width: usize,
    /// Shuffle the lines before the first record and again at each wrap to the start (Caffe's `ShuffleImages`).
    pub shuffle: bool,
    /// Seed of the shuffle's MT19937 (Caffe seeds it from its global RNG, which this crate does not reproduce).
    pub seed: u32,
    /// The folder a relative image path (`root_folder + path`) is resolved against, standing in for Caffe's
    /// working directory; empty: the working directory.
    pub relative_to: PathBuf,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            root_folder: String::new(),
            is_color: true,
            new_height: 0,
            new_width: 0,
            shuffle: false,
            seed: 5489,
            relative_to: PathBuf::new(),
        }
    }
}

impl ImageOptions {
    /// The options an `image_data_param` sets (`rand_skip`, which draws from Caffe's global RNG, is not applied;
    /// the seed is the default one).
    pub fn from_param(param: &ImageDataParameter) -> Self {
        ImageOptions {
            root_folder: param.root_folder().to_string(),
            is_color: param.is_color(),
            new_height: param.new_height() as usize,
            new_width: param.new_width() as usize,
            shuffle: param.shuffle(),
            ..Default::default()
        }
    }
}

/// The list file of an `ImageData` layer read as a dataset: one record per line, in list order (or shuffled),
/// each image decoded by [`decode_image`] in colour (BGR) or gray, labels from the lines.
///
/// Lines are split at their last space, as Caffe does (`path` may contain spaces); a trailing `\r` is ignored.
/// Records carry the listed path as their key and their place in the current pass as their position.
pub struct ImageDataset {
    list: PathBuf,
    lines: Arc<Vec<(String, i32)>>,
    options: ImageOptions,
}

impl ImageDataset {
    /// Reads the list file. Fails, naming the file and line, on a line without a space or with a label that is
    /// not an integer, on a list without lines, and when only one of new_height and new_width is set.
    pub fn open(list: impl AsRef<Path>, options: ImageOptions) -> Result<Self, Error> {
        let list = list.as_ref();
        let bad = |message: String| Error::ImageList {
            path: list.to_path_buf(),
            message,
        };
        if (options.new_height == 0) != (options.new_width == 0) {
            return Err(bad(format!(
                "new_height {} and new_width {}: set both or neither (as Caffe requires)",
                options.new_height, options.new_width
            )));
        }
        let text = std::fs::read(list).map_err(|e| Error::io(list, e))?;
        let text = String::from_utf8_lossy(&text);
        let mut lines = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let Some((path, label)) = line.rsplit_once(' ') else {
                return Err(bad(format!(
                    "line {}: '{}' is not 'path label'",
                    number + 1,
                    line.escape_debug()
                )));
            };
            let label: i32 = label.trim().parse().map_err(|_| {
                bad(format!(
                    "line {}: label '{}' is not an integer",
                    number + 1,
                    label.escape_debug()
                ))
            })?;
            lines.push((path.to_string(), label));
        }
        if lines.is_empty() {
            return Err(bad("the list holds no line".into()));
        }
        Ok(ImageDataset {
            list: list.to_path_buf(),
            lines: Arc::new(lines),
            options,
        })
    }

    /// The listed `(path, label)` pairs, in file order.
    pub fn lines(&self) -> &[(String, i32)] {
        &self.lines
    }

    /// The colour mode images are decoded in.
    pub fn color(&self) -> ColorMode {
        if self.options.is_color {
            ColorMode::Color
        } else {
            ColorMode::Gray
        }
    }
}

impl Dataset for ImageDataset {
    fn source(&self) -> &Path {
        &self.list
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    fn reader(&self) -> Result<Box<dyn RecordReader + Send>, Error> {
        let mut reader = ImageReader {
            list: self.list.clone(),
            lines: self.lines.clone(),
            order: (0..self.lines.len()).collect(),
            position: 0,
            rng: Mt19937::new(self.options.seed),
            color: self.color(),
            options: self.options.clone(),
            decoded: Vec::new(),
            pixels: Vec::new(),
        };
        if reader.options.shuffle {
            reader.shuffle();
        }
        Ok(Box::new(reader))
    }
}

struct ImageReader {
    list: PathBuf,
    lines: Arc<Vec<(String, i32)>>,
    /// Indices into `lines` in this pass's order.
    order: Vec<usize>,
    position: usize,
    rng: Mt19937,
    color: ColorMode,
    options: ImageOptions,
    decoded: Vec<u8>,
    pixels: Vec<u8>,
}

impl ImageReader {
    /// Caffe's `shuffle` (rng.hpp) with `boost::uniform_int<ptrdiff_t>(0, i)` on MT19937: from the last element
    /// down, swap with a uniform draw in `0..=i` (boost: `rng() / bucket`, redrawn above `i`).
    fn shuffle(&mut self) {
        for i in (1..self.order.len()).rev() {
            let j = uniform(&mut self.rng, i as u64) as usize;
            self.order.swap(i, j);
        }
    }
}

/// `boost::uniform_int(0, max)(mt19937)` for `max < 2^32 - 1`: buckets of `2^32 / (max + 1)` outputs.
fn uniform(rng: &mut Mt19937, max: u64) -> u64 {
    let bucket = (1u64 << 32) / (max + 1);
    loop {
        let value = u64::from(rng.next_u32()) / bucket;
        if value <= max {
            return value;
        }
    }
}

impl RecordReader for ImageReader {
    fn position(&self) -> usize {
        self.position
    }

    fn next(&mut self) -> Result<Record<'_>, Error> {
        let position = self.position;
        let line = self.order[position];
        let (path, label) = &self.lines[line];
        self.position += 1;
        let wrapped = self.position == self.order.len();
        let at = || location(&self.list, position, Some(path.as_bytes()));
        let file = self
            .options
            .relative_to
            .join(format!("{}{}", self.options.root_folder, path));
        let bytes = std::fs::read(&file).map_err(|source| Error::ImageRead {
            at: at(),
            file: file.clone(),
            source,
        })?;
        let shape = decode_image(&bytes, self.color, &mut self.decoded).map_err(|message| Error::ImageDecode {
            at: at(),
            message: format!("{}: {message}", file.display()),
        })?;
        let (new_h, new_w) = (self.options.new_height, self.options.new_width);
        let shape = if new_h > 0 && new_w > 0 && (new_h, new_w) != (shape.height(), shape.width()) {
            let out = Shape::new(shape.channels(), new_h, new_w).ok_or_else(|| Error::ImageDecode {
                at: at(),
                message: format!("{}: cannot resize to {new_h}x{new_w}", file.display()),
            })?;
            resize_linear(&self.decoded, shape, out, &mut self.pixels);
            out
        } else {
            std::mem::swap(&mut self.decoded, &mut self.pixels);
            shape
        };
        let label = *label;
        if wrapped {
            // Caffe: past the last line, back to the first, reshuffled when shuffling.
            self.position = 0;
            if self.options.shuffle {
                self.shuffle();
            }
        }
        let (path, _) = &self.lines[line];
        Record::new(
            &self.list,
            position,
            Some(path.as_bytes()),
            shape,
            label,
            RecordValues::Bytes(&self.pixels),
        )
        .ok_or_else(|| Error::ImageDecode {
            at: location(&self.list, position, Some(path.as_bytes())),
            message: "decoded pixels do not fill the image".into(),
        })
    }
}

/// OpenCV's `cv::resize(src, dst, size, 0, 0, INTER_LINEAR)` for 8-bit images, on CHW planes.
///
/// Source coordinates `(d + 0.5) * src / dst - 0.5` in `f32`, clamped to the image; weights in 11-bit fixed point
/// (`round(w * 2048)`); the horizontal pass sums `pixel * weight` exactly, the vertical pass combines two rows as
/// OpenCV's vector code does: `((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16) + 2 >> 2`, saturated to 0..255.
/// This matches OpenCV 4.10's output exactly (tested on random images and sizes, up- and downscaling). OpenCV 2.4
/// and 3.x, which Caffe was built with, computed each row's last few values (past the last full SIMD vector) with
/// the scalar rounding `(r0 b0 + r1 b1 + 2^21) >> 22`, which can differ from this by 1.
pub fn resize_linear(src: &[u8], from: Shape, to: Shape, out: &mut Vec<u8>) {
    let (channels, sh, sw) = (from.channels(), from.height(), from.width());
    let (dh, dw) = (to.height(), to.width());
    out.clear();
    out.resize(channels * dh * dw, 0);
    let xs = coefficients(sw, dw, true);
    let ys = coefficients(sh, dh, false);
    let mut rows = vec![0i32; sh * dw];
    for c in 0..channels {
        let plane = &src[c * sh * sw..(c + 1) * sh * sw];
        // Horizontal pass over every source row: pixel * 2048-scaled weights.
        for y in 0..sh {
            let s = &plane[y * sw..(y + 1) * sw];
            for (x, &(sx, a0, a1)) in xs.iter().enumerate() {
                let sx = sx as usize; // clamped into the row
                let right = s[(sx + 1).min(sw - 1)];
                rows[y * dw + x] = i32::from(s[sx]) * a0 + i32::from(right) * a1;
            }
        }
        let dst = &mut out[c * dh * dw..(c + 1) * dh * dw];
        for (y, &(sy, b0, b1)) in ys.iter().enumerate() {
            let row = |i: i64| {
                let i = i.clamp(0, sh as i64 - 1) as usize;
                &rows[i * dw..(i + 1) * dw]
            };
            let (r0, r1) = (row(sy), row(sy + 1));
            for x in 0..dw {
                let v = (((r0[x] >> 4) * b0) >> 16) + (((r1[x] >> 4) * b1) >> 16);
                dst[y * dw + x] = ((v + 2) >> 2).clamp(0, 255) as u8;
            }
        }
    }
}

/// For each destination index: the first source index and the two 11-bit weights. Horizontally OpenCV clamps the
/// index into the row and zeroes the fraction there; vertically it keeps the index (-1 above the first row) and
/// clamps each of the two rows it reads, so both weights then apply to the same edge row.
fn coefficients(src: usize, dst: usize, horizontal: bool) -> Vec<(i64, i32, i32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut f = f - s as f32;
            if horizontal {
                if s < 0 {
                    (s, f) = (0, 0.0);
                }
                if s >= src as i64 - 1 {
                    (s, f) = (src as i64 - 1, 0.0);
                }
            }
            let w0 = round_even((1.0 - f) * 2048.0);
            let w1 = round_even(f * 2048.0);
            (s, w0, w1)
        })
        .collect()
}

/// `saturate_cast<short>(float)`: round half to even.
fn round_even(v: f32) -> i32 {
    v.round_ties_even() as i32
}
