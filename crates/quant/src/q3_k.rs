//! Q3_K: super-blocks of 256 3-bit values in sixteen sub-blocks of 16, each with a signed 6-bit scale, scaled
//! by the block's f16 `d`: `x = d * (scale[k] - 32) * (q - 4)`, `q` in 0..8 (stored as two low bits plus a
//! high bit that is *set* when `q >= 4`).
//!
//! Pairs with Q8_K activations. The kernels multiply the unsigned `q` and take the `-4` back out per sub-block
//! with the activation `bsums`.

use crate::k_common::{
    blocks, blocks_mut, f16_le, quantize_symmetric, super_blocks, usable, ByteBlock, DequantizeFn, VecDotFn, QK_K,
};
use crate::q8_k::{self, BlockQ8K};
use crate::{GgmlType, Kernels, SimdLevel};

/// One Q3_K super-block: 110 bytes, laid out as in GGUF.
///
/// Element `i` sits in half `h = i / 128`, group `j = (i % 128) / 32`, position `l = i % 32`: its low two bits
/// are bits `2j..2j+2` of `qs[32h + l]`, its high bit is bit `i / 32` of `hmask[l]`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ3K {
    /// High bits.
    pub hmask: [u8; QK_K / 8],
    /// [2 halves] × 32 bytes of low bit pairs.
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales (biased by 32), packed: low nibbles in bytes 0..8 (scales 0..8 low halves, 8..16
    /// high halves), top bit pairs in bytes 8..12 (byte `8 + k % 4`, bits `2 * (k / 4)`).
    pub scales: [u8; 12],
    /// f16 super-block scale.
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ3K>() == 110);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl ByteBlock for BlockQ3K {}

impl BlockQ3K {
    /// The unsigned 3-bit value of element `i` (0..256), before the `-4`.
    pub fn q(&self, i: usize) -> u8 {
        let (h, j, l) = (i / 128, (i % 128) / 32, i % 32);
        let low = (self.qs[32 * h + l] >> (2 * j)) & 3;
        let high = (self.hmask[l] >> (i / 32)) & 1;
        low | (high << 2)
    }

    /// The sixteen signed sub-block scales.
    pub fn signed_scales(&self) -> [i8; 16] {
        let mut out = [0i8; 16];
        for (k, o) in out.iter_mut().enumerate() {
            let low = (self.scales[k % 8] >> (4 * (k / 8))) & 0x0F;
            let high = (self.scales[8 + k % 4] >> (2 * (k / 4))) & 3;
            *o = (low | (high << 4)) as i8 - 32;
        }
        out
    }
}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ3K>();

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
        weight: GgmlType::Q3_K,
        act: GgmlType::Q8_K,
        dequantize_row,
        quantize_act_row: q8_k::quantizer(simd),
        vec_dot,
        vec_dot_x4: None,
    })
}

/// Dequantizes `dst.len() / 256` blocks: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ3K>(src, super_blocks(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(block.d);
        let scales = block.signed_scales();
        for (k, sub) in out.chunks_exact_mut(16).enumerate() {
            let step = d * scales[k] as f32;
            for (l, o) in sub.iter_mut().enumerate() {
                *o = step * (block.q(16 * k + l) as i32 - 4) as f32;
            }
        }
    }
}

/// Dot product of a Q3_K row and a Q8_K row of `n` elements: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let weights = blocks::<BlockQ3K>(weight_row, nb);
    let acts = blocks::<BlockQ8K>(act_row, nb);
    let mut sum = 0f32;
    for (w, a) in weights.iter().zip(acts) {
        let scales = w.signed_scales();
        let mut scaled_dot = 0i32; // Σ_k scale[k] * Σ (q-4)*a
        for (k, &scale) in scales.iter().enumerate() {
            let mut dot = 0i32;
            for i in 16 * k..16 * (k + 1) {
                dot += (w.q(i) as i32 - 4) * a.qs[i] as i32;
            }
            scaled_dot += scale as i32 * dot;
        }
        sum += a.scale() * f16_le(w.d) * scaled_dot as f32;
    }
    sum
}

/// Round-to-nearest quantization of `src` (a whole number of super-blocks) into `dst` (see
/// [`crate::k_common`]'s `quantize_symmetric`: each element is off by at most one step, most by half).
pub fn quantize_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = blocks_mut::<BlockQ3K>(dst, super_blocks(src.len()));
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let quant = quantize_symmetric(x, 4, 31);
        block.d = quant.d.to_le_bytes();
        block.scales = [0; 12];
        for (k, &scale) in quant.scales.iter().enumerate() {
            let biased = (scale as i32 + 32) as u8;
            block.scales[k % 8] |= (biased & 0x0F) << (4 * (k / 8));
            block.scales[8 + k % 4] |= (biased >> 4) << (2 * (k / 4));
        }
        block.qs = [0; QK_K / 4];
        block.hmask = [0; QK_K / 8];
        for (i, &q) in quant.q.iter().enumerate() {
            let stored = (q as i32 + 4) as u8;
            let (h, j, l) = (i / 128, (i % 128) / 32, i % 32);
            block.qs[32 * h + l] |= (stored & 3) << (2 * j);
            block.hmask[l] |= (stored >> 2) << (i / 32);
        }
    }
}

// The SIMD entry point is private: only `kernels` hands it out, after `usable` checked the CPU, which is what
// makes its `unsafe` call sound.

