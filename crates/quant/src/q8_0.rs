//! Q8_0: blocks of 32 signed 8-bit values with one f16 scale, `x = d * q`.
//!
//! Q8_0 is both a weight format and the activation partner of Q4_0, Q5_0 and Q8_0 weights: the dot product of a
//! block pair is `d_w * d_a * Σ q_w * q_a`, an exact integer sum scaled once per block.

use crate::legacy_common::{
    blocks_in, f16_le, f16_le_from, quantize_act_block, usable, view_blocks, view_blocks_mut, DequantizeFn, DotFn,
    PlainBlock, QK,
};
use crate::{GgmlType, Kernels, SimdLevel};

/// One Q8_0 block: 34 bytes, laid out as in GGUF.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// Element `i` is `d * qs[i]`.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl PlainBlock for BlockQ8_0 {}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ8_0>();

/// The kernels at `simd`, lowered to what this CPU runs.
pub fn kernels(simd: SimdLevel) -> Option<Kernels> {
    let simd = usable(simd);
    let (dequantize_row, vec_dot): (DequantizeFn, DotFn) = match simd {
        SimdLevel::Scalar => (dequantize_row_scalar, vec_dot_scalar),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => (x86::dequantize_row_avx2, x86::vec_dot_avx2),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => (x86::dequantize_row_avx2, x86::vec_dot_avx512),
        #[cfg(not(target_arch = "x86_64"))]
        _ => (dequantize_row_scalar, vec_dot_scalar),
    };
    Some(Kernels {
        weight: GgmlType::Q8_0,
        act: GgmlType::Q8_0,
        dequantize_row,
        quantize_act_row: act_quantizer(simd),
        vec_dot,
        // Prompt-sized products go through the register-tiled GEMM (`crate::gemm`) instead.
        vec_dot_x4: None,
    })
}

/// The activation quantizer (f32 → Q8_0 blocks) at `simd`, lowered to what this CPU runs.
pub fn act_quantizer(simd: SimdLevel) -> fn(&[f32], &mut [u8]) {
    match usable(simd) {
        SimdLevel::Scalar => quantize_act_row_scalar,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => x86::quantize_act_row_avx2,
        #[cfg(not(target_arch = "x86_64"))]
        _ => quantize_act_row_scalar,
    }
}

/// Dequantizes `dst.len() / 32` blocks: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = view_blocks::<BlockQ8_0>(src, blocks_in(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_le(block.d);
        for (o, &q) in out.iter_mut().zip(&block.qs) {
            *o = d * q as f32;
        }
    }
}

/// Dot product of `n` elements of a Q8_0 weight row and a Q8_0 activation row: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = blocks_in(n);
    let w = view_blocks::<BlockQ8_0>(weight_row, nb);
    let a = view_blocks::<BlockQ8_0>(act_row, nb);
    let mut sum = 0f32;
    for (wb, ab) in w.iter().zip(a) {
        let sumi: i32 = wb.qs.iter().zip(&ab.qs).map(|(&x, &y)| x as i32 * y as i32).sum();
        sum += sumi as f32 * (f16_le(wb.d) * f16_le(ab.d));
    }
    sum
}

/// Quantizes `src` (a whole number of blocks) into Q8_0 weight blocks with ggml's reference rounding:
/// `d = amax / 127`, `q = round(x / d)` with ties away from zero (bit-exact with gguf-py's `quantize`).
pub fn quantize_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = view_blocks_mut::<BlockQ8_0>(dst, blocks_in(src.len()));
    for (x, block) in src.chunks_exact(QK).zip(dst) {
        let amax = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16_le_from(d);
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
}

/// Quantizes an activation row (a whole number of blocks) into Q8_0 blocks the way llama.cpp does on x86
/// (see [`crate::legacy_common::quantize_act_block`]): the reference of the SIMD activation quantizer.
pub fn quantize_act_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = view_blocks_mut::<BlockQ8_0>(dst, blocks_in(src.len()));
    for (x, block) in src.chunks_exact(QK).zip(dst) {
        let (d, q) = quantize_act_block(x);
        block.d = f16_le_from(d);
        block.qs = q;
    }
}

/// The GEMM panel unpacker (see [`crate::gemm`]) at `simd`, lowered to what this CPU runs.
pub fn gemm_unpacker(simd: SimdLevel) -> crate::gemm::UnpackFn {
    match usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::unpack_gemm_row_avx512,
        _ => unpack_gemm_row,
    }
}

/// Unpacks a weight row of `k` elements into a GEMM panel row (see [`crate::gemm`]): codes `q + 128`, scale `d`, correction `-128 d`: the reference.
pub fn unpack_gemm_row(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let blocks = view_blocks::<BlockQ8_0>(row, blocks_in(k));
    for (b, block) in blocks.iter().enumerate() {
        let d = f16_le(block.d);
        let codes: [u8; QK] = block.qs.map(|q| q as u8 ^ 0x80);
        crate::gemm::put_run(dst, mw, QK * b, &codes, d, -128.0 * d);
    }
    crate::gemm::finish_row(dst, mw, k);
}

