//! Caffe's learning-rate policies (`SGDSolver::GetLearningRate`).
//!
//! Precision follows Caffe's C++: the solver fields are `float`, `iter` is an `int`; sums and products of them are
//! formed in `float` where C++ forms them in `float` (`Dtype(1) + gamma * iter`, `Dtype(iter) / Dtype(max_iter)`),
//! `pow` and `exp` are evaluated in `double` (the overload an unqualified call on `float`/`int` arguments resolves to
//! in Caffe's translation unit), the product with `base_lr` is a `double`, and the result is rounded once to `float`
//! (`Dtype rate`).

use caffe_proto::SolverParameter;
use engine::math::{exp_f64, pow_f64};

use crate::Error;

/// A learning-rate policy with its parameters, validated as Caffe CHECKs them.
#[derive(Clone, Debug, PartialEq)]
pub enum LrPolicy {
    /// `base_lr`.
    Fixed {
        /// base_lr.
        base_lr: f32,
    },
    /// `base_lr * gamma ^ floor(iter / stepsize)`; sets `current_step` to `iter / stepsize`.
    Step {
        /// base_lr.
        base_lr: f32,
        /// gamma (>= 0).
        gamma: f32,
        /// stepsize (> 0).
        stepsize: i32,
    },
    /// `base_lr * gamma ^ iter`.
    Exp {
        /// base_lr.
        base_lr: f32,
        /// gamma (>= 0).
        gamma: f32,
    },
    /// `base_lr * (1 + gamma * iter) ^ -power`.
    Inv {
        /// base_lr.
        base_lr: f32,
        /// gamma (>= 0).
        gamma: f32,
        /// power.
        power: f32,
    },
    /// `base_lr * gamma ^ current_step`, `current_step` advancing by one when `iter` reaches the next step value.
    Multistep {
        /// base_lr.
        base_lr: f32,
        /// gamma (>= 0).
        gamma: f32,
        /// stepvalue list.
        stepvalues: Vec<i32>,
    },
    /// `base_lr * (1 - iter / max_iter) ^ power`.
    Poly {
        /// base_lr.
        base_lr: f32,
        /// power.
        power: f32,
        /// max_iter.
        max_iter: i32,
    },
    /// `base_lr / (1 + exp(-gamma * (iter - stepsize)))`.
    Sigmoid {
        /// base_lr.
        base_lr: f32,
        /// gamma (>= 0).
        gamma: f32,
        /// stepsize (> 0).
        stepsize: i32,
    },
}

impl LrPolicy {
    /// The policy `param.lr_policy` names, with its parameters checked (gamma >= 0, stepsize > 0 where Caffe
    /// CHECKs them). An unset `lr_policy` is an error, as in Caffe.
    pub fn from_param(param: &SolverParameter) -> Result<Self, Error> {
        let base_lr = param.base_lr();
        let gamma = || {
            let gamma = param.gamma();
            if gamma >= 0.0 {
                Ok(gamma)
            } else {
                Err(Error::bad("gamma", format!("{gamma} must be >= 0")))
            }
        };
        let stepsize = || {
            let stepsize = param.stepsize();
            if stepsize > 0 {
                Ok(stepsize)
            } else {
                Err(Error::bad(
                    "stepsize",
                    format!("{stepsize} must be > 0 for this lr_policy"),
                ))
            }
        };
        Ok(match param.lr_policy() {
            "fixed" => LrPolicy::Fixed { base_lr },
            "step" => LrPolicy::Step {
                base_lr,
                gamma: gamma()?,
                stepsize: stepsize()?,
            },
            "exp" => LrPolicy::Exp {
                base_lr,
                gamma: gamma()?,
            },
            "inv" => LrPolicy::Inv {
                base_lr,
                gamma: gamma()?,
                power: param.power(),
            },
            "multistep" => LrPolicy::Multistep {
                base_lr,
                gamma: gamma()?,
                stepvalues: param.stepvalue.clone(),
            },
            "poly" => LrPolicy::Poly {
                base_lr,
                power: param.power(),
                max_iter: param.max_iter(),
            },
            "sigmoid" => LrPolicy::Sigmoid {
                base_lr,
                gamma: gamma()?,
                stepsize: stepsize()?,
            },
            other => return Err(Error::UnknownLrPolicy(other.to_string())),
        })
    }

