//! Q5_K: Q4_K with a fifth bit. Super-blocks of 256 5-bit values in eight sub-blocks of 32, each with a 6-bit
//! scale and a 6-bit min scaled by the block's f16 `d` and `dmin`: `x = d * scale[j] * q - dmin * min[j]`, `q`
//! in 0..32.
//!
//! Pairs with Q8_K activations exactly as Q4_K does.

use crate::k_common::{
    blocks, blocks_mut, f16_le, pack_scales_mins, quantize_affine, super_blocks, unpack_scales_mins, usable, ByteBlock,
    DequantizeFn, VecDotFn, QK_K,
};
use crate::q8_k::{self, BlockQ8K};
use crate::{GgmlType, Kernels, SimdLevel};

/// One Q5_K super-block: 176 bytes, laid out as in GGUF.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5K {
    /// f16 super-block scale of the sub-block scales.
    pub d: [u8; 2],
    /// f16 super-block scale of the sub-block mins.
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and eight 6-bit mins, packed as in Q4_K.
    pub scales: [u8; 12],
    /// Fifth bits: bit `g` of byte `l` belongs to element `32g + l`.
    pub qh: [u8; QK_K / 8],
    /// Low four bits, as Q4_K's `qs`: byte `l` of chunk `c` holds element `64c + l` (low nibble) and
    /// `64c + 32 + l` (high nibble).
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl ByteBlock for BlockQ5K {}

impl BlockQ5K {
    /// The 5-bit value of element `i` (0..256).
    pub fn q(&self, i: usize) -> u8 {
        let byte = self.qs[32 * (i / 64) + i % 32];
        let low = if i % 64 < 32 { byte & 0x0F } else { byte >> 4 };
        let high = (self.qh[i % 32] >> (i / 32)) & 1;
        low | (high << 4)
    }
}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ5K>();

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
        weight: GgmlType::Q5_K,
        act: GgmlType::Q8_K,
        dequantize_row,
        quantize_act_row: q8_k::quantizer(simd),
        vec_dot,
        vec_dot_x4: None,
    })
}

/// Dequantizes `dst.len() / 256` blocks: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ5K>(src, super_blocks(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(block.d);
        let dmin = f16_le(block.dmin);
        let (scales, mins) = unpack_scales_mins(&block.scales);
        for (j, sub) in out.chunks_exact_mut(32).enumerate() {
            let step = d * scales[j] as f32;
            let offset = dmin * mins[j] as f32;
            for (l, o) in sub.iter_mut().enumerate() {
                *o = step * block.q(32 * j + l) as f32 - offset;
            }
        }
    }
}

/// Dot product of a Q5_K row and a Q8_K row of `n` elements: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let weights = blocks::<BlockQ5K>(weight_row, nb);
    let acts = blocks::<BlockQ8K>(act_row, nb);
    let mut sum = 0f32;
    for (w, a) in weights.iter().zip(acts) {
        let (scales, mins) = unpack_scales_mins(&w.scales);
        let mut scaled_dot = 0i32; // Σ_j scale[j] * Σ q*a
        let mut min_dot = 0i32; // Σ_j min[j] * Σ a
        for j in 0..8 {
            let mut dot = 0i32;
            let mut act_sum = 0i32;
            for i in 32 * j..32 * (j + 1) {
                dot += w.q(i) as i32 * a.qs[i] as i32;
                act_sum += a.qs[i] as i32;
            }
            scaled_dot += scales[j] as i32 * dot;
            min_dot += mins[j] as i32 * act_sum;
        }
        sum += a.scale() * (f16_le(w.d) * scaled_dot as f32 - f16_le(w.dmin) * min_dot as f32);
    }
    sum
}

/// Round-to-nearest quantization of `src` (a whole number of super-blocks) into `dst` (see
/// [`crate::k_common`]'s `quantize_affine`: no element is clamped, each is off by at most half its step).
pub fn quantize_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = blocks_mut::<BlockQ5K>(dst, super_blocks(src.len()));
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let quant = quantize_affine::<8>(x, 31, 63);
        block.d = quant.d.to_le_bytes();
        block.dmin = quant.dmin.to_le_bytes();
        block.scales = pack_scales_mins(&quant.scales, &quant.mins);
        block.qh = [0; QK_K / 8];
        for c in 0..4 {
            for l in 0..32 {
                let (lo, hi) = (quant.q[64 * c + l], quant.q[64 * c + 32 + l]);
                block.qs[32 * c + l] = (lo & 0x0F) | ((hi & 0x0F) << 4);
                block.qh[l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
            }
        }
    }
}

// The SIMD entry point is private: only `kernels` hands it out, after `usable` checked the CPU, which is what
// makes its `unsafe` call sound.

