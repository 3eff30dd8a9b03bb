//! Convolution and Deconvolution over any number of spatial axes (Caffe's `im2col_nd` path), computed directly:
//! every output is the same sum of products Caffe's column matrix and GEMM form, in another order. The 2-D layers
//! of `conv.rs` stay the fast path; [`AnyConvolution`] picks between the two by the bottom's spatial rank.

use caffe_proto::{ConvolutionParameter, FillerParameter, LayerParameter};

use super::conv::Convolution;
use super::{canonical_axis, ensure_param_shape, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::filler::fill;
use crate::Tensor;

/// One geometry value per spatial axis from a repeated field: none (the default), one for every axis, or one per
/// axis, as Caffe's `BaseConvolutionLayer::LayerSetUp` reads them.
fn per_axis(what: &str, values: &[u32], axes: usize, default: Option<usize>) -> LayerResult<Vec<usize>> {
    match (values, default) {
        ([], Some(d)) => Ok(vec![d; axes]),
        ([], None) => Err(LayerError::Param(format!("{what} is required"))),
        ([v], _) => Ok(vec![*v as usize; axes]),
        (v, _) if v.len() == axes => Ok(v.iter().map(|&v| v as usize).collect()),
        (v, _) => Err(LayerError::Param(format!(
            "{what} must be given once or once per spatial axis ({axes}), got {} values",
            v.len()
        ))),
    }
}

/// The N-D geometry of one reshape.
#[derive(Clone, Debug, Default)]
struct NdDims {
    /// Product of the axes before the channel axis.
    num: usize,
    /// Channels of the image side (the convolution's input, the deconvolution's output) and of the grid side.
    image_channels: usize,
    grid_channels: usize,
    /// Spatial sizes of both sides.
    image_size: usize,
    grid_size: usize,
    /// Kernel taps.
    taps: usize,
    /// For grid position `p` and tap `k`, the image position `p * stride - pad + k * dilation`, or `None` in the
    /// padding (flattened: `p * taps + k`).
    table: Vec<Option<usize>>,
}

/// `Convolution` / `Deconvolution` with any number of spatial axes. Weights `[out, in/group, k...]`
/// (Deconvolution: `[in, out/group, k...]`), optional bias `[out]`.
pub(crate) struct ConvNd {
    name: String,
    param: ConvolutionParameter,
    transposed: bool,
    num_output: usize,
    group: usize,
    bias_term: bool,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
    params: Vec<Tensor>,
    initialized: bool,
    dims: NdDims,
}

impl ConvNd {
    pub(crate) fn new(param: &LayerParameter, transposed: bool) -> LayerResult<Self> {
        let p = param.convolution_param.clone().unwrap_or_default();
        let num_output = p.num_output() as usize;
        let group = p.group() as usize;
        if num_output == 0 || group == 0 || !num_output.is_multiple_of(group) {
            return Err(LayerError::Param(format!(
                "num_output ({num_output}) must be a positive multiple of group ({group})"
            )));
        }
        let bias_term = p.bias_term();
        Ok(ConvNd {
            name: param.name().to_string(),
            transposed,
            num_output,
            group,
            bias_term,
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            params: vec![Tensor::default(); if bias_term { 2 } else { 1 }],
            initialized: false,
            dims: NdDims::default(),
            param: p,
        })
    }

    /// Calls `f(image index, grid index, weight index)` for every product of the layer (for image `n`).
    fn for_each_product(&self, n: usize, mut f: impl FnMut(usize, usize, usize)) {
        let d = &self.dims;
        let image_per_group = d.image_channels / self.group;
        let grid_per_group = d.grid_channels / self.group;
        for gc in 0..d.grid_channels {
            let group = gc / grid_per_group;
            for ic in 0..image_per_group {
                let image_c = group * image_per_group + ic;
                let image_base = (n * d.image_channels + image_c) * d.image_size;
                let w_base = (gc * image_per_group + ic) * d.taps;
                for p in 0..d.grid_size {
                    let grid = (n * d.grid_channels + gc) * d.grid_size + p;
                    for k in 0..d.taps {
                        if let Some(q) = d.table[p * d.taps + k] {
                            f(image_base + q, grid, w_base + k);
                        }
                    }
                }
            }
        }
    }
}

impl Layer for ConvNd {
    fn type_name(&self) -> &'static str {
        if self.transposed {
            "Deconvolution"
        } else {
            "Convolution"
        }
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.params
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let first = bottoms[0];
        if let Some((i, b)) = bottoms.iter().enumerate().skip(1).find(|(_, b)| **b != first) {
            return Err(LayerError::Shape(format!(
                "all bottoms must have the same shape; bottom 0 is {first:?}, bottom {i} is {b:?}"
            )));
        }
        let p = &self.param;
        let axis = canonical_axis(p.axis(), first.len(), "axis")?;
        let axes = first.len() - axis - 1;
        if axes == 0 {
            return Err(LayerError::Shape(format!(
                "the bottom {first:?} has no spatial axis after channel axis {axis}"
            )));
        }
        if p.kernel_h.is_some() || p.kernel_w.is_some() || p.stride_h.is_some() || p.pad_h.is_some() {
            return Err(LayerError::Param(
                "kernel_h/w, stride_h/w and pad_h/w are for 2-D convolution only; give one value per axis".into(),
            ));
        }
        let kernel = per_axis("kernel_size", &p.kernel_size, axes, None)?;
        let stride = per_axis("stride", &p.stride, axes, Some(1))?;
        let pad = per_axis("pad", &p.pad, axes, Some(0))?;
        let dilation = per_axis("dilation", &p.dilation, axes, Some(1))?;
        if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
            return Err(LayerError::Param(format!(
                "kernel {kernel:?}, stride {stride:?} and dilation {dilation:?} must be positive"
            )));
        }
        let channels = first[axis];
        if !channels.is_multiple_of(self.group) {
            return Err(LayerError::Shape(format!(
                "input channels {channels} are not a multiple of group {}",
                self.group
            )));
        }
        let input = &first[axis + 1..];
        let extent: Vec<usize> = (0..axes).map(|i| dilation[i] * (kernel[i] - 1) + 1).collect();
        let mut output = Vec::with_capacity(axes);
        for i in 0..axes {
            let size = if self.transposed {
                (stride[i] * input[i].saturating_sub(1) + extent[i]).checked_sub(2 * pad[i])
            } else {
                (input[i] + 2 * pad[i])
                    .checked_sub(extent[i])
                    .map(|v| v / stride[i] + 1)
            };
            match size {
                Some(s) if s > 0 && input[i] > 0 => output.push(s),
                _ => {
                    return Err(LayerError::Shape(format!(
                        "spatial axis {i} of size {} gives an empty output with kernel {}, stride {}, pad {}, \
                         dilation {}",
                        input[i], kernel[i], stride[i], pad[i], dilation[i]
                    )))
                }
            }
        }
        let mut weight_shape = if self.transposed {
            vec![channels, self.num_output / self.group]
        } else {
            vec![self.num_output, channels / self.group]
        };
        weight_shape.extend(&kernel);
        ensure_param_shape(
            &mut self.params[0],
            &weight_shape,
            self.initialized,
            "convolution kernel",
        )?;
        if self.bias_term {
            ensure_param_shape(
                &mut self.params[1],
                &[self.num_output],
                self.initialized,
                "convolution bias",
            )?;
        }
        if !self.initialized {
            fill(&mut self.params[0], &self.weight_filler, &format!("{}/0", self.name))?;
            if self.bias_term {
                fill(&mut self.params[1], &self.bias_filler, &format!("{}/1", self.name))?;
            }
        }
        self.initialized = true;

        // The grid is the side the kernel slides over in steps of `stride`: the convolution's output, the
        // deconvolution's input.
        let (image, grid) = if self.transposed {
            (output.as_slice(), input)
        } else {
            (input, output.as_slice())
        };
        let taps: usize = kernel.iter().product();
        let grid_size: usize = grid.iter().product();
        let mut table = Vec::with_capacity(grid_size * taps);
        let mut gpos = vec![0usize; axes];
        let mut kpos = vec![0usize; axes];
        for g in 0..grid_size {
            unravel(g, grid, &mut gpos);
            for k in 0..taps {
                unravel(k, &kernel, &mut kpos);
                let mut index = 0usize;
                let mut inside = true;
                for i in 0..axes {
                    let at = (gpos[i] * stride[i] + kpos[i] * dilation[i]) as isize - pad[i] as isize;
                    if at < 0 || at as usize >= image[i] {
                        inside = false;
                        break;
                    }
                    index = index * image[i] + at as usize;
                }
                table.push(inside.then_some(index));
            }
        }
        self.dims = NdDims {
            num: first[..axis].iter().product(),
            image_channels: if self.transposed { self.num_output } else { channels },
            grid_channels: if self.transposed { channels } else { self.num_output },
            image_size: image.iter().product(),
            grid_size,
            taps,
            table,
        };
        let mut top = first[..axis].to_vec();
        top.push(self.num_output);
        top.extend(&output);
        Ok(vec![top; bottoms.len()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let w = self.params[0].data();
        let (out_channels, out_size) = if self.transposed {
            (self.dims.image_channels, self.dims.image_size)
        } else {
            (self.dims.grid_channels, self.dims.grid_size)
        };
        for (bottom, top) in bottoms.iter().zip(tops.iter_mut()) {
            let (x, y) = (bottom.data(), top.data_mut());
            y.fill(0.0);
            for n in 0..self.dims.num {
                if self.transposed {
                    self.for_each_product(n, |i, g, k| y[i] += w[k] * x[g]);
                } else {
                    self.for_each_product(n, |i, g, k| y[g] += w[k] * x[i]);
                }
            }
            if self.bias_term {
                let b = self.params[1].data();
                for (c, plane) in y.chunks_mut(out_size).enumerate() {
                    let bias = b[c % out_channels];
                    plane.iter_mut().for_each(|v| *v += bias);
                }
            }
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        let w = self.params[0].data();
        let (out_channels, out_size) = if self.transposed {
            (self.dims.image_channels, self.dims.image_size)
        } else {
            (self.dims.grid_channels, self.dims.grid_size)
        };
        let (want_w, want_b) = (
            ctx.param_propagate_down.first() == Some(&true),
            self.bias_term && ctx.param_propagate_down.get(1) == Some(&true),
        );
        for (j, (dy, x)) in ctx.top_diffs.iter().zip(ctx.bottoms).enumerate() {
            let (dy, x) = (dy.data(), x.data());
            if want_b {
                let db = ctx.param_diffs[1].data_mut();
                for (c, plane) in dy.chunks(out_size).enumerate() {
                    db[c % out_channels] += plane.iter().sum::<f32>();
                }
            }
            if want_w {
                let dw = ctx.param_diffs[0].data_mut();
                for n in 0..self.dims.num {
                    if self.transposed {
                        self.for_each_product(n, |i, g, k| dw[k] += dy[i] * x[g]);
                    } else {
                        self.for_each_product(n, |i, g, k| dw[k] += x[i] * dy[g]);
                    }
                }
            }
            if ctx.propagate_down[j] {
                let dx = ctx.bottom_diffs[j].data_mut();
                dx.fill(0.0);
                for n in 0..self.dims.num {
                    if self.transposed {
                        self.for_each_product(n, |i, g, k| dx[g] += w[k] * dy[i]);
                    } else {
                        self.for_each_product(n, |i, g, k| dx[i] += w[k] * dy[g]);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Row-major coordinates of flat index `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize], out: &mut [usize]) {
    for (o, &s) in out.iter_mut().zip(shape).rev() {
        *o = i % s;
        i /= s;
    }
}

/// `Convolution` / `Deconvolution` of any spatial rank: the 2-D implementation for 2 spatial axes (when its
/// parameters are 2-D), the N-D one otherwise, chosen at the first reshape (Caffe fixes the rank at setup too).
pub(crate) struct AnyConvolution {
    two_d: Option<Convolution>,
    nd: ConvNd,
    use_nd: Option<bool>,
}

impl AnyConvolution {
    pub(crate) fn new(param: &LayerParameter, transposed: bool) -> LayerResult<Self> {
        let two_d = Convolution::new(param, transposed);
        let nd = ConvNd::new(param, transposed);
        match (two_d, nd) {
            (Ok(two_d), Ok(nd)) => Ok(AnyConvolution {
                two_d: Some(two_d),
                nd,
                use_nd: None,
            }),
            // Parameters only N-D convolution reads (e.g. three kernel sizes).
            (Err(_), Ok(nd)) => Ok(AnyConvolution {
                two_d: None,
                nd,
                use_nd: None,
            }),
            (Err(e), Err(_)) | (Ok(_), Err(e)) => Err(e),
        }
    }

    fn layer(&self) -> &dyn Layer {
        match (&self.two_d, self.use_nd) {
            (Some(two_d), Some(false)) => two_d,
            _ => &self.nd,
        }
    }

    fn layer_mut(&mut self) -> &mut dyn Layer {
        match (&mut self.two_d, self.use_nd) {
            (Some(two_d), Some(false)) => two_d,
            _ => &mut self.nd,
        }
    }
}

impl Layer for AnyConvolution {
    fn type_name(&self) -> &'static str {
        self.nd.type_name()
    }
    fn params(&self) -> &[Tensor] {
        self.layer().params()
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        self.layer_mut().params_mut()
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        if self.use_nd.is_none() {
            let first = bottoms[0];
            let axis = canonical_axis(self.nd.param.axis(), first.len(), "axis")?;
            let spatial = first.len() - axis - 1;
            self.use_nd = Some(self.two_d.is_none() || spatial != 2);
        }
        self.layer_mut().reshape(bottoms)
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        self.layer_mut().forward(bottoms, tops)
    }
    fn forward_max_pool_2x2(&mut self, bottoms: &[&Tensor], pooled: &mut Tensor) -> LayerResult<bool> {
        self.layer_mut().forward_max_pool_2x2(bottoms, pooled)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        self.layer_mut().backward(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{check, uniform, Check};
    use crate::layers::testing::param;

    fn nd(kind: &str, edit: impl FnOnce(&mut ConvolutionParameter)) -> LayerParameter {
        param(kind, |l| {
            let gaussian = Some(FillerParameter {
                r#type: Some("gaussian".into()),
                std: Some(0.5),
                ..Default::default()
            });
            let mut c = ConvolutionParameter {
                num_output: Some(4),
                weight_filler: gaussian.clone(),
                bias_filler: gaussian,
                ..Default::default()
            };
            edit(&mut c);
            l.convolution_param = Some(c);
        })
    }

    #[test]
    fn three_d_convolution_and_deconvolution_gradients() {
        for kind in ["Convolution", "Deconvolution"] {
            let p = nd(kind, |c| {
                c.kernel_size = vec![3, 2, 2];
                c.pad = vec![1];
                c.stride = vec![1, 2, 1];
                c.group = Some(2);
            });
            check(&Check::new(p, vec![uniform(&[2, 2, 4, 5, 3], -1.0, 1.0, 3)]));
        }
        // One spatial axis, dilated.
        let p = nd("Convolution", |c| {
            c.kernel_size = vec![2];
            c.dilation = vec![2];
            c.bias_term = Some(false);
        });
        check(&Check::new(p, vec![uniform(&[2, 3, 6], -1.0, 1.0, 4)]));
    }

    #[test]
    fn nd_agrees_with_the_2d_layer() {
        let p = nd("Convolution", |c| {
            c.kernel_size = vec![3];
            c.pad = vec![1];
            c.stride = vec![2];
        });
        let x = uniform(&[2, 3, 5, 4], -1.0, 1.0, 5);
        let mut two_d = Convolution::new(&p, false).unwrap();
        let mut n_d = ConvNd::new(&p, false).unwrap();
        let a = crate::layers::testing::run(&mut two_d, std::slice::from_ref(&x)).unwrap();
        n_d.reshape(&[x.shape()]).unwrap();
        n_d.params_mut()[0].data_mut().copy_from_slice(two_d.params()[0].data());
        n_d.params_mut()[1].data_mut().copy_from_slice(two_d.params()[1].data());
        let b = crate::layers::testing::run(&mut n_d, &[x]).unwrap();
        crate::layers::testing::assert_close(b[0].data(), a[0].data(), 1e-5);
    }

    #[test]
    fn bad_nd_geometry_is_an_error() {
        let p = nd("Convolution", |c| c.kernel_size = vec![3, 2]);
        let mut layer = AnyConvolution::new(&p, false).unwrap();
        assert!(layer.reshape(&[&[1, 2, 4, 4, 4]]).is_err());
    }
}
