//! The solver types and their per-parameter update rules, ported operation for operation from BVLC Caffe's
//! `src/caffe/solvers/*.cpp` (CPU paths) so the rounding happens where Caffe's does.
//!
//! Caffe's BLAS helpers become plain loops: `caffe_cpu_axpby(a, x, b, y)` is Caffe's two-step fallback
//! (`y = b * y`, then `y += a * x`), `caffe_powx(x, 2)` is `x * x`, `caffe_powx(x, 0.5)` is `sqrt(x)`, and the update
//! value is left in the gradient (`diff`) as Caffe leaves it before `Net::Update` subtracts it from the data.

use caffe_proto::SolverParameter;
use engine::math::pow_f64;

use crate::Error;

/// Caffe's solver types (`type: "SGD"` etc., or the legacy `solver_type` enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverKind {
    /// Stochastic gradient descent with momentum.
    Sgd,
    /// Nesterov's accelerated gradient.
    Nesterov,
    /// AdaGrad.
    AdaGrad,
    /// RMSProp (`rms_decay`).
    RmsProp,
    /// AdaDelta (`momentum` as the decay, `delta`).
    AdaDelta,
    /// Adam (`momentum`, `momentum2`, `delta`; Caffe's bias correction in the rate).
    Adam,
}

impl SolverKind {
    /// The kind `param` asks for: the legacy `solver_type` enum when set (as Caffe's UpgradeSolverType maps it),
    /// otherwise the `type` string (default "SGD"). Setting both is an error, as in Caffe.
    pub fn from_param(param: &SolverParameter) -> Result<Self, Error> {
        const LEGACY: [SolverKind; 6] = [
            SolverKind::Sgd,
            SolverKind::Nesterov,
            SolverKind::AdaGrad,
            SolverKind::RmsProp,
            SolverKind::AdaDelta,
            SolverKind::Adam,
        ];
        if let Some(value) = param.solver_type {
            let kind = usize::try_from(value)
                .ok()
                .and_then(|i| LEGACY.get(i).copied())
                .ok_or(Error::BadSolverTypeEnum(value))?;
            if let Some(given) = &param.r#type {
                return Err(Error::BothSolverTypes {
                    legacy: kind.caffe_name(),
                    given: given.clone(),
                });
            }
            return Ok(kind);
        }
        Self::from_name(param.r#type())
    }

    /// The kind registered under `name` in Caffe's solver registry (case-sensitive).
    pub fn from_name(name: &str) -> Result<Self, Error> {
        Ok(match name {
            "SGD" => SolverKind::Sgd,
            "Nesterov" => SolverKind::Nesterov,
            "AdaGrad" => SolverKind::AdaGrad,
            "RMSProp" => SolverKind::RmsProp,
            "AdaDelta" => SolverKind::AdaDelta,
            "Adam" => SolverKind::Adam,
            other => return Err(Error::UnknownSolverType(other.to_string())),
        })
    }

    /// Caffe's registered name.
    pub fn caffe_name(self) -> &'static str {
        match self {
            SolverKind::Sgd => "SGD",
            SolverKind::Nesterov => "Nesterov",
            SolverKind::AdaGrad => "AdaGrad",
            SolverKind::RmsProp => "RMSProp",
            SolverKind::AdaDelta => "AdaDelta",
            SolverKind::Adam => "Adam",
        }
    }

    /// History blobs per learnable parameter: 2 for AdaDelta and Adam (Caffe appends the second set after the
    /// first, so a solver state holds `2 x params` blobs), 1 otherwise.
    pub fn history_sets(self) -> usize {
        match self {
            SolverKind::AdaDelta | SolverKind::Adam => 2,
            _ => 1,
        }
    }
}

/// The hyper-parameters the update rules read, as `float`s (Caffe's `Dtype`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hyper {
    pub momentum: f32,
    pub momentum2: f32,
    pub delta: f32,
    pub rms_decay: f32,
}

