//! Layers that move values without arithmetic: Concat, Slice, Split, Flatten, Reshape, Silence.

use caffe_proto::LayerParameter;

use super::{canonical_axis, count, expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::Tensor;

/// The axis of Concat/Slice: the legacy unsigned `*_dim` field when present, else the (possibly negative) `axis`.
fn legacy_or_axis(legacy: Option<u32>, axis: i32, rank: usize) -> LayerResult<usize> {
    match legacy {
        Some(dim) if (dim as usize) < rank => Ok(dim as usize),
        Some(dim) => Err(LayerError::Param(format!(
            "dimension {dim} is out of range for a {rank}-D blob"
        ))),
        None => canonical_axis(axis, rank, "axis"),
    }
}

/// `Concat` along `axis` (default 1): all bottoms agree on every other axis.
pub(crate) struct Concat {
    legacy_dim: Option<u32>,
    axis: i32,
    /// (outer count, inner count, axis length of each bottom).
    layout: (usize, usize, Vec<usize>),
}

impl Concat {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        let p = param.concat_param.unwrap_or_default();
        Concat {
            legacy_dim: p.concat_dim,
            axis: p.axis(),
            layout: (0, 0, Vec::new()),
        }
    }
}

impl Layer for Concat {
    fn type_name(&self) -> &'static str {
        "Concat"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let first = bottoms[0];
        let axis = legacy_or_axis(self.legacy_dim, self.axis, first.len())?;
        let mut top = first.to_vec();
        for (i, b) in bottoms.iter().enumerate().skip(1) {
            let agrees = b.len() == first.len() && (0..b.len()).all(|j| j == axis || b[j] == first[j]);
            if !agrees {
                return Err(LayerError::Shape(format!(
                    "bottom {i} {b:?} differs from bottom 0 {first:?} off the concat axis {axis}"
                )));
            }
            top[axis] += b[axis];
        }
        self.layout = (
            count(first, 0, axis),
            count(first, axis + 1, first.len()),
            bottoms.iter().map(|b| b[axis]).collect(),
        );
        Ok(vec![top])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (outer, inner, ref sizes) = self.layout;
        let top_block: usize = sizes.iter().sum::<usize>() * inner;
        let out = tops[0].data_mut();
        let mut offset = 0;
        for (bottom, &size) in bottoms.iter().zip(sizes) {
            let block = size * inner;
            for n in 0..outer {
                out[n * top_block + offset..n * top_block + offset + block]
                    .copy_from_slice(&bottom.data()[n * block..(n + 1) * block]);
            }
            offset += block;
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        let (outer, inner, ref sizes) = self.layout;
        let top_block: usize = sizes.iter().sum::<usize>() * inner;
        let top_diff = ctx.top_diffs[0].data();
        let mut offset = 0;
        for ((diff, &size), &down) in ctx.bottom_diffs.iter_mut().zip(sizes).zip(ctx.propagate_down) {
            let block = size * inner;
            if down {
                let diff = diff.data_mut();
                for n in 0..outer {
                    diff[n * block..(n + 1) * block]
                        .copy_from_slice(&top_diff[n * top_block + offset..n * top_block + offset + block]);
                }
            }
            offset += block;
        }
        Ok(())
    }
}

/// `Slice` along `axis` (default 1) at `slice_point`s, or into equal parts when none are given.
pub(crate) struct Slice {
    legacy_dim: Option<u32>,
    axis: i32,
    points: Vec<u32>,
    tops: usize,
    /// (outer, inner, bottom axis length, axis length of each top).
    layout: (usize, usize, usize, Vec<usize>),
}

impl Slice {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        let p = param.slice_param.clone().unwrap_or_default();
        Slice {
            legacy_dim: p.slice_dim,
            axis: p.axis(),
            points: p.slice_point.clone(),
            tops: param.top.len(),
            layout: (0, 0, 0, Vec::new()),
        }
    }
}

