//! Caffe's `transform_param`: `DataTransformer::Transform(const Datum&, Dtype*)` (and, for decoded images, the same
//! steps of `Transform(const cv::Mat&, Blob*)`)
//! on the CPU, operation for operation.

use caffe_proto::{BlobProto, Phase, TransformationParameter};

use crate::dataset::{Record, RecordValues, Shape};
use crate::rng::Mt19937;
use crate::Error;

/// The mean to subtract.
#[derive(Clone, Debug)]
enum Mean {
    None,
    /// `mean_value`: one for all channels, or one per channel.
    PerChannel(Vec<f32>),
    /// `mean_file`: an image indexed like the uncropped record. `shape` is Caffe's legacy (channels, height,
    /// width) view of the blob; `values` holds at least channels x height x width floats.
    Image {
        channels: usize,
        height: usize,
        width: usize,
        values: Vec<f32>,
    },
}

/// Caffe's `DataTransformer` for one phase: crop, mirror, mean subtraction and scaling, in Caffe's order and
/// single-precision arithmetic: `out = (pixel - mean) * scale`, `pixel * scale` without a mean, a byte becoming
/// `f32` exactly.
///
/// # Randomness
/// Mirroring (`mirror: true`, in either phase as in Caffe) draws `rand() % 2` per record, then a TRAIN-phase crop
/// draws the height offset `rand() % (H - crop + 1)` and the width offset `rand() % (W - crop + 1)`. `rand()` is
/// MT19937 (Caffe's `boost::mt19937`) seeded with [`Transformer::with_seed`] (default 5489, boost's default seed).
/// Given the seed Caffe's transformer got, the draws are Caffe's; Caffe derives that seed from its global RNG
/// (`caffe_rng_rand()` at layer setup, after whatever else consumed it), a sequence this crate does not
/// reproduce, so random crops and mirrors do not match a real Caffe run image for image. TEST-phase crops are
/// central, deterministic and identical to Caffe's.
#[derive(Clone, Debug)]
pub struct Transformer {
    phase: Phase,
    scale: f32,
    mirror: bool,
    crop_size: usize,
    mean: Mean,
    force_color: bool,
    force_gray: bool,
    rng: Mt19937,
}

/// boost::mt19937's default seed.
const DEFAULT_SEED: u32 = 5489;

