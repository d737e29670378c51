//! Q8_K: the activation partner of every K-quant weight format. A super-block of 256 elements holds an f32 scale,
//! 256 signed bytes, and the sums of each run of 16 bytes (`bsums`), which the weight kernels use for the
//! min/offset terms without touching the bytes again.
//!
//! The quantizer follows ggml's numerics (so our integer dot products see the same activations llama.cpp's do):
//! the first element of largest magnitude `max` maps to -127, `iscale = -127 / max`, every element becomes
//! `round_half_even(iscale * x)` capped at 127, and `d = 1 / iscale`.

use crate::k_common::{blocks, blocks_mut, super_blocks, ByteBlock, QK_K};
use crate::SimdLevel;

/// One Q8_K super-block: 292 bytes. Element `i` is `d * qs[i]`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8K {
    /// f32 scale, little-endian.
    pub d: [u8; 4],
    /// [QK_K] quantized values.
    pub qs: [i8; QK_K],
    /// [QK_K / 16] i16 little-endian: `bsums[k] = sum(qs[16k..16k+16])`.
    pub bsums: [[u8; 2]; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl ByteBlock for BlockQ8K {}

impl BlockQ8K {
    pub fn scale(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    pub fn bsum(&self, k: usize) -> i16 {
        i16::from_le_bytes(self.bsums[k])
    }
}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ8K>();

/// Dequantizes `dst.len() / 256` blocks.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ8K>(src, super_blocks(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = block.scale();
        for (o, &q) in out.iter_mut().zip(&block.qs) {
            *o = d * q as f32;
        }
    }
}

/// Quantizes `src` (a whole number of super-blocks) into `dst`: the reference.
pub fn quantize_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = blocks_mut::<BlockQ8K>(dst, super_blocks(src.len()));
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *block = BlockQ8K {
                d: [0; 4],
                qs: [0; QK_K],
                bsums: [[0; 2]; QK_K / 16],
            };
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (k, sum) in block.bsums.iter_mut().enumerate() {
            let s: i32 = block.qs[16 * k..16 * (k + 1)].iter().map(|&q| q as i32).sum();
            *sum = (s as i16).to_le_bytes();
        }
        block.d = (1.0 / iscale).to_le_bytes();
    }
}

/// The activation quantizer for `simd` (lowered to what this CPU runs).
pub fn quantizer(simd: SimdLevel) -> fn(&[f32], &mut [u8]) {
    match crate::k_common::usable(simd) {
        SimdLevel::Scalar => quantize_row_scalar,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => quantize_row_avx2,
        #[cfg(not(target_arch = "x86_64"))]
        _ => quantize_row_scalar,
    }
}

/// Lays out a converted activation row of `k` elements for the GEMM (see [`crate::gemm`]): codes `q`, scale `d`,
/// per 16 elements `d * bsum`.
pub fn pack_gemm_act(act_row: &[u8], k: usize, dst: &mut [u8], ma: &mut [f32]) {
    let src = blocks::<BlockQ8K>(act_row, super_blocks(k));
    for (b, block) in src.iter().enumerate() {
        let d = block.scale();
        crate::gemm::put_run(dst, ma, QK_K * b, &block.qs.map(|q| q as u8), d, 0.0);
        for g in 0..QK_K / 16 {
            ma[16 * b + g] = d * block.bsum(g) as f32;
        }
    }
    crate::gemm::finish_row(dst, ma, k);
}

