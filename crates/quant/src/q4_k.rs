//! Q4_K: super-blocks of 256 4-bit values in eight sub-blocks of 32. Each sub-block `j` has a 6-bit scale and a
//! 6-bit min, scaled by the block's f16 `d` and `dmin`: `x = d * scale[j] * q - dmin * min[j]`, `q` in 0..16.
//!
//! Pairs with Q8_K activations: per block the dot product is
//! `d8 * (d * Σ_j scale[j] * Σ q*a - dmin * Σ_j min[j] * Σ a)`, where `Σ a` per sub-block comes from `bsums`.

use crate::k_common::{
    act_rows4, blocks, blocks_mut, f16_le, pack_scales_mins, quantize_affine, super_blocks, unpack_scales_mins, usable,
    ByteBlock, DequantizeFn, VecDotFn, QK_K,
};
use crate::q8_k::{self, BlockQ8K};
use crate::tile::DotX4Fn;
use crate::{GgmlType, Kernels, SimdLevel};

/// One Q4_K super-block: 144 bytes, laid out as in GGUF.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4K {
    /// f16 super-block scale of the sub-block scales.
    pub d: [u8; 2],
    /// f16 super-block scale of the sub-block mins.
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and eight 6-bit mins, packed (see [`crate::k_common`]'s `unpack_scales_mins`).
    pub scales: [u8; 12],
    /// [4 chunks of 64 elements] × 32 bytes: byte `l` of chunk `c` holds element `64c + l` in its low nibble and
    /// element `64c + 32 + l` in its high nibble.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl ByteBlock for BlockQ4K {}

impl BlockQ4K {
    /// The 4-bit value of element `i` (0..256).
    pub fn q(&self, i: usize) -> u8 {
        let byte = self.qs[32 * (i / 64) + i % 32];
        if i % 64 < 32 {
            byte & 0x0F
        } else {
            byte >> 4
        }
    }
}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ4K>();

/// The kernels at `simd`, lowered to what this CPU runs.
pub fn kernels(simd: SimdLevel) -> Option<Kernels> {
    let simd = usable(simd);
    let (dequantize_row, vec_dot, vec_dot_x4): (DequantizeFn, VecDotFn, Option<DotX4Fn>) = match simd {
        SimdLevel::Scalar => (dequantize_row_scalar, vec_dot_scalar, None),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => (dequantize_row_avx2, vec_dot_avx2, Some(vec_dot_x4_avx2)),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => (dequantize_row_avx2, vec_dot_avx512, Some(vec_dot_x4_avx512)),
        #[cfg(not(target_arch = "x86_64"))]
        _ => (dequantize_row_scalar, vec_dot_scalar, None),
    };
    Some(Kernels {
        weight: GgmlType::Q4_K,
        act: GgmlType::Q8_K,
        dequantize_row,
        quantize_act_row: q8_k::quantizer(simd),
        vec_dot,
        vec_dot_x4,
    })
}

/// Dequantizes `dst.len() / 256` blocks: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ4K>(src, super_blocks(dst.len()));
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

/// Dot product of a Q4_K row and a Q8_K row of `n` elements: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let weights = blocks::<BlockQ4K>(weight_row, nb);
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
    let dst = blocks_mut::<BlockQ4K>(dst, super_blocks(src.len()));
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let quant = quantize_affine::<8>(x, 15, 63);
        block.d = quant.d.to_le_bytes();
        block.dmin = quant.dmin.to_le_bytes();
        block.scales = pack_scales_mins(&quant.scales, &quant.mins);
        for c in 0..4 {
            for l in 0..32 {
                block.qs[32 * c + l] = quant.q[64 * c + l] | (quant.q[64 * c + 32 + l] << 4);
            }
        }
    }
}

/// The GEMM panel unpacker (see [`crate::gemm`]) at `simd`, lowered to what this CPU runs.
pub fn gemm_unpacker(simd: SimdLevel) -> crate::gemm::UnpackFn {
    match usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unpack_gemm_row_avx512,
        _ => unpack_gemm_row,
    }
}

#[cfg(target_arch = "x86_64")]
fn unpack_gemm_row_avx512(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let src = blocks::<BlockQ4K>(row, super_blocks(k));
    // SAFETY: only reachable through `gemm_unpacker`, which checked the CPU features.
    unsafe { x86::unpack_gemm_avx512(src, k, dst, mw) }
}

