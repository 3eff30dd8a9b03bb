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

/// Which recurrent parameter blob sits where: Caffe orders them by first use in its unrolled net, so the static
/// input's weights (when there is a static input) come right after the input transform's.
#[derive(Clone, Copy, Debug)]
struct Slots {
    w_x: usize,
    b_x: usize,
    w_static: Option<usize>,
    /// The first blob after them (W_hc for LSTM, W_hh for RNN).
    rest: usize,
}

impl Slots {
    fn new(static_input: bool) -> Self {
        Slots {
            w_x: 0,
            b_x: 1,
            w_static: static_input.then_some(2),
            rest: if static_input { 3 } else { 2 },
        }
    }
}

/// What LSTM and RNN share: the parameters, their fillers, the optional static input and exposed state, and the
/// sequence geometry.
struct Sequence {
    name: String,
    hidden: usize,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
    params: Vec<Tensor>,
    initialized: bool,
    /// Blobs of state (h for RNN; h and c for LSTM).
    states: usize,
    /// `expose_hidden`: the initial state comes as the last bottoms and the final state goes to tops 1.. .
    expose: bool,
    slots: Slots,
    /// (T, N, input dim, static input dim) of the last reshape.
    dims: (usize, usize, usize, usize),
}

impl Sequence {
    /// Reads the parameters and, from the bottom and top counts, whether there is a static input (checking the
    /// counts `expose_hidden` implies). The parameter blobs are sized by the layer.
    fn new(param: &LayerParameter, states: usize, n_bottoms: usize, n_tops: usize) -> LayerResult<Self> {
        let p = param.recurrent_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            return Err(LayerError::Param("recurrent_param num_output must be positive".into()));
        }
        let expose = p.expose_hidden();
        let exposed = if expose { states } else { 0 };
        if n_tops != 1 + exposed {
            return Err(LayerError::Arity(format!(
                "takes {} top(s) (the output{}), got {n_tops}",
                1 + exposed,
                if expose {
                    " and the final state with expose_hidden"
                } else {
                    ""
                }
            )));
        }
        let static_input = match n_bottoms.checked_sub(2 + exposed) {
            Some(0) => false,
            Some(1) => true,
            _ => {
                return Err(LayerError::Arity(format!(
                    "takes x, cont, an optional static input{} as bottoms, got {n_bottoms}",
                    if expose { " and the initial state" } else { "" }
                )))
            }
        };
        Ok(Sequence {
            name: param.name().to_string(),
            hidden: p.num_output() as usize,
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            params: Vec::new(),
            initialized: false,
            states,
            expose,
            slots: Slots::new(static_input),
            dims: (0, 0, 0, 0),
        })
    }

    /// Bottom index of the static input, and of the first exposed state.
    fn static_bottom(&self) -> Option<usize> {
        self.slots.w_static.map(|_| 2)
    }
    fn state_bottom(&self) -> usize {
        2 + usize::from(self.slots.w_static.is_some())
    }

    /// Checks `x` (T x N x ...), `cont` (T x N), the static input (N x ...) and the exposed states (1 x N x H), and
    /// sizes (and first fills) the parameters: `W_x` (`gates` H x I), `b_x`, `W_static` (`gates` H x static I), then
    /// `rest` (`(shape, is_bias)`).
    fn reshape(&mut self, bottoms: &[&[usize]], gates: usize, rest: &[(Vec<usize>, bool)]) -> LayerResult<()> {
        let exposed = if self.expose { self.states } else { 0 };
        expect_bottoms(bottoms, self.state_bottom() + exposed)?;
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
        let (steps, num, h) = (x[0], x[1], self.hidden);
        let input = x[2..].iter().product::<usize>();
        let static_dim = match self.static_bottom() {
            Some(b) => {
                let s = bottoms[b];
                if s.first() != Some(&num) {
                    return Err(LayerError::Shape(format!(
                        "the static input must be N x ... with N = {num}, got {s:?}"
                    )));
                }
                s[1..].iter().product::<usize>()
            }
            None => 0,
        };
        if self.expose {
            for s in &bottoms[self.state_bottom()..] {
                if *s != [1, num, h] {
                    return Err(LayerError::Shape(format!(
                        "an initial state must be 1 x {num} x {h}, got {s:?}"
                    )));
                }
            }
        }
        let mut shapes = vec![(vec![gates * h, input], false), (vec![gates * h], true)];
        if self.slots.w_static.is_some() {
            shapes.push((vec![gates * h, static_dim], false));
        }
        shapes.extend(rest.iter().cloned());
        if !self.initialized {
            self.params = vec![Tensor::default(); shapes.len()];
        }
        for (i, (shape, bias)) in shapes.iter().enumerate() {
            ensure_param_shape(&mut self.params[i], shape, self.initialized, "recurrent weights")?;
            if !self.initialized {
                let filler = if *bias { &self.bias_filler } else { &self.weight_filler };
                crate::filler::fill(&mut self.params[i], filler, &format!("{}/{i}", self.name))?;
            }
        }
        self.initialized = true;
        self.dims = (steps, num, input, static_dim);
        Ok(())
    }

    /// The parameter count, known before the first reshape (the net asks for it when the layer is added).
    fn n_params(&self, rest: usize) -> usize {
        self.slots.rest + rest
    }

    /// The output shapes: the sequence, then the exposed final states.
    fn tops(&self) -> Vec<Vec<usize>> {
        let (steps, num, ..) = self.dims;
        let mut tops = vec![vec![steps, num, self.hidden]];
        if self.expose {
            tops.extend((0..self.states).map(|_| vec![1, num, self.hidden]));
        }
        tops
    }

    /// `W_static x_static` (N x gates H), or `None` without a static input.
    fn static_transform(&self, bottoms: &[&Tensor], gates: usize) -> Option<Vec<f32>> {
        let (b, w) = (self.static_bottom()?, self.slots.w_static?);
        let (_, num, _, static_dim) = self.dims;
        let mut out = vec![0.0; num * gates * self.hidden];
        matmul_nt(
            bottoms[b].data(),
            self.params[w].data(),
            static_dim,
            &mut out,
            gates * self.hidden,
            false,
        );
        Some(out)
    }

    /// Gradients of the static input transform from the gate (pre-activation) gradients of every step.
    fn static_backward(&self, ctx: &mut Backward<'_>, d_gates: &[f32], gates: usize) {
        let (Some(b), Some(w)) = (self.static_bottom(), self.slots.w_static) else {
            return;
        };
        let (steps, num, _, static_dim) = self.dims;
        let width = gates * self.hidden;
        // The static input feeds every step: its gradient is the sum over steps.
        let mut summed = vec![0.0f32; num * width];
        for t in 0..steps {
            summed
                .iter_mut()
                .zip(&d_gates[t * num * width..(t + 1) * num * width])
                .for_each(|(s, g)| *s += g);
        }
        if ctx.param_propagate_down[w] {
            add_outer(
                &summed,
                ctx.bottoms[b].data(),
                width,
                static_dim,
                ctx.param_diffs[w].data_mut(),
            );
        }
        if ctx.propagate_down[b] {
            matmul_nn(
                &summed,
                self.params[w].data(),
                width,
                static_dim,
                ctx.bottom_diffs[b].data_mut(),
                false,
            );
        }
    }
}

