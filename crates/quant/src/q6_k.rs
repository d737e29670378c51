//! Q6_K: super-blocks of 256 6-bit values in sixteen sub-blocks of 16, each with a signed 8-bit scale, scaled by
//! the block's f16 `d`: `x = d * scale[k] * (q - 32)`, `q` in 0..64.
//!
//! Pairs with Q8_K activations. The kernels multiply the unsigned `q` (as `maddubs` needs) and take the `-32` back
//! out per sub-block with the activation `bsums`: `Σ scale[k] * Σ (q-32)*a = Σ scale[k] * Σ q*a - 32 Σ scale[k] *
//! bsum[k]`.

use crate::k_common::{
    act_rows4, blocks, blocks_mut, f16_le, quantize_symmetric, super_blocks, usable, ByteBlock, DequantizeFn, VecDotFn,
    QK_K,
};
use crate::q8_k::{self, BlockQ8K};
use crate::tile::DotX4Fn;
use crate::{GgmlType, Kernels, SimdLevel};

/// One Q6_K super-block: 210 bytes, laid out as in GGUF.
///
/// Element `i` sits in half `h = i / 128`, quarter `k = (i % 128) / 32`, position `l = i % 32`: its low four bits
/// are nibble `k / 2` of `ql[64h + 32(k % 2) + l]`, its high two bits are bits `2k..2k+2` of `qh[32h + l]`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ6K {
    /// [2 halves] × 64 bytes of low nibbles.
    pub ql: [u8; QK_K / 2],
    /// [2 halves] × 32 bytes of high bit pairs.
    pub qh: [u8; QK_K / 4],
    /// [16] signed sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// f16 super-block scale.
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl ByteBlock for BlockQ6K {}

impl BlockQ6K {
    /// The stored 6-bit value of element `i` (0..256), before the `-32`.
    pub fn q(&self, i: usize) -> u8 {
        let (h, k, l) = (i / 128, (i % 128) / 32, i % 32);
        let low = (self.ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0F;
        let high = (self.qh[32 * h + l] >> (2 * k)) & 3;
        low | (high << 4)
    }
}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ6K>();

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
        weight: GgmlType::Q6_K,
        act: GgmlType::Q8_K,
        dequantize_row,
        quantize_act_row: q8_k::quantizer(simd),
        vec_dot,
        vec_dot_x4,
    })
}

/// Dequantizes `dst.len() / 256` blocks: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ6K>(src, super_blocks(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(block.d);
        for (k, sub) in out.chunks_exact_mut(16).enumerate() {
            let step = d * block.scales[k] as f32;
            for (l, o) in sub.iter_mut().enumerate() {
                *o = step * (block.q(16 * k + l) as i32 - 32) as f32;
            }
        }
    }
}

/// Dot product of a Q6_K row and a Q8_K row of `n` elements: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let weights = blocks::<BlockQ6K>(weight_row, nb);
    let acts = blocks::<BlockQ8K>(act_row, nb);
    let mut sum = 0f32;
    for (w, a) in weights.iter().zip(acts) {
        let mut scaled_dot = 0i32; // Σ_k scale[k] * Σ (q-32)*a
        for k in 0..16 {
            let mut dot = 0i32;
            for i in 16 * k..16 * (k + 1) {
                dot += (w.q(i) as i32 - 32) * a.qs[i] as i32;
            }
            scaled_dot += w.scales[k] as i32 * dot;
        }
        sum += a.scale() * f16_le(w.d) * scaled_dot as f32;
    }
    sum
}

/// Round-to-nearest quantization of `src` (a whole number of super-blocks) into `dst` (see
/// [`crate::k_common`]'s `quantize_symmetric`: each element is off by at most one step, most by half).
pub fn quantize_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = blocks_mut::<BlockQ6K>(dst, super_blocks(src.len()));
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let quant = quantize_symmetric(x, 32, 127);
        block.d = quant.d.to_le_bytes();
        block.scales = quant.scales;
        block.ql = [0; QK_K / 2];
        block.qh = [0; QK_K / 4];
        for (i, &q) in quant.q.iter().enumerate() {
            let stored = (q as i32 + 32) as u8;
            let (h, k, l) = (i / 128, (i % 128) / 32, i % 32);
            block.ql[64 * h + 32 * (k % 2) + l] |= (stored & 0x0F) << (4 * (k / 2));
            block.qh[32 * h + l] |= (stored >> 4) << (2 * k);
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
    let src = blocks::<BlockQ6K>(row, super_blocks(k));
    // SAFETY: only reachable through `gemm_unpacker`, which checked the CPU features.
    unsafe { x86::unpack_gemm_avx512(src, k, dst, mw) }
}