impl Layer for Slice {
    fn type_name(&self) -> &'static str {
        "Slice"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        let axis = legacy_or_axis(self.legacy_dim, self.axis, b.len())?;
        let length = b[axis];
        let sizes: Vec<usize> = if self.points.is_empty() {
            if self.tops == 0 || !length.is_multiple_of(self.tops) {
                return Err(LayerError::Shape(format!(
                    "axis {axis} of length {length} cannot be split evenly into {} tops",
                    self.tops
                )));
            }
            vec![length / self.tops; self.tops]
        } else {
            if self.points.len() != self.tops - 1 {
                return Err(LayerError::Param(format!(
                    "{} slice points given for {} tops; give one fewer than tops",
                    self.points.len(),
                    self.tops
                )));
            }
            let mut bounds = vec![0usize];
            bounds.extend(self.points.iter().map(|&p| p as usize));
            bounds.push(length);
            if bounds.windows(2).any(|w| w[1] <= w[0]) {
                return Err(LayerError::Shape(format!(
                    "slice points {:?} must increase strictly inside (0, {length}) on axis {axis}",
                    self.points
                )));
            }
            bounds.windows(2).map(|w| w[1] - w[0]).collect()
        };
        let tops = sizes
            .iter()
            .map(|&s| {
                let mut t = b.to_vec();
                t[axis] = s;
                t
            })
            .collect();
        self.layout = (count(b, 0, axis), count(b, axis + 1, b.len()), length, sizes);
        Ok(tops)
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (outer, inner, length, ref sizes) = self.layout;
        let input = bottoms[0].data();
        let bottom_block = length * inner;
        let mut offset = 0;
        for (top, &size) in tops.iter_mut().zip(sizes) {
            let block = size * inner;
            let out = top.data_mut();
            for n in 0..outer {
                out[n * block..(n + 1) * block]
                    .copy_from_slice(&input[n * bottom_block + offset..n * bottom_block + offset + block]);
            }
            offset += block;
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (outer, inner, length, ref sizes) = self.layout;
        let diff = ctx.bottom_diffs[0].data_mut();
        let bottom_block = length * inner;
        let mut offset = 0;
        for (top, &size) in ctx.top_diffs.iter().zip(sizes) {
            let block = size * inner;
            let top = top.data();
            for n in 0..outer {
                diff[n * bottom_block + offset..n * bottom_block + offset + block]
                    .copy_from_slice(&top[n * block..(n + 1) * block]);
            }
            offset += block;
        }
        Ok(())
    }
}

/// `Split`: every top is a copy of the bottom (Caffe inserts these where a blob feeds several layers).
pub(crate) struct Split {
    /// Number of tops.
    pub(crate) tops: usize,
}

impl Layer for Split {
    fn type_name(&self) -> &'static str {
        "Split"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        Ok(vec![bottoms[0].to_vec(); self.tops])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        for top in tops {
            top.data_mut().copy_from_slice(bottoms[0].data());
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        // The sum of the top diffs, added in top order as Caffe's SplitLayer.
        let diff = ctx.bottom_diffs[0].data_mut();
        let (first, rest) = ctx.top_diffs.split_first().expect("a split has tops");
        diff.copy_from_slice(first.data());
        for top in rest {
            diff.iter_mut().zip(top.data()).for_each(|(d, t)| *d += t);
        }
        Ok(())
    }
}

/// `Flatten`: merges axes `axis..=end_axis` into one.
pub(crate) struct Flatten {
    axis: i32,
    end_axis: i32,
}

impl Flatten {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        let p = param.flatten_param.unwrap_or_default();
        Flatten {
            axis: p.axis(),
            end_axis: p.end_axis(),
        }
    }
}

impl Layer for Flatten {
    fn type_name(&self) -> &'static str {
        "Flatten"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        let start = canonical_axis(self.axis, b.len(), "axis")?;
        let end = canonical_axis(self.end_axis, b.len(), "end_axis")?;
        if end < start {
            return Err(LayerError::Param(format!("end_axis {end} comes before axis {start}")));
        }
        let mut top = b[..start].to_vec();
        top.push(count(b, start, end + 1));
        top.extend_from_slice(&b[end + 1..]);
        Ok(vec![top])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        tops[0].data_mut().copy_from_slice(bottoms[0].data());
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[0] {
            ctx.bottom_diffs[0].data_mut().copy_from_slice(ctx.top_diffs[0].data());
        }
        Ok(())
    }
}

