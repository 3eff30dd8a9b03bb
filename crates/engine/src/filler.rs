//! Caffe's weight fillers, for parameters no weights were loaded into.
//!
//! Formulas are Caffe's (`filler.hpp`); random draws come from a SplitMix64 stream per parameter blob, seeded by the
//! layer name and blob index, so a net is initialized identically on every run and machine (Caffe's own draws cannot
//! be reproduced number for number).

use caffe_proto::filler_parameter::VarianceNorm;
use caffe_proto::FillerParameter;

use crate::error::{LayerError, LayerResult};
use crate::rng::SplitMix64;
use crate::Tensor;

/// A standard normal draw (Box-Muller on two uniforms; the first uniform is kept away from 0).
fn normal(rng: &mut SplitMix64) -> f32 {
    let u1 = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let u2 = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let r = (-2.0 * crate::math::ln_f64(1.0 - u1)).sqrt();
    (r * crate::math::cos_f64(2.0 * std::f64::consts::PI * u2)) as f32
}

/// Fan-in and fan-out as Caffe's Xavier and MSRA fillers compute them: count / shape[0] and count / shape[1].
fn fans(shape: &[usize]) -> (f32, f32) {
    let count: usize = shape.iter().product();
    let fan_in = count / shape.first().copied().unwrap_or(1).max(1);
    let fan_out = count / shape.get(1).copied().unwrap_or(1).max(1);
    (fan_in as f32, fan_out as f32)
}

fn scale_base(filler: &FillerParameter, shape: &[usize]) -> f32 {
    let (fan_in, fan_out) = fans(shape);
    match filler.variance_norm() {
        VarianceNorm::FanIn => fan_in,
        VarianceNorm::FanOut => fan_out,
        VarianceNorm::Average => (fan_in + fan_out) / 2.0,
    }
}

/// The values Caffe's filler `filler` gives a blob of `shape` (row-major), random ones drawn from the stream named
/// `seed_name` (the same name, the same values). For data layers that fill their tops, such as `DummyData`.
pub fn filled(shape: &[usize], filler: &FillerParameter, seed_name: &str) -> LayerResult<Vec<f32>> {
    let mut blob = Tensor::zeros(shape);
    fill(&mut blob, filler, seed_name)?;
    Ok(blob.into_data())
}

