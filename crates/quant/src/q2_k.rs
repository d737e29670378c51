//! Q2_K: super-blocks of 256 2-bit values in sixteen sub-blocks of 16, each with a 4-bit scale and a 4-bit
//! min scaled by the block's f16 `d` and `dmin`: `x = d * scale[k] * q - dmin * min[k]`, `q` in 0..4.
//!
//! Pairs with Q8_K activations: per block the dot product is
//! `d8 * (d * Σ_k scale[k] * Σ q*a - dmin * Σ_k min[k] * bsum[k])`.

use crate::k_common::{
    blocks, blocks_mut, f16_le, quantize_affine, super_blocks, usable, ByteBlock, DequantizeFn, VecDotFn, QK_K,
};
use crate::q8_k::{self, BlockQ8K};
use crate::{GgmlType, Kernels, SimdLevel};

/// One Q2_K super-block: 84 bytes, laid out as in GGUF.
///
/// Element `i` sits in half `h = i / 128`, group `j = (i % 128) / 32`, position `l = i % 32`: its two bits are
/// bits `2j..2j+2` of `qs[32h + l]`; its sub-block is `k = i / 16`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ2K {
    /// [16] sub-block scale (low nibble) and min (high nibble).
    pub scales: [u8; QK_K / 16],
    /// [2 halves] × 32 bytes of bit pairs.
    pub qs: [u8; QK_K / 4],
    /// f16 super-block scale of the sub-block scales.
    pub d: [u8; 2],
    /// f16 super-block scale of the sub-block mins.
    pub dmin: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ2K>() == 84);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl ByteBlock for BlockQ2K {}

impl BlockQ2K {
    /// The 2-bit value of element `i` (0..256).
    pub fn q(&self, i: usize) -> u8 {
        let (h, j, l) = (i / 128, (i % 128) / 32, i % 32);
        (self.qs[32 * h + l] >> (2 * j)) & 3
    }
}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ2K>();

/// The kernels at `simd`, lowered to what this CPU runs (AVX-512 uses the AVX2 kernels).
pub fn kernels(simd: SimdLevel) -> Option<Kernels> {
    let simd = usable(simd);
    let (dequantize_row, vec_dot): (DequantizeFn, VecDotFn) = match simd {
        SimdLevel::Scalar => (dequantize_row_scalar, vec_dot_scalar),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => (dequantize_row_scalar, vec_dot_avx2),
        #[cfg(not(target_arch = "x86_64"))]
        _ => (dequantize_row_scalar, vec_dot_scalar),
    };
    Some(Kernels {
        weight: GgmlType::Q2_K,
        act: GgmlType::Q8_K,
        dequantize_row,
        quantize_act_row: q8_k::quantizer(simd),
        vec_dot,
        vec_dot_x4: None,
    })
}

/// Dequantizes `dst.len() / 256` blocks: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ2K>(src, super_blocks(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(block.d);
        let dmin = f16_le(block.dmin);
        for (k, sub) in out.chunks_exact_mut(16).enumerate() {
            let step = d * (block.scales[k] & 0x0F) as f32;
            let offset = dmin * (block.scales[k] >> 4) as f32;
            for (l, o) in sub.iter_mut().enumerate() {
                *o = step * block.q(16 * k + l) as f32 - offset;
            }
        }
    }
}

/// Dot product of a Q2_K row and a Q8_K row of `n` elements: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let weights = blocks::<BlockQ2K>(weight_row, nb);
    let acts = blocks::<BlockQ8K>(act_row, nb);
    let mut sum = 0f32;
    for (w, a) in weights.iter().zip(acts) {
        let mut scaled_dot = 0i32; // Σ_k scale[k] * Σ q*a
        let mut min_dot = 0i32; // Σ_k min[k] * Σ a
        for k in 0..16 {
            let mut dot = 0i32;
            let mut act_sum = 0i32;
            for i in 16 * k..16 * (k + 1) {
                dot += w.q(i) as i32 * a.qs[i] as i32;
                act_sum += a.qs[i] as i32;
            }
            scaled_dot += (w.scales[k] & 0x0F) as i32 * dot;
            min_dot += (w.scales[k] >> 4) as i32 * act_sum;
        }
        sum += a.scale() * (f16_le(w.d) * scaled_dot as f32 - f16_le(w.dmin) * min_dot as f32);
    }
    sum
}

/// Round-to-nearest quantization of `src` (a whole number of super-blocks) into `dst` (see
/// [`crate::k_common`]'s `quantize_affine`: no element is clamped, each is off by at most half its step).
pub fn quantize_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = blocks_mut::<BlockQ2K>(dst, super_blocks(src.len()));
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let quant = quantize_affine::<16>(x, 3, 15);
        block.d = quant.d.to_le_bytes();
        block.dmin = quant.dmin.to_le_bytes();
        for k in 0..16 {
            block.scales[k] = quant.scales[k] | (quant.mins[k] << 4);
        }
        block.qs = [0; QK_K / 4];
        for (i, &q) in quant.q.iter().enumerate() {
            let (h, j, l) = (i / 128, (i % 128) / 32, i % 32);
            block.qs[32 * h + l] |= q << (2 * j);
        }
    }
}