    /// The rate at iteration `iter` (Caffe's `GetLearningRate`), updating `current_step` as Caffe does (`step`
    /// sets it, `multistep` advances it by at most one per call).
    pub fn rate(&self, iter: i32, current_step: &mut i32) -> f32 {
        let scaled = |base_lr: f32, factor: f64| (f64::from(base_lr) * factor) as f32;
        match *self {
            LrPolicy::Fixed { base_lr } => base_lr,
            LrPolicy::Step {
                base_lr,
                gamma,
                stepsize,
            } => {
                *current_step = iter / stepsize;
                scaled(base_lr, pow_f64(f64::from(gamma), f64::from(*current_step)))
            }
            LrPolicy::Exp { base_lr, gamma } => scaled(base_lr, pow_f64(f64::from(gamma), f64::from(iter))),
            LrPolicy::Inv { base_lr, gamma, power } => {
                let x = 1.0f32 + gamma * iter as f32;
                scaled(base_lr, pow_f64(f64::from(x), f64::from(-power)))
            }
            LrPolicy::Multistep {
                base_lr,
                gamma,
                ref stepvalues,
            } => {
                if let Some(&next) = usize::try_from(*current_step).ok().and_then(|s| stepvalues.get(s)) {
                    if iter >= next {
                        *current_step += 1;
                    }
                }
                scaled(base_lr, pow_f64(f64::from(gamma), f64::from(*current_step)))
            }
            LrPolicy::Poly {
                base_lr,
                power,
                max_iter,
            } => {
                let x = 1.0f32 - iter as f32 / max_iter as f32;
                scaled(base_lr, pow_f64(f64::from(x), f64::from(power)))
            }
            LrPolicy::Sigmoid {
                base_lr,
                gamma,
                stepsize,
            } => {
                let arg = -gamma * (iter as f32 - stepsize as f32);
                scaled(base_lr, 1.0 / (1.0 + exp_f64(f64::from(arg))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, edit: impl FnOnce(&mut SolverParameter)) -> Result<LrPolicy, Error> {
        let mut p = SolverParameter {
            lr_policy: Some(name.into()),
            base_lr: Some(0.01),
            ..Default::default()
        };
        edit(&mut p);
        LrPolicy::from_param(&p)
    }

    fn rate(p: &LrPolicy, iter: i32) -> f32 {
        let mut step = 0;
        p.rate(iter, &mut step)
    }

    #[test]
    fn every_policy_matches_caffe_formulas() {
        let fixed = policy("fixed", |_| {}).unwrap();
        assert_eq!(rate(&fixed, 12345), 0.01);

        let step = policy("step", |p| {
            p.gamma = Some(0.1);
            p.stepsize = Some(100);
        })
        .unwrap();
        let mut current = 0;
        assert_eq!(step.rate(99, &mut current), 0.01);
        assert_eq!(current, 0);
        assert_eq!(
            step.rate(250, &mut current),
            (0.01f32 as f64 * (0.1f32 as f64).powi(2)) as f32
        );
        assert_eq!(current, 2);

        let exp = policy("exp", |p| p.gamma = Some(0.99)).unwrap();
        assert_eq!(rate(&exp, 10), (0.01f32 as f64 * (0.99f32 as f64).powf(10.0)) as f32);

        // BVLC lenet_solver: inv, gamma 1e-4, power 0.75.
        let inv = policy("inv", |p| {
            p.gamma = Some(1e-4);
            p.power = Some(0.75);
        })
        .unwrap();
        assert_eq!(rate(&inv, 0), 0.01);
        let x = 1.0f32 + 1e-4f32 * 5000.0;
        assert_eq!(
            rate(&inv, 5000),
            (0.01f32 as f64 * (x as f64).powf(-0.75f32 as f64)) as f32
        );
        assert!((rate(&inv, 5000) - 0.01 * 1.5f32.powf(-0.75)).abs() < 1e-9);

        let poly = policy("poly", |p| {
            p.power = Some(2.0);
            p.max_iter = Some(1000);
        })
        .unwrap();
        assert_eq!(rate(&poly, 500), (0.01f32 as f64 * 0.25) as f32);
        assert_eq!(rate(&poly, 1000), 0.0);

        let sigmoid = policy("sigmoid", |p| {
            p.gamma = Some(0.01);
            p.stepsize = Some(100);
        })
        .unwrap();
        assert_eq!(rate(&sigmoid, 100), 0.005);
        let arg = -0.01f32 * (300.0f32 - 100.0);
        assert_eq!(
            rate(&sigmoid, 300),
            (0.01f32 as f64 * (1.0 / (1.0 + (arg as f64).exp()))) as f32
        );
    }

    #[test]
    fn multistep_advances_one_step_per_call() {
        let multi = policy("multistep", |p| {
            p.gamma = Some(0.5);
            p.stepvalue = vec![10, 20];
        })
        .unwrap();
        let mut current = 0;
        let rates: Vec<f32> = [0, 9, 10, 11, 19, 20, 30]
            .iter()
            .map(|&i| multi.rate(i, &mut current))
            .collect();
        assert_eq!(rates, [0.01, 0.01, 0.005, 0.005, 0.005, 0.0025, 0.0025]);
        assert_eq!(current, 2);
        // Resumed past both steps with current_step 0 (Caffe restores current_step): one step per call.
        let mut current = 0;
        assert_eq!(multi.rate(50, &mut current), 0.005);
        assert_eq!(multi.rate(51, &mut current), 0.0025);
    }

    #[test]
    fn bad_policies_name_the_value() {
        assert_eq!(
            policy("cosine", |_| {}).unwrap_err().to_string(),
            "unknown lr_policy 'cosine' (known: fixed, step, exp, inv, multistep, poly, sigmoid)"
        );
        assert!(policy("step", |p| p.gamma = Some(0.1))
            .unwrap_err()
            .to_string()
            .contains("stepsize: 0 must be > 0"));
        assert!(policy("inv", |p| p.gamma = Some(-1.0))
            .unwrap_err()
            .to_string()
            .contains("gamma: -1 must be >= 0"));
        let unset = LrPolicy::from_param(&SolverParameter::default()).unwrap_err();
        assert_eq!(unset.to_string().split(" (").next().unwrap(), "unknown lr_policy ''");
    }
}