impl Hyper {
    /// Reads and checks the fields (Caffe's solver constructors CHECK momentum == 0 for AdaGrad and RMSProp and
    /// 0 <= rms_decay < 1).
    pub fn from_param(param: &SolverParameter, kind: SolverKind) -> Result<Self, Error> {
        let hyper = Hyper {
            momentum: param.momentum(),
            momentum2: param.momentum2(),
            delta: param.delta(),
            rms_decay: param.rms_decay(),
        };
        match kind {
            SolverKind::AdaGrad if hyper.momentum != 0.0 => Err(Error::bad(
                "momentum",
                format!("{} given, but momentum cannot be used with AdaGrad", hyper.momentum),
            )),
            SolverKind::RmsProp if hyper.momentum != 0.0 => Err(Error::bad(
                "momentum",
                format!("{} given, but momentum cannot be used with RMSProp", hyper.momentum),
            )),
            SolverKind::RmsProp if !(0.0..1.0).contains(&hyper.rms_decay) => Err(Error::bad(
                "rms_decay",
                format!("{} must be in [0, 1)", hyper.rms_decay),
            )),
            _ => Ok(hyper),
        }
    }
}

/// `y = b * y; y += a * x` (Caffe's `caffe_cpu_axpby` fallback).
fn axpby(a: f32, x: &[f32], b: f32, y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        let scaled = b * *y;
        *y = scaled + a * x;
    }
}

