//! Han's released compressed layout (songhan/Deep-Compression-AlexNet, `decode.py`), written from a quantized net.
//!
//! The file: one little-endian `uint32` entry count per layer whose name contains `conv`, `fc` or `ip` (net order),
//! then per such layer: `float32[2^b]` codebook (`b = 8` when the name contains `conv`, else 4; index 0 is 0.0,
//! unused entries 0.0), the `float32` bias (blob 1, as many values as the net's bias), the codes (one byte each for
//! `b = 8`; two per byte, low nibble first, for `b = 4`), and 4-bit gaps two per byte, low nibble first. A reader
//! places the codes at `cumsum(gap + 1) - 1`; a run of more than 15 zeros takes filler entries (code 0, gap 15).
//! `decode.py` reads `ceil(n / 2)` bytes of nibbles and fills the even and odd entries from them, so `n` must be
//! even: an odd count gets one more filler, made by splitting an entry whose gap is at least 1.

use crate::error::{Error, Result};
use crate::model::NetMessage;
use std::collections::BTreeSet;
use std::io::Write;

/// Bits per code of a layer in Han's layout.
pub fn code_bits(layer: &str) -> u32 {
    if layer.contains("conv") {
        8
    } else {
        4
    }
}

/// Whether Han's layout stores a layer (its name contains `conv`, `fc` or `ip`).
pub fn is_stored(layer: &str) -> bool {
    layer.contains("conv") || layer.contains("fc") || layer.contains("ip")
}

/// One layer's streams: codes and gaps (one entry each), the padded codebook, the bias.
struct Layer {
    codes: Vec<u8>,
    gaps: Vec<u8>,
    codebook: Vec<f32>,
    bias: Vec<f32>,
    bits: u32,
}

/// The entries of a blob with 4-bit gaps (fillers for runs over 15), `code_of` giving each nonzero's code.
fn entries(values: &[f32], code_of: impl Fn(f32) -> u8) -> (Vec<u8>, Vec<u8>) {
    let (mut codes, mut gaps) = (Vec::new(), Vec::new());
    let mut run = 0usize;
    for &v in values {
        if v == 0.0 {
            run += 1;
            continue;
        }
        while run > 15 {
            codes.push(0);
            gaps.push(15);
            run -= 16;
        }
        codes.push(code_of(v));
        gaps.push(run as u8);
        run = 0;
    }
    (codes, gaps)
}

/// Makes the entry count even by splitting the first entry with a gap of at least 1 into a filler and itself.
fn make_even(codes: &mut Vec<u8>, gaps: &mut Vec<u8>) -> bool {
    if codes.len().is_multiple_of(2) {
        return true;
    }
    let Some(at) = gaps.iter().position(|&g| g >= 1) else {
        return false;
    };
    // (g, c) -> (0, 0) (g - 1, c): the filler takes the first zero of the run.
    gaps[at] -= 1;
    codes.insert(at, 0);
    gaps.insert(at, 0);
    true
}

fn nibbles(values: &[u8]) -> Vec<u8> {
    values
        .chunks(2)
        .map(|p| p[0] | p.get(1).map_or(0, |h| h << 4))
        .collect()
}