/// `LSTM`: parameters `W_xc` (4H x I), `b_c` (4H), [`W_xc_static` (4H x static I)], `W_hc` (4H x H), gates
/// ordered input, forget, output, candidate; bottoms `x` (T x N x ...), `cont` (T x N), an optional static input
/// (N x ...) and, with `expose_hidden`, `h_0` and `c_0` (1 x N x H); tops the hidden states `h` (T x N x H) and,
/// with `expose_hidden`, `h_T` and `c_T`.
pub(crate) struct Lstm {
    seq: Sequence,
    /// Initial (h, c) of the next forward without `expose_hidden`: the last step of the previous one.
    state: Option<(Vec<f32>, Vec<f32>)>,
    /// From the last forward: h and c for steps 0..=T (step 0 the initial state), `cont * h` per step, gate inputs.
    h: Vec<f32>,
    c: Vec<f32>,
    h_conted: Vec<f32>,
    gate_inputs: Vec<f32>,
}

impl Lstm {
    pub(crate) fn new(param: &LayerParameter, n_bottoms: usize, n_tops: usize) -> LayerResult<Self> {
        let mut seq = Sequence::new(param, 2, n_bottoms, n_tops)?;
        seq.params = vec![Tensor::default(); seq.n_params(1)];
        Ok(Lstm {
            seq,
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
        self.seq.reshape(bottoms, 4, &[(vec![4 * h, h], false)])?;
        Ok(self.seq.tops())
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (steps, num, input, _) = self.seq.dims;
        let hidden = self.seq.hidden;
        let slots = self.seq.slots;
        let (x, cont) = (bottoms[0].data(), bottoms[1].data());
        let static_gates = self.seq.static_transform(bottoms, 4);
        let p = &self.seq.params;
        let (w_xc, b_c, w_hc) = (p[slots.w_x].data(), p[slots.b_x].data(), p[slots.rest].data());
        let step = num * hidden;
        self.h.resize((steps + 1) * step, 0.0);
        self.c.resize((steps + 1) * step, 0.0);
        if self.seq.expose {
            let s = self.seq.state_bottom();
            self.h[..step].copy_from_slice(bottoms[s].data());
            self.c[..step].copy_from_slice(bottoms[s + 1].data());
        } else {
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
            // Caffe's Eltwise sum order: W_hc h, then W_xc x, then the static term.
            gi.iter_mut().zip(&recurrent).for_each(|(g, r)| *g += r);
            if let Some(s) = &static_gates {
                gi.iter_mut().zip(s).for_each(|(g, s)| *g += s);
            }
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
        let (h_last, c_last) = (&self.h[steps * step..], &self.c[steps * step..]);
        if self.seq.expose {
            tops[1].data_mut().copy_from_slice(h_last);
            tops[2].data_mut().copy_from_slice(c_last);
        } else {
            self.state = Some((h_last.to_vec(), c_last.to_vec()));
        }
        Ok(())
    }
    fn backward(&mut self, mut ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[1] {
            return Err(LayerError::Unsupported(
                "LSTM cannot backpropagate to the sequence indicators".into(),
            ));
        }
        let (steps, num, input, _) = self.seq.dims;
        let hidden = self.seq.hidden;
        let slots = self.seq.slots;
        let step = num * hidden;
        let cont = ctx.bottoms[1].data();
        let dy = ctx.top_diffs[0].data();
        let w_hc = self.seq.params[slots.rest].data();
        let mut d_gates = vec![0.0f32; steps * 4 * step];
        // Gradients flowing into h_t and c_t from step t + 1 (from the exposed final-state tops at t = T).
        let (mut dh_next, mut dc_next) = if self.seq.expose {
            (ctx.top_diffs[1].data().to_vec(), ctx.top_diffs[2].data().to_vec())
        } else {
            (vec![0.0f32; step], vec![0.0f32; step])
        };
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
        if ctx.param_propagate_down[slots.w_x] {
            add_outer(&d_gates, x, 4 * hidden, input, ctx.param_diffs[slots.w_x].data_mut());
        }
        if ctx.param_propagate_down[slots.b_x] {
            add_rows(&d_gates, 4 * hidden, ctx.param_diffs[slots.b_x].data_mut());
        }
        if ctx.param_propagate_down[slots.rest] {
            add_outer(
                &d_gates,
                &self.h_conted,
                4 * hidden,
                hidden,
                ctx.param_diffs[slots.rest].data_mut(),
            );
        }
        if ctx.propagate_down[0] {
            let w_xc = self.seq.params[slots.w_x].data();
            matmul_nn(&d_gates, w_xc, 4 * hidden, input, ctx.bottom_diffs[0].data_mut(), false);
        }
        self.seq.static_backward(&mut ctx, &d_gates, 4);
        if self.seq.expose {
            let s = self.seq.state_bottom();
            if ctx.propagate_down[s] {
                ctx.bottom_diffs[s].data_mut().copy_from_slice(&dh_next);
            }
            if ctx.propagate_down[s + 1] {
                ctx.bottom_diffs[s + 1].data_mut().copy_from_slice(&dc_next);
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
}

/// `RNN`: `h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])`, output
/// `o_t = tanh(W_ho h_t + b_o)`; parameters `W_xh` (H x I), `b_h`, [`W_xh_static`], `W_hh` (H x H), `W_ho` (H x H),
/// `b_o` in Caffe's order; bottoms as LSTM's with the one state `h_0`; tops `o` (T x N x H) and, with
/// `expose_hidden`, `h_T`.
pub(crate) struct Rnn {
    seq: Sequence,
    /// Initial h of the next forward without `expose_hidden`: the last step of the previous one.
    state: Option<Vec<f32>>,
    /// From the last forward: h for steps 0..=T, `cont * h` per step, and the outputs.
    h: Vec<f32>,
    h_conted: Vec<f32>,
    o: Vec<f32>,
}

impl Rnn {
    pub(crate) fn new(param: &LayerParameter, n_bottoms: usize, n_tops: usize) -> LayerResult<Self> {
        let mut seq = Sequence::new(param, 1, n_bottoms, n_tops)?;
        seq.params = vec![Tensor::default(); seq.n_params(3)];
        Ok(Rnn {
            seq,
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
        self.seq
            .reshape(bottoms, 1, &[(vec![h, h], false), (vec![h, h], false), (vec![h], true)])?;
        Ok(self.seq.tops())
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (steps, num, input, _) = self.seq.dims;
        let hidden = self.seq.hidden;
        let r = self.seq.slots.rest;
        let (x, cont) = (bottoms[0].data(), bottoms[1].data());
        let static_term = self.seq.static_transform(bottoms, 1);
        let p: Vec<&[f32]> = self.seq.params.iter().map(Tensor::data).collect();
        let (w_xh, b_h, w_hh, w_ho, b_o) = (p[0], p[1], p[r], p[r + 1], p[r + 2]);
        let step = num * hidden;
        self.h.resize((steps + 1) * step, 0.0);
        if self.seq.expose {
            self.h[..step].copy_from_slice(bottoms[self.seq.state_bottom()].data());
        } else {
            match &self.state {
                Some(h0) if h0.len() == step => self.h[..step].copy_from_slice(h0),
                _ => self.h[..step].fill(0.0),
            }
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
            for (i, h) in h_t.iter_mut().enumerate() {
                // Caffe's Eltwise sum order: W_hh h, then W_xh x, then the static term.
                let mut pre = recurrent[i] + xw[t * step + i];
                if let Some(s) = &static_term {
                    pre += s[i];
                }
                *h = math::tanh(pre);
            }
            let o_t = &mut self.o[t * step..(t + 1) * step];
            matmul_nt(h_t, w_ho, hidden, o_t, hidden, false);
            for row in o_t.chunks_mut(hidden) {
                row.iter_mut().zip(b_o).for_each(|(v, b)| *v = math::tanh(*v + b));
            }
        }
        tops[0].data_mut().copy_from_slice(&self.o);
        let h_last = &self.h[steps * step..];
        if self.seq.expose {
            tops[1].data_mut().copy_from_slice(h_last);
        } else {
            self.state = Some(h_last.to_vec());
        }
        Ok(())
    }
    fn backward(&mut self, mut ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[1] {
            return Err(LayerError::Unsupported(
                "RNN cannot backpropagate to the sequence indicators".into(),
            ));
        }
        let (steps, num, input, _) = self.seq.dims;
        let hidden = self.seq.hidden;
        let r = self.seq.slots.rest;
        let step = num * hidden;
        let cont = ctx.bottoms[1].data();
        let dy = ctx.top_diffs[0].data();
        let (w_hh, w_ho) = (self.seq.params[r].data(), self.seq.params[r + 1].data());
        // Gradients at the output pre-activations and at the hidden pre-activations.
        let d_out: Vec<f32> = dy.iter().zip(&self.o).map(|(g, o)| g * (1.0 - o * o)).collect();
        let mut d_pre = vec![0.0f32; steps * step];
        let mut dh_next = if self.seq.expose {
            ctx.top_diffs[1].data().to_vec()
        } else {
            vec![0.0f32; step]
        };
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
        if down[r] {
            add_outer(&d_pre, &self.h_conted, hidden, hidden, ctx.param_diffs[r].data_mut());
        }
        if down[r + 1] {
            add_outer(
                &d_out,
                &self.h[step..],
                hidden,
                hidden,
                ctx.param_diffs[r + 1].data_mut(),
            );
        }
        if down[r + 2] {
            add_rows(&d_out, hidden, ctx.param_diffs[r + 2].data_mut());
        }
        if ctx.propagate_down[0] {
            let w_xh = self.seq.params[0].data();
            matmul_nn(&d_pre, w_xh, hidden, input, ctx.bottom_diffs[0].data_mut(), false);
        }
        self.seq.static_backward(&mut ctx, &d_pre, 1);
        if self.seq.expose {
            let s = self.seq.state_bottom();
            if ctx.propagate_down[s] {
                ctx.bottom_diffs[s].data_mut().copy_from_slice(&dh_next);
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
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
    fn static_input_and_exposed_state_gradients() {
        for (kind, states) in [("LSTM", 2usize), ("RNN", 1)] {
            let mut p = recurrent(kind, 2);
            p.recurrent_param.as_mut().unwrap().expose_hidden = Some(true);
            p.top = (0..=states).map(|i| format!("top{i}")).collect();
            // cont is 1 at t = 0 for one stream, so h_0 (and c_0) reach the outputs.
            let cont = Tensor::new(&[3, 2], vec![1.0, 0.0, 1.0, 1.0, 0.0, 1.0]);
            let mut bottoms = vec![
                uniform(&[3, 2, 3], -1.0, 1.0, 11),
                cont,
                uniform(&[2, 2], -1.0, 1.0, 12),
            ];
            bottoms.extend((0..states).map(|i| uniform(&[1, 2, 2], -1.0, 1.0, 13 + i as u64)));
            let mut c = Check::new(p, bottoms);
            c.check_bottoms = vec![true; 3 + states];
            c.check_bottoms[1] = false;
            check(&c);
        }
    }

    #[test]
    fn recurrent_shapes_are_checked() {
        let mut lstm = Lstm::new(&recurrent("LSTM", 2), 2, 1).unwrap();
        assert_eq!(lstm.reshape(&[&[3, 2, 4], &[3, 2]]).unwrap(), vec![vec![3, 2, 2]]);
        assert_eq!(lstm.params()[0].shape(), &[8, 4]);
        assert!(lstm.reshape(&[&[3, 2, 4], &[3, 1]]).is_err());
        assert!(Rnn::new(&recurrent("RNN", 0), 2, 1).is_err());
        // Without expose_hidden there is one top; a third bottom is the static input, a fourth is too many.
        assert!(Rnn::new(&recurrent("RNN", 2), 2, 2).is_err());
        assert_eq!(Rnn::new(&recurrent("RNN", 2), 3, 1).unwrap().params().len(), 6);
        assert!(Rnn::new(&recurrent("RNN", 2), 4, 1).is_err());
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