/// `Reshape` with Caffe's rules: `0` copies the bottom's axis, one `-1` is inferred, and `axis` / `num_axes` pick
/// the range of bottom axes replaced.
pub(crate) struct Reshape {
    dims: Vec<i64>,
    axis: i32,
    num_axes: i32,
}

impl Reshape {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.reshape_param.clone().unwrap_or_default();
        let dims = p.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
        if dims.iter().filter(|&&d| d == -1).count() > 1 {
            return Err(LayerError::Param(format!(
                "new shape {dims:?} contains more than one -1"
            )));
        }
        if let Some(d) = dims.iter().find(|&&d| d < -1) {
            return Err(LayerError::Param(format!(
                "new shape {dims:?} has a negative dimension {d}"
            )));
        }
        if p.num_axes() < -1 {
            return Err(LayerError::Param(format!(
                "num_axes must be >= 0, or -1 for all; got {}",
                p.num_axes()
            )));
        }
        Ok(Reshape {
            dims,
            axis: p.axis(),
            num_axes: p.num_axes(),
        })
    }
}

impl Layer for Reshape {
    fn type_name(&self) -> &'static str {
        "Reshape"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        let rank = b.len() as i64;
        let start = if self.axis >= 0 {
            self.axis as i64
        } else {
            rank + self.axis as i64 + 1
        };
        if start < 0 || start > rank {
            return Err(LayerError::Param(format!(
                "axis {} is out of range for a {rank}-D bottom",
                self.axis
            )));
        }
        let start = start as usize;
        let end = if self.num_axes == -1 {
            b.len()
        } else {
            start + self.num_axes as usize
        };
        if end > b.len() {
            return Err(LayerError::Param(format!(
                "axis {} + num_axes {} is out of range for a {rank}-D bottom",
                self.axis, self.num_axes
            )));
        }
        let mut top: Vec<usize> = b[..start].to_vec();
        let mut inferred = None;
        for (i, &d) in self.dims.iter().enumerate() {
            top.push(match d {
                0 => *b.get(start + i).ok_or_else(|| {
                    LayerError::Shape(format!(
                        "new shape {:?} has a 0 at position {i} but the bottom {b:?} has no axis {} to copy",
                        self.dims,
                        start + i
                    ))
                })?,
                -1 => {
                    inferred = Some(start + i);
                    1
                }
                d => d as usize,
            });
        }
        top.extend_from_slice(&b[end..]);
        let total: usize = b.iter().product();
        if let Some(axis) = inferred {
            let explicit: usize = top.iter().product();
            if explicit == 0 || !total.is_multiple_of(explicit) {
                return Err(LayerError::Shape(format!(
                    "bottom count {total} of {b:?} is not divisible by the product {explicit} of the given dimensions"
                )));
            }
            top[axis] = total / explicit;
        }
        if top.iter().product::<usize>() != total {
            return Err(LayerError::Shape(format!(
                "output count {} of {top:?} must match the input count {total} of {b:?}",
                top.iter().product::<usize>()
            )));
        }
        Ok(vec![top])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        tops[0].data_mut().copy_from_slice(bottoms[0].data());
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[0] {
            ctx.bottom_diffs[0].data_mut().copy_from_slice(ctx.top_diffs[0].data());
        }
        Ok(())
    }
}

/// `Silence`: consumes its bottoms and produces nothing (keeps them from being net outputs).
pub(crate) struct Silence;