// The SIMD entry point is private: only `kernels` hands it out, after `usable` checked the CPU, which is what
// makes its `unsafe` call sound.

/// Unpacks a weight row of `k` elements into a GEMM panel row (see [`crate::gemm`]): codes `q` (0..4), scale
/// `d * scale[k]`, correction `-dmin * min[k]` per sub-block of 16: the reference.
pub fn unpack_gemm_row(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let src = blocks::<BlockQ2K>(row, super_blocks(k));
    for (b, block) in src.iter().enumerate() {
        let (d, dmin) = (f16_le(block.d), f16_le(block.dmin));
        for s in 0..16 {
            let codes: [u8; 16] = std::array::from_fn(|l| block.q(16 * s + l));
            let step = d * (block.scales[s] & 0x0F) as f32;
            let offset = dmin * (block.scales[s] >> 4) as f32;
            crate::gemm::put_run(dst, mw, QK_K * b + 16 * s, &codes, step, -offset);
        }
    }
    crate::gemm::finish_row(dst, mw, k);
}

/// One superblock in the integer form of ggml's tiled GEMM ([`crate::gemm::ktiled`]): codes 0..4, the 4-bit scales
/// and mins of its sixteen sub-blocks of 16.
pub fn tiled_superblock(bytes: &[u8], out: &mut crate::gemm::ktiled::Superblock) {
    let block = &blocks::<BlockQ2K>(bytes, 1)[0];
    out.codes = std::array::from_fn(|i| block.q(i));
    out.scales = block.scales.map(|v| (v & 0x0F) as i32);
    out.mins = block.scales.map(|v| (v >> 4) as i32);
    (out.d, out.dmin) = (f16_le(block.d), f16_le(block.dmin));
}

#[cfg(target_arch = "x86_64")]
fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    // SAFETY: AVX2/FMA/F16C present (see above).
    unsafe { x86::vec_dot_avx2(blocks(weight_row, nb), blocks(act_row, nb)) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BlockQ2K;
    use crate::k_common::x86::{hsum_ps, load_control, prefetch_ahead, SIXTEENTHS_CONTROLS};
    use crate::q8_k::BlockQ8K;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn vec_dot_avx2(weights: &[BlockQ2K], acts: &[BlockQ8K]) -> f32 {
        let controls = SIXTEENTHS_CONTROLS.map(|c| load_control(&c));
        let two_bits = _mm256_set1_epi8(3);
        let low4 = _mm_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_ps();
        for (w, a) in weights.iter().zip(acts) {
            prefetch_ahead(w);
            let halves = i32::from_le_bytes([w.d[0], w.d[1], w.dmin[0], w.dmin[1]]);
            let d = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(halves)), _mm_set1_ps(a.scale()));
            // SAFETY: scales is 16 bytes, bsums 32.
            let (packed, bsums) = unsafe {
                (
                    _mm_loadu_si128(w.scales.as_ptr().cast()),
                    _mm256_loadu_si256(a.bsums.as_ptr().cast()),
                )
            };
            let scales = _mm256_cvtepu8_epi16(_mm_and_si128(packed, low4));
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(packed), low4));
            let min_dot = _mm256_madd_epi16(mins, bsums);
            let mut sum_a = _mm256_setzero_si256();
            let mut sum_b = _mm256_setzero_si256();
            for h in 0..2 {
                let half_scales = if h == 0 {
                    _mm256_permute2x128_si256::<0x00>(scales, scales)
                } else {
                    _mm256_permute2x128_si256::<0x11>(scales, scales)
                };
                // SAFETY: 32 bytes of half h lie inside qs.
                let mut qs = unsafe { _mm256_loadu_si256(w.qs.as_ptr().add(32 * h).cast()) };
                for (j, control) in controls.iter().enumerate() {
                    // Bits 0..2 of `qs` (shifted right by 2j so far); 16-bit shifts only pull foreign bits into
                    // positions the mask drops.
                    let q2 = _mm256_and_si256(qs, two_bits);
                    qs = _mm256_srli_epi16::<2>(qs);
                    // SAFETY: 32 activation bytes at 128h + 32j lie inside qs.
                    let act = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(128 * h + 32 * j).cast()) };
                    let dot = _mm256_maddubs_epi16(q2, act);
                    let dot = _mm256_madd_epi16(dot, _mm256_shuffle_epi8(half_scales, *control));
                    if j % 2 == 0 {
                        sum_a = _mm256_add_epi32(sum_a, dot);
                    } else {
                        sum_b = _mm256_add_epi32(sum_b, dot);
                    }
                }
            }
            // The min term first, then the scaled sum: ggml's order, so that the results are llama.cpp's bits.
            let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(d));
            acc = _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(min_dot), acc);
            let sum = _mm256_add_epi32(sum_a, sum_b);
            acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(sum), acc);
        }
        hsum_ps(acc)
    }
}