/// Unpacks a weight row of `k` elements into a GEMM panel row (see [`crate::gemm`]): codes `q`, scale
/// `d * scale[j]`, correction `-dmin * min[j]` per sub-block of 32: the reference.
pub fn unpack_gemm_row(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let src = blocks::<BlockQ5K>(row, super_blocks(k));
    for (b, block) in src.iter().enumerate() {
        let (d, dmin) = (f16_le(block.d), f16_le(block.dmin));
        let (scales, mins) = unpack_scales_mins(&block.scales);
        for j in 0..8 {
            let bytes = &block.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            let codes: [u8; 32] =
                std::array::from_fn(|l| ((bytes[l] >> shift) & 0x0F) | (((block.qh[l] >> j) & 1) << 4));
            let (step, offset) = (d * scales[j] as f32, dmin * mins[j] as f32);
            crate::gemm::put_run(dst, mw, QK_K * b + 32 * j, &codes, step, -offset);
        }
    }
    crate::gemm::finish_row(dst, mw, k);
}

/// One superblock in the integer form of ggml's tiled GEMM ([`crate::gemm::ktiled`]): codes 0..32, the 6-bit
/// scales and mins of its eight sub-blocks of 32.
pub fn tiled_superblock(bytes: &[u8], out: &mut crate::gemm::ktiled::Superblock) {
    let block = &blocks::<BlockQ5K>(bytes, 1)[0];
    crate::gemm::ktiled::scale_min_superblock(block.d, block.dmin, &block.scales, |i| block.q(i), out);
}

#[cfg(target_arch = "x86_64")]
fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    // SAFETY: AVX2/FMA/F16C present (see above).
    unsafe { x86::vec_dot_avx2(blocks(weight_row, nb), blocks(act_row, nb)) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BlockQ5K;
    use crate::k_common::x86::{load_control, prefetch_ahead, scales_mins_q4k, ScaleMinAccQ5, Q4K_SCALE_CONTROLS};
    use crate::k_common::ByteBlock;
    use crate::q8_k::BlockQ8K;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn vec_dot_avx2(weights: &[BlockQ5K], acts: &[BlockQ8K]) -> f32 {
        let controls = Q4K_SCALE_CONTROLS.map(|c| load_control(&c));
        let low4 = _mm256_set1_epi8(0x0F);
        let bit4 = _mm256_set1_epi8(0x10);
        let mut acc = ScaleMinAccQ5::new();
        for (w, a) in weights.iter().zip(acts) {
            prefetch_ahead(w);
            let halves = i32::from_le_bytes([w.d[0], w.d[1], w.dmin[0], w.dmin[1]]);
            let d = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(halves)), _mm_set1_ps(a.scale()));
            let packed: &[u8; 16] = w.as_bytes()[4..20].try_into().expect("16 bytes");
            let scales = _mm256_broadcastsi128_si256(scales_mins_q4k(packed));
            let q8 = a.qs.as_ptr();
            // SAFETY: qh is 32 bytes.
            let mut qh = unsafe { _mm256_loadu_si256(w.qh.as_ptr().cast()) };
            let mut sum_a = _mm256_setzero_si256();
            let mut sum_b = _mm256_setzero_si256();
            for c in 0..4 {
                // SAFETY: chunk c's 32 weight bytes and 64 activation bytes lie inside their blocks.
                let (q4, a_lo, a_hi) = unsafe {
                    (
                        _mm256_loadu_si256(w.qs.as_ptr().add(32 * c).cast()),
                        _mm256_loadu_si256(q8.add(64 * c).cast()),
                        _mm256_loadu_si256(q8.add(64 * c + 32).cast()),
                    )
                };
                // Bits 0 and 1 of `qh` (shifted right by 2c so far) are the fifth bits of this chunk's low
                // and high nibbles; 16-bit shifts only pull foreign bits into positions the masks drop.
                let lo = _mm256_or_si256(
                    _mm256_and_si256(q4, low4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), bit4),
                );
                let hi = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q4), low4),
                    _mm256_and_si256(_mm256_slli_epi16::<3>(qh), bit4),
                );
                qh = _mm256_srli_epi16::<2>(qh);
                let dot_lo = _mm256_maddubs_epi16(lo, a_lo);
                let dot_hi = _mm256_maddubs_epi16(hi, a_hi);
                let dot_lo = _mm256_madd_epi16(dot_lo, _mm256_shuffle_epi8(scales, controls[2 * c]));
                let dot_hi = _mm256_madd_epi16(dot_hi, _mm256_shuffle_epi8(scales, controls[2 * c + 1]));
                sum_a = _mm256_add_epi32(sum_a, dot_lo);
                sum_b = _mm256_add_epi32(sum_b, dot_hi);
            }
            acc.add_block(_mm256_add_epi32(sum_a, sum_b), d, scales, &a.bsums);
        }
        acc.total()
    }
}
