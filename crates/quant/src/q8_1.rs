//! Q8_1: the activation partner of Q4_1 and Q5_1 weights. Blocks of 32 signed 8-bit values with an f16 scale `d`
//! and an f16 `s = d * Σ q` (rounded to f16, as llama.cpp stores it), `x = d * q`.
//!
//! With `s`, the offset term of an affine weight block (`m * Σ a`) costs one multiply: `m_w * s_a`.

use crate::legacy_common::{blocks_in, f16_le, f16_le_from, quantize_act_block, usable, view_blocks, view_blocks_mut};
use crate::legacy_common::{PlainBlock, QK};
use crate::SimdLevel;

/// One Q8_1 block: 36 bytes, laid out as in GGUF.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8_1 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// f16 `d * Σ qs`, little-endian.
    pub s: [u8; 2],
    /// Element `i` is `d * qs[i]`.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);
// SAFETY: repr(C), only byte arrays (alignment 1, no padding), every bit pattern valid.
unsafe impl PlainBlock for BlockQ8_1 {}

/// Bytes per block.
pub const BLOCK_BYTES: usize = size_of::<BlockQ8_1>();

/// The activation quantizer (f32 → Q8_1 blocks) at `simd`, lowered to what this CPU runs.
pub fn act_quantizer(simd: SimdLevel) -> fn(&[f32], &mut [u8]) {
    match usable(simd) {
        SimdLevel::Scalar => quantize_act_row_scalar,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => x86::quantize_act_row_avx2,
        #[cfg(not(target_arch = "x86_64"))]
        _ => quantize_act_row_scalar,
    }
}

/// Dequantizes `dst.len() / 32` blocks (`s` is not needed): the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    let src = view_blocks::<BlockQ8_1>(src, blocks_in(dst.len()));
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_le(block.d);
        for (o, &q) in out.iter_mut().zip(&block.qs) {
            *o = d * q as f32;
        }
    }
}

/// Quantizes an activation row (a whole number of blocks) into Q8_1 blocks the way llama.cpp does on x86
/// (see [`crate::legacy_common::quantize_act_block`]; `s` from the unrounded `d`): the reference of the SIMD
/// quantizer.
pub fn quantize_act_row_scalar(src: &[f32], dst: &mut [u8]) {
    let dst = view_blocks_mut::<BlockQ8_1>(dst, blocks_in(src.len()));
    for (x, block) in src.chunks_exact(QK).zip(dst) {
        let (d, q) = quantize_act_block(x);
        let sum: i32 = q.iter().map(|&v| v as i32).sum();
        block.d = f16_le_from(d);
        block.s = f16_le_from(d * sum as f32);
        block.qs = q;
    }
}

/// Lays out a converted activation row of `k` elements for the GEMM (see [`crate::gemm`]): codes `q`, scale `d`,
/// and as corrections the block's stored `s` (f16-rounded `d * Σ q`, as the per-pair kernels and llama.cpp use
/// it) for its first 16 elements and 0 for its second: the weight corrections are per block (`m`), so the sum of
/// the two terms is `m * s`.
pub fn pack_gemm_act(act_row: &[u8], k: usize, dst: &mut [u8], ma: &mut [f32]) {
    let blocks = view_blocks::<BlockQ8_1>(act_row, blocks_in(k));
    for (b, block) in blocks.iter().enumerate() {
        let d = f16_le(block.d);
        crate::gemm::put_run(dst, ma, QK * b, &block.qs.map(|q| q as u8), d, 0.0);
        ma[2 * b] = f16_le(block.s);
    }
    crate::gemm::finish_row(dst, ma, k);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BlockQ8_1;
    use crate::legacy_common::{blocks_in, f16_le_from, view_blocks_mut, QK};
    use crate::x86_common::quantize_act_block;

    pub fn quantize_act_row_avx2(src: &[f32], dst: &mut [u8]) {
        let dst = view_blocks_mut::<BlockQ8_1>(dst, blocks_in(src.len()));
        // SAFETY: only reachable through `act_quantizer`, which checked the CPU features.
        unsafe { quantize_act_avx2(src, dst) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn quantize_act_avx2(src: &[f32], dst: &mut [BlockQ8_1]) {
        for (x, block) in src.chunks_exact(QK).zip(dst) {
            let (d, sum) = quantize_act_block(x, &mut block.qs);
            block.d = f16_le_from(d);
            block.s = f16_le_from(d * sum as f32);
        }
    }
}