/// Fills `blob` as Caffe's filler of `filler.type` would. `seed_name` picks the random stream.
pub(crate) fn fill(blob: &mut Tensor, filler: &FillerParameter, seed_name: &str) -> LayerResult<()> {
    let mut rng = SplitMix64::from_name(seed_name);
    let shape = blob.shape().to_vec();
    let data = blob.data_mut();
    match filler.r#type() {
        "constant" => data.fill(filler.value()),
        "uniform" => {
            let (lo, hi) = (filler.min(), filler.max());
            data.iter_mut().for_each(|v| *v = lo + (hi - lo) * rng.next_f32());
        }
        "gaussian" => {
            let (mean, std) = (filler.mean(), filler.std());
            data.iter_mut().for_each(|v| *v = mean + std * normal(&mut rng));
            // sparse >= 0: keep each weight with probability sparse / num_outputs (Caffe's Bernoulli mask).
            if filler.sparse() >= 0 {
                let outputs = shape.first().copied().unwrap_or(1).max(1) as f32;
                let keep = filler.sparse() as f32 / outputs;
                data.iter_mut().for_each(|v| {
                    if rng.next_f32() >= keep {
                        *v = 0.0
                    }
                });
            }
        }
        "positive_unitball" => {
            data.iter_mut().for_each(|v| *v = rng.next_f32());
            let rows = shape.first().copied().unwrap_or(1).max(1);
            let per_row = data.len() / rows;
            if per_row > 0 {
                for row in data.chunks_mut(per_row) {
                    let sum: f32 = row.iter().sum();
                    row.iter_mut().for_each(|v| *v /= sum);
                }
            }
        }
        "xavier" => {
            let scale = (3.0 / scale_base(filler, &shape)).sqrt();
            data.iter_mut().for_each(|v| *v = -scale + 2.0 * scale * rng.next_f32());
        }
        "msra" => {
            let std = (2.0 / scale_base(filler, &shape)).sqrt();
            data.iter_mut().for_each(|v| *v = std * normal(&mut rng));
        }
        "bilinear" => {
            let &[_, _, height, width] = shape.as_slice() else {
                return Err(LayerError::Param(format!(
                    "the bilinear filler needs a 4-D blob, got {shape:?}"
                )));
            };
            if height != width {
                return Err(LayerError::Param(format!(
                    "the bilinear filler needs a square kernel, got {height}x{width}"
                )));
            }
            let f = width.div_ceil(2) as f32;
            let c = (2.0 * f - 1.0 - (f as usize % 2) as f32) / (2.0 * f);
            for (i, v) in data.iter_mut().enumerate() {
                let x = (i % width) as f32;
                let y = ((i / width) % height) as f32;
                *v = (1.0 - (x / f - c).abs()) * (1.0 - (y / f - c).abs());
            }
        }
        other => return Err(LayerError::Param(format!("unknown filler type '{other}'"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filler(kind: &str, edit: impl FnOnce(&mut FillerParameter)) -> FillerParameter {
        let mut f = FillerParameter {
            r#type: Some(kind.into()),
            ..Default::default()
        };
        edit(&mut f);
        f
    }

    #[test]
    fn constant_default_is_zero_and_value_is_used() {
        let mut t = Tensor::new(&[3], vec![9.0; 3]);
        fill(&mut t, &FillerParameter::default(), "a").unwrap();
        assert_eq!(t.data(), &[0.0; 3]);
        fill(&mut t, &filler("constant", |f| f.value = Some(0.2)), "a").unwrap();
        assert_eq!(t.data(), &[0.2; 3]);
    }

    #[test]
    fn xavier_bounds_and_determinism() {
        // Weights [50, 20, 5, 5]: fan_in 500, so values lie in +-sqrt(3/500).
        let mut a = Tensor::zeros(&[50, 20, 5, 5]);
        fill(&mut a, &filler("xavier", |_| {}), "conv2/0").unwrap();
        let bound = (3.0f32 / 500.0).sqrt();
        assert!(a.data().iter().all(|v| v.abs() <= bound));
        let max = a.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.9 * bound, "max {max} of bound {bound}");
        let mut b = Tensor::zeros(&[50, 20, 5, 5]);
        fill(&mut b, &filler("xavier", |_| {}), "conv2/0").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn gaussian_moments_and_unitball_rows() {
        let mut g = Tensor::zeros(&[100, 100]);
        fill(&mut g, &filler("gaussian", |f| f.std = Some(0.01)), "ip").unwrap();
        let n = g.len() as f32;
        let mean = g.data().iter().sum::<f32>() / n;
        let var = g.data().iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        assert!(
            mean.abs() < 3e-4 && (var.sqrt() - 0.01).abs() < 3e-4,
            "mean {mean}, std {}",
            var.sqrt()
        );
        let mut u = Tensor::zeros(&[4, 6]);
        fill(&mut u, &filler("positive_unitball", |_| {}), "u").unwrap();
        for row in u.data().chunks(6) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn bilinear_kernel_by_hand() {
        // Kernel 4 (upsampling by 2): f = 2, c = 0.75; the 1-D profile is 1 - |x/2 - 0.75| = 0.25, 0.75, 0.75, 0.25.
        let mut t = Tensor::zeros(&[1, 1, 4, 4]);
        fill(&mut t, &filler("bilinear", |_| {}), "up").unwrap();
        let profile = [0.25f32, 0.75, 0.75, 0.25];
        for y in 0..4 {
            for x in 0..4 {
                assert!((t.data()[y * 4 + x] - profile[y] * profile[x]).abs() < 1e-7);
            }
        }
        assert!(fill(&mut t, &filler("nonsense", |_| {}), "x").is_err());
    }
}