impl Transformer {
    /// The transformer for `param` in `phase`. `mean_file` is the decoded `.binaryproto` named by
    /// `param.mean_file`: it must be given exactly when that field is set (this crate reads no file for it).
    ///
    /// Fails, as Caffe's constructor CHECKs, when both a mean file and mean values are set, and when the mean
    /// blob's data does not fill its shape; also when force_color and force_gray are both set.
    pub fn new(param: &TransformationParameter, phase: Phase, mean_file: Option<&BlobProto>) -> Result<Self, Error> {
        let bad = |message: String| Error::TransformParam { message };
        let mean = match (&param.mean_file, mean_file) {
            (Some(_), Some(_)) if !param.mean_value.is_empty() => {
                return Err(bad("cannot specify mean_file and mean_value at the same time".into()))
            }
            (Some(name), None) => {
                return Err(bad(format!(
                    "mean_file '{name}' is set but no mean blob was supplied (decode the .binaryproto and pass it)"
                )))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "a mean blob was supplied but transform_param sets no mean_file".into()
                ))
            }
            (Some(name), Some(blob)) => mean_image(blob).map_err(|e| bad(format!("mean_file '{name}': {e}")))?,
            (None, None) if param.mean_value.is_empty() => Mean::None,
            (None, None) => Mean::PerChannel(param.mean_value.clone()),
        };
        let force_color = param.force_color.unwrap_or(false);
        let force_gray = param.force_gray.unwrap_or(false);
        if force_color && force_gray {
            return Err(bad("cannot set both force_color and force_gray".into()));
        }
        let crop_size = param.crop_size.unwrap_or(0);
        Ok(Self {
            phase,
            scale: param.scale.unwrap_or(1.0),
            mirror: param.mirror.unwrap_or(false),
            crop_size: usize::try_from(crop_size).map_err(|_| bad(format!("crop_size {crop_size} is too large")))?,
            mean,
            force_color,
            force_gray,
            rng: Mt19937::new(DEFAULT_SEED),
        })
    }

    /// The same transformer with its MT19937 seeded with `seed` (see the type's notes on randomness).
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.rng = Mt19937::new(seed);
        self
    }

    /// Whether records draw random numbers (Caffe's `needs_rand`: mirror, or a TRAIN-phase crop).
    pub fn uses_rng(&self) -> bool {
        self.mirror || (self.phase == Phase::Train && self.crop_size > 0)
    }

    /// C x H x W of the transformed record (Caffe's `InferBlobShape`): the crop's side, or the record's own.
    pub fn output_shape(&self, record: &Record<'_>) -> Result<Shape, Error> {
        let shape = record.shape();
        if self.crop_size == 0 {
            return Ok(shape);
        }
        if self.crop_size > shape.height() || self.crop_size > shape.width() {
            return Err(Error::Transform {
                at: record.location(),
                message: format!(
                    "crop_size {} is larger than the record's {}x{} image",
                    self.crop_size,
                    shape.height(),
                    shape.width()
                ),
            });
        }
        // Smaller than the record's own valid shape, so this cannot fail.
        Shape::new(shape.channels(), self.crop_size, self.crop_size).ok_or_else(|| Error::Transform {
            at: record.location(),
            message: "invalid crop".into(),
        })
    }

    /// Transforms `record` into `out`, which must hold exactly `output_shape(record).count()` floats.
    pub fn transform_into(&mut self, record: &Record<'_>, out: &mut [f32]) -> Result<(), Error> {
        let out_shape = self.output_shape(record)?;
        if out.len() != out_shape.count() {
            return Err(Error::OutputLength {
                expected: out_shape.count(),
                found: out.len(),
            });
        }
        let shape = record.shape();
        let (channels, height, width) = (shape.channels(), shape.height(), shape.width());
        let fail = |message: String| Error::Transform {
            at: record.location(),
            message,
        };
        // Caffe only applies force_color / force_gray when decoding an encoded image; for raw records they are
        // an error unless the record already has the asked-for channels.
        if self.force_color && channels != 3 {
            return Err(fail(format!(
                "force_color asks for 3 channels but this raw (non-encoded) record has {channels}; it only applies when decoding images"
            )));
        }
        if self.force_gray && channels != 1 {
            return Err(fail(format!(
                "force_gray asks for 1 channel but this raw (non-encoded) record has {channels}; it only applies when decoding images"
            )));
        }
        match &self.mean {
            Mean::PerChannel(values) if values.len() != 1 && values.len() != channels => {
                return Err(fail(format!(
                    "{} mean_values given for a record of {channels} channels; specify either 1 mean_value or as many as channels",
                    values.len()
                )));
            }
            Mean::Image {
                channels: c,
                height: h,
                width: w,
                ..
            } if (*c, *h, *w) != (channels, height, width) => {
                return Err(fail(format!(
                    "the mean image is {c}x{h}x{w} but the record is {shape} (a mean_file must match the uncropped record)"
                )));
            }
            _ => {}
        }

        // Caffe's order of draws: mirror first, then (TRAIN crop) height offset, then width offset.
        let do_mirror = self.mirror && self.rand(2) != 0;
        let (out_height, out_width) = (out_shape.height(), out_shape.width());
        let (h_off, w_off) = if self.crop_size == 0 {
            (0, 0)
        } else if self.phase == Phase::Train {
            let h_off = self.rand(height - self.crop_size + 1);
            let w_off = self.rand(width - self.crop_size + 1);
            (h_off, w_off)
        } else {
            ((height - self.crop_size) / 2, (width - self.crop_size) / 2)
        };

        let geometry = Geometry {
            channels,
            height,
            width,
            out_height,
            out_width,
            h_off,
            w_off,
            mirror: do_mirror,
        };
        match record.values() {
            RecordValues::Bytes(src) => geometry.apply(src, &self.mean, self.scale, out),
            RecordValues::Floats(src) => geometry.apply(src, &self.mean, self.scale, out),
        }
        Ok(())
    }

    /// Allocating form of [`Transformer::transform_into`].
    pub fn transform(&mut self, record: &Record<'_>) -> Result<Vec<f32>, Error> {
        let mut out = vec![0.0; self.output_shape(record)?.count()];
        self.transform_into(record, &mut out)?;
        Ok(out)
    }

    /// Caffe's `DataTransformer::Rand(n)`: `rng() % n`.
    fn rand(&mut self, n: usize) -> usize {
        // n <= a record dimension + 1, so it fits u64; the remainder is below n, so it fits usize.
        (u64::from(self.rng.next_u32()) % n as u64) as usize
    }
}

