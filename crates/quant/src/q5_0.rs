//! Q5_0: blocks of 32 5-bit values with one f16 scale, `x = d * (q - 16)`, `q` in 0..32.
//!
//! Byte `j` of `qs` holds the low four bits of element `j` in its low nibble and of element `j + 16` in its high
//! nibble; bit `i` of the little-endian word `qh` is the fifth bit of element `i`. Pairs with Q8_0 activations:
//! per block `d_w * d_a * Σ (q_w - 16) * q_a`.

use crate::legacy_common::{
    blocks_in, f16_le, f16_le_from, pack_fifth_bits, pack_nibbles, quantize_block_symmetric, unpack_five_bits, usable,
    view_blocks, view_blocks_mut, DequantizeFn, DotFn, PlainBlock, QK,
};
use crate::q8_0::{self, BlockQ8_0};
use crate::{GgmlType, Kernels, SimdLevel};

/// One Q5_0 block: 22 bytes, laid out as in GGUF.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// The fifth bits, a little-endian u32 (see the module docs).
    pub qh: [u8; 4],
    /// The low four bits, packed (see the module docs).
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl PlainBlock for BlockQ5_0 {}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ5_0>();

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
        weight: GgmlType::Q5_0,
        act: GgmlType::Q8_0,
        dequantize_row,
        quantize_act_row: q8_0::act_quantizer(simd),
        vec_dot,
        // Prompt-sized products go through the register-tiled GEMM (`crate::gemm`) instead.
        vec_dot_x4: None,
    })
}

/// Dequantizes `dst.len() / 32` blocks: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = view_blocks::<BlockQ5_0>(src, blocks_in(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_le(block.d);
        for (o, q) in out.iter_mut().zip(unpack_five_bits(block.qh, &block.qs)) {
            *o = d * (q as i32 - 16) as f32;
        }
    }
}

/// Dot product of `n` elements of a Q5_0 weight row and a Q8_0 activation row: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    let nb = blocks_in(n);
    let w = view_blocks::<BlockQ5_0>(weight_row, nb);
    let a = view_blocks::<BlockQ8_0>(act_row, nb);
    let mut sum = 0f32;
    for (wb, ab) in w.iter().zip(a) {
        let q = unpack_five_bits(wb.qh, &wb.qs);
        let sumi: i32 = q.iter().zip(&ab.qs).map(|(&x, &y)| (x as i32 - 16) * y as i32).sum();
        sum += sumi as f32 * (f16_le(wb.d) * f16_le(ab.d));
    }
    sum
}