/// Caffe's `ComputeUpdateValue(param_id, rate)` for one parameter: `diff` holds the (normalized, regularized)
/// gradient on entry and the value `Net::Update` subtracts on exit; `history` is the first history blob, `history2`
/// the second (AdaDelta, Adam); `scratch` is a buffer of the same length (Caffe's `update_` / `temp_`). `iter` is
/// the solver's iteration (Adam's `t = iter + 1`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn compute_update(
    kind: SolverKind,
    hyper: &Hyper,
    local_rate: f32,
    iter: i32,
    diff: &mut [f32],
    history: &mut [f32],
    history2: &mut [f32],
    scratch: &mut [f32],
) {
    let n = diff.len();
    debug_assert!(history.len() == n && scratch.len() == n);
    match kind {
        SolverKind::Sgd => {
            // caffe_cpu_axpby(local_rate, diff, momentum, history); caffe_copy(history, diff)
            axpby(local_rate, diff, hyper.momentum, history);
            diff.copy_from_slice(history);
        }
        SolverKind::Nesterov => {
            let m = hyper.momentum;
            scratch.copy_from_slice(history);
            axpby(local_rate, diff, m, history);
            axpby(1.0 + m, history, -m, scratch);
            diff.copy_from_slice(scratch);
        }
        SolverKind::AdaGrad => {
            for (d, h) in diff.iter_mut().zip(history.iter_mut()) {
                let square = *d * *d;
                *h += square; // caffe_add(update, history): square + h, commutative
                let mut update = h.sqrt();
                update += hyper.delta;
                update = *d / update;
                // caffe_cpu_axpby(local_rate, update, 0, diff): diff zeroed, then += local_rate * update.
                *d = 0.0 + local_rate * update;
            }
        }
        SolverKind::RmsProp => {
            let decay = hyper.rms_decay;
            let keep = 1.0 - decay;
            for (d, h) in diff.iter_mut().zip(history.iter_mut()) {
                let square = *d * *d;
                *h = decay * *h + keep * square;
                let mut update = h.sqrt();
                update += hyper.delta;
                update = *d / update;
                *d = 0.0 + local_rate * update;
            }
        }
        SolverKind::AdaDelta => {
            let m = hyper.momentum;
            let keep = 1.0 - m;
            let delta = hyper.delta;
            debug_assert_eq!(history2.len(), n);
            for ((d, h), h2) in diff.iter_mut().zip(history.iter_mut()).zip(history2.iter_mut()) {
                let square = *d * *d;
                *h = m * *h + keep * square;
                let numerator = delta + *h2;
                let denominator = delta + *h;
                let ratio = (numerator / denominator).sqrt();
                *d *= ratio;
                let update_square = *d * *d;
                *h2 = m * *h2 + keep * update_square;
                *d *= local_rate;
            }
        }
        SolverKind::Adam => {
            let (beta1, beta2) = (hyper.momentum, hyper.momentum2);
            let t = f64::from(iter + 1);
            // `const Dtype correction = std::sqrt(Dtype(1) - pow(beta2, t)) / (Dtype(1.) - pow(beta1, t));`
            // pow(float, int) is computed in double, so is the rest of the expression; one rounding to float.
            let correction =
                ((1.0 - pow_f64(f64::from(beta2), t)).sqrt() / (1.0 - pow_f64(f64::from(beta1), t))) as f32;
            let step = local_rate * correction;
            let (keep1, keep2) = (1.0 - beta1, 1.0 - beta2);
            debug_assert_eq!(history2.len(), n);
            for ((d, m), v) in diff.iter_mut().zip(history.iter_mut()).zip(history2.iter_mut()) {
                *m = beta1 * *m + keep1 * *d;
                let square = *d * *d;
                *v = beta2 * *v + keep2 * square;
                let mut update = v.sqrt();
                update += hyper.delta;
                update = *m / update;
                *d = step * update;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper() -> Hyper {
        Hyper {
            momentum: 0.9,
            momentum2: 0.999,
            delta: 1e-8,
            rms_decay: 0.98,
        }
    }

    fn run(kind: SolverKind, hyper: &Hyper, rate: f32, grads: &[[f32; 2]]) -> (Vec<[f32; 2]>, Vec<f32>, Vec<f32>) {
        let mut h = vec![0.0; 2];
        let mut h2 = vec![0.0; 2];
        let mut s = vec![0.0; 2];
        let mut updates = Vec::new();
        for (iter, g) in grads.iter().enumerate() {
            let mut d = g.to_vec();
            compute_update(kind, hyper, rate, iter as i32, &mut d, &mut h, &mut h2, &mut s);
            updates.push([d[0], d[1]]);
        }
        (updates, h, h2)
    }

    #[test]
    fn sgd_momentum() {
        let (u, h, _) = run(SolverKind::Sgd, &hyper(), 0.1, &[[1.0, -2.0], [0.5, 0.5]]);
        assert_eq!(u[0], [0.1, -0.2]);
        // v2 = 0.9 * v1 + 0.1 * g2
        assert_eq!(u[1], [0.9f32 * 0.1 + 0.1 * 0.5, 0.9f32 * -0.2 + 0.1 * 0.5]);
        assert_eq!(h, u[1].to_vec());
    }

    #[test]
    fn nesterov_steps_back_then_over() {
        let (u, h, _) = run(SolverKind::Nesterov, &hyper(), 0.1, &[[1.0, -2.0], [0.5, 0.5]]);
        // h1 = 0.1 g1; update = 1.9 h1 - 0.9 * 0
        assert_eq!(u[0], [1.9f32 * 0.1, 1.9f32 * -0.2]);
        let h2 = [0.9f32 * 0.1 + 0.05, 0.9f32 * -0.2 + 0.05];
        assert_eq!(h, h2.to_vec());
        assert_eq!(u[1], [-0.9f32 * 0.1 + 1.9 * h2[0], -0.9f32 * -0.2 + 1.9 * h2[1]]);
    }

    #[test]
    fn adagrad_accumulates_squares() {
        let mut hy = hyper();
        hy.delta = 0.5;
        let (u, h, _) = run(SolverKind::AdaGrad, &hy, 0.1, &[[2.0, -1.0], [1.0, 3.0]]);
        assert_eq!(u[0], [0.1 * (2.0 / (2.0 + 0.5)), 0.1 * (-1.0 / (1.0 + 0.5))]);
        assert_eq!(h, vec![5.0, 10.0]);
        assert_eq!(
            u[1],
            [
                0.1 * (1.0 / (5.0f32.sqrt() + 0.5)),
                0.1 * (3.0 / (10.0f32.sqrt() + 0.5))
            ]
        );
    }

    #[test]
    fn rmsprop_decays_squares() {
        let mut hy = hyper();
        hy.delta = 0.5;
        let (u, h, _) = run(SolverKind::RmsProp, &hy, 0.1, &[[2.0, -1.0], [1.0, 3.0]]);
        let keep = 1.0f32 - 0.98;
        let h1 = [keep * 4.0, keep * 1.0];
        assert_eq!(
            u[0],
            [0.1 * (2.0 / (h1[0].sqrt() + 0.5)), 0.1 * (-1.0 / (h1[1].sqrt() + 0.5))]
        );
        let h2 = [0.98 * h1[0] + keep * 1.0, 0.98 * h1[1] + keep * 9.0];
        assert_eq!(h, h2.to_vec());
        assert_eq!(u[1][1], 0.1 * (3.0 / (h2[1].sqrt() + 0.5)));
    }

    #[test]
    fn adadelta_two_histories() {
        let mut hy = hyper();
        hy.momentum = 0.95;
        hy.delta = 1e-6;
        let (u, h, h2) = run(SolverKind::AdaDelta, &hy, 1.0, &[[2.0, -1.0]]);
        let keep = 1.0f32 - 0.95;
        let g2 = keep * 4.0;
        let step = 2.0 * ((1e-6f32 + 0.0) / (1e-6f32 + g2)).sqrt();
        assert_eq!(h[0], g2);
        assert_eq!(u[0][0], step);
        assert_eq!(h2[0], keep * (step * step));
    }

    #[test]
    fn adam_bias_correction() {
        let (u, m, v) = run(SolverKind::Adam, &hyper(), 0.001, &[[2.0, -1.0], [1.0, 1.0]]);
        // t = 1: m = 0.1 g, v = 0.001 g^2, correction = sqrt(0.001) / 0.1
        let c1 = ((1.0 - 0.999f32 as f64).sqrt() / (1.0 - 0.9f32 as f64)) as f32;
        let m1 = (1.0f32 - 0.9) * 2.0;
        let v1 = (1.0f32 - 0.999) * 4.0;
        assert_eq!(u[0][0], 0.001 * c1 * (m1 / (v1.sqrt() + 1e-8)));
        // Step one is ~lr * sign(g) for Adam.
        assert!((u[0][0] - 0.001).abs() < 1e-6 && (u[0][1] + 0.001).abs() < 1e-6);
        let m2 = 0.9 * m1 + (1.0f32 - 0.9) * 1.0;
        assert_eq!(m[0], m2);
        assert_eq!(v[0], 0.999 * v1 + (1.0 - 0.999) * 1.0);
    }

    #[test]
    fn kinds_from_type_and_legacy_enum() {
        let mut p = SolverParameter::default();
        assert_eq!(SolverKind::from_param(&p).unwrap(), SolverKind::Sgd);
        p.r#type = Some("Adam".into());
        assert_eq!(SolverKind::from_param(&p).unwrap(), SolverKind::Adam);
        p.r#type = Some("adam".into());
        assert_eq!(
            SolverKind::from_param(&p).unwrap_err().to_string(),
            "unknown solver type 'adam' (known: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)"
        );
        p.r#type = None;
        p.solver_type = Some(4);
        assert_eq!(SolverKind::from_param(&p).unwrap(), SolverKind::AdaDelta);
        p.r#type = Some("SGD".into());
        assert!(SolverKind::from_param(&p).unwrap_err().to_string().contains("both set"));
        p.r#type = None;
        p.solver_type = Some(9);
        assert!(SolverKind::from_param(&p).is_err());
        let rms = SolverParameter {
            momentum: Some(0.9),
            ..Default::default()
        };
        assert!(Hyper::from_param(&rms, SolverKind::RmsProp)
            .unwrap_err()
            .to_string()
            .contains("momentum cannot be used with RMSProp"));
    }
}