/// Unpacks a weight row of `k` elements into a GEMM panel row (see [`crate::gemm`]): codes `q`, scale
/// `d * scale[j]`, correction `-dmin * min[j]` per sub-block of 32: the reference.
pub fn unpack_gemm_row(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let src = blocks::<BlockQ4K>(row, super_blocks(k));
    for (b, block) in src.iter().enumerate() {
        let (d, dmin) = (f16_le(block.d), f16_le(block.dmin));
        let (scales, mins) = unpack_scales_mins(&block.scales);
        for j in 0..8 {
            let bytes = &block.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            let codes: [u8; 32] = std::array::from_fn(|l| (bytes[l] >> shift) & 0x0F);
            let (step, offset) = (d * scales[j] as f32, dmin * mins[j] as f32);
            crate::gemm::put_run(dst, mw, QK_K * b + 32 * j, &codes, step, -offset);
        }
    }
    crate::gemm::finish_row(dst, mw, k);
}

/// One superblock in the integer form of ggml's tiled GEMM ([`crate::gemm::ktiled`]): codes 0..16, the 6-bit
/// scales and mins of its eight sub-blocks of 32.
pub fn tiled_superblock(bytes: &[u8], out: &mut crate::gemm::ktiled::Superblock) {
    let block = &blocks::<BlockQ4K>(bytes, 1)[0];
    crate::gemm::ktiled::scale_min_superblock(block.d, block.dmin, &block.scales, |i| block.q(i), out);
}

// The SIMD entry points are private: only `kernels` hands them out, after `usable` checked the CPU, which is what
// makes their `unsafe` calls sound.

#[cfg(target_arch = "x86_64")]
fn dequantize_row_avx2(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ4K>(src, super_blocks(dst.len()));
    // SAFETY: AVX2/FMA/F16C present (see above).
    unsafe { x86::dequantize_avx2(src, dst) }
}

#[cfg(target_arch = "x86_64")]
fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    // SAFETY: AVX2/FMA/F16C present (see above).
    unsafe { x86::vec_dot_avx2(blocks(weight_row, nb), blocks(act_row, nb)) }
}

#[cfg(target_arch = "x86_64")]
fn vec_dot_avx512(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    // SAFETY: AVX-512 F/BW/VL/VNNI present (see above).
    unsafe { x86::vec_dot_vnni(blocks(weight_row, nb), blocks(act_row, nb)) }
}

#[cfg(target_arch = "x86_64")]
fn vec_dot_x4_avx2(n: usize, weight_row: &[u8], act_rows: &[u8], act_row_bytes: usize, out: &mut [f32; 4]) {
    let nb = super_blocks(n);
    let acts = act_rows4::<BlockQ8K>(act_rows, act_row_bytes, nb);
    // SAFETY: AVX2/FMA/F16C present (see above).
    *out = unsafe { x86::dot_rows_avx2(blocks(weight_row, nb), acts) };
}