/// Where the output window sits in the record, and whether it is mirrored.
struct Geometry {
    channels: usize,
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
    h_off: usize,
    w_off: usize,
    mirror: bool,
}

impl Geometry {
    /// Caffe's loop, a row at a time: `data_index = (c * H + h_off + h) * W + w_off + w` into the record (and
    /// the mean image), `top_index = (c * out_h + h) * out_w + w` (mirrored: `out_w - 1 - w`) into `out`.
    fn apply<T: Copy + Into<f32>>(&self, src: &[T], mean: &Mean, scale: f32, out: &mut [f32]) {
        for c in 0..self.channels {
            for h in 0..self.out_height {
                let start = (c * self.height + self.h_off + h) * self.width + self.w_off;
                let src_row = &src[start..start + self.out_width];
                let top = (c * self.out_height + h) * self.out_width;
                let out_row = &mut out[top..top + self.out_width];
                match mean {
                    Mean::None => fill_row(out_row, src_row, self.mirror, |x, _| x * scale),
                    Mean::PerChannel(values) => {
                        let m = if values.len() == 1 { values[0] } else { values[c] };
                        fill_row(out_row, src_row, self.mirror, |x, _| (x - m) * scale)
                    }
                    Mean::Image { values, .. } => {
                        let mean_row = &values[start..start + self.out_width];
                        fill_row(out_row, src_row, self.mirror, |x, w| (x - mean_row[w]) * scale)
                    }
                }
            }
        }
    }
}

/// `out[w] = op(src[w], w)`, or `out[out_w - 1 - w]` when mirrored; `w` indexes the source row.
#[inline(always)]
fn fill_row<T: Copy + Into<f32>>(out: &mut [f32], src: &[T], mirror: bool, op: impl Fn(f32, usize) -> f32) {
    if mirror {
        for (w, (o, &x)) in out.iter_mut().rev().zip(src).enumerate() {
            *o = op(x.into(), w);
        }
    } else {
        for (w, (o, &x)) in out.iter_mut().zip(src).enumerate() {
            *o = op(x.into(), w);
        }
    }
}

