//! The simple round-to-nearest quantizers of the K-quant formats (no search, no importance weights): enough for
//! tests and synthetic models, with error bounds the tests hold them to.

use super::QK_K;

/// The smallest f16 not below `x` (for `x >= 0`; saturates at the largest finite f16). Super-block scales are
/// rounded up so that sub-block scales computed from them never need clamping.
pub fn f16_at_least(x: f32) -> half::f16 {
    if x.is_nan() || x <= 0.0 {
        return half::f16::ZERO;
    }
    let h = half::f16::from_f32(x);
    if h.is_infinite() {
        return half::f16::MAX;
    }
    if h.to_f32() >= x {
        h
    } else {
        half::f16::from_bits(h.to_bits() + 1)
    }
}

/// Affine quantization of one super-block: `x[i] ≈ d * scale[j] * q[i] - dmin * min[j]` with sub-blocks `j` of
/// `SUB` elements, `q` in `0..=q_max` and scales/mins in `0..=scale_max`.
pub struct Affine<const N_SUB: usize> {
    pub d: half::f16,
    pub dmin: half::f16,
    pub scales: [u8; N_SUB],
    pub mins: [u8; N_SUB],
    /// [QK_K]
    pub q: [u8; QK_K],
}

/// Round-to-nearest affine quantization (no search, no importance weights).
///
/// Per sub-block the offset `dmin * min` is rounded up to cover the smallest value (or 0), the step
/// `d * scale` rounded up to cover the largest: no element is clamped, so each is off by at most half a step.
pub fn quantize_affine<const N_SUB: usize>(x: &[f32], q_max: u8, scale_max: u8) -> Affine<N_SUB> {
    let sub = QK_K / N_SUB;
    let mut lows = [0f32; N_SUB];
    let mut highs = [0f32; N_SUB];
    for j in 0..N_SUB {
        let part = &x[j * sub..(j + 1) * sub];
        lows[j] = part.iter().fold(0f32, |a, &v| a.min(v));
        highs[j] = part.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)).max(lows[j]);
    }
    let dmin = f16_at_least(lows.iter().fold(0f32, |a, &v| a.max(-v)) / scale_max as f32);
    let dmin_f = dmin.to_f32();
    let mut mins = [0u8; N_SUB];
    let mut offsets = [0f32; N_SUB];
    for j in 0..N_SUB {
        if dmin_f > 0.0 {
            mins[j] = ((-lows[j] / dmin_f).ceil() as u8).min(scale_max);
        }
        offsets[j] = dmin_f * mins[j] as f32;
    }
    let mut step_need = [0f32; N_SUB];
    for j in 0..N_SUB {
        step_need[j] = (highs[j] + offsets[j]).max(0.0) / q_max as f32;
    }
    let d = f16_at_least(step_need.iter().fold(0f32, |a, &v| a.max(v)) / scale_max as f32);
    let d_f = d.to_f32();
    let mut scales = [0u8; N_SUB];
    let mut q = [0u8; QK_K];
    for j in 0..N_SUB {
        if d_f > 0.0 {
            scales[j] = ((step_need[j] / d_f).ceil() as u8).min(scale_max);
        }
        let step = d_f * scales[j] as f32;
        if step > 0.0 {
            for i in j * sub..(j + 1) * sub {
                q[i] = ((x[i] + offsets[j]) / step).round().clamp(0.0, q_max as f32) as u8;
            }
        }
    }
    Affine {
        d,
        dmin,
        scales,
        mins,
        q,
    }
}

/// Symmetric quantization of one super-block: `x[i] ≈ d * scale[k] * q[i]` with sub-blocks of 16, `q` in
/// `-q_neg..=q_neg - 1` and signed scales in `-scale_max..=scale_max`.
pub struct Symmetric {
    pub d: half::f16,
    /// [QK_K / 16]
    pub scales: [i8; QK_K / 16],
    /// [QK_K]
    pub q: [i8; QK_K],
}

/// Round-to-nearest symmetric quantization (no search, no importance weights).
///
/// Each sub-block's largest-magnitude value maps to `-q_neg` (the longer side of the range); its step is
/// rounded up in magnitude, so only a value of the opposite sign and equal magnitude gets clamped (by one step).
pub fn quantize_symmetric(x: &[f32], q_neg: i8, scale_max: i8) -> Symmetric {
    let mut want = [0f32; QK_K / 16];
    for (k, part) in x.chunks_exact(16).enumerate() {
        let extreme = part.iter().fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
        want[k] = extreme / -(q_neg as f32);
    }
    let d = f16_at_least(want.iter().fold(0f32, |a, &v| a.max(v.abs())) / scale_max as f32);
    let d_f = d.to_f32();
    let mut scales = [0i8; QK_K / 16];
    let mut q = [0i8; QK_K];
    for (k, part) in x.chunks_exact(16).enumerate() {
        if d_f > 0.0 {
            let magnitude = (want[k].abs() / d_f).ceil().min(scale_max as f32);
            scales[k] = (magnitude as i8) * if want[k] < 0.0 { -1 } else { 1 };
        }
        let step = d_f * scales[k] as f32;
        if step != 0.0 {
            for (i, &v) in part.iter().enumerate() {
                q[16 * k + i] = (v / step).round().clamp(-(q_neg as f32), (q_neg - 1) as f32) as i8;
            }
        }
    }
    Symmetric { d, scales, q }
}
