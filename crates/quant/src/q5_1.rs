//! Q5_1: blocks of 32 5-bit values with an f16 scale and an f16 offset, `x = d * q + m`, `q` in 0..32.
//!
//! Byte `j` of `qs` holds the low four bits of element `j` in its low nibble and of element `j + 16` in its high
//! nibble; bit `i` of the little-endian word `qh` is the fifth bit of element `i`. Pairs with Q8_1 activations:
//! per block `d_w * d_a * Σ q_w * q_a + m_w * s_a`.

use crate::legacy_common::{
    blocks_in, f16_le, f16_le_from, pack_fifth_bits, pack_nibbles, quantize_block_affine, unpack_five_bits, usable,
    view_blocks, view_blocks_mut, DequantizeFn, DotFn, PlainBlock, QK,
};
use crate::q8_1::{self, BlockQ8_1};
use crate::{GgmlType, Kernels, SimdLevel};

/// One Q5_1 block: 24 bytes, laid out as in GGUF.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5_1 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// f16 offset (the block minimum), little-endian.
    pub m: [u8; 2],
    /// The fifth bits, a little-endian u32 (see the module docs).
    pub qh: [u8; 4],
    /// The low four bits, packed (see the module docs).
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl PlainBlock for BlockQ5_1 {}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ5_1>();

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
        weight: GgmlType::Q5_1,
        act: GgmlType::Q8_1,
        dequantize_row,
        quantize_act_row: q8_1::act_quantizer(simd),
        vec_dot,
        vec_dot_x4: None,
    })
}

/// Dequantizes `dst.len() / 32` blocks: the reference (`d * q` rounded, then `+ m` rounded: no fused multiply-add).
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = view_blocks::<BlockQ5_1>(src, blocks_in(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_le(block.d), f16_le(block.m));
        for (o, q) in out.iter_mut().zip(unpack_five_bits(block.qh, &block.qs)) {
            *o = d * q as f32 + m;
        }
    }
}

/// Dot product of `n` elements of a Q5_1 weight row and a Q8_1 activation row: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = blocks_in(n);
    let w = view_blocks::<BlockQ5_1>(weight_row, nb);
    let a = view_blocks::<BlockQ8_1>(act_row, nb);
    let mut sum = 0f32;
    for (wb, ab) in w.iter().zip(a) {
        let q = unpack_five_bits(wb.qh, &wb.qs);
        let sumi: i32 = q.iter().zip(&ab.qs).map(|(&x, &y)| x as i32 * y as i32).sum();
        sum += sumi as f32 * (f16_le(wb.d) * f16_le(ab.d)) + f16_le(wb.m) * f16_le(ab.s);
    }
    sum
}

/// Quantizes `src` (a whole number of blocks) into Q5_1 blocks with ggml's reference round-to-nearest
/// (bit-exact with gguf-py's `quantize`).
pub fn quantize_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = view_blocks_mut::<BlockQ5_1>(dst, blocks_in(src.len()));
    for (x, block) in src.chunks_exact(QK).zip(dst) {
        let (d, min, codes) = quantize_block_affine(x, 5);
        block.d = f16_le_from(d);
        block.m = f16_le_from(min);
        block.qh = pack_fifth_bits(&codes);
        block.qs = pack_nibbles(&codes);
    }
}

