//! Smaller layers that move, pick or summarise values: Tile, ArgMax, Reduction, MVN, Parameter, BatchReindex,
//! Filter, Embed and Crop, each as Caffe's CPU code computes it.

use caffe_proto::reduction_parameter::ReductionOp;
use caffe_proto::LayerParameter;

use super::{canonical_axis, count, ensure_param_shape, expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::Tensor;

/// Reads an integer-valued float as an index in `[0, bound)` (labels and indices travel as floats in Caffe).
fn index(value: f32, bound: usize, what: &str) -> LayerResult<usize> {
    if value.fract() != 0.0 || value < 0.0 || value >= bound as f32 {
        return Err(LayerError::Data(format!(
            "{what} {value} is not an integer in [0, {bound})"
        )));
    }
    Ok(value as usize)
}

/// `Tile`: repeats the blob `tiles` times along `axis` (each slab `count(axis..)` copied whole).
pub(crate) struct Tile {
    axis: i32,
    tiles: usize,
    /// (outer, inner) = (count(0, axis), count(axis)) of the bottom.
    dims: (usize, usize),
}

impl Tile {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.tile_param.unwrap_or_default();
        if p.tiles() < 1 {
            return Err(LayerError::Param(format!(
                "tile_param tiles must be at least 1, got {}",
                p.tiles()
            )));
        }
        Ok(Tile {
            axis: p.axis(),
            tiles: p.tiles() as usize,
            dims: (0, 0),
        })
    }
}

impl Layer for Tile {
    fn type_name(&self) -> &'static str {
        "Tile"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        let axis = canonical_axis(self.axis, b.len(), "tile_param axis")?;
        self.dims = (count(b, 0, axis), count(b, axis, b.len()));
        let mut top = b.to_vec();
        top[axis] *= self.tiles;
        Ok(vec![top])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (outer, inner) = self.dims;
        if inner == 0 {
            return Ok(());
        }
        let top = tops[0].data_mut();
        for (i, slab) in bottoms[0].data().chunks(inner).take(outer).enumerate() {
            for t in 0..self.tiles {
                let start = (i * self.tiles + t) * inner;
                top[start..start + inner].copy_from_slice(slab);
            }
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (outer, inner) = self.dims;
        if inner == 0 {
            return Ok(());
        }
        let dy = ctx.top_diffs[0].data();
        let dx = ctx.bottom_diffs[0].data_mut();
        // Caffe: the first copy's diff, then the others added in order.
        for i in 0..outer {
            let dst = &mut dx[i * inner..(i + 1) * inner];
            let first = i * self.tiles * inner;
            dst.copy_from_slice(&dy[first..first + inner]);
            for t in 1..self.tiles {
                let src = &dy[first + t * inner..first + (t + 1) * inner];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
        Ok(())
    }
}

/// `ArgMax`: the indices (or values, or both) of the `top_k` largest values per item (`count(1..)` values) or along
/// `axis`. Ties go to the larger index, as `std::partial_sort` with `std::greater` on (value, index) pairs orders
/// them. No backward.
pub(crate) struct ArgMax {
    out_max_val: bool,
    top_k: usize,
    axis: Option<i32>,
    /// (dim, axis_dist, resolved axis) of the last reshape.
    dims: (usize, usize, Option<usize>),
}

impl ArgMax {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.argmax_param.unwrap_or_default();
        if p.top_k() < 1 {
            return Err(LayerError::Param("argmax_param top_k must be at least 1".into()));
        }
        Ok(ArgMax {
            out_max_val: p.out_max_val(),
            top_k: p.top_k() as usize,
            axis: p.axis,
            dims: (0, 0, None),
        })
    }
}

impl Layer for ArgMax {
    fn type_name(&self) -> &'static str {
        "ArgMax"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        if b.is_empty() {
            return Err(LayerError::Shape("ArgMax needs at least one axis".into()));
        }
        match self.axis {
            Some(axis) => {
                let axis = canonical_axis(axis, b.len(), "argmax_param axis")?;
                if self.top_k > b[axis] {
                    return Err(LayerError::Param(format!(
                        "top_k {} exceeds the size {} of axis {axis}",
                        self.top_k, b[axis]
                    )));
                }
                self.dims = (b[axis], count(b, axis + 1, b.len()), Some(axis));
                let mut top = b.to_vec();
                top[axis] = self.top_k;
                Ok(vec![top])
            }
            None => {
                let dim = count(b, 1, b.len());
                if self.top_k > dim {
                    return Err(LayerError::Param(format!(
                        "top_k {} exceeds the {dim} values per item",
                        self.top_k
                    )));
                }
                self.dims = (dim, 1, None);
                // Caffe's top is at least 3-D: (N, 1 or 2, top_k, 1...).
                let mut top = vec![1; b.len().max(3)];
                top[0] = b[0];
                top[2] = self.top_k;
                if self.out_max_val {
                    top[1] = 2;
                }
                Ok(vec![top])
            }
        }
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (dim, axis_dist, axis) = self.dims;
        let x = bottoms[0].data();
        if dim == 0 {
            return Ok(());
        }
        let num = x.len() / dim;
        let k = self.top_k;
        let top = tops[0].data_mut();
        let mut pairs: Vec<(f32, usize)> = Vec::with_capacity(dim);
        for i in 0..num {
            pairs.clear();
            pairs.extend((0..dim).map(|j| (x[(i / axis_dist * dim + j) * axis_dist + i % axis_dist], j)));
            // Descending by value, then by index (std::greater on pairs); NaN compares as equal.
            pairs.sort_by(|a, b| {
                b.0.partial_cmp(&a.0)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.1.cmp(&a.1))
            });
            for (j, &(value, at)) in pairs.iter().take(k).enumerate() {
                let slot = (i / axis_dist * k + j) * axis_dist + i % axis_dist;
                match (self.out_max_val, axis) {
                    (true, Some(_)) => top[slot] = value,
                    (true, None) => {
                        top[2 * i * k + j] = at as f32;
                        top[2 * i * k + k + j] = value;
                    }
                    (false, _) => top[slot] = at as f32,
                }
            }
        }
        Ok(())
    }
}