/// Quantizes `src` (a whole number of blocks) into Q5_0 blocks with ggml's reference round-to-nearest
/// (bit-exact with gguf-py's `quantize`).
pub fn quantize_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = view_blocks_mut::<BlockQ5_0>(dst, blocks_in(src.len()));
    for (x, block) in src.chunks_exact(QK).zip(dst) {
        let (d, codes) = quantize_block_symmetric(x, 5);
        block.d = f16_le_from(d);
        block.qh = pack_fifth_bits(&codes);
        block.qs = pack_nibbles(&codes);
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

/// Unpacks a weight row of `k` elements into a GEMM panel row (see [`crate::gemm`]): codes `q`, scale `d`, correction `-16 d`: the reference.
pub fn unpack_gemm_row(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
    let blocks = view_blocks::<BlockQ5_0>(row, blocks_in(k));
    for (b, block) in blocks.iter().enumerate() {
        let d = f16_le(block.d);
        let codes: [u8; QK] = unpack_five_bits(block.qh, &block.qs);
        crate::gemm::put_run(dst, mw, QK * b, &codes, d, -16.0 * d);
    }
    crate::gemm::finish_row(dst, mw, k);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BlockQ5_0;
    use crate::legacy_common::{blocks_in, view_blocks, QK};
    use crate::q8_0::BlockQ8_0;
    use crate::x86_common::{
        bits_to_byte_mask, dot_blocks, f16_fields8, f16_product, f16_to_f32, five_bit_values, nibbles_to_bytes,
        store_scaled_bytes,
    };

    /// The 32 values `q - 16` as signed bytes: the low nibble, with 0xF0 or-ed in where the fifth bit is clear
    /// (`q - 16 = nibble - 16` there, which is the nibble with its top bits set).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn signed_values(block: &BlockQ5_0) -> __m256i {
        let high = bits_to_byte_mask(u32::from_le_bytes(block.qh));
        let negative = _mm256_andnot_si256(high, _mm256_set1_epi8(0xF0_u8 as i8));
        _mm256_or_si256(nibbles_to_bytes(&block.qs), negative)
    }

    /// `d_w * d_a` of 8 block pairs.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scales8(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> __m256 {
        assert!(w.len() >= 8 && a.len() >= 8);
        // SAFETY: 8 blocks on each side (assert above), the f16 `d` at byte 0 of each.
        unsafe {
            let dw = f16_fields8(w.as_ptr().cast(), size_of::<BlockQ5_0>(), 0);
            let da = f16_fields8(a.as_ptr().cast(), size_of::<BlockQ8_0>(), 0);
            _mm256_mul_ps(dw, da)
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn act_qs(block: &BlockQ8_0) -> __m256i {
        // SAFETY: `qs` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(block.qs.as_ptr().cast()) }
    }

    pub fn dequantize_row_avx2(src: &[u8], dst: &mut [f32]) {
        let src = view_blocks::<BlockQ5_0>(src, blocks_in(dst.len()));
        // SAFETY: only reachable through `kernels`, which checked that the CPU runs AVX2/FMA/F16C.
        unsafe { dequantize_avx2(src, dst) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dequantize_avx2(src: &[BlockQ5_0], dst: &mut [f32]) {
        for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            store_scaled_bytes(signed_values(block), _mm256_set1_ps(f16_to_f32(block.d)), None, out);
        }
    }

    pub fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        let nb = blocks_in(n);
        let (w, a) = (
            view_blocks::<BlockQ5_0>(weight_row, nb),
            view_blocks::<BlockQ8_0>(act_row, nb),
        );
        // SAFETY: only reachable through `kernels`, which checked the CPU features.
        unsafe { dot_avx2(w, a) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_avx2(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
        dot_blocks(
            w,
            a,
            |w8, a8| scales8(w8, a8),
            |wb, ab| f16_product(wb.d, ab.d),
            |wb, ab| {
                // Σ (q - 16) a = Σ nibble * a - 16 Σ_(fifth bit clear) a: both in i16 pairs (|.| <= 2 * 16 * 127).
                let act = act_qs(ab);
                let clear = _mm256_andnot_si256(bits_to_byte_mask(u32::from_le_bytes(wb.qh)), act);
                let with_nibbles = _mm256_maddubs_epi16(nibbles_to_bytes(&wb.qs), act);
                let offsets = _mm256_maddubs_epi16(_mm256_set1_epi8(16), clear);
                _mm256_madd_epi16(_mm256_sub_epi16(with_nibbles, offsets), _mm256_set1_epi16(1))
            },
            |_, _| 0.0,
        )
    }

    pub fn vec_dot_avx512(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        let nb = blocks_in(n);
        let (w, a) = (
            view_blocks::<BlockQ5_0>(weight_row, nb),
            view_blocks::<BlockQ8_0>(act_row, nb),
        );
        // SAFETY: only reachable through `kernels`, which checked the CPU features.
        unsafe { dot_avx512(w, a) }
    }

    /// `Σ q*a - 16 Σ a` with two VNNI dot products on the unsigned 5-bit values (the fifth bits through a mask
    /// register straight from `qh`): no sign juggling.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn dot_avx512(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
        let block = |wb: &BlockQ5_0, ab: &BlockQ8_0| {
            let act = act_qs(ab);
            let zero = _mm256_setzero_si256();
            let values = five_bit_values(&wb.qs, u32::from_le_bytes(wb.qh));
            let with_offset = _mm256_dpbusd_epi32(zero, values, act);
            let offset = _mm256_dpbusd_epi32(zero, _mm256_set1_epi8(16), act);
            _mm256_sub_epi32(with_offset, offset)
        };
        dot_blocks(
            w,
            a,
            |w8, a8| scales8(w8, a8),
            |wb, ab| f16_product(wb.d, ab.d),
            block,
            |_, _| 0.0,
        )
    }

    pub fn unpack_gemm_row_avx512(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]) {
        let blocks = view_blocks::<BlockQ5_0>(row, blocks_in(k));
        // SAFETY: only reachable through `gemm_unpacker`, which checked the CPU features.
        unsafe { unpack_avx512(blocks, k, dst, mw) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    fn unpack_avx512(blocks: &[BlockQ5_0], k: usize, dst: &mut [u8], mw: &mut [f32]) {
        crate::gemm::x86::unpack_blocks32(
            blocks,
            k,
            dst,
            mw,
            |b| five_bit_values(&b.qs, u32::from_le_bytes(b.qh)),
            |b| {
                let d = f16_to_f32(b.d);
                (d, -16.0 * d)
            },
        )
    }
}