/// Unpacks a weight row of `k` elements into a GEMM panel row (see [`crate::gemm`]): codes `q`, scale `d`, correction `m`: the reference.
pub fn unpack_gemm_row(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let blocks = view_blocks::<BlockQ5_1>(row, blocks_in(k));
    for (b, block) in blocks.iter().enumerate() {
        let d = f16_le(block.d);
        let codes: [u8; QK] = unpack_five_bits(block.qh, &block.qs);
        crate::gemm::put_run(dst, mw, QK * b, &codes, d, f16_le(block.m));
    }
    crate::gemm::finish_row(dst, mw, k);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BlockQ5_1;
    use crate::legacy_common::{blocks_in, view_blocks, QK};
    use crate::q8_1::BlockQ8_1;
    use crate::x86_common::{
        bits_to_byte_mask, dot_blocks, dot_u8i8x32, f16_fields8, f16_product, f16_to_f32, five_bit_values,
        nibbles_to_bytes, store_scaled_bytes,
    };

    /// The 32 unsigned 5-bit values (AVX2: the fifth bits through a byte mask).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn values(block: &BlockQ5_1) -> __m256i {
        let high = bits_to_byte_mask(u32::from_le_bytes(block.qh));
        _mm256_or_si256(
            nibbles_to_bytes(&block.qs),
            _mm256_and_si256(high, _mm256_set1_epi8(16)),
        )
    }

    /// The 32 unsigned 5-bit values (AVX-512: the fifth bits added under a mask register straight from `qh`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    fn values_avx512(block: &BlockQ5_1) -> __m256i {
        five_bit_values(&block.qs, u32::from_le_bytes(block.qh))
    }

    const W_BYTES: usize = size_of::<BlockQ5_1>();
    const A_BYTES: usize = size_of::<BlockQ8_1>();

    /// `d_w * d_a` of 8 block pairs.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scales8(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> __m256 {
        assert!(w.len() >= 8 && a.len() >= 8);
        // SAFETY: 8 blocks on each side (assert above), the f16 `d` at byte 0 of each.
        unsafe {
            _mm256_mul_ps(
                f16_fields8(w.as_ptr().cast(), W_BYTES, 0),
                f16_fields8(a.as_ptr().cast(), A_BYTES, 0),
            )
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn act_qs(block: &BlockQ8_1) -> __m256i {
        // SAFETY: `qs` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(block.qs.as_ptr().cast()) }
    }

    pub fn dequantize_row_avx2(src: &[u8], dst: &mut [f32]) {
        let src = view_blocks::<BlockQ5_1>(src, blocks_in(dst.len()));
        // SAFETY: only reachable through `kernels`, which checked that the CPU runs AVX2/FMA/F16C.
        unsafe { dequantize_avx2(src, dst) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dequantize_avx2(src: &[BlockQ5_1], dst: &mut [f32]) {
        for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            let (d, m) = (_mm256_set1_ps(f16_to_f32(block.d)), _mm256_set1_ps(f16_to_f32(block.m)));
            store_scaled_bytes(values(block), d, Some(m), out);
        }
    }

    pub fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        let nb = blocks_in(n);
        let (w, a) = (
            view_blocks::<BlockQ5_1>(weight_row, nb),
            view_blocks::<BlockQ8_1>(act_row, nb),
        );
        // SAFETY: only reachable through `kernels`, which checked the CPU features.
        unsafe { dot_avx2(w, a) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_avx2(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
        dot_blocks(
            w,
            a,
            |w8, a8| scales8(w8, a8),
            |wb, ab| f16_product(wb.d, ab.d),
            |wb, ab| dot_u8i8x32(values(wb), act_qs(ab)),
            |wb, ab| f16_product(wb.m, ab.s),
        )
    }

    pub fn vec_dot_avx512(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        let nb = blocks_in(n);
        let (w, a) = (
            view_blocks::<BlockQ5_1>(weight_row, nb),
            view_blocks::<BlockQ8_1>(act_row, nb),
        );
        // SAFETY: only reachable through `kernels`, which checked the CPU features.
        unsafe { dot_avx512(w, a) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn dot_avx512(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
        dot_blocks(
            w,
            a,
            |w8, a8| scales8(w8, a8),
            |wb, ab| f16_product(wb.d, ab.d),
            |wb, ab| _mm256_dpbusd_epi32(_mm256_setzero_si256(), values_avx512(wb), act_qs(ab)),
            |wb, ab| f16_product(wb.m, ab.s),
        )
    }
}