/// `Reduction`: SUM, ASUM (sum of |x|), SUMSQ or MEAN over all axes from `axis` on, times `coeff`.
pub(crate) struct Reduction {
    op: ReductionOp,
    axis: i32,
    coeff: f32,
    /// (num, dim) = (count(0, axis), count(axis)).
    dims: (usize, usize),
}

impl Reduction {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        let p = param.reduction_param.unwrap_or_default();
        Reduction {
            op: p.operation(),
            axis: p.axis(),
            coeff: p.coeff(),
            dims: (0, 0),
        }
    }

    /// Caffe divides `coeff` by the reduced count for MEAN.
    fn effective_coeff(&self) -> f32 {
        if self.op == ReductionOp::Mean {
            self.coeff / self.dims.1 as f32
        } else {
            self.coeff
        }
    }
}

impl Layer for Reduction {
    fn type_name(&self) -> &'static str {
        "Reduction"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        let axis = canonical_axis(self.axis, b.len(), "reduction_param axis")?;
        self.dims = (count(b, 0, axis), count(b, axis, b.len()));
        // The top keeps the axes before `axis` (a 0-axis scalar for axis 0).
        Ok(vec![b[..axis].to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (num, dim) = self.dims;
        let coeff = self.effective_coeff();
        let x = bottoms[0].data();
        let top = tops[0].data_mut();
        for i in 0..num {
            let row = &x[i * dim..(i + 1) * dim];
            let v: f32 = match self.op {
                ReductionOp::Sum | ReductionOp::Mean => row.iter().sum(),
                ReductionOp::Asum => row.iter().map(|v| v.abs()).sum(),
                ReductionOp::Sumsq => row.iter().map(|v| v * v).sum(),
            };
            top[i] = if coeff != 1.0 { v * coeff } else { v };
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (num, dim) = self.dims;
        let coeff = self.effective_coeff();
        let x = ctx.bottoms[0].data();
        let dy = ctx.top_diffs[0].data();
        let dx = ctx.bottom_diffs[0].data_mut();
        for (i, &g) in dy.iter().enumerate().take(num) {
            let c = g * coeff;
            let range = i * dim..(i + 1) * dim;
            let (dx, x) = (&mut dx[range.clone()], &x[range]);
            match self.op {
                ReductionOp::Sum | ReductionOp::Mean => dx.fill(c),
                ReductionOp::Asum => dx
                    .iter_mut()
                    .zip(x)
                    .for_each(|(d, &v)| *d = c * ((0.0 < v) as i32 - (v < 0.0) as i32) as f32),
                ReductionOp::Sumsq => dx.iter_mut().zip(x).for_each(|(d, &v)| *d = 2.0 * c * v),
            }
        }
        Ok(())
    }
}

/// `MVN`: subtracts the mean of each (image, channel) — or of each image with `across_channels` — and, with
/// `normalize_variance`, divides by `sqrt(variance) + eps`.
pub(crate) struct Mvn {
    normalize_variance: bool,
    across_channels: bool,
    eps: f32,
    /// (num, dim): rows normalised and values per row.
    dims: (usize, usize),
    /// `sqrt(variance) + eps` per row from the last forward (backward divides by it).
    std: Vec<f32>,
}

impl Mvn {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.mvn_param.unwrap_or_default();
        if p.eps().is_nan() || p.eps() < 0.0 {
            return Err(LayerError::Param(format!(
                "mvn_param eps must be non-negative, got {}",
                p.eps()
            )));
        }
        Ok(Mvn {
            normalize_variance: p.normalize_variance(),
            across_channels: p.across_channels(),
            eps: p.eps(),
            dims: (0, 0),
            std: Vec::new(),
        })
    }
}

impl Layer for Mvn {
    fn type_name(&self) -> &'static str {
        "MVN"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        // Caffe shapes the top by the legacy num/channels/height/width: at most 4 axes, padded to 4.
        if b.is_empty() || b.len() > 4 {
            return Err(LayerError::Shape(format!(
                "MVN takes a blob of 1 to 4 axes (num, channels, height, width), got {b:?}"
            )));
        }
        let mut top = b.to_vec();
        top.resize(4, 1);
        let num = if self.across_channels { top[0] } else { top[0] * top[1] };
        let total: usize = top.iter().product();
        self.dims = (num, total.checked_div(num).unwrap_or(0));
        Ok(vec![top])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (num, dim) = self.dims;
        let x = bottoms[0].data();
        let y = tops[0].data_mut();
        let inv_dim = 1.0 / dim as f32;
        self.std.clear();
        for i in 0..num {
            let range = i * dim..(i + 1) * dim;
            let (x, y) = (&x[range.clone()], &mut y[range]);
            // Caffe: gemv with alpha 1/dim (the row sum, scaled), then x + (-mean).
            let mean = inv_dim * x.iter().sum::<f32>();
            y.iter_mut().zip(x).for_each(|(y, &v)| *y = v + -mean);
            if self.normalize_variance {
                let var = inv_dim * y.iter().map(|&v| v * v).sum::<f32>();
                let std = var.sqrt() + self.eps;
                y.iter_mut().for_each(|v| *v /= std);
                self.std.push(std);
            }
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (num, dim) = self.dims;
        let y = ctx.tops[0].data();
        let dy = ctx.top_diffs[0].data();
        let dx = ctx.bottom_diffs[0].data_mut();
        let inv_dim = 1.0 / dim as f32;
        for i in 0..num {
            let range = i * dim..(i + 1) * dim;
            let (y, dy, dx) = (&y[range.clone()], &dy[range.clone()], &mut dx[range]);
            if self.normalize_variance {
                // dx = (dy - (y sum(y dy) + sum(dy)) / dim) / std, in Caffe's operation order.
                let sum_ydy: f32 = y.iter().zip(dy).map(|(&a, &b)| a * b).sum();
                let sum_dy: f32 = dy.iter().sum();
                let std = self.std[i];
                for ((d, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
                    let t = sum_ydy * yv + sum_dy;
                    *d = (g + -inv_dim * t) / std;
                }
            } else {
                let mean = inv_dim * dy.iter().sum::<f32>();
                dx.iter_mut().zip(dy).for_each(|(d, &g)| *d = g + -mean);
            }
        }
        Ok(())
    }
}

/// `Parameter`: no bottom; its one top is its parameter blob (`parameter_param.shape`, zero-initialised as in
/// Caffe). Backward hands the top's diff to the parameter.
pub(crate) struct Parameter {
    params: Vec<Tensor>,
}

impl Parameter {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let shape = param
            .parameter_param
            .as_ref()
            .and_then(|p| p.shape.as_ref())
            .map(|s| s.dim.clone())
            .unwrap_or_default();
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| LayerError::Param(format!("parameter_param shape {shape:?} has a negative dimension")))?;
        Ok(Parameter {
            params: vec![Tensor::zeros(&shape)],
        })
    }
}