/// Caffe's `Blob::FromProto` followed by the legacy (channels, height, width) view the transformer checks.
fn mean_image(blob: &BlobProto) -> Result<Mean, String> {
    // Any legacy dimension present means the 4-D (num, channels, height, width) form, missing ones being 0.
    let dims: Vec<i64> =
        if blob.num.is_some() || blob.channels.is_some() || blob.height.is_some() || blob.width.is_some() {
            [blob.num, blob.channels, blob.height, blob.width]
                .iter()
                .map(|d| i64::from(d.unwrap_or(0)))
                .collect()
        } else {
            blob.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default()
        };
    if dims.len() > 4 {
        return Err(format!(
            "shape {dims:?} has more than the 4 axes of Caffe's legacy blob view"
        ));
    }
    let mut count: usize = 1;
    for &d in &dims {
        let d = usize::try_from(d).map_err(|_| format!("shape {dims:?} has a negative dimension"))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| format!("shape {dims:?} overflows"))?;
    }
    let values: Vec<f32> = if !blob.double_data.is_empty() {
        if blob.double_data.len() != count {
            return Err(format!(
                "shape {dims:?} holds {count} values but double_data has {}",
                blob.double_data.len()
            ));
        }
        blob.double_data.iter().map(|&v| v as f32).collect()
    } else {
        if blob.data.len() != count {
            return Err(format!(
                "shape {dims:?} holds {count} values but data has {}",
                blob.data.len()
            ));
        }
        blob.data.clone()
    };
    // Blob::LegacyShape(i): the i-th axis, or 1 past the last axis.
    let legacy = |i: usize| dims.get(i).map_or(1, |&d| d as usize);
    Ok(Mean::Image {
        channels: legacy(1),
        height: legacy(2),
        width: legacy(3),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn record<'a>(shape: (usize, usize, usize), values: RecordValues<'a>) -> Record<'a> {
        let shape = Shape::new(shape.0, shape.1, shape.2).unwrap();
        Record::new(Path::new("t"), 0, None, shape, 3, values).unwrap()
    }

    fn param() -> TransformationParameter {
        TransformationParameter::default()
    }

    #[test]
    fn test_phase_centre_crop_by_hand() {
        // 1x3x4 values 0..12; crop 2: h_off = (3-2)/2 = 0, w_off = (4-2)/2 = 1 -> rows 0..2, columns 1..3.
        let bytes: Vec<u8> = (0..12).collect();
        let mut p = param();
        p.crop_size = Some(2);
        let mut t = Transformer::new(&p, Phase::Test, None).unwrap();
        assert_eq!(
            t.transform(&record((1, 3, 4), RecordValues::Bytes(&bytes))).unwrap(),
            [1.0, 2.0, 5.0, 6.0]
        );
        assert!(!t.uses_rng());
    }

    #[test]
    fn train_crop_and_mirror_draw_mt19937_in_caffes_order() {
        // Seed 5489: MT19937 gives 3499211612, 581869302, 3890346734 (std::mt19937 under g++ prints these).
        // mirror = 3499211612 % 2 = 0 (no), h_off = 581869302 % 3 = 0, w_off = 3890346734 % 3 = 2.
        let bytes: Vec<u8> = (0..25).collect(); // 1x5x5
        let mut p = param();
        p.crop_size = Some(3);
        p.mirror = Some(true);
        let mut t = Transformer::new(&p, Phase::Train, None).unwrap();
        let out = t.transform(&record((1, 5, 5), RecordValues::Bytes(&bytes))).unwrap();
        assert_eq!(out, [2.0, 3.0, 4.0, 7.0, 8.0, 9.0, 12.0, 13.0, 14.0]);
        // Next draws: 3586334585 % 2 = 1 (mirror), 545404204 % 3 = 1, 4161255391 % 3 = 1.
        let out = t.transform(&record((1, 5, 5), RecordValues::Bytes(&bytes))).unwrap();
        assert_eq!(out, [8.0, 7.0, 6.0, 13.0, 12.0, 11.0, 18.0, 17.0, 16.0]);
    }

    #[test]
    fn mean_values_then_scale_in_f32() {
        let bytes = [10u8, 20, 30, 40, 50, 60]; // 2x1x3
        let mut p = param();
        p.mean_value = vec![1.5, 2.25];
        p.scale = Some(0.1);
        let mut t = Transformer::new(&p, Phase::Test, None).unwrap();
        let out = t.transform(&record((2, 1, 3), RecordValues::Bytes(&bytes))).unwrap();
        let expect = [
            (10.0f32 - 1.5) * 0.1,
            (20.0f32 - 1.5) * 0.1,
            (30.0f32 - 1.5) * 0.1,
            (40.0f32 - 2.25) * 0.1,
            (50.0f32 - 2.25) * 0.1,
            (60.0f32 - 2.25) * 0.1,
        ];
        assert_eq!(out, expect);
        p.mean_value = vec![1.0, 2.0, 3.0];
        let mut t = Transformer::new(&p, Phase::Test, None).unwrap();
        let msg = t
            .transform(&record((2, 1, 3), RecordValues::Bytes(&bytes)))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("3 mean_values given for a record of 2 channels"), "{msg}");
    }

    #[test]
    fn mean_image_is_indexed_like_the_uncropped_record() {
        // Legacy 1x1x3x3 mean; TEST crop 1 takes the centre: (4 - 0.5) * 2.
        let floats: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let blob = BlobProto {
            num: Some(1),
            channels: Some(1),
            height: Some(3),
            width: Some(3),
            data: vec![0.5; 9],
            ..Default::default()
        };
        let mut p = param();
        p.crop_size = Some(1);
        p.scale = Some(2.0);
        p.mean_file = Some("mean.binaryproto".into());
        let mut t = Transformer::new(&p, Phase::Test, Some(&blob)).unwrap();
        assert_eq!(
            t.transform(&record((1, 3, 3), RecordValues::Floats(&floats))).unwrap(),
            [7.0]
        );
        let wrong = record((1, 2, 2), RecordValues::Floats(&floats[..4]));
        let mut p1 = p.clone();
        p1.crop_size = None;
        let mut t = Transformer::new(&p1, Phase::Test, Some(&blob)).unwrap();
        let msg = t.transform(&wrong).unwrap_err().to_string();
        assert!(msg.contains("the mean image is 1x3x3 but the record is 1x2x2"), "{msg}");
    }

    #[test]
    fn parameter_errors_caffe_checks() {
        let blob = BlobProto {
            shape: Some(caffe_proto::BlobShape { dim: vec![1, 2, 2] }),
            data: vec![0.0; 3],
            ..Default::default()
        };
        let mut p = param();
        p.mean_file = Some("m".into());
        let msg = Transformer::new(&p, Phase::Test, Some(&blob)).unwrap_err().to_string();
        assert!(msg.contains("holds 4 values but data has 3"), "{msg}");
        let msg = Transformer::new(&p, Phase::Test, None).unwrap_err().to_string();
        assert!(msg.contains("no mean blob was supplied"), "{msg}");
        p.mean_value = vec![1.0];
        let msg = Transformer::new(&p, Phase::Test, Some(&blob)).unwrap_err().to_string();
        assert!(msg.contains("cannot specify mean_file and mean_value"), "{msg}");
        let mut p = param();
        p.force_color = Some(true);
        p.force_gray = Some(true);
        assert!(Transformer::new(&p, Phase::Test, None).is_err());
        p.force_gray = None;
        let mut t = Transformer::new(&p, Phase::Test, None).unwrap();
        let msg = t
            .transform(&record((1, 1, 1), RecordValues::Bytes(&[1])))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("force_color asks for 3 channels"), "{msg}");
        let mut p = param();
        p.crop_size = Some(4);
        let mut t = Transformer::new(&p, Phase::Test, None).unwrap();
        let msg = t
            .transform(&record((1, 3, 5), RecordValues::Bytes(&[0; 15])))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("crop_size 4 is larger than the record's 3x5 image"),
            "{msg}"
        );
        let mut out = [0.0; 3];
        let t = &mut Transformer::new(&param(), Phase::Test, None).unwrap();
        assert!(matches!(
            t.transform_into(&record((1, 1, 2), RecordValues::Bytes(&[0, 0])), &mut out),
            Err(Error::OutputLength { expected: 2, found: 3 })
        ));
    }
}
