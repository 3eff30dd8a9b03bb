//! Accuracy and EuclideanLoss.

use caffe_proto::LayerParameter;

use super::softmax::class_of;
use super::{canonical_axis, count, expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::Tensor;

/// `Accuracy`: the fraction of non-ignored positions whose label is among the `top_k` highest scores, counting a
/// score equal to the true class's as better (Caffe 1.0's rule, so ties count against). The optional second top is
/// the accuracy per class.
pub(crate) struct Accuracy {
    top_k: usize,
    axis: i32,
    ignore_label: Option<i32>,
    /// 2 when the per-class top is asked for.
    tops: usize,
    dims: (usize, usize, usize),
}

impl Accuracy {
    pub(crate) fn new(param: &LayerParameter, tops: usize) -> LayerResult<Self> {
        let p = param.accuracy_param.unwrap_or_default();
        if p.top_k() == 0 {
            return Err(LayerError::Param("top_k must be positive".into()));
        }
        Ok(Accuracy {
            top_k: p.top_k() as usize,
            axis: p.axis(),
            ignore_label: p.ignore_label,
            tops,
            dims: (0, 0, 0),
        })
    }
}

impl Layer for Accuracy {
    fn type_name(&self) -> &'static str {
        "Accuracy"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2)?;
        let axis = canonical_axis(self.axis, bottoms[0].len(), "axis")?;
        let (outer, classes, inner) = (
            count(bottoms[0], 0, axis),
            bottoms[0][axis],
            count(bottoms[0], axis + 1, bottoms[0].len()),
        );
        let labels: usize = bottoms[1].iter().product();
        if outer * inner != labels {
            return Err(LayerError::Shape(format!(
                "number of labels must match number of predictions: scores {:?} with axis {axis} need {} labels, \
                 the label blob {:?} holds {labels}",
                bottoms[0],
                outer * inner,
                bottoms[1]
            )));
        }
        if self.top_k > classes {
            return Err(LayerError::Param(format!(
                "top_k {} is larger than the number of classes {classes}",
                self.top_k
            )));
        }
        self.dims = (outer, classes, inner);
        Ok([vec![], vec![classes]].into_iter().take(self.tops).collect())
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (outer, classes, inner) = self.dims;
        let scores = bottoms[0].data();
        let labels = bottoms[1].data();
        let mut correct = 0usize;
        let mut counted = 0usize;
        let mut per_class_correct = vec![0usize; classes];
        let mut per_class_count = vec![0usize; classes];
        for i in 0..outer {
            for j in 0..inner {
                let label = labels[i * inner + j];
                if self.ignore_label.is_some_and(|ignore| label as i32 == ignore) {
                    continue;
                }
                let class = class_of(label, classes, i * inner + j)?;
                per_class_count[class] += 1;
                let score = |c: usize| scores[(i * classes + c) * inner + j];
                let truth = score(class);
                // The true class itself counts once, hence the start at -1 as in Caffe.
                let better = (0..classes).filter(|&c| score(c) >= truth).count() as isize - 1;
                if (better as usize) < self.top_k {
                    correct += 1;
                    per_class_correct[class] += 1;
                }
                counted += 1;
            }
        }
        tops[0].data_mut()[0] = if counted == 0 {
            0.0
        } else {
            correct as f32 / counted as f32
        };
        if let Some(top) = tops.get_mut(1) {
            for ((out, &right), &seen) in top.data_mut().iter_mut().zip(&per_class_correct).zip(&per_class_count) {
                *out = if seen == 0 { 0.0 } else { right as f32 / seen as f32 };
            }
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down.iter().any(|&d| d) {
            return Err(LayerError::Unsupported("Accuracy has no gradient".into()));
        }
        Ok(())
    }
}

/// `EuclideanLoss`: `sum((a - b)^2) / (2 N)` with `N` the first dimension.
pub(crate) struct EuclideanLoss;

