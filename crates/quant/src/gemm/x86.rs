//! x86-64 pieces of the panel unpackers shared by the legacy formats.

use std::arch::x86_64::*;

use super::{finish_row, STEP_BYTES};
use crate::legacy_common::QK;

/// Unpacks `blocks` (a row of `k` elements of 32-element blocks) into a panel row: `codes(block)` gives the 32
/// unsigned codes, `scale_corr(block)` the scale and the correction of the block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub fn unpack_blocks32<B>(
    blocks: &[B],
    k: usize,
    dst: &mut [u8],
    mw: &mut [f32],
    codes: impl Fn(&B) -> __m256i,
    scale_corr: impl Fn(&B) -> (f32, f32),
) {
    assert!(
        blocks.len() * QK <= k.next_multiple_of(64)
            && dst.len() >= k.div_ceil(64) * STEP_BYTES
            && mw.len() >= 2 * blocks.len(),
        "panel row too short for {} blocks",
        blocks.len()
    );
    for (b, block) in blocks.iter().enumerate() {
        let base = (b / 2) * STEP_BYTES + 32 * (b % 2);
        let (scale, corr) = scale_corr(block);
        // SAFETY: block b lies in k-step b / 2 < ⌈k / 64⌉ (assert above), whose 128 bytes hold its 32 codes at
        // `base` and its 8 scales at `base + 64`; unaligned stores.
        unsafe {
            _mm256_storeu_si256(dst.as_mut_ptr().add(base).cast(), codes(block));
            _mm256_storeu_ps(dst.as_mut_ptr().add(base + 64).cast(), _mm256_set1_ps(scale));
        }
        mw[2 * b] = corr;
        mw[2 * b + 1] = corr;
    }
    finish_row(dst, mw, k);
}