impl Layer for Parameter {
    fn type_name(&self) -> &'static str {
        "Parameter"
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.params
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 0)?;
        Ok(vec![self.params[0].shape().to_vec()])
    }
    fn forward(&mut self, _: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        tops[0].data_mut().copy_from_slice(self.params[0].data());
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        // Caffe shares the top's diff with the parameter's; here it is added like every parameter gradient.
        if ctx.param_propagate_down[0] {
            let dy = ctx.top_diffs[0].data();
            ctx.param_diffs[0]
                .data_mut()
                .iter_mut()
                .zip(dy)
                .for_each(|(d, g)| *d += g);
        }
        Ok(())
    }
}

/// `BatchReindex`: `top[i] = bottom[idx[i]]` along axis 0; backward sums the diffs of the rows that picked each one.
pub(crate) struct BatchReindex {
    inner: usize,
}

impl Layer for BatchReindex {
    fn type_name(&self) -> &'static str {
        "BatchReindex"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2)?;
        let (b, idx) = (bottoms[0], bottoms[1]);
        if idx.len() != 1 {
            return Err(LayerError::Shape(format!(
                "the index bottom must have one axis, got {idx:?}"
            )));
        }
        if b.is_empty() {
            return Err(LayerError::Shape("the data bottom needs at least one axis".into()));
        }
        self.inner = count(b, 1, b.len());
        let mut top = b.to_vec();
        top[0] = idx[0];
        Ok(vec![top])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let n = bottoms[0].shape()[0];
        let inner = self.inner;
        let (x, top) = (bottoms[0].data(), tops[0].data_mut());
        for (i, &v) in bottoms[1].data().iter().enumerate() {
            let src = index(v, n, "batch index")?;
            top[i * inner..(i + 1) * inner].copy_from_slice(&x[src * inner..(src + 1) * inner]);
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down.get(1) == Some(&true) {
            return Err(LayerError::Unsupported(
                "BatchReindex cannot backpropagate to its indices".into(),
            ));
        }
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let n = ctx.bottoms[0].shape()[0];
        let inner = self.inner;
        let dy = ctx.top_diffs[0].data();
        let dx = ctx.bottom_diffs[0].data_mut();
        dx.fill(0.0);
        for (i, &v) in ctx.bottoms[1].data().iter().enumerate() {
            let dst = index(v, n, "batch index")?;
            dx[dst * inner..(dst + 1) * inner]
                .iter_mut()
                .zip(&dy[i * inner..(i + 1) * inner])
                .for_each(|(d, g)| *d += g);
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
}

impl BatchReindex {
    pub(crate) fn new() -> Self {
        BatchReindex { inner: 0 }
    }
}

/// `Filter`: bottoms `x_0 .. x_{k-1}` and a selector (last bottom, one value per item); each top `i` holds the
/// items of `x_i` whose selector is non-zero, in order. The number of items depends on the data: reshape gives the
/// full batch (as Caffe's first reshape) and forward shrinks the tops to the selected items.
pub(crate) struct Filter {
    /// Number of filtered blobs (bottoms minus the selector).
    blobs: usize,
    /// The selected item indices of the last forward.
    selected: Vec<usize>,
}

impl Filter {
    pub(crate) fn new(n_bottoms: usize) -> Self {
        Filter {
            blobs: n_bottoms.saturating_sub(1),
            selected: Vec::new(),
        }
    }
}

impl Layer for Filter {
    fn type_name(&self) -> &'static str {
        "Filter"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let Some((selector, data)) = bottoms.split_last() else {
            return Err(LayerError::Arity("Filter needs a selector bottom".into()));
        };
        if data.len() != self.blobs {
            return Err(LayerError::Arity(format!(
                "Filter was built for {} filtered bottoms, got {}",
                self.blobs,
                data.len()
            )));
        }
        if selector.is_empty() || selector.iter().skip(1).any(|&d| d != 1) {
            return Err(LayerError::Shape(format!(
                "the selector must hold one value per item (dimensions after the first must be 1), got {selector:?}"
            )));
        }
        if let Some(b) = data.iter().find(|b| b.first() != Some(&selector[0])) {
            return Err(LayerError::Shape(format!(
                "every filtered bottom must have the selector's {} items on axis 0, got {b:?}",
                selector[0]
            )));
        }
        Ok(data.iter().map(|b| b.to_vec()).collect())
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let selector = bottoms[self.blobs].data();
        self.selected = (0..selector.len()).filter(|&i| selector[i] != 0.0).collect();
        for (bottom, top) in bottoms.iter().zip(tops.iter_mut()) {
            let mut shape = bottom.shape().to_vec();
            shape[0] = self.selected.len();
            top.reshape(&shape);
            let dim = count(bottom.shape(), 1, shape.len());
            let (x, y) = (bottom.data(), top.data_mut());
            for (n, &item) in self.selected.iter().enumerate() {
                y[n * dim..(n + 1) * dim].copy_from_slice(&x[item * dim..(item + 1) * dim]);
            }
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down.get(self.blobs) == Some(&true) {
            return Err(LayerError::Unsupported(
                "Filter cannot backpropagate to its selector".into(),
            ));
        }
        for i in 0..self.blobs {
            if !ctx.propagate_down[i] {
                continue;
            }
            let shape = ctx.bottoms[i].shape();
            let dim = count(shape, 1, shape.len());
            let dy = ctx.top_diffs[i].data();
            let dx = ctx.bottom_diffs[i].data_mut();
            // Items that were not forwarded get a zero gradient.
            dx.fill(0.0);
            for (n, &item) in self.selected.iter().enumerate() {
                dx[item * dim..(item + 1) * dim].copy_from_slice(&dy[n * dim..(n + 1) * dim]);
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom < self.blobs
    }
}

/// `Embed`: a lookup table; each input value (an integer index below `input_dim`) selects a row of the
/// `[input_dim, num_output]` weights, plus an optional bias. The top is the bottom's shape with `num_output` added.
pub(crate) struct Embed {
    name: String,
    num_output: usize,
    input_dim: usize,
    bias_term: bool,
    weight_filler: caffe_proto::FillerParameter,
    bias_filler: caffe_proto::FillerParameter,
    params: Vec<Tensor>,
    initialized: bool,
}

impl Embed {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.embed_param.clone().unwrap_or_default();
        if p.num_output() == 0 || p.input_dim() == 0 {
            return Err(LayerError::Param(format!(
                "embed_param num_output ({}) and input_dim ({}) must be positive",
                p.num_output(),
                p.input_dim()
            )));
        }
        let n_params = if p.bias_term() { 2 } else { 1 };
        Ok(Embed {
            name: param.name().to_string(),
            num_output: p.num_output() as usize,
            input_dim: p.input_dim() as usize,
            bias_term: p.bias_term(),
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            params: vec![Tensor::default(); n_params],
            initialized: false,
        })
    }
}

impl Layer for Embed {
    fn type_name(&self) -> &'static str {
        "Embed"
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.params
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        if !self.initialized {
            ensure_param_shape(
                &mut self.params[0],
                &[self.input_dim, self.num_output],
                false,
                "weights",
            )?;
            crate::filler::fill(&mut self.params[0], &self.weight_filler, &format!("{}/0", self.name))?;
            if self.bias_term {
                ensure_param_shape(&mut self.params[1], &[self.num_output], false, "bias")?;
                crate::filler::fill(&mut self.params[1], &self.bias_filler, &format!("{}/1", self.name))?;
            }
            self.initialized = true;
        }
        let mut top = bottoms[0].to_vec();
        top.push(self.num_output);
        Ok(vec![top])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let n = self.num_output;
        let weights = self.params[0].data();
        let top = tops[0].data_mut();
        for (i, &v) in bottoms[0].data().iter().enumerate() {
            let row = index(v, self.input_dim, "embed index")?;
            let out = &mut top[i * n..(i + 1) * n];
            out.copy_from_slice(&weights[row * n..(row + 1) * n]);
            if self.bias_term {
                out.iter_mut().zip(self.params[1].data()).for_each(|(o, b)| *o += b);
            }
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[0] {
            return Err(LayerError::Unsupported(
                "Embed cannot backpropagate to its input indices".into(),
            ));
        }
        let n = self.num_output;
        let dy = ctx.top_diffs[0].data();
        let indices = ctx.bottoms[0].data();
        if ctx.param_propagate_down[0] {
            let dw = ctx.param_diffs[0].data_mut();
            for (i, &v) in indices.iter().enumerate() {
                let row = index(v, self.input_dim, "embed index")?;
                dw[row * n..(row + 1) * n]
                    .iter_mut()
                    .zip(&dy[i * n..(i + 1) * n])
                    .for_each(|(d, g)| *d += g);
            }
        }
        if self.bias_term && ctx.param_propagate_down.get(1) == Some(&true) {
            let db = ctx.param_diffs[1].data_mut();
            for row in dy.chunks(n) {
                db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, _: usize) -> bool {
        false
    }
}

/// `Crop`: crops bottom 0 to the shape of bottom 1 on the axes from `axis` on, starting at `offset` (one value for
/// every cropped axis, or one per axis).
pub(crate) struct Crop {
    axis: i32,
    offset: Vec<usize>,
    /// Per-axis start offsets of the last reshape.
    offsets: Vec<usize>,
    bottom_shape: Vec<usize>,
    top_shape: Vec<usize>,
}

impl Crop {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        let p = param.crop_param.clone().unwrap_or_default();
        Crop {
            axis: p.axis(),
            offset: p.offset.iter().map(|&o| o as usize).collect(),
            offsets: Vec::new(),
            bottom_shape: Vec::new(),
            top_shape: Vec::new(),
        }
    }

    /// Calls `f(bottom_start, top_start, len)` for every contiguous run along the last axis.
    fn for_each_row(&self, mut f: impl FnMut(usize, usize, usize)) {
        let rank = self.top_shape.len();
        if rank == 0 || self.top_shape.contains(&0) {
            return;
        }
        let row = self.top_shape[rank - 1];
        let rows: usize = self.top_shape[..rank - 1].iter().product();
        let mut strides = vec![1; rank];
        for i in (0..rank - 1).rev() {
            strides[i] = strides[i + 1] * self.bottom_shape[i + 1];
        }
        for r in 0..rows {
            let mut rest = r;
            let mut src = self.offsets[rank - 1];
            for i in (0..rank - 1).rev() {
                let c = rest % self.top_shape[i];
                rest /= self.top_shape[i];
                src += (c + self.offsets[i]) * strides[i];
            }
            f(src, r * row, row);
        }
    }
}

impl Layer for Crop {
    fn type_name(&self) -> &'static str {
        "Crop"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2)?;
        let (b, r) = (bottoms[0], bottoms[1]);
        if b.len() != r.len() {
            return Err(LayerError::Shape(format!(
                "the blob {b:?} and the reference {r:?} must have the same number of axes"
            )));
        }
        let start = canonical_axis(self.axis, b.len(), "crop_param axis")?;
        let cropped = b.len() - start;
        if self.offset.len() > 1 && self.offset.len() != cropped {
            return Err(LayerError::Param(format!(
                "crop_param offset must have one value or one per cropped axis ({cropped}), got {}",
                self.offset.len()
            )));
        }
        let mut top = b.to_vec();
        self.offsets = vec![0; b.len()];
        for i in start..b.len() {
            let offset = match self.offset.len() {
                0 => 0,
                1 => self.offset[0],
                _ => self.offset[i - start],
            };
            if b[i] < r[i] || b[i] - r[i] < offset {
                return Err(LayerError::Shape(format!(
                    "cannot crop axis {i} of size {} to {} at offset {offset}",
                    b[i], r[i]
                )));
            }
            top[i] = r[i];
            self.offsets[i] = offset;
        }
        self.bottom_shape = b.to_vec();
        self.top_shape = top.clone();
        Ok(vec![top])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let x = bottoms[0].data();
        let y = tops[0].data_mut();
        self.for_each_row(|src, dst, len| y[dst..dst + len].copy_from_slice(&x[src..src + len]));
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[0] {
            let dy = ctx.top_diffs[0].data();
            let dx = ctx.bottom_diffs[0].data_mut();
            dx.fill(0.0);
            self.for_each_row(|src, dst, len| dx[src..src + len].copy_from_slice(&dy[dst..dst + len]));
        }
        // The reference only gives a shape: no gradient (Caffe leaves it untouched, i.e. zero).
        if ctx.propagate_down.get(1) == Some(&true) {
            ctx.bottom_diffs[1].data_mut().fill(0.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{check, distinct, uniform, Check};
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::{ArgMaxParameter, CropParameter, MvnParameter, ReductionParameter, TileParameter};

    #[test]
    fn tile_values_and_gradients() {
        let p = param("Tile", |l| {
            l.tile_param = Some(TileParameter {
                axis: Some(1),
                tiles: Some(2),
            })
        });
        let mut tile = Tile::new(&p).unwrap();
        let out = run(&mut tile, &[Tensor::new(&[2, 2], vec![1.0, 2.0, 3.0, 4.0])]).unwrap();
        assert_eq!(out[0].shape(), &[2, 4]);
        assert_close(out[0].data(), &[1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0], 0.0);
        check(&Check::new(p, vec![uniform(&[2, 3, 2], -1.0, 1.0, 3)]));
    }

    #[test]
    fn argmax_ties_go_to_the_larger_index() {
        let p = param("ArgMax", |l| {
            l.argmax_param = Some(ArgMaxParameter {
                out_max_val: Some(true),
                top_k: Some(2),
                axis: None,
            })
        });
        let mut layer = ArgMax::new(&p).unwrap();
        let out = run(&mut layer, &[Tensor::new(&[1, 4], vec![1.0, 3.0, 3.0, 0.0])]).unwrap();
        assert_eq!(out[0].shape(), &[1, 2, 2]);
        assert_close(out[0].data(), &[2.0, 1.0, 3.0, 3.0], 0.0);
    }

    #[test]
    fn reduction_gradients() {
        for (op, axis) in [
            (ReductionOp::Sum, 1),
            (ReductionOp::Asum, 0),
            (ReductionOp::Sumsq, 2),
            (ReductionOp::Mean, -1),
        ] {
            let p = param("Reduction", |l| {
                l.reduction_param = Some(ReductionParameter {
                    operation: Some(op as i32),
                    axis: Some(axis),
                    coeff: Some(0.7),
                })
            });
            check(&Check::new(p, vec![distinct(&[2, 3, 4], 0.05, 4)]));
        }
    }

    #[test]
    fn mvn_gradients() {
        for (variance, across) in [(true, false), (true, true), (false, false), (false, true)] {
            let p = param("MVN", |l| {
                l.mvn_param = Some(MvnParameter {
                    normalize_variance: Some(variance),
                    across_channels: Some(across),
                    eps: Some(1e-3),
                })
            });
            let mut c = Check::new(p, vec![uniform(&[2, 3, 2, 3], -1.0, 1.0, 5)]);
            c.step = 1e-3;
            c.threshold = 1e-2;
            check(&c);
        }
    }

    #[test]
    fn filter_keeps_the_selected_items_in_a_net() {
        use crate::{Net, NetOptions};
        use caffe_proto::{BlobShape, InputParameter, NetParameter};
        let layer = |name: &str, kind: &str, bottoms: &[&str], tops: &[&str]| LayerParameter {
            name: Some(name.into()),
            r#type: Some(kind.into()),
            bottom: bottoms.iter().map(|s| s.to_string()).collect(),
            top: tops.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut input = layer("in", "Input", &[], &["x", "sel"]);
        input.input_param = Some(InputParameter {
            shape: vec![BlobShape { dim: vec![4, 2] }, BlobShape { dim: vec![4] }],
        });
        let net_param = NetParameter {
            layer: vec![
                input,
                layer("f", "Filter", &["x", "sel"], &["y"]),
                // A layer after the filter sees the filtered shape.
                layer("t", "TanH", &["y"], &["z"]),
            ],
            ..Default::default()
        };
        let mut net = Net::new(&net_param, &NetOptions::test()).unwrap();
        net.set_input("x", &[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
            .unwrap();
        net.set_input("sel", &[4], &[0.0, 1.0, 0.0, 2.0]).unwrap();
        net.forward().unwrap();
        assert_eq!(net.blob("y").unwrap().shape(), &[2, 2]);
        assert_eq!(net.blob("y").unwrap().data(), &[3.0, 4.0, 7.0, 8.0]);
        assert_eq!(net.blob("z").unwrap().shape(), &[2, 2]);
        net.set_input("sel", &[4], &[1.0, 1.0, 1.0, 0.0]).unwrap();
        net.forward().unwrap();
        assert_eq!(net.blob("z").unwrap().shape(), &[3, 2]);
    }

    #[test]
    fn crop_gradients_and_errors() {
        let p = param("Crop", |l| {
            l.crop_param = Some(CropParameter {
                axis: Some(1),
                offset: vec![1, 0, 2],
            })
        });
        let mut c = Check::new(
            p.clone(),
            vec![uniform(&[2, 3, 4, 5], -1.0, 1.0, 6), Tensor::zeros(&[2, 2, 3, 2])],
        );
        c.check_bottoms = vec![true, false];
        check(&c);
        let mut crop = Crop::new(&p);
        assert!(crop.reshape(&[&[2, 3, 4, 5], &[2, 2, 3, 4]]).is_err());
        assert!(crop.reshape(&[&[2, 3, 4, 5], &[2, 2, 3]]).is_err());
    }
}