/// Lays out a converted activation row of `k` elements for the GEMM (see [`crate::gemm`]): codes `q`, scale `d`,
/// per 16 elements `d * Σ q`.
pub fn pack_gemm_act(act_row: &[u8], k: usize, dst: &mut [u8], ma: &mut [f32]) {
    let blocks = view_blocks::<BlockQ8_0>(act_row, blocks_in(k));
    for (b, block) in blocks.iter().enumerate() {
        let d = f16_le(block.d);
        crate::gemm::put_run(dst, ma, QK * b, &block.qs.map(|q| q as u8), d, 0.0);
        for h in 0..2 {
            let sum: i32 = block.qs[16 * h..16 * h + 16].iter().map(|&q| q as i32).sum();
            ma[2 * b + h] = d * sum as f32;
        }
    }
    crate::gemm::finish_row(dst, ma, k);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BlockQ8_0;
    use crate::legacy_common::{blocks_in, f16_le_from, view_blocks, view_blocks_mut, QK};
    use crate::x86_common::{
        dot_blocks, dot_i8x32, dot_i8x32_vnni, f16_fields8, f16_product, f16_to_f32, quantize_act_block,
        store_scaled_bytes,
    };

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn load_qs(block: &BlockQ8_0) -> __m256i {
        // SAFETY: `qs` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(block.qs.as_ptr().cast()) }
    }

    /// `d_w * d_a` of 8 block pairs of 34-byte blocks (Q8_0 weights or activations) with `d` at byte 0.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn scales8(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> __m256 {
        assert!(w.len() >= 8 && a.len() >= 8);
        // SAFETY: 8 blocks of 34 bytes on each side (assert above), the f16 `d` at byte 0.
        unsafe {
            _mm256_mul_ps(
                f16_fields8(w.as_ptr().cast(), 34, 0),
                f16_fields8(a.as_ptr().cast(), 34, 0),
            )
        }
    }

    pub fn dequantize_row_avx2(src: &[u8], dst: &mut [f32]) {
        let src = view_blocks::<BlockQ8_0>(src, blocks_in(dst.len()));
        // SAFETY: only reachable through `kernels`, which checked that the CPU runs AVX2/FMA/F16C.
        unsafe { dequantize_avx2(src, dst) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dequantize_avx2(src: &[BlockQ8_0], dst: &mut [f32]) {
        for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            store_scaled_bytes(load_qs(block), _mm256_set1_ps(f16_to_f32(block.d)), None, out);
        }
    }

    pub fn quantize_act_row_avx2(src: &[f32], dst: &mut [u8]) {
        let dst = view_blocks_mut::<BlockQ8_0>(dst, blocks_in(src.len()));
        // SAFETY: only reachable through `act_quantizer`, which checked the CPU features.
        unsafe { quantize_act_avx2(src, dst) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn quantize_act_avx2(src: &[f32], dst: &mut [BlockQ8_0]) {
        for (x, block) in src.chunks_exact(QK).zip(dst) {
            let (d, _) = quantize_act_block(x, &mut block.qs);
            block.d = f16_le_from(d);
        }
    }

    pub fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        let nb = blocks_in(n);
        let (w, a) = (
            view_blocks::<BlockQ8_0>(weight_row, nb),
            view_blocks::<BlockQ8_0>(act_row, nb),
        );
        // SAFETY: only reachable through `kernels`, which checked the CPU features.
        unsafe { dot_avx2(w, a) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_avx2(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
        dot_blocks(
            w,
            a,
            |w8, a8| scales8(w8, a8),
            |wb, ab| f16_product(wb.d, ab.d),
            |wb, ab| dot_i8x32(load_qs(wb), load_qs(ab)),
            |_, _| 0.0,
        )
    }

    pub fn vec_dot_avx512(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        let nb = blocks_in(n);
        let (w, a) = (
            view_blocks::<BlockQ8_0>(weight_row, nb),
            view_blocks::<BlockQ8_0>(act_row, nb),
        );
        // SAFETY: only reachable through `kernels`, which checked the CPU features.
        unsafe { dot_avx512(w, a) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn dot_avx512(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
        dot_blocks(
            w,
            a,
            |w8, a8| scales8(w8, a8),
            |wb, ab| f16_product(wb.d, ab.d),
            |wb, ab| dot_i8x32_vnni(_mm256_setzero_si256(), load_qs(wb), load_qs(ab)),
            |_, _| 0.0,
        )
    }

    pub fn unpack_gemm_row_avx512(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
        let blocks = view_blocks::<BlockQ8_0>(row, blocks_in(k));
        // SAFETY: only reachable through `gemm_unpacker`, which checked the CPU features.
        unsafe { unpack_avx512(blocks, k, dst, mw) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    fn unpack_avx512(blocks: &[BlockQ8_0], k: usize, dst: &mut [u8], mw: &mut [f32]) {
        crate::gemm::x86::unpack_blocks32(
            blocks,
            k,
            dst,
            mw,
            |b| _mm256_xor_si256(load_qs(b), _mm256_set1_epi8(0x80_u8 as i8)),
            |b| {
                let d = f16_to_f32(b.d);
                (d, -128.0 * d)
            },
        )
    }
}