/// Unpacks a weight row of `k` elements into a GEMM panel row (see [`crate::gemm`]): codes `q` (0..64), scale
/// `d * scale[k]`, correction `-32 d * scale[k]` per sub-block of 16: the reference.
pub fn unpack_gemm_row(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let src = blocks::<BlockQ6K>(row, super_blocks(k));
    for (b, block) in src.iter().enumerate() {
        let d = f16_le(block.d);
        for h in 0..2 {
            let (ql, qh) = (&block.ql[64 * h..64 * h + 64], &block.qh[32 * h..32 * h + 32]);
            for quarter in 0..4 {
                // Elements 128h + 32 quarter + l: nibble quarter / 2 of ql[32 (quarter % 2) + l], bits 2 quarter.. of qh[l].
                let low = &ql[32 * (quarter % 2)..32 * (quarter % 2) + 32];
                let codes: [u8; 32] = std::array::from_fn(|l| {
                    ((low[l] >> (4 * (quarter / 2))) & 0x0F) | (((qh[l] >> (2 * quarter)) & 3) << 4)
                });
                for half in 0..2 {
                    let s = 8 * h + 2 * quarter + half;
                    let step = d * block.scales[s] as f32;
                    let start = QK_K * b + 16 * s;
                    crate::gemm::put_run(dst, mw, start, &codes[16 * half..16 * half + 16], step, -32.0 * step);
                }
            }
        }
    }
    crate::gemm::finish_row(dst, mw, k);
}

/// One superblock in the integer form of ggml's tiled GEMM ([`crate::gemm::ktiled`]): codes 0..64 (bias 32), the
/// signed scales of its sixteen sub-blocks of 16.
pub fn tiled_superblock(bytes: &[u8], out: &mut crate::gemm::ktiled::Superblock) {
    let block = &blocks::<BlockQ6K>(bytes, 1)[0];
    out.codes = std::array::from_fn(|i| block.q(i));
    out.scales = block.scales.map(|v| v as i32);
    out.mins = [0; 16];
    (out.d, out.dmin) = (f16_le(block.d), 0.0);
}

// The SIMD entry points are private: only `kernels` hands them out, after `usable` checked the CPU, which is what
// makes their `unsafe` calls sound.

