//! Recurrent layers: LSTMUnit (one LSTM step on precomputed gate inputs), and LSTM and RNN over whole sequences.
//!
//! Caffe's LSTM and RNN unroll into an inner net of InnerProduct, Scale, Eltwise, LSTMUnit / TanH and Concat
//! layers; here the same arithmetic runs directly, with the parameter blobs in Caffe's layout and order. As in
//! Caffe (without `expose_hidden`), the last hidden (and cell) state of one forward is the initial state of the
//! next, zero before the first; a 0 in `cont` cuts it off.

use caffe_proto::{FillerParameter, LayerParameter};

use super::{ensure_param_shape, expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::{math, Tensor};

/// Caffe's LSTM sigmoid, `1 / (1 + e^-x)`, evaluated in double as its `1. / (1. + exp(-x))` is.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + math::exp_f64(-x))
}

/// Caffe's LSTM tanh, `2 sigmoid(2x) - 1`.
fn tanh(x: f64) -> f64 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// The four gate activations of one unit: input, forget (0 where the sequence restarts), output, candidate.
fn gates(x: &[f32], hidden: usize, d: usize, cont: f32) -> [f32; 4] {
    let i = sigmoid(x[d] as f64) as f32;
    let f = if cont == 0.0 {
        0.0
    } else {
        cont * sigmoid(x[hidden + d] as f64) as f32
    };
    let o = sigmoid(x[2 * hidden + d] as f64) as f32;
    let g = tanh(x[3 * hidden + d] as f64) as f32;
    [i, f, o, g]
}

/// `LSTMUnit`: bottoms `c_prev` (1 x N x D), gate inputs (1 x N x 4D, ordered input, forget, output, candidate)
/// and `cont` (1 x N); tops `c = f c_prev + i g` and `h = o tanh(c)`. No gradient into `cont`.
pub(crate) struct LstmUnit {
    dims: (usize, usize),
}

impl LstmUnit {
    pub(crate) fn new() -> Self {
        LstmUnit { dims: (0, 0) }
    }
}

