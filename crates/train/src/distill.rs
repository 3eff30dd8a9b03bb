//! Knowledge distillation (Hinton, Vinyals and Dean, 2015): a teacher net, usually the dense model before
//! pruning, runs on the same batch as the train net, and a second loss pulls the student's softened class
//! probabilities towards the teacher's. Soft targets carry far more than a batch of hard labels, which is what
//! lets a pruned net recover on a small training set.

use crate::Error;
use engine::Net;

/// How to distil.
#[derive(Clone, Debug, PartialEq)]
pub struct Distillation {
    /// The logits blob (the input of the softmax), in both nets, e.g. `ip2`.
    pub blob: String,
    /// Softening temperature T (> 0): probabilities are `softmax(z / T)`.
    pub temperature: f32,
    /// Weight of the soft loss beside the net's own loss (the hard labels).
    pub weight: f32,
}

/// The teacher net and the soft loss's gradient buffer.
pub(crate) struct Teacher {
    pub(crate) net: Net,
    pub(crate) spec: Distillation,
    pub(crate) gradient: Vec<f32>,
}

/// `softmax(z / t)` of one row, into `out`.
fn soft(z: impl Iterator<Item = f32> + Clone, t: f32, out: &mut Vec<f32>) {
    out.clear();
    let max = z.clone().fold(f32::NEG_INFINITY, f32::max);
    out.extend(z.map(|v| engine::math::exp((v - max) / t)));
    let sum: f32 = out.iter().sum();
    out.iter_mut().for_each(|p| *p /= sum);
}

impl Teacher {
    /// Runs the teacher on the student's current inputs and computes the soft loss of the student's logits
    /// (after the student's forward pass): `weight * T^2 * KL(p_teacher || p_student) / N`, averaged over the
    /// batch like SoftmaxWithLoss. Its gradient with respect to the student's logits, `weight * T * (p_student -
    /// p_teacher) / N`, is left in `self.gradient`.
    pub(crate) fn soft_loss(&mut self, student: &Net) -> Result<f32, Error> {
        let inputs: Vec<String> = self.net.inputs().iter().map(|i| i.blob.clone()).collect();
        for name in &inputs {
            let blob = student
                .blob(name)
                .ok_or_else(|| Error::NetSpec(format!("distillation: the train net has no input '{name}'")))?;
            self.net
                .set_input(name, blob.shape(), blob.data())
                .map_err(|e| Error::engine("teacher", e))?;
        }
        self.net.forward().map_err(|e| Error::engine("teacher", e))?;
        let missing =
            |net: &str| Error::NetSpec(format!("distillation: the {net} net has no blob '{}'", self.spec.blob));
        let student_logits = student.blob(&self.spec.blob).ok_or_else(|| missing("train"))?;
        let teacher_logits = self.net.blob(&self.spec.blob).ok_or_else(|| missing("teacher"))?;
        let shape = student_logits.shape();
        if shape != teacher_logits.shape() || shape.len() < 2 {
            return Err(Error::NetSpec(format!(
                "distillation: blob '{}' has shape {shape:?} in the train net and {:?} in the teacher (want N x C ...)",
                self.spec.blob,
                teacher_logits.shape()
            )));
        }
        Ok(soft_loss(
            student_logits.data(),
            teacher_logits.data(),
            shape,
            &self.spec,
            &mut self.gradient,
        ))
    }
}

/// The soft loss of `student` logits against `teacher` logits of `shape` (N x C x ...; softmax over axis 1, as
/// SoftmaxWithLoss), and its gradient with respect to the student's logits, written into `gradient`.
pub(crate) fn soft_loss(
    student: &[f32],
    teacher: &[f32],
    shape: &[usize],
    spec: &Distillation,
    gradient: &mut Vec<f32>,
) -> f32 {
    let (outer, classes) = (shape[0], shape[1]);
    let inner: usize = shape[2..].iter().product();
    let temperature = spec.temperature;
    let scale = spec.weight / (outer * inner) as f32;
    gradient.clear();
    gradient.resize(student.len(), 0.0);
    let (mut ps, mut pt) = (Vec::new(), Vec::new());
    let mut loss = 0.0f64;
    for n in 0..outer {
        for k in 0..inner {
            let at = |c: usize| n * classes * inner + c * inner + k;
            soft((0..classes).map(|c| student[at(c)]), temperature, &mut ps);
            soft((0..classes).map(|c| teacher[at(c)]), temperature, &mut pt);
            for c in 0..classes {
                if pt[c] > 0.0 {
                    let log_ratio = engine::math::ln(pt[c]) - engine::math::ln(ps[c].max(f32::MIN_POSITIVE));
                    loss += f64::from(pt[c] * log_ratio);
                }
                gradient[at(c)] = scale * temperature * (ps[c] - pt[c]);
            }
        }
    }
    (loss * f64::from(scale * temperature * temperature)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_is_the_derivative_of_the_loss() {
        let shape = [3, 4, 2];
        let student: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.4).collect();
        let teacher: Vec<f32> = (0..24).map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.5).collect();
        let spec = Distillation {
            blob: "z".into(),
            temperature: 3.0,
            weight: 2.0,
        };
        let mut gradient = Vec::new();
        let loss = soft_loss(&student, &teacher, &shape, &spec, &mut gradient);
        assert!(loss > 0.0);
        let mut scratch = Vec::new();
        for i in 0..student.len() {
            let mut at = |d: f32| {
                let mut s = student.clone();
                s[i] += d;
                f64::from(soft_loss(&s, &teacher, &shape, &spec, &mut scratch))
            };
            let numeric = (at(1e-2) - at(-1e-2)) / 2e-2;
            assert!(
                (numeric - f64::from(gradient[i])).abs() < 1e-3,
                "{i}: {numeric} vs {}",
                gradient[i]
            );
        }
        // A student equal to its teacher has nothing to learn.
        assert!(soft_loss(&teacher, &teacher, &shape, &spec, &mut scratch).abs() < 1e-6);
        assert!(scratch.iter().all(|g| g.abs() < 1e-7));
    }
}