/// Writes `net` (a quantized net: each stored layer's weights hold at most `2^b - 1` distinct nonzero values) in
/// Han's layout to `out`; returns the stored layers with their entry counts.
pub fn write_han(net: &NetMessage<'_>, out: &mut dyn Write) -> Result<Vec<(String, usize)>> {
    let path = net.path();
    let mut layers = Vec::new();
    for layer in net.layers() {
        let name = layer.name().to_string();
        if !is_stored(&name) {
            continue;
        }
        let blobs = layer.blobs();
        let bad = |problem: String| Error::invalid(path, format!("layer '{name}': {problem}"));
        let (Some(weights), Some(bias)) = (blobs.first(), blobs.get(1)) else {
            return Err(bad("Han's layout needs a weight and a bias blob".into()));
        };
        let values = weights.data().to_vec_f32();
        let bits = code_bits(&name);
        let distinct: BTreeSet<u32> = values.iter().filter(|v| **v != 0.0).map(|v| v.to_bits()).collect();
        if distinct.len() >= 1 << bits {
            return Err(bad(format!(
                "{} distinct nonzero values do not fit the {bits}-bit codebook (at most {}): quantize it to {bits} bits",
                distinct.len(),
                (1 << bits) - 1
            )));
        }
        let mut shared: Vec<f32> = distinct.into_iter().map(f32::from_bits).collect();
        shared.sort_by(f32::total_cmp);
        let mut codebook = vec![0f32; 1 << bits];
        codebook[1..=shared.len()].copy_from_slice(&shared);
        let code_of = |v: f32| shared.binary_search_by(|c| c.total_cmp(&v)).map_or(0, |i| i as u8 + 1);
        let (mut codes, mut gaps) = entries(&values, code_of);
        if !make_even(&mut codes, &mut gaps) {
            return Err(bad(format!(
                "{} entries with no zero to split: decode.py needs an even count",
                codes.len()
            )));
        }
        layers.push((
            name,
            Layer {
                codes,
                gaps,
                codebook,
                bias: bias.data().to_vec_f32(),
                bits,
            },
        ));
    }
    if layers.is_empty() {
        return Err(Error::invalid(path, "no layer whose name contains conv, fc or ip"));
    }
    let io = |e: std::io::Error| Error::io(path, e);
    for (name, layer) in &layers {
        let count = u32::try_from(layer.codes.len())
            .map_err(|_| Error::invalid(path, format!("layer '{name}': too many entries for a uint32 count")))?;
        out.write_all(&count.to_le_bytes()).map_err(io)?;
    }
    for (_, layer) in &layers {
        let floats = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        out.write_all(&floats(&layer.codebook)).map_err(io)?;
        out.write_all(&floats(&layer.bias)).map_err(io)?;
        let codes = if layer.bits == 8 {
            layer.codes.clone()
        } else {
            nibbles(&layer.codes)
        };
        out.write_all(&codes).map_err(io)?;
        out.write_all(&nibbles(&layer.gaps)).map_err(io)?;
    }
    Ok(layers.into_iter().map(|(name, l)| (name, l.codes.len())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// decode.py's walk: positions cumsum(gap + 1) - 1, values codebook[code].
    fn decode(codes: &[u8], gaps: &[u8], codebook: &[f32], len: usize) -> Vec<f32> {
        let mut out = vec![0f32; len];
        let mut position = 0usize;
        for (i, (&c, &g)) in codes.iter().zip(gaps).enumerate() {
            position += usize::from(g) + usize::from(i > 0);
            out[position] = codebook[usize::from(c)];
        }
        out
    }

    #[test]
    fn long_runs_take_fillers_and_odd_counts_split_an_entry() {
        let mut values = vec![0f32; 40];
        values[0] = 2.0;
        values[20] = 1.0; // a run of 19 zeros: one filler
        values[39] = 2.0; // a run of 18 zeros: one filler
        let codebook = [0.0, 1.0, 2.0];
        let (mut codes, mut gaps) = entries(&values, |v| if v == 1.0 { 1 } else { 2 });
        assert_eq!(
            (codes.clone(), gaps.clone()),
            (vec![2, 0, 1, 0, 2], vec![0, 15, 3, 15, 2])
        );
        assert_eq!(decode(&codes, &gaps, &codebook, 40), values);
        assert!(make_even(&mut codes, &mut gaps));
        assert_eq!(codes.len(), 6);
        assert_eq!(decode(&codes, &gaps, &codebook, 40), values);
        // A dense odd blob cannot be made even.
        let (mut codes, mut gaps) = entries(&[1.0, 1.0, 1.0], |_| 1);
        assert!(!make_even(&mut codes, &mut gaps));
        assert_eq!(nibbles(&[1, 2, 3]), vec![0x21, 0x03]);
    }
}