#[cfg(target_arch = "x86_64")]
fn dequantize_row_avx2(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ6K>(src, super_blocks(dst.len()));
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
    unsafe { x86::vec_dot_avx512(blocks(weight_row, nb), blocks(act_row, nb)) }
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
    *out = unsafe { x86::dot_rows_avx512(blocks(weight_row, nb), acts) };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BlockQ6K;
    use crate::k_common::x86::{f16_le, hsum_ps, load_control, madd_add, prefetch_ahead, SIXTEENTHS_CONTROLS};
    use crate::k_common::QK_K;
    use crate::q8_k::BlockQ8K;
    use std::arch::x86_64::*;

    /// The sixteen sub-block scales as i16 (sub-block k in lane k).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn scales_i16(w: &BlockQ6K) -> __m256i {
        // SAFETY: scales is 16 bytes.
        _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(w.scales.as_ptr().cast()) })
    }

    /// `32 * Σ scale[k] * bsum[k]` as eight i32 partial sums: the `-32` of every element.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn offset(scales: __m256i, a: &BlockQ8K) -> __m256i {
        // SAFETY: bsums is 32 bytes.
        let bsums = unsafe { _mm256_loadu_si256(a.bsums.as_ptr().cast()) };
        _mm256_slli_epi32::<5>(_mm256_madd_epi16(scales, bsums))
    }

    /// Adds one block to `acc`: `d * d8 * (sum - offset)`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn finish_block(acc: __m256, sum: __m256i, offset: __m256i, d: f32, a: &BlockQ8K) -> __m256 {
        let total = _mm256_sub_epi32(sum, offset);
        _mm256_fmadd_ps(_mm256_set1_ps(d * a.scale()), _mm256_cvtepi32_ps(total), acc)
    }

    /// Both 128-bit halves holding the eight i16 scales of half `h`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn half_scales(scales: __m256i, h: usize) -> __m256i {
        if h == 0 {
            _mm256_permute2x128_si256::<0x00>(scales, scales)
        } else {
            _mm256_permute2x128_si256::<0x11>(scales, scales)
        }
    }

    /// The unsigned 6-bit values of half `h`, one vector per quarter of 32 elements.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn quarters(w: &BlockQ6K, h: usize) -> [__m256i; 4] {
        let low4 = _mm256_set1_epi8(0x0F);
        let high2 = _mm256_set1_epi8(0x30);
        // SAFETY: 64 + 32 weight bytes of half h lie inside ql and qh.
        let (ql0, ql1, qh) = unsafe {
            (
                _mm256_loadu_si256(w.ql.as_ptr().add(64 * h).cast()),
                _mm256_loadu_si256(w.ql.as_ptr().add(64 * h + 32).cast()),
                _mm256_loadu_si256(w.qh.as_ptr().add(32 * h).cast()),
            )
        };
        // Masking with 0x30 after each 16-bit shift keeps only bits that came from the same byte.
        let or_and = |a, b| _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_and_si256(b, high2));
        [
            or_and(ql0, _mm256_slli_epi16::<4>(qh)),
            or_and(ql1, _mm256_slli_epi16::<2>(qh)),
            or_and(_mm256_srli_epi16::<4>(ql0), qh),
            or_and(_mm256_srli_epi16::<4>(ql1), _mm256_srli_epi16::<2>(qh)),
        ]
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn vec_dot_avx2(weights: &[BlockQ6K], acts: &[BlockQ8K]) -> f32 {
        let [row] = dot_rows_avx2(weights, [acts]);
        row
    }

    /// `R` activation rows at once, each block's 6-bit values and scales built once for all rows. Per row the
    /// integer sums and float steps do not depend on `R`, so every `R` gives the same bits.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn dot_rows_avx2<const R: usize>(weights: &[BlockQ6K], acts: [&[BlockQ8K]; R]) -> [f32; R] {
        let controls = SIXTEENTHS_CONTROLS.map(|c| load_control(&c));
        let mut acc = [_mm256_setzero_ps(); R];
        for (i, w) in weights.iter().enumerate() {
            prefetch_ahead(w);
            let scales = scales_i16(w);
            let mut sums = [_mm256_setzero_si256(); R];
            for h in 0..2 {
                let half_scales = half_scales(scales, h);
                for (k, q6) in quarters(w, h).into_iter().enumerate() {
                    let scale = _mm256_shuffle_epi8(half_scales, controls[k]);
                    for r in 0..R {
                        // SAFETY: 32 activation bytes at 128h + 32k lie inside qs.
                        let act = unsafe { _mm256_loadu_si256(acts[r][i].qs.as_ptr().add(128 * h + 32 * k).cast()) };
                        sums[r] = madd_add(sums[r], _mm256_maddubs_epi16(q6, act), scale);
                    }
                }
            }
            let d = f16_le(w.d);
            for r in 0..R {
                let a = &acts[r][i];
                acc[r] = finish_block(acc[r], sums[r], offset(scales, a), d, a);
            }
        }
        acc.map(|v| hsum_ps(v))
    }

    const A_AND_C_OR_B: i32 = 0xEC;

    /// Control g copies i16 lane 4g + j across 128-bit lane j (sub-blocks 4g..4g+4 of a half).
    const WIDE_CONTROLS: [[u8; 64]; 2] = {
        let mut all = [[0u8; 64]; 2];
        let mut g = 0;
        while g < 2 {
            let mut i = 0;
            while i < 64 {
                let sub = 4 * g + i / 16;
                all[g][i] = (2 * sub + i % 2) as u8;
                i += 1;
            }
            g += 1;
        }
        all
    };

    /// The unsigned 6-bit values of half `h` two quarters per vector (`[q0 | q1]`, `[q2 | q3]`), `vpternlogd`
    /// merging low and high bits.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn quarter_pairs(w: &BlockQ6K, h: usize) -> [__m512i; 2] {
        let low4 = _mm512_set1_epi8(0x0F);
        let high2 = _mm512_set1_epi8(0x30);
        // Quarters 0|1 take qh bits 0..2|2..4 to bits 4..6; quarters 2|3 take bits 4..6|6..8 there.
        let shift_01 = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
        let shift_23 = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
        // SAFETY: 64 + 32 weight bytes of half h lie inside ql and qh.
        let (ql, qh) = unsafe {
            (
                _mm512_loadu_si512(w.ql.as_ptr().add(64 * h).cast()),
                _mm512_broadcast_i64x4(_mm256_loadu_si256(w.qh.as_ptr().add(32 * h).cast())),
            )
        };
        let high_01 = _mm512_and_si512(_mm512_sllv_epi64(qh, shift_01), high2);
        let high_23 = _mm512_and_si512(_mm512_srlv_epi64(qh, shift_23), high2);
        [
            _mm512_ternarylogic_epi32::<A_AND_C_OR_B>(ql, high_01, low4),
            _mm512_ternarylogic_epi32::<A_AND_C_OR_B>(_mm512_srli_epi64::<4>(ql), high_23, low4),
        ]
    }

    /// 512-bit version: one step takes two quarters (64 elements), and `vpdpwssd` folds the scale multiply into
    /// the accumulate.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub fn vec_dot_avx512(weights: &[BlockQ6K], acts: &[BlockQ8K]) -> f32 {
        let [row] = dot_rows_avx512(weights, [acts]);
        row
    }

    /// [`vec_dot_avx512`] for `R` activation rows at once (the same bits per row for every `R`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub fn dot_rows_avx512<const R: usize>(weights: &[BlockQ6K], acts: [&[BlockQ8K]; R]) -> [f32; R] {
        // SAFETY: each control is 64 readable bytes.
        let controls = WIDE_CONTROLS.map(|c| unsafe { _mm512_loadu_si512(c.as_ptr().cast()) });
        let mut acc = [_mm256_setzero_ps(); R];
        for (i, w) in weights.iter().enumerate() {
            prefetch_ahead(w);
            let scales = scales_i16(w);
            let mut sums = [_mm512_setzero_si512(); R];
            for h in 0..2 {
                let half_scales = if h == 0 {
                    _mm512_broadcast_i32x4(_mm256_castsi256_si128(scales))
                } else {
                    _mm512_broadcast_i32x4(_mm256_extracti128_si256::<1>(scales))
                };
                for (g, q6) in quarter_pairs(w, h).into_iter().enumerate() {
                    let scale = _mm512_shuffle_epi8(half_scales, controls[g]);
                    for r in 0..R {
                        // SAFETY: 64 activation bytes at 128h + 64g lie inside qs.
                        let act = unsafe { _mm512_loadu_si512(acts[r][i].qs.as_ptr().add(128 * h + 64 * g).cast()) };
                        sums[r] = _mm512_dpwssd_epi32(sums[r], _mm512_maddubs_epi16(q6, act), scale);
                    }
                }
            }
            let d = f16_le(w.d);
            for r in 0..R {
                let a = &acts[r][i];
                let sum = _mm256_add_epi32(_mm512_castsi512_si256(sums[r]), _mm512_extracti64x4_epi64::<1>(sums[r]));
                acc[r] = finish_block(acc[r], sum, offset(scales, a), d, a);
            }
        }
        acc.map(|v| hsum_ps(v))
    }

    /// Bit-exact twin of `dequantize_row_scalar`: the same `step * (q - 32)` in f32, eight lanes at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn dequantize_avx2(src: &[BlockQ6K], dst: &mut [f32]) {
        let mut values = [0u8; QK_K];
        for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_le(block.d);
            for (i, v) in values.iter_mut().enumerate() {
                *v = block.q(i);
            }
            for (k, sub) in out.chunks_exact_mut(16).enumerate() {
                let step = _mm256_set1_ps(d * block.scales[k] as f32);
                for g in 0..2 {
                    // SAFETY: 8 bytes at 16k + 8g lie inside values; sub holds 16 floats.
                    unsafe {
                        let bytes = _mm_loadl_epi64(values.as_ptr().add(16 * k + 8 * g).cast());
                        let q = _mm256_sub_epi32(_mm256_cvtepu8_epi32(bytes), _mm256_set1_epi32(32));
                        _mm256_storeu_ps(sub.as_mut_ptr().add(8 * g), _mm256_mul_ps(step, _mm256_cvtepi32_ps(q)));
                    }
                }
            }
        }
    }

    /// [`super::unpack_gemm_row`] with AVX-512: each half (128 elements) is two k-steps of the panel.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub fn unpack_gemm_avx512(src: &[BlockQ6K], k: usize, dst: &mut [u8], mw: &mut [f32]) {
        use crate::gemm::STEP_BYTES;
        assert!(
            dst.len() >= src.len() * 4 * STEP_BYTES && mw.len() >= src.len() * 16,
            "panel row too short for {} super-blocks",
            src.len()
        );
        let low = _mm256_set1_epi8(0x0F);
        let two = _mm256_set1_epi8(0x03);
        let repeat4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        for (b, block) in src.iter().enumerate() {
            let d = f16_le(block.d);
            let steps: [f32; 16] = std::array::from_fn(|s| d * block.scales[s] as f32);
            let corr: [f32; 16] = std::array::from_fn(|s| -32.0 * steps[s]);
            mw[16 * b..16 * b + 16].copy_from_slice(&corr);
            for h in 0..2 {
                // SAFETY: ql holds 2 halves of 64 bytes, qh 2 halves of 32.
                let (ql0, ql1, qh) = unsafe {
                    (
                        _mm256_loadu_si256(block.ql.as_ptr().add(64 * h).cast()),
                        _mm256_loadu_si256(block.ql.as_ptr().add(64 * h + 32).cast()),
                        _mm256_loadu_si256(block.qh.as_ptr().add(32 * h).cast()),
                    )
                };
                let high = |shift: i32| {
                    let bits = match shift {
                        0 => qh,
                        2 => _mm256_srli_epi16::<2>(qh),
                        4 => _mm256_srli_epi16::<4>(qh),
                        _ => _mm256_srli_epi16::<6>(qh),
                    };
                    _mm256_slli_epi16::<4>(_mm256_and_si256(bits, two))
                };
                let q0 = _mm256_or_si256(_mm256_and_si256(ql0, low), high(0));
                let q1 = _mm256_or_si256(_mm256_and_si256(ql1, low), high(2));
                let q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low), high(4));
                let q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low), high(6));
                for (j, (a, c)) in [(q0, q1), (q2, q3)].into_iter().enumerate() {
                    let step = 4 * b + 2 * h + j;
                    let codes = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), c);
                    // Sub-blocks 8h + 4j .. 8h + 4j + 4, each over four lanes.
                    let first = 8 * h + 4 * j;
                    // SAFETY: steps has 16 floats, first + 4 <= 16.
                    let four = unsafe { _mm_loadu_ps(steps.as_ptr().add(first)) };
                    let lanes = _mm512_permutexvar_ps(repeat4, _mm512_castps128_ps512(four));
                    // SAFETY: k-step `step` of the panel row is 128 bytes (assert above); unaligned stores.
                    unsafe {
                        _mm512_storeu_si512(dst.as_mut_ptr().add(step * STEP_BYTES).cast(), codes);
                        _mm512_storeu_ps(dst.as_mut_ptr().add(step * STEP_BYTES + 64).cast(), lanes);
                    }
                }
            }
        }
        crate::gemm::finish_row(dst, mw, k);
    }
}