/// Unpacks a weight row of `k` elements into a GEMM panel row (see [`crate::gemm`]): codes `q` (0..8), scale
/// `d * scale[k]`, correction `-4 d * scale[k]` per sub-block of 16: the reference.
pub fn unpack_gemm_row(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let src = blocks::<BlockQ3K>(row, super_blocks(k));
    for (b, block) in src.iter().enumerate() {
        let d = f16_le(block.d);
        let scales = block.signed_scales();
        for (s, &scale) in scales.iter().enumerate() {
            let codes: [u8; 16] = std::array::from_fn(|l| block.q(16 * s + l));
            let step = d * scale as f32;
            crate::gemm::put_run(dst, mw, QK_K * b + 16 * s, &codes, step, -4.0 * step);
        }
    }
    crate::gemm::finish_row(dst, mw, k);
}

/// One superblock in the integer form of ggml's tiled GEMM ([`crate::gemm::ktiled`]): codes 0..8 (bias 4), the
/// signed scales of its sixteen sub-blocks of 16.
pub fn tiled_superblock(bytes: &[u8], out: &mut crate::gemm::ktiled::Superblock) {
    let block = &blocks::<BlockQ3K>(bytes, 1)[0];
    out.codes = std::array::from_fn(|i| block.q(i));
    out.scales = block.signed_scales().map(|v| v as i32);
    out.mins = [0; 16];
    (out.d, out.dmin) = (f16_le(block.d), 0.0);
}

#[cfg(target_arch = "x86_64")]
fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    // SAFETY: AVX2/FMA/F16C present (see above).
    unsafe { x86::vec_dot_avx2(blocks(weight_row, nb), blocks(act_row, nb)) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BlockQ3K;
    use crate::k_common::x86::{f16_le, hsum_ps, load_control, prefetch_ahead, SIXTEENTHS_CONTROLS};
    use crate::q8_k::BlockQ8K;
    use std::arch::x86_64::*;

    /// The sixteen signed scales as i8; the vector twin of `signed_scales`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn signed_scales(w: &BlockQ3K) -> __m128i {
        let s = &w.scales;
        let low8 = _mm_set_epi64x(0, i64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]));
        let tops = _mm_set1_epi32(i32::from_le_bytes([s[8], s[9], s[10], s[11]]));
        let low4 = _mm_set1_epi8(0x0F);
        // [bytes 0..8 low nibbles, bytes 0..8 high nibbles]
        let low = _mm_unpacklo_epi64(
            _mm_and_si128(low8, low4),
            _mm_and_si128(_mm_srli_epi16::<4>(low8), low4),
        );
        // Scale k's top pair: byte 8 + k % 4, bits 2 * (k / 4); dword k / 4 shifts by 2 * (k / 4).
        let high = _mm_and_si128(_mm_srlv_epi32(tops, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
        let biased = _mm_or_si128(low, _mm_slli_epi16::<4>(high));
        _mm_sub_epi8(biased, _mm_set1_epi8(32))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn vec_dot_avx2(weights: &[BlockQ3K], acts: &[BlockQ8K]) -> f32 {
        let controls = SIXTEENTHS_CONTROLS.map(|c| load_control(&c));
        let two_bits = _mm256_set1_epi8(3);
        let bit2 = _mm256_set1_epi8(4);
        let fours = _mm256_set1_epi8(4);
        let mut acc = _mm256_setzero_ps();
        for (w, a) in weights.iter().zip(acts) {
            prefetch_ahead(w);
            let scales = _mm256_cvtepi8_epi16(signed_scales(w));
            // SAFETY: hmask is 32 bytes.
            let mut hmask = unsafe { _mm256_loadu_si256(w.hmask.as_ptr().cast()) };
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
                    // Bits 0..2 of `qs` (shifted right by 2j so far) and bit 0 of `hmask` (shifted by 4h + j);
                    // 16-bit shifts only pull foreign bits into positions the masks drop.
                    let q3 = _mm256_or_si256(
                        _mm256_and_si256(qs, two_bits),
                        _mm256_and_si256(_mm256_slli_epi16::<2>(hmask), bit2),
                    );
                    qs = _mm256_srli_epi16::<2>(qs);
                    hmask = _mm256_srli_epi16::<1>(hmask);
                    // SAFETY: 32 activation bytes at 128h + 32j lie inside qs.
                    let act = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(128 * h + 32 * j).cast()) };
                    // The `-4` of every element is taken out per pair of elements (not once per block from
                    // `bsums`), so that each lane holds the sum ggml's kernel holds: its results are llama.cpp's
                    // bit for bit.
                    let dot = _mm256_sub_epi16(_mm256_maddubs_epi16(q3, act), _mm256_maddubs_epi16(fours, act));
                    let dot = _mm256_madd_epi16(dot, _mm256_shuffle_epi8(half_scales, *control));
                    if j % 2 == 0 {
                        sum_a = _mm256_add_epi32(sum_a, dot);
                    } else {
                        sum_b = _mm256_add_epi32(sum_b, dot);
                    }
                }
            }
            let total = _mm256_add_epi32(sum_a, sum_b);
            let d = _mm256_set1_ps(f16_le(w.d) * a.scale());
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(total), acc);
        }
        hsum_ps(acc)
    }
}