impl Layer for Silence {
    fn type_name(&self) -> &'static str {
        "Silence"
    }
    fn reshape(&mut self, _: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        Ok(vec![])
    }
    fn forward(&mut self, _: &[&Tensor], _: &mut [Tensor]) -> LayerResult<()> {
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        for (diff, &down) in ctx.bottom_diffs.iter_mut().zip(ctx.propagate_down) {
            if down {
                diff.data_mut().fill(0.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{param, run};
    use caffe_proto::{BlobShape, ConcatParameter, ReshapeParameter, SliceParameter};

    fn ramp(shape: &[usize]) -> Tensor {
        Tensor::new(shape, (0..shape.iter().product::<usize>()).map(|v| v as f32).collect())
    }

    #[test]
    fn concat_along_channels_and_legacy_dim() {
        let a = ramp(&[2, 1, 2]);
        let b = Tensor::new(&[2, 2, 2], vec![10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0]);
        let out = run(&mut Concat::new(&param("Concat", |_| {})), &[a.clone(), b.clone()]).unwrap();
        assert_eq!(out[0].shape(), &[2, 3, 2]);
        assert_eq!(
            out[0].data(),
            &[0.0, 1.0, 10.0, 11.0, 12.0, 13.0, 2.0, 3.0, 14.0, 15.0, 16.0, 17.0]
        );
        let along0 = param("Concat", |l| {
            l.concat_param = Some(ConcatParameter {
                concat_dim: Some(0),
                ..Default::default()
            })
        });
        let out = run(&mut Concat::new(&along0), &[a.clone(), a.clone()]).unwrap();
        assert_eq!(out[0].shape(), &[4, 1, 2]);
        assert!(Concat::new(&param("Concat", |_| {}))
            .reshape(&[&[2, 1, 2], &[3, 1, 2]])
            .is_err());
    }

    #[test]
    fn slice_at_points_and_evenly() {
        let x = ramp(&[1, 5, 1]);
        let mut at = Slice::new(&param("Slice", |l| {
            l.top = vec!["a".into(), "b".into(), "c".into()];
            l.slice_param = Some(SliceParameter {
                slice_point: vec![1, 3],
                ..Default::default()
            });
        }));
        let out = run(&mut at, std::slice::from_ref(&x)).unwrap();
        assert_eq!(
            out.iter().map(|t| t.data().to_vec()).collect::<Vec<_>>(),
            vec![vec![0.0], vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        let mut even = Slice::new(&param("Slice", |l| l.top = vec!["a".into(), "b".into()]));
        assert!(even.reshape(&[&[1, 5]]).is_err(), "5 does not split in 2");
        let out = run(&mut even, &[ramp(&[2, 4])]).unwrap();
        assert_eq!(out[0].data(), &[0.0, 1.0, 4.0, 5.0]);
        assert_eq!(out[1].data(), &[2.0, 3.0, 6.0, 7.0]);
    }

    #[test]
    fn flatten_and_reshape_rules() {
        let mut flat = Flatten::new(&param("Flatten", |_| {}));
        assert_eq!(flat.reshape(&[&[2, 3, 4, 5]]).unwrap()[0], vec![2, 60]);
        let reshape = |dims: Vec<i64>, axis: i32, num_axes: i32| {
            Reshape::new(&param("Reshape", |l| {
                l.reshape_param = Some(ReshapeParameter {
                    shape: Some(BlobShape { dim: dims }),
                    axis: Some(axis),
                    num_axes: Some(num_axes),
                })
            }))
        };
        // 0 copies, -1 infers.
        assert_eq!(
            reshape(vec![0, -1], 0, -1).unwrap().reshape(&[&[2, 3, 4]]).unwrap()[0],
            vec![2, 12]
        );
        // Replace only axis 1 (num_axes 1) by 3x1.
        assert_eq!(
            reshape(vec![3, 1], 1, 1).unwrap().reshape(&[&[2, 3, 4]]).unwrap()[0],
            vec![2, 3, 1, 4]
        );
        // axis -1 appends after the last axis.
        assert_eq!(
            reshape(vec![1], -1, 0).unwrap().reshape(&[&[2, 3]]).unwrap()[0],
            vec![2, 3, 1]
        );
        assert!(reshape(vec![-1, -1], 0, -1).is_err());
        assert!(reshape(vec![5, -1], 0, -1).unwrap().reshape(&[&[2, 3]]).is_err());
        assert!(reshape(vec![7], 0, -1).unwrap().reshape(&[&[2, 3]]).is_err());
    }
}