#[cfg(target_arch = "x86_64")]
fn vec_dot_x4_avx512(n: usize, weight_row: &[u8], act_rows: &[u8], act_row_bytes: usize, out: &mut [f32; 4]) {
    let nb = super_blocks(n);
    let acts = act_rows4::<BlockQ8K>(act_rows, act_row_bytes, nb);
    // SAFETY: AVX-512 F/BW/VL/VNNI present (see above).
    *out = unsafe { x86::dot_rows_vnni(blocks(weight_row, nb), acts) };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BlockQ4K;
    use crate::k_common::x86::{
        dpwssd, load_control, madd_add, prefetch_ahead, scales_mins_q4k, ScaleMinAcc, Q4K_SCALE_CONTROLS,
    };
    use crate::k_common::{f16_le, unpack_scales_mins, ByteBlock, QK_K};
    use crate::q8_k::BlockQ8K;
    use std::arch::x86_64::*;

    /// The 12 packed scale bytes and the 4 after them (one 16-byte load).
    #[inline]
    fn scales_and_next(w: &BlockQ4K) -> &[u8; 16] {
        w.as_bytes()[4..20].try_into().expect("16 bytes")
    }

    /// The per-block scalars and scale vector: `([d * d8, dmin * d8, _, _], scales and mins in both halves)`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn block_setup(w: &BlockQ4K, a: &BlockQ8K) -> (__m128, __m256i) {
        let halves = i32::from_le_bytes([w.d[0], w.d[1], w.dmin[0], w.dmin[1]]);
        let d = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(halves)), _mm_set1_ps(a.scale()));
        (d, _mm256_broadcastsi128_si256(scales_mins_q4k(scales_and_next(w))))
    }

    /// Defines the one-row dot `$single` and the several-rows dot `$rows` for one instruction set, `$acc` being
    /// its `sum + madd(dot, scale)`. Per activation row both compute the same integer sums and the same float
    /// steps ([`ScaleMinAcc`]), so they give the same bits.
    macro_rules! dot_kernels {
        ($single:ident, $rows:ident, $features:literal, $acc:ident) => {
            #[target_feature(enable = $features)]
            pub fn $single(weights: &[BlockQ4K], acts: &[BlockQ8K]) -> f32 {
                let controls = Q4K_SCALE_CONTROLS.map(|c| load_control(&c));
                let low_nibbles = _mm256_set1_epi8(0x0F);
                let mut acc = ScaleMinAcc::new();
                for (w, a) in weights.iter().zip(acts) {
                    prefetch_ahead(w);
                    let (d, scales) = block_setup(w, a);
                    let q8 = a.qs.as_ptr();
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
                        let lo = _mm256_and_si256(q4, low_nibbles);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), low_nibbles);
                        let scale_lo = _mm256_shuffle_epi8(scales, controls[2 * c]);
                        let scale_hi = _mm256_shuffle_epi8(scales, controls[2 * c + 1]);
                        sum_a = $acc(sum_a, _mm256_maddubs_epi16(lo, a_lo), scale_lo);
                        sum_b = $acc(sum_b, _mm256_maddubs_epi16(hi, a_hi), scale_hi);
                    }
                    let sum = _mm256_add_epi32(sum_a, sum_b);
                    acc.add_block(sum, d, scales, &a.bsums);
                }
                acc.total()
            }

            /// `R` activation rows at once: each weight chunk is split into nibbles and each scale broadcast
            /// once for all rows.
            #[target_feature(enable = $features)]
            pub fn $rows<const R: usize>(weights: &[BlockQ4K], acts: [&[BlockQ8K]; R]) -> [f32; R] {
                let controls = Q4K_SCALE_CONTROLS.map(|c| load_control(&c));
                let low_nibbles = _mm256_set1_epi8(0x0F);
                let mut acc = [ScaleMinAcc::new(); R];
                for (i, w) in weights.iter().enumerate() {
                    prefetch_ahead(w);
                    let halves = i32::from_le_bytes([w.d[0], w.d[1], w.dmin[0], w.dmin[1]]);
                    let d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(halves));
                    let scales = _mm256_broadcastsi128_si256(scales_mins_q4k(scales_and_next(w)));
                    let mut sums = [_mm256_setzero_si256(); R];
                    for c in 0..4 {
                        // SAFETY: chunk c's 32 weight bytes lie inside qs.
                        let q4 = unsafe { _mm256_loadu_si256(w.qs.as_ptr().add(32 * c).cast()) };
                        // Sub-block 2c (low nibbles, activation bytes 64c..) then 2c + 1 (high nibbles, 64c + 32..),
                        // one at a time to keep few vectors live beside the rows' accumulators.
                        for half in 0..2 {
                            let nibbles = if half == 0 {
                                _mm256_and_si256(q4, low_nibbles)
                            } else {
                                _mm256_and_si256(_mm256_srli_epi16::<4>(q4), low_nibbles)
                            };
                            let scale = _mm256_shuffle_epi8(scales, controls[2 * c + half]);
                            for r in 0..R {
                                let q8 = acts[r][i].qs.as_ptr();
                                // SAFETY: 32 activation bytes at 64c + 32 * half lie inside qs.
                                let a = unsafe { _mm256_loadu_si256(q8.add(64 * c + 32 * half).cast()) };
                                sums[r] = $acc(sums[r], _mm256_maddubs_epi16(nibbles, a), scale);
                            }
                        }
                    }
                    for r in 0..R {
                        let a = &acts[r][i];
                        let d = _mm_mul_ps(d_dmin, _mm_set1_ps(a.scale()));
                        acc[r].add_block(sums[r], d, scales, &a.bsums);
                    }
                }
                acc.map(|v| v.total())
            }
        };
    }

    dot_kernels!(vec_dot_avx2, dot_rows_avx2, "avx2,fma,f16c", madd_add);
    dot_kernels!(
        vec_dot_vnni,
        dot_rows_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        dpwssd
    );

    /// Bit-exact twin of `dequantize_row_scalar`: the same `step * q - offset` in f32, eight lanes at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn dequantize_avx2(src: &[BlockQ4K], dst: &mut [f32]) {
        for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_le(block.d);
            let dmin = f16_le(block.dmin);
            let (scales, mins) = unpack_scales_mins(&block.scales);
            for (c, chunk) in out.chunks_exact_mut(64).enumerate() {
                let steps = [d * scales[2 * c] as f32, d * scales[2 * c + 1] as f32];
                let offsets = [dmin * mins[2 * c] as f32, dmin * mins[2 * c + 1] as f32];
                for g in 0..4 {
                    // SAFETY: 8 bytes at 32c + 8g lie inside qs.
                    let bytes = unsafe { _mm_loadl_epi64(block.qs.as_ptr().add(32 * c + 8 * g).cast()) };
                    let bytes = _mm256_cvtepu8_epi32(bytes);
                    let lo = _mm256_cvtepi32_ps(_mm256_and_si256(bytes, _mm256_set1_epi32(0x0F)));
                    let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(bytes));
                    let lo = _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(steps[0]), lo), _mm256_set1_ps(offsets[0]));
                    let hi = _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(steps[1]), hi), _mm256_set1_ps(offsets[1]));
                    // SAFETY: chunk holds 64 floats; 8g + 8 <= 32 and 32 + 8g + 8 <= 64.
                    unsafe {
                        _mm256_storeu_ps(chunk.as_mut_ptr().add(8 * g), lo);
                        _mm256_storeu_ps(chunk.as_mut_ptr().add(32 + 8 * g), hi);
                    }
                }
            }
        }
    }

    /// [`super::unpack_gemm_row`] with AVX-512: each 64-element chunk of `qs` is one k-step of the panel (low nibbles
    /// then high nibbles, sub-blocks 2c and 2c + 1).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub fn unpack_gemm_avx512(src: &[BlockQ4K], k: usize, dst: &mut [u8], mw: &mut [f32]) {
        use crate::gemm::STEP_BYTES;
        assert!(
            dst.len() >= src.len() * 4 * STEP_BYTES && mw.len() >= src.len() * 16,
            "panel row too short for {} super-blocks",
            src.len()
        );
        let low = _mm256_set1_epi8(0x0F);
        for (b, block) in src.iter().enumerate() {
            let (d, dmin) = (f16_le(block.d), f16_le(block.dmin));
            let (scales, mins) = unpack_scales_mins(&block.scales);
            for c in 0..4 {
                // SAFETY: qs holds 4 chunks of 32 bytes.
                let bytes = unsafe { _mm256_loadu_si256(block.qs.as_ptr().add(32 * c).cast()) };
                let lo = _mm256_and_si256(bytes, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), low);
                let codes = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                let (s0, s1) = (d * scales[2 * c] as f32, d * scales[2 * c + 1] as f32);
                let lanes = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(s0), _mm512_set1_ps(s1));
                let base = (4 * b + c) * STEP_BYTES;
                // SAFETY: k-step 4b + c of the panel row is 128 bytes at `base` (assert above); unaligned stores.
                unsafe {
                    _mm512_storeu_si512(dst.as_mut_ptr().add(base).cast(), codes);
                    _mm512_storeu_ps(dst.as_mut_ptr().add(base + 64).cast(), lanes);
                }
                let (m0, m1) = (-(dmin * mins[2 * c] as f32), -(dmin * mins[2 * c + 1] as f32));
                mw[16 * b + 4 * c..16 * b + 4 * c + 4].copy_from_slice(&[m0, m0, m1, m1]);
            }
        }
        crate::gemm::finish_row(dst, mw, k);
    }
}