impl Layer for LstmUnit {
    fn type_name(&self) -> &'static str {
        "LSTMUnit"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        super::expect_bottoms(bottoms, 3)?;
        let (c, x, cont) = (bottoms[0], bottoms[1], bottoms[2]);
        if c.len() != 3 || c[0] != 1 {
            return Err(LayerError::Shape(format!("c_prev must be 1 x N x D, got {c:?}")));
        }
        let (num, hidden) = (c[1], c[2]);
        if x != [1, num, 4 * hidden] {
            return Err(LayerError::Shape(format!(
                "the gate inputs must be 1 x {num} x {} (4 x the {hidden} hidden units), got {x:?}",
                4 * hidden
            )));
        }
        if cont != [1, num] {
            return Err(LayerError::Shape(format!(
                "the sequence continuation indicators must be 1 x {num}, got {cont:?}"
            )));
        }
        self.dims = (num, hidden);
        Ok(vec![c.to_vec(), c.to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (num, hidden) = self.dims;
        let (c_prev, x, cont) = (bottoms[0].data(), bottoms[1].data(), bottoms[2].data());
        let [c_top, h_top] = tops else {
            return Err(LayerError::Arity("LSTMUnit takes 2 tops".into()));
        };
        let (c_out, h_out) = (c_top.data_mut(), h_top.data_mut());
        for n in 0..num {
            let xs = &x[n * 4 * hidden..(n + 1) * 4 * hidden];
            for d in 0..hidden {
                let [i, f, o, g] = gates(xs, hidden, d, cont[n]);
                let c = f * c_prev[n * hidden + d] + i * g;
                c_out[n * hidden + d] = c;
                h_out[n * hidden + d] = o * tanh(c as f64) as f32;
            }
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[2] {
            return Err(LayerError::Unsupported(
                "LSTMUnit cannot backpropagate to the sequence indicators".into(),
            ));
        }
        if !ctx.propagate_down[0] && !ctx.propagate_down[1] {
            return Ok(());
        }
        let (num, hidden) = self.dims;
        let (c_prev, x, cont) = (ctx.bottoms[0].data(), ctx.bottoms[1].data(), ctx.bottoms[2].data());
        let c_top = ctx.tops[0].data();
        let (c_diff, h_diff) = (ctx.top_diffs[0].data(), ctx.top_diffs[1].data());
        // Both bottom diffs are computed together, as in Caffe; an unwanted one goes to a scratch buffer.
        let (mut scratch_c, mut scratch_x) = (Vec::new(), Vec::new());
        let (first, rest) = ctx.bottom_diffs.split_at_mut(1);
        let c_prev_diff: &mut [f32] = if ctx.propagate_down[0] {
            first[0].data_mut()
        } else {
            scratch_c.resize(num * hidden, 0.0);
            &mut scratch_c
        };
        let x_diff: &mut [f32] = if ctx.propagate_down[1] {
            rest[0].data_mut()
        } else {
            scratch_x.resize(num * 4 * hidden, 0.0);
            &mut scratch_x
        };
        for n in 0..num {
            let xs = &x[n * 4 * hidden..(n + 1) * 4 * hidden];
            let xd = &mut x_diff[n * 4 * hidden..(n + 1) * 4 * hidden];
            for d in 0..hidden {
                let k = n * hidden + d;
                let [i, f, o, g] = gates(xs, hidden, d, cont[n]);
                let tanh_c = tanh(c_top[k] as f64) as f32;
                let c_term = c_diff[k] + h_diff[k] * o * (1.0 - tanh_c * tanh_c);
                c_prev_diff[k] = c_term * f;
                xd[d] = c_term * g * i * (1.0 - i);
                xd[hidden + d] = c_term * c_prev[k] * f * (1.0 - f);
                xd[2 * hidden + d] = h_diff[k] * tanh_c * o * (1.0 - o);
                xd[3 * hidden + d] = c_term * i * (1.0 - g * g);
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 2
    }
}

/// `out[r, o] (+)= sum_k a[r, k] w[o, k]` (an InnerProduct: `a` rows x k, `w` outputs x k).
fn matmul_nt(a: &[f32], w: &[f32], k: usize, out: &mut [f32], outputs: usize, accumulate: bool) {
    for (row, dst) in a.chunks(k).zip(out.chunks_mut(outputs)) {
        for (o, d) in dst.iter_mut().enumerate() {
            let dot: f32 = row.iter().zip(&w[o * k..(o + 1) * k]).map(|(x, y)| x * y).sum();
            *d = if accumulate { *d + dot } else { dot };
        }
    }
}

/// `dst[r, k] (+)= sum_o g[r, o] w[o, k]` (the InnerProduct's input gradient).
fn matmul_nn(g: &[f32], w: &[f32], outputs: usize, k: usize, dst: &mut [f32], accumulate: bool) {
    for (grow, drow) in g.chunks(outputs).zip(dst.chunks_mut(k)) {
        if !accumulate {
            drow.fill(0.0);
        }
        for (o, &gv) in grow.iter().enumerate() {
            drow.iter_mut()
                .zip(&w[o * k..(o + 1) * k])
                .for_each(|(d, &wv)| *d += gv * wv);
        }
    }
}

/// `dw[o, k] += sum_r g[r, o] a[r, k]` (the InnerProduct's weight gradient).
fn add_outer(g: &[f32], a: &[f32], outputs: usize, k: usize, dw: &mut [f32]) {
    for (grow, arow) in g.chunks(outputs).zip(a.chunks(k)) {
        for (o, &gv) in grow.iter().enumerate() {
            dw[o * k..(o + 1) * k]
                .iter_mut()
                .zip(arow)
                .for_each(|(d, &x)| *d += gv * x);
        }
    }
}

/// `db[o] += sum_r g[r, o]`.
fn add_rows(g: &[f32], outputs: usize, db: &mut [f32]) {
    for row in g.chunks(outputs) {
        db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
    }
}

/// What LSTM and RNN share: the parameters, their fillers and the sequence geometry.
struct Sequence {
    name: String,
    hidden: usize,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
    params: Vec<Tensor>,
    initialized: bool,
    /// (T, N, input dim) of the last reshape.
    dims: (usize, usize, usize),
}

impl Sequence {
    fn new(param: &LayerParameter, n_params: usize) -> LayerResult<Self> {
        let p = param.recurrent_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            return Err(LayerError::Param("recurrent_param num_output must be positive".into()));
        }
        if p.expose_hidden() {
            return Err(LayerError::Param(
                "recurrent_param expose_hidden is not supported (the state is carried between forwards instead)".into(),
            ));
        }
        Ok(Sequence {
            name: param.name().to_string(),
            hidden: p.num_output() as usize,
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            params: vec![Tensor::default(); n_params],
            initialized: false,
            dims: (0, 0, 0),
        })
    }

    /// Checks `x` (T x N x ...) and `cont` (T x N), and sizes (and first fills) the parameters: `shapes` in order,
    /// `true` marking bias blobs.
    fn reshape(&mut self, bottoms: &[&[usize]], shapes: &[(Vec<usize>, bool)]) -> LayerResult<()> {
        expect_bottoms(bottoms, 2)?;
        let (x, cont) = (bottoms[0], bottoms[1]);
        if x.len() < 2 {
            return Err(LayerError::Shape(format!(
                "the input must be T x N x ... (time steps, streams), got {x:?}"
            )));
        }
        if cont != &x[..2] {
            return Err(LayerError::Shape(format!(
                "the sequence continuation indicators must be T x N = {:?}, got {cont:?}",
                &x[..2]
            )));
        }
        let input = x[2..].iter().product::<usize>();
        let shapes: Vec<(Vec<usize>, bool)> = shapes
            .iter()
            .map(|(s, bias)| {
                let s = s.iter().map(|&d| if d == 0 { input } else { d }).collect();
                (s, *bias)
            })
            .collect();
        for (i, (shape, bias)) in shapes.iter().enumerate() {
            ensure_param_shape(&mut self.params[i], shape, self.initialized, "recurrent weights")?;
            if !self.initialized {
                let filler = if *bias { &self.bias_filler } else { &self.weight_filler };
                crate::filler::fill(&mut self.params[i], filler, &format!("{}/{i}", self.name))?;
            }
        }
        self.initialized = true;
        self.dims = (x[0], x[1], input);
        Ok(())
    }
}

/// `LSTM`: parameters `W_xc` (4H x I), `b_c` (4H), `W_hc` (4H x H), gates ordered input, forget, output,
/// candidate; bottoms `x` (T x N x ...) and `cont` (T x N); top the hidden states `h` (T x N x H).
pub(crate) struct Lstm {
    seq: Sequence,
    /// Initial (h, c) of the next forward: the last step of the previous one.
    state: Option<(Vec<f32>, Vec<f32>)>,
    /// From the last forward: h and c for steps 0..=T (step 0 the initial state), `cont * h` per step, gate inputs.
    h: Vec<f32>,
    c: Vec<f32>,
    h_conted: Vec<f32>,
    gate_inputs: Vec<f32>,
}

impl Lstm {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        Ok(Lstm {
            seq: Sequence::new(param, 3)?,
            state: None,
            h: Vec::new(),
            c: Vec::new(),
            h_conted: Vec::new(),
            gate_inputs: Vec::new(),
        })
    }
}

impl Layer for Lstm {
    fn type_name(&self) -> &'static str {
        "LSTM"
    }
    fn params(&self) -> &[Tensor] {
        &self.seq.params
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.seq.params
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let h = self.seq.hidden;
        // 0 stands for the input dimension.
        self.seq.reshape(
            bottoms,
            &[(vec![4 * h, 0], false), (vec![4 * h], true), (vec![4 * h, h], false)],
        )?;
        let (t, n, _) = self.seq.dims;
        Ok(vec![vec![t, n, h]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (steps, num, input) = self.seq.dims;
        let hidden = self.seq.hidden;
        let (x, cont) = (bottoms[0].data(), bottoms[1].data());
        let [w_xc, b_c, w_hc] = &self.seq.params[..] else {
            return Err(LayerError::Param("LSTM has 3 parameter blobs".into()));
        };
        let (w_xc, b_c, w_hc) = (w_xc.data(), b_c.data(), w_hc.data());
        let step = num * hidden;
        self.h.resize((steps + 1) * step, 0.0);
        self.c.resize((steps + 1) * step, 0.0);
        match &self.state {
            Some((h0, c0)) if h0.len() == step => {
                self.h[..step].copy_from_slice(h0);
                self.c[..step].copy_from_slice(c0);
            }
            _ => {
                self.h[..step].fill(0.0);
                self.c[..step].fill(0.0);
            }
        }
        // W_xc x + b_c for every step at once.
        self.gate_inputs.resize(steps * 4 * step, 0.0);
        matmul_nt(x, w_xc, input, &mut self.gate_inputs, 4 * hidden, false);
        for row in self.gate_inputs.chunks_mut(4 * hidden) {
            row.iter_mut().zip(b_c).for_each(|(v, b)| *v += b);
        }
        self.h_conted.resize(steps * step, 0.0);
        let mut recurrent = vec![0.0; 4 * step];
        for t in 0..steps {
            let hc = &mut self.h_conted[t * step..(t + 1) * step];
            for n in 0..num {
                let k = cont[t * num + n];
                for d in 0..hidden {
                    hc[n * hidden + d] = k * self.h[t * step + n * hidden + d];
                }
            }
            matmul_nt(hc, w_hc, hidden, &mut recurrent, 4 * hidden, false);
            let gi = &mut self.gate_inputs[t * 4 * step..(t + 1) * 4 * step];
            gi.iter_mut().zip(&recurrent).for_each(|(g, r)| *g += r);
            for n in 0..num {
                let xs = &gi[n * 4 * hidden..(n + 1) * 4 * hidden];
                for d in 0..hidden {
                    let [i, f, o, g] = gates(xs, hidden, d, cont[t * num + n]);
                    let k = n * hidden + d;
                    let c = f * self.c[t * step + k] + i * g;
                    self.c[(t + 1) * step + k] = c;
                    self.h[(t + 1) * step + k] = o * tanh(c as f64) as f32;
                }
            }
        }
        tops[0].data_mut().copy_from_slice(&self.h[step..]);
        self.state = Some((self.h[steps * step..].to_vec(), self.c[steps * step..].to_vec()));
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[1] {
            return Err(LayerError::Unsupported(
                "LSTM cannot backpropagate to the sequence indicators".into(),
            ));
        }
        let (steps, num, input) = self.seq.dims;
        let hidden = self.seq.hidden;
        let step = num * hidden;
        let cont = ctx.bottoms[1].data();
        let dy = ctx.top_diffs[0].data();
        let w_hc = self.seq.params[2].data();
        let mut d_gates = vec![0.0f32; steps * 4 * step];
        // Gradients flowing into h_{t} and c_{t} from step t + 1.
        let mut dh_next = vec![0.0f32; step];
        let mut dc_next = vec![0.0f32; step];
        let mut dh_conted = vec![0.0f32; step];
        for t in (0..steps).rev() {
            let gi = &self.gate_inputs[t * 4 * step..(t + 1) * 4 * step];
            let dg = &mut d_gates[t * 4 * step..(t + 1) * 4 * step];
            let mut dc_prev = vec![0.0f32; step];
            for n in 0..num {
                let xs = &gi[n * 4 * hidden..(n + 1) * 4 * hidden];
                let xd = &mut dg[n * 4 * hidden..(n + 1) * 4 * hidden];
                for d in 0..hidden {
                    let k = n * hidden + d;
                    let [i, f, o, g] = gates(xs, hidden, d, cont[t * num + n]);
                    let dh = dy[t * step + k] + dh_next[k];
                    let c_prev = self.c[t * step + k];
                    let tanh_c = tanh(self.c[(t + 1) * step + k] as f64) as f32;
                    let c_term = dc_next[k] + dh * o * (1.0 - tanh_c * tanh_c);
                    dc_prev[k] = c_term * f;
                    xd[d] = c_term * g * i * (1.0 - i);
                    xd[hidden + d] = c_term * c_prev * f * (1.0 - f);
                    xd[2 * hidden + d] = dh * tanh_c * o * (1.0 - o);
                    xd[3 * hidden + d] = c_term * i * (1.0 - g * g);
                }
            }
            dc_next = dc_prev;
            // Through W_hc and the cont scaling into h_{t-1}.
            matmul_nn(dg, w_hc, 4 * hidden, hidden, &mut dh_conted, false);
            for n in 0..num {
                let k = cont[t * num + n];
                for d in 0..hidden {
                    dh_next[n * hidden + d] = k * dh_conted[n * hidden + d];
                }
            }
        }
        let x = ctx.bottoms[0].data();
        if ctx.param_propagate_down[0] {
            add_outer(&d_gates, x, 4 * hidden, input, ctx.param_diffs[0].data_mut());
        }
        if ctx.param_propagate_down[1] {
            add_rows(&d_gates, 4 * hidden, ctx.param_diffs[1].data_mut());
        }
        if ctx.param_propagate_down[2] {
            add_outer(
                &d_gates,
                &self.h_conted,
                4 * hidden,
                hidden,
                ctx.param_diffs[2].data_mut(),
            );
        }
        if ctx.propagate_down[0] {
            let w_xc = self.seq.params[0].data();
            matmul_nn(&d_gates, w_xc, 4 * hidden, input, ctx.bottom_diffs[0].data_mut(), false);
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
}

/// `RNN`: `h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h)`, output `o_t = tanh(W_ho h_t + b_o)`; parameters
/// `W_xh` (H x I), `b_h`, `W_hh` (H x H), `W_ho` (H x H), `b_o` in Caffe's order; top `o` (T x N x H).
pub(crate) struct Rnn {
    seq: Sequence,
    /// Initial h of the next forward: the last step of the previous one.
    state: Option<Vec<f32>>,
    /// From the last forward: h for steps 0..=T, `cont * h` per step, and the outputs.
    h: Vec<f32>,
    h_conted: Vec<f32>,
    o: Vec<f32>,
}

impl Rnn {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        Ok(Rnn {
            seq: Sequence::new(param, 5)?,
            state: None,
            h: Vec::new(),
            h_conted: Vec::new(),
            o: Vec::new(),
        })
    }
}

impl Layer for Rnn {
    fn type_name(&self) -> &'static str {
        "RNN"
    }
    fn params(&self) -> &[Tensor] {
        &self.seq.params
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.seq.params
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let h = self.seq.hidden;
        self.seq.reshape(
            bottoms,
            &[
                (vec![h, 0], false),
                (vec![h], true),
                (vec![h, h], false),
                (vec![h, h], false),
                (vec![h], true),
            ],
        )?;
        let (t, n, _) = self.seq.dims;
        Ok(vec![vec![t, n, h]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (steps, num, input) = self.seq.dims;
        let hidden = self.seq.hidden;
        let (x, cont) = (bottoms[0].data(), bottoms[1].data());
        let p: Vec<&[f32]> = self.seq.params.iter().map(Tensor::data).collect();
        let (w_xh, b_h, w_hh, w_ho, b_o) = (p[0], p[1], p[2], p[3], p[4]);
        let step = num * hidden;
        self.h.resize((steps + 1) * step, 0.0);
        match &self.state {
            Some(h0) if h0.len() == step => self.h[..step].copy_from_slice(h0),
            _ => self.h[..step].fill(0.0),
        }
        let mut xw = vec![0.0f32; steps * step];
        matmul_nt(x, w_xh, input, &mut xw, hidden, false);
        for row in xw.chunks_mut(hidden) {
            row.iter_mut().zip(b_h).for_each(|(v, b)| *v += b);
        }
        self.h_conted.resize(steps * step, 0.0);
        self.o.resize(steps * step, 0.0);
        let mut recurrent = vec![0.0f32; step];
        for t in 0..steps {
            let hc = &mut self.h_conted[t * step..(t + 1) * step];
            for n in 0..num {
                let k = cont[t * num + n];
                for d in 0..hidden {
                    hc[n * hidden + d] = k * self.h[t * step + n * hidden + d];
                }
            }
            matmul_nt(hc, w_hh, hidden, &mut recurrent, hidden, false);
            let h_t = &mut self.h[(t + 1) * step..(t + 2) * step];
            for ((h, r), xv) in h_t.iter_mut().zip(&recurrent).zip(&xw[t * step..(t + 1) * step]) {
                *h = math::tanh(r + xv);
            }
            let o_t = &mut self.o[t * step..(t + 1) * step];
            matmul_nt(h_t, w_ho, hidden, o_t, hidden, false);
            for row in o_t.chunks_mut(hidden) {
                row.iter_mut().zip(b_o).for_each(|(v, b)| *v = math::tanh(*v + b));
            }
        }
        tops[0].data_mut().copy_from_slice(&self.o);
        self.state = Some(self.h[steps * step..].to_vec());
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[1] {
            return Err(LayerError::Unsupported(
                "RNN cannot backpropagate to the sequence indicators".into(),
            ));
        }
        let (steps, num, input) = self.seq.dims;
        let hidden = self.seq.hidden;
        let step = num * hidden;
        let cont = ctx.bottoms[1].data();
        let dy = ctx.top_diffs[0].data();
        let (w_hh, w_ho) = (self.seq.params[2].data(), self.seq.params[3].data());
        // Gradients at the output pre-activations and at the hidden pre-activations.
        let d_out: Vec<f32> = dy.iter().zip(&self.o).map(|(g, o)| g * (1.0 - o * o)).collect();
        let mut d_pre = vec![0.0f32; steps * step];
        let mut dh_next = vec![0.0f32; step];
        let mut dh = vec![0.0f32; step];
        let mut dh_conted = vec![0.0f32; step];
        for t in (0..steps).rev() {
            matmul_nn(&d_out[t * step..(t + 1) * step], w_ho, hidden, hidden, &mut dh, false);
            let h_t = &self.h[(t + 1) * step..(t + 2) * step];
            let dp = &mut d_pre[t * step..(t + 1) * step];
            for (((p, &g), &from_next), &h) in dp.iter_mut().zip(&dh).zip(&dh_next).zip(h_t) {
                *p = (g + from_next) * (1.0 - h * h);
            }
            matmul_nn(dp, w_hh, hidden, hidden, &mut dh_conted, false);
            for n in 0..num {
                let k = cont[t * num + n];
                for d in 0..hidden {
                    dh_next[n * hidden + d] = k * dh_conted[n * hidden + d];
                }
            }
        }
        let x = ctx.bottoms[0].data();
        let down = ctx.param_propagate_down;
        if down[0] {
            add_outer(&d_pre, x, hidden, input, ctx.param_diffs[0].data_mut());
        }
        if down[1] {
            add_rows(&d_pre, hidden, ctx.param_diffs[1].data_mut());
        }
        if down[2] {
            add_outer(&d_pre, &self.h_conted, hidden, hidden, ctx.param_diffs[2].data_mut());
        }
        if down[3] {
            add_outer(&d_out, &self.h[step..], hidden, hidden, ctx.param_diffs[3].data_mut());
        }
        if down[4] {
            add_rows(&d_out, hidden, ctx.param_diffs[4].data_mut());
        }
        if ctx.propagate_down[0] {
            let w_xh = self.seq.params[0].data();
            matmul_nn(&d_pre, w_xh, hidden, input, ctx.bottom_diffs[0].data_mut(), false);
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{check, uniform, Check};
    use crate::layers::testing::param;
    use caffe_proto::RecurrentParameter;

    fn recurrent(kind: &str, num_output: u32) -> LayerParameter {
        let uniform = |r: f32| {
            Some(FillerParameter {
                r#type: Some("uniform".into()),
                min: Some(-r),
                max: Some(r),
                ..Default::default()
            })
        };
        param(kind, |l| {
            l.recurrent_param = Some(RecurrentParameter {
                num_output: Some(num_output),
                weight_filler: uniform(0.5),
                bias_filler: uniform(0.2),
                ..Default::default()
            })
        })
    }

    #[test]
    fn lstm_and_rnn_gradients() {
        for kind in ["LSTM", "RNN"] {
            let cont = Tensor::new(&[4, 2], vec![0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
            let mut c = Check::new(recurrent(kind, 3), vec![uniform(&[4, 2, 3], -1.0, 1.0, 9), cont]);
            c.check_bottoms = vec![true, false];
            check(&c);
        }
    }

    #[test]
    fn recurrent_shapes_are_checked() {
        let mut lstm = Lstm::new(&recurrent("LSTM", 2)).unwrap();
        assert_eq!(lstm.reshape(&[&[3, 2, 4], &[3, 2]]).unwrap(), vec![vec![3, 2, 2]]);
        assert_eq!(lstm.params()[0].shape(), &[8, 4]);
        assert!(lstm.reshape(&[&[3, 2, 4], &[3, 1]]).is_err());
        assert!(Rnn::new(&recurrent("RNN", 0)).is_err());
    }

    #[test]
    fn lstm_unit_gradients() {
        let mut p = param("LSTMUnit", |_| {});
        p.top = vec!["c".into(), "h".into()];
        let mut c = Check::new(
            p,
            vec![
                uniform(&[1, 3, 2], -1.0, 1.0, 1),
                uniform(&[1, 3, 8], -1.0, 1.0, 2),
                Tensor::new(&[1, 3], vec![1.0, 0.0, 1.0]),
            ],
        );
        c.check_bottoms = vec![true, true, false];
        check(&c);
    }
}
