//! Layers over image windows built from the existing pieces: Im2col (Caffe's im2col as a layer) and SPP (spatial
//! pyramid pooling: a pooling per level, flattened and concatenated).

use caffe_proto::pooling_parameter::PoolMethod;
use caffe_proto::spp_parameter::PoolMethod as SppMethod;
use caffe_proto::{LayerParameter, PoolingParameter};

use super::conv::Geometry;
use super::pooling::Pooling;
use super::{canonical_axis, expect_bottoms, Backward, Layer};
use crate::blas::{col2im, im2col, Window};
use crate::error::{LayerError, LayerResult};
use crate::Tensor;

/// `Im2col`: each image `C x H x W` becomes its column matrix `(C kh kw) x (out_h out_w)`, from
/// `convolution_param`'s kernel, stride, pad and dilation (2-D, channels on axis 1). Backward is col2im.
pub(crate) struct Im2col {
    geometry: Geometry,
    axis: i32,
    window: Option<Window>,
}

impl Im2col {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.convolution_param.clone().unwrap_or_default();
        Ok(Im2col {
            geometry: Geometry::parse(&p)?,
            axis: p.axis(),
            window: None,
        })
    }
}

impl Layer for Im2col {
    fn type_name(&self) -> &'static str {
        "Im2col"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        let axis = canonical_axis(self.axis, b.len(), "convolution_param axis")?;
        if b.len() != 4 || axis != 1 {
            return Err(LayerError::Shape(format!(
                "Im2col takes N x C x H x W with channels on axis 1 (2-D windows), got {b:?} with axis {axis}"
            )));
        }
        let w = self.geometry.window(b[1], b[2], b[3]);
        let extent = |k: usize, d: usize| d * (k - 1) + 1;
        if b[2] + 2 * w.pad_h < extent(w.kernel_h, w.dilation_h)
            || b[3] + 2 * w.pad_w < extent(w.kernel_w, w.dilation_w)
        {
            return Err(LayerError::Shape(format!(
                "the padded input {}x{} is smaller than the kernel extent",
                b[2] + 2 * w.pad_h,
                b[3] + 2 * w.pad_w
            )));
        }
        self.window = Some(w);
        Ok(vec![vec![b[0], w.col_rows(), w.output_h(), w.output_w()]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let w = self.window.expect("reshape ran");
        let image = w.channels * w.height * w.width;
        let cols = w.output_h() * w.output_w();
        let col = w.col_rows() * cols;
        if image == 0 || col == 0 {
            return Ok(());
        }
        for (x, y) in bottoms[0].data().chunks(image).zip(tops[0].data_mut().chunks_mut(col)) {
            im2col(x, &w, y, cols);
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let w = self.window.expect("reshape ran");
        let image = w.channels * w.height * w.width;
        let col = w.col_rows() * w.output_h() * w.output_w();
        if image == 0 || col == 0 {
            return Ok(());
        }
        let dx = ctx.bottom_diffs[0].data_mut();
        dx.fill(0.0);
        for (dy, dx) in ctx.top_diffs[0].data().chunks(col).zip(dx.chunks_mut(image)) {
            col2im(dy, &w, dx);
        }
        Ok(())
    }
}

/// `SPP`: for each level `l < pyramid_height`, pooling into `2^l x 2^l` bins (kernel `ceil(H / 2^l)`, stride the
/// kernel, pad `(kernel 2^l - H + 1) / 2`, as Caffe's `SPPLayer::GetPoolingParam`), flattened per image and
/// concatenated along axis 1. With one level the top is the pooling's own 4-D output.
pub(crate) struct Spp {
    name: String,
    pyramid_height: usize,
    method: PoolMethod,
    levels: Vec<Pooling>,
    /// Each level's output shape, and the bottom shape they were built for.
    level_shapes: Vec<Vec<usize>>,
    bottom_shape: Vec<usize>,
    /// Each level's output of the last forward (max pooling's backward reads it).
    outputs: Vec<Tensor>,
}

impl Spp {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.spp_param.unwrap_or_default();
        if p.pyramid_height() == 0 {
            return Err(LayerError::Param("spp_param pyramid_height must be at least 1".into()));
        }
        if p.pyramid_height() > 16 {
            return Err(LayerError::Param(format!(
                "spp_param pyramid_height {} is too large (2^(height-1) bins per side)",
                p.pyramid_height()
            )));
        }
        let method = match p.pool() {
            SppMethod::Max => PoolMethod::Max,
            SppMethod::Ave => PoolMethod::Ave,
            SppMethod::Stochastic => {
                return Err(LayerError::Param(
                    "STOCHASTIC spatial pyramid pooling is not supported".into(),
                ))
            }
        };
        Ok(Spp {
            name: param.name().to_string(),
            pyramid_height: p.pyramid_height() as usize,
            method,
            levels: Vec::new(),
            level_shapes: Vec::new(),
            bottom_shape: Vec::new(),
            outputs: Vec::new(),
        })
    }

    /// Caffe's `GetPoolingParam` for one level.
    fn level_param(&self, level: usize, height: usize, width: usize) -> LayerParameter {
        let bins = 1usize << level;
        let kernel_h = height.div_ceil(bins);
        let kernel_w = width.div_ceil(bins);
        let pad_h = (kernel_h * bins - height).div_ceil(2);
        let pad_w = (kernel_w * bins - width).div_ceil(2);
        let u = |v: usize| Some(v as u32);
        LayerParameter {
            name: Some(format!("{}_level{level}", self.name)),
            r#type: Some("Pooling".into()),
            pooling_param: Some(PoolingParameter {
                pool: Some(self.method as i32),
                kernel_h: u(kernel_h),
                kernel_w: u(kernel_w),
                stride_h: u(kernel_h),
                stride_w: u(kernel_w),
                pad_h: u(pad_h),
                pad_w: u(pad_w),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Layer for Spp {
    fn type_name(&self) -> &'static str {
        "SPP"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        if b.len() != 4 || b[2] == 0 || b[3] == 0 {
            return Err(LayerError::Shape(format!(
                "SPP takes a non-empty N x C x H x W blob, got {b:?}"
            )));
        }
        if b != self.bottom_shape.as_slice() {
            self.levels.clear();
            self.level_shapes.clear();
            for level in 0..self.pyramid_height {
                let mut pooling = Pooling::new(&self.level_param(level, b[2], b[3]), 1)?;
                let shape = pooling.reshape(&[b])?.remove(0);
                self.levels.push(pooling);
                self.level_shapes.push(shape);
            }
            self.bottom_shape = b.to_vec();
            self.outputs = self.level_shapes.iter().map(|s| Tensor::zeros(s)).collect();
        }
        if self.pyramid_height == 1 {
            return Ok(vec![self.level_shapes[0].clone()]);
        }
        let per_image: usize = self.level_shapes.iter().map(|s| s[1..].iter().product::<usize>()).sum();
        Ok(vec![vec![b[0], per_image]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        for (pooling, out) in self.levels.iter_mut().zip(&mut self.outputs) {
            pooling.forward(bottoms, std::slice::from_mut(out))?;
        }
        let num = self.bottom_shape[0];
        let top = tops[0].data_mut();
        let per_image = top.len() / num.max(1);
        let mut offset = 0;
        for out in &self.outputs {
            let len = out.len() / num.max(1);
            for n in 0..num {
                top[n * per_image + offset..n * per_image + offset + len]
                    .copy_from_slice(&out.data()[n * len..(n + 1) * len]);
            }
            offset += len;
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let num = self.bottom_shape[0];
        let dy = ctx.top_diffs[0].data();
        let per_image = dy.len() / num.max(1);
        let dx = ctx.bottom_diffs[0].data_mut();
        dx.fill(0.0);
        let mut level_dx = Tensor::zeros(&self.bottom_shape);
        let mut offset = 0;
        // Caffe splits the bottom to every level and sums their diffs back, level by level.
        for (pooling, out) in self.levels.iter_mut().zip(&self.outputs) {
            let len = out.len() / num.max(1);
            let mut level_dy = Tensor::zeros(out.shape());
            for n in 0..num {
                level_dy.data_mut()[n * len..(n + 1) * len]
                    .copy_from_slice(&dy[n * per_image + offset..n * per_image + offset + len]);
            }
            offset += len;
            pooling.backward(Backward {
                tops: &[out],
                top_diffs: &[&level_dy],
                bottoms: ctx.bottoms,
                propagate_down: &[true],
                bottom_diffs: std::slice::from_mut(&mut level_dx),
                param_propagate_down: &[],
                param_diffs: &mut [],
            })?;
            dx.iter_mut().zip(level_dx.data()).for_each(|(d, g)| *d += g);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{check, distinct, uniform, Check};
    use crate::layers::testing::param;
    use caffe_proto::{ConvolutionParameter, SppParameter};

    #[test]
    fn im2col_gradients() {
        let p = param("Im2col", |l| {
            l.convolution_param = Some(ConvolutionParameter {
                kernel_size: vec![3],
                stride: vec![2],
                pad: vec![1],
                ..Default::default()
            })
        });
        check(&Check::new(p, vec![uniform(&[2, 2, 5, 4], -1.0, 1.0, 1)]));
    }

    #[test]
    fn spp_shapes_and_gradients() {
        for (method, height) in [(SppMethod::Max, 3), (SppMethod::Ave, 2), (SppMethod::Max, 1)] {
            let p = param("SPP", |l| {
                l.spp_param = Some(SppParameter {
                    pyramid_height: Some(height),
                    pool: Some(method as i32),
                    ..Default::default()
                })
            });
            let mut spp = Spp::new(&p).unwrap();
            let shape = spp.reshape(&[&[2, 3, 9, 8]]).unwrap().remove(0);
            let expected = if height == 1 {
                vec![2, 3, 1, 1]
            } else {
                vec![2, 3 * (1..=height).map(|l| 1 << (2 * (l - 1))).sum::<usize>()]
            };
            assert_eq!(shape, expected);
            check(&Check::new(p, vec![distinct(&[2, 2, 8, 7], 0.05, 2)]));
        }
    }
}