/// AVX2 twin of [`quantize_row_scalar`], bit-exact with it. Private: only [`quantizer`] hands it out, after
/// checking the CPU, which is what makes the `unsafe` call inside sound.
#[cfg(target_arch = "x86_64")]
fn quantize_row_avx2(src: &[f32], dst: &mut [u8]) {
    let dst = blocks_mut::<BlockQ8K>(dst, super_blocks(src.len()));
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let x: &[f32; QK_K] = x.try_into().expect("chunks_exact yields QK_K elements");
        // SAFETY: AVX2 and FMA are present: `quantizer` checked the CPU before handing out this function.
        unsafe { x86::quantize_block(x, block) };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BlockQ8K;
    use crate::k_common::QK_K;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub fn quantize_block(x: &[f32; QK_K], block: &mut BlockQ8K) {
        let sign_bit = _mm256_set1_ps(-0.0);
        let mut amax8 = _mm256_setzero_ps();
        for chunk in x.chunks_exact(8) {
            // SAFETY: chunk holds 8 floats.
            let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
            amax8 = _mm256_max_ps(amax8, _mm256_andnot_ps(sign_bit, v));
        }
        let quad = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps::<1>(amax8));
        let pair = _mm_max_ps(quad, _mm_movehl_ps(quad, quad));
        let amax = _mm_cvtss_f32(_mm_max_ss(pair, _mm_movehdup_ps(pair)));
        if amax == 0.0 {
            *block = BlockQ8K {
                d: [0; 4],
                qs: [0; QK_K],
                bsums: [[0; 2]; QK_K / 16],
            };
            return;
        }
        // The scalar reference keeps the first element of largest magnitude; its sign picks the scale's sign.
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let iscale8 = _mm256_set1_ps(iscale);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let ones_u8 = _mm256_set1_epi8(1);
        let ones_i16 = _mm256_set1_epi16(1);
        let mut group_sums = [_mm256_setzero_si256(); 8]; // [8 runs of 32] each 8 i32 sums of 4 values
        for (run, xs) in x.chunks_exact(32).enumerate() {
            let mut ints = [_mm256_setzero_si256(); 4];
            for (k, int) in ints.iter_mut().enumerate() {
                // SAFETY: xs holds 32 floats.
                let v = unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * k)) };
                let scaled = _mm256_mul_ps(iscale8, v);
                let rounded = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(scaled);
                *int = _mm256_cvttps_epi32(rounded);
            }
            // Saturating packs cap 128 at 127 as the reference's min(127) does; nothing falls below -127.
            let words = _mm256_packs_epi16(
                _mm256_packs_epi32(ints[0], ints[1]),
                _mm256_packs_epi32(ints[2], ints[3]),
            );
            let bytes = _mm256_permutevar8x32_epi32(words, order);
            // SAFETY: qs has 32 bytes at 32 * run (run < 8).
            unsafe { _mm256_storeu_si256(block.qs.as_mut_ptr().add(32 * run).cast(), bytes) };
            group_sums[run] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones_u8, bytes), ones_i16);
        }
        // Each run of 32 gives two bsums: lanes 0..4 (its first 16) and 4..8 (its second 16).
        let sums_for = |r: usize| {
            let pairs_a = _mm256_hadd_epi32(group_sums[r], group_sums[r + 1]);
            let pairs_b = _mm256_hadd_epi32(group_sums[r + 2], group_sums[r + 3]);
            // [b(r)0, b(r+1)0, b(r+2)0, b(r+3)0 | b(r)1, b(r+1)1, b(r+2)1, b(r+3)1] in bsum order 2r.. per half
            _mm256_hadd_epi32(pairs_a, pairs_b)
        };
        let packed = _mm256_packs_epi32(sums_for(0), sums_for(4));
        // packed (i16): low half [b0 b2 b4 b6 b8 b10 b12 b14], high half [b1 b3 .. b15]
        let even = _mm256_castsi256_si128(packed);
        let odd = _mm256_extracti128_si256::<1>(packed);
        // SAFETY: bsums is 32 bytes.
        unsafe {
            _mm_storeu_si128(block.bsums.as_mut_ptr().cast(), _mm_unpacklo_epi16(even, odd));
            _mm_storeu_si128(block.bsums.as_mut_ptr().add(8).cast(), _mm_unpackhi_epi16(even, odd));
        }
        block.d = (1.0 / iscale).to_le_bytes();
    }
}