impl Layer for EuclideanLoss {
    fn type_name(&self) -> &'static str {
        "EuclideanLoss"
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2)?;
        let (a, b) = (bottoms[0], bottoms[1]);
        let inner = |s: &[usize]| s.iter().skip(1).product::<usize>();
        if a.is_empty() || b.is_empty() || inner(a) != inner(b) {
            return Err(LayerError::Shape(format!(
                "the two inputs must have the same dimension per item: {a:?} vs {b:?}"
            )));
        }
        if a[0] != b[0] {
            return Err(LayerError::Shape(format!(
                "the two inputs must have the same first dimension: {a:?} vs {b:?}"
            )));
        }
        Ok(vec![vec![]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let num = bottoms[0].shape()[0].max(1) as f32;
        let dot: f32 = bottoms[0]
            .data()
            .iter()
            .zip(bottoms[1].data())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        tops[0].data_mut()[0] = dot / num / 2.0;
        Ok(())
    }
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        true
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        // d/da = (a - b) * loss_weight / N, d/db the negative.
        let num = ctx.bottoms[0].shape()[0].max(1) as f32;
        let weight = ctx.top_diffs[0].data()[0] / num;
        let (a, b) = (ctx.bottoms[0].data(), ctx.bottoms[1].data());
        for (i, sign) in [(0usize, 1.0f32), (1, -1.0)] {
            if ctx.propagate_down[i] {
                let alpha = sign * weight;
                for ((d, x), y) in ctx.bottom_diffs[i].data_mut().iter_mut().zip(a).zip(b) {
                    *d = alpha * (x - y);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::AccuracyParameter;

    fn accuracy(edit: impl FnOnce(&mut AccuracyParameter)) -> Accuracy {
        Accuracy::new(
            &param("Accuracy", |p| {
                let mut ap = AccuracyParameter::default();
                edit(&mut ap);
                p.accuracy_param = Some(ap);
            }),
            2,
        )
        .unwrap()
    }

    #[test]
    fn top1_top2_ties_and_ignored_labels() {
        // Rows: [0.1, 0.7, 0.2] label 1 (top-1 right); [0.5, 0.3, 0.2] label 1 (second best);
        // [0.4, 0.4, 0.2] label 1 (tied with class 0: counts as beaten); [0.3, 0.3, 0.4] label 5 (ignored).
        let scores = Tensor::new(
            &[4, 3],
            vec![0.1, 0.7, 0.2, 0.5, 0.3, 0.2, 0.4, 0.4, 0.2, 0.3, 0.3, 0.4],
        );
        let labels = Tensor::new(&[4], vec![1.0, 1.0, 1.0, 5.0]);
        let mut top1 = accuracy(|p| p.ignore_label = Some(5));
        let out = run(&mut top1, &[scores.clone(), labels.clone()]).unwrap();
        assert_close(out[0].data(), &[1.0 / 3.0], 1e-7);
        assert_eq!(out[1].shape(), &[3]);
        assert_close(out[1].data(), &[0.0, 1.0 / 3.0, 0.0], 1e-7);
        let mut top2 = accuracy(|p| {
            p.ignore_label = Some(5);
            p.top_k = Some(2);
        });
        let out = run(&mut top2, &[scores.clone(), labels.clone()]).unwrap();
        assert_close(out[0].data(), &[1.0], 0.0);
        let mut strict = accuracy(|_| {});
        assert!(matches!(run(&mut strict, &[scores, labels]), Err(LayerError::Data(_))));
    }

    #[test]
    fn euclidean_loss_by_hand() {
        // Items (1,2) vs (1,0) and (0,0) vs (3,4): squared distances 4 and 25, over 2 N = 4.
        let a = Tensor::new(&[2, 2], vec![1.0, 2.0, 0.0, 0.0]);
        let b = Tensor::new(&[2, 2], vec![1.0, 0.0, 3.0, 4.0]);
        let out = run(&mut EuclideanLoss, &[a, b]).unwrap();
        assert_close(out[0].data(), &[29.0 / 4.0], 0.0);
        assert!(EuclideanLoss.reshape(&[&[2, 2], &[2, 3]]).is_err());
    }
}
