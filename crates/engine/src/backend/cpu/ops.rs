//! Element-wise and row-wise CPU ops: embedding lookup, RMSNorm, RoPE, gated activations.

use super::lanes16::Lanes16;
use super::CpuWeight;
use crate::error::{EngineError, Result};
use crate::model::config::{Activation, RopeParams, RopeStyle};
use half::f16;
use quant::SimdLevel;

/// out: [n_tokens, d_model] = table[ids] * scale
pub fn embed(table: &CpuWeight, ids: &[u32], scale: f32, out: &mut [f32]) -> Result<()> {
    let kernels = table.kernels.ok_or(EngineError::UnsupportedType {
        name: table.src.info.name.clone(),
        ty: table.ty,
        backend: "cpu",
    })?;
    let d = table.row_len;
    for (t, &id) in ids.iter().enumerate() {
        let id = id as usize;
        if id >= table.rows {
            return Err(EngineError::BadToken {
                id: id as u32,
                vocab: table.rows,
            });
        }
        let row = &table.bytes()[id * table.row_bytes..(id + 1) * table.row_bytes];
        let dst = &mut out[t * d..(t + 1) * d];
        (kernels.dequantize_row)(row, dst);
        if scale != 1.0 {
            dst.iter_mut().for_each(|v| *v *= scale);
        }
    }
    Ok(())
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    // Squared in f32, summed in f64, in order: ggml's arithmetic.
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// out = x / rms(x) * weight, one row.
pub fn rms_norm_row(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let s = rms_scale(x, eps);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * s * w;
    }
}

pub fn rms_norm_row_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let s = rms_scale(x, eps);
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * s * w;
    }
}

/// Rotates every head of x: [n_tokens, n_heads, head_dim] by its token's position.
pub fn rope(
    x: &mut [f32],
    positions: &[u32],
    n_heads: usize,
    head_dim: usize,
    style: RopeStyle,
    params: RopeParams,
    freq_factors: Option<&[f32]>,
) {
    let half = head_dim / 2;
    // The angle of pair i is pos * theta^(-2i/d): computed by repeated multiplication, in f32, as ggml does,
    // so that positions rotate exactly as llama.cpp rotates them.
    let theta_scale = params.theta.powf(-2.0 / head_dim as f32);
    let mut cos_sin = vec![(0.0f32, 0.0f32); half];
    for (t, &pos) in positions.iter().enumerate() {
        let mut angle = pos as f32 * params.position_scale;
        for (i, cs) in cos_sin.iter_mut().enumerate() {
            let a = angle / freq_factors.and_then(|ff| ff.get(i).copied()).unwrap_or(1.0);
            let (s, c) = a.sin_cos();
            *cs = (c, s);
            angle *= theta_scale;
        }
        let row = &mut x[t * n_heads * head_dim..(t + 1) * n_heads * head_dim];
        for head in row.chunks_exact_mut(head_dim) {
            match style {
                RopeStyle::Normal => {
                    for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(&cos_sin) {
                        let (a, b) = (pair[0], pair[1]);
                        pair[0] = a.mul_add(c, -(b * s));
                        pair[1] = a.mul_add(s, b * c);
                    }
                }
                RopeStyle::Neox => {
                    let (lo, hi) = head.split_at_mut(half);
                    for ((a, b), &(c, s)) in lo.iter_mut().zip(hi.iter_mut()).zip(&cos_sin) {
                        let (x0, x1) = (*a, *b);
                        *a = x0.mul_add(c, -(x1 * s));
                        *b = x0.mul_add(s, x1 * c);
                    }
                }
            }
        }
    }
}

pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    // `1 + a·x·x` as one fused multiply-add, as ggml's compiler contracts it: it decides some f16 table entries.
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (0.044_715 * x).mul_add(x, 1.0)).tanh())
}

/// GELU through a table indexed by the f16 bits of the input, holding f16-rounded outputs: what ggml's CPU
/// backend computes (its GGML_GELU_FP16 path), so that Gemma agrees with llama.cpp token for token. Beyond ±10
/// GELU is 0 or the identity.
fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu_tanh(f16::from_bits(bits).to_f32())).to_f32())
            .collect()
    })
}

pub fn gelu_f16_table(x: f32, table: &[f32]) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        table[f16::from_f32(x).to_bits() as usize]
    }
}

/// gate = act(gate) * up, as ggml computes it: SiLU with its SIMD exp for each whole 16 elements (see lanes16; the
/// pieces the caller hands over start at multiples of 16 of a row), GELU through its f16 table.
pub fn gated_activation(gate: &mut [f32], up: &[f32], act: Activation, simd: SimdLevel) {
    match act {
        Activation::Silu => (Lanes16::new(simd).silu_mul)(gate, up),
        Activation::GeluTanh => {
            let table = gelu_table();
            gate.iter_mut()
                .zip(up)
                // At or below -10 ggml writes 0 without multiplying (no -0 from a negative up).
                .for_each(|(g, &u)| {
                    *g = if *g <= -10.0 {
                        0.0
                    } else {
                        gelu_f16_table(*g, table) * u
                    }
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_styles_rotate_different_pairs_and_keep_norm() {
        let params = RopeParams {
            theta: 10_000.0,
            position_scale: 1.0,
        };
        let orig: Vec<f32> = (0..8).map(|i| i as f32 * 0.3 - 1.0).collect();
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            let mut x = orig.clone();
            rope(&mut x, &[5], 1, 8, style, params, None);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-4, "{style:?} changed the norm");
            assert_ne!(x, orig);
        }
        // Position 0 is the identity.
        let mut x = orig.clone();
        rope(&mut x, &[0], 1, 8, RopeStyle::Neox, params, None);
        assert_eq!(x, orig);
        // Normal style, pair 0 at position 1 rotates by exactly 1 radian.
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        rope(&mut x, &[1], 1, 4, RopeStyle::Normal, params, None);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn rms_norm_gives_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 5.0];
        let mut out = [0.0; 4];
        rms_norm_row(&x, &[1.0; 4], 0.0, &mut out);
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
    }

    #[test]
    fn activations_match_their_definitions() {
        for level in SimdLevel::available() {
            // 20 elements: a whole chunk of 16 (SIMD exp) and a tail (libm's).
            let mut g: Vec<f32> = (0..20).map(|i| i as f32 * 0.5 - 5.0).collect();
            let want: Vec<f32> = g.iter().map(|&x| x / (1.0 + (-x).exp()) * 2.0).collect();
            gated_activation(&mut g, &[2.0; 20], Activation::Silu, level);
            for (i, (a, b)) in g.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{level:?} silu element {i}: {a} vs {b}"
                );
            }
        }
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(gelu_tanh(0.0), 0.0);
        let t = gelu_table();
        for x in [-12.0f32, -3.3, -0.01, 0.0, 0.7, 2.5, 9.9, 11.0] {
            let d = (gelu_f16_table(x, t) - gelu_tanh(x)).abs();
            assert!(d <= 2e-3 * x.abs().max(1.0), "table gelu({x}) off by {d}");
        }
    }
}
