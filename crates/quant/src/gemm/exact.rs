//! The exact route for Q8_0, Q5_0 and Q4_0: a GEMM whose every result is bit for bit the per-pair `vec_dot` of the
//! format, itself bit for bit ggml's (`tests/ggml_vec_dot.rs`), so that a prompt processed in one batch gives the
//! same numbers as decoding it token by token, and as llama.cpp (8-bit activation rounding turns the last-bit
//! differences of a reordered sum into differences of tenths in the logits of small models).
//!
//! The per-pair kernels (`x86_common::dot_blocks`) compute per 32-block eight exact i32 lanes (four products each),
//! convert them, and fuse-multiply them by `d_w * d_a` into one 8-lane accumulator, block after block, then reduce
//! the eight lanes as halves, quarters, pairs. Here a 16-lane vector holds one block of two tokens (token `2j` in
//! the low half, `2j + 1` in the high; the weight block broadcast to both): the exact i32 lanes come from one
//! `vpdpbusd` on the unsigned codes starting from `-offset * Σ a` (precomputed per four activations in the
//! activation panel), and one FMA folds the block into both pairs' accumulators, block after block. A tile is 4
//! weight rows × 4 tokens, as in the integer route.
//!
//! Activation rows: `⌈k / 64⌉` chunks of 192 bytes, `[64 i8 codes][16 f32 d_a][16 i32 -offset * Σ4 a]`. Weight
//! rows: the integer panel of [`crate::gemm`] (codes `q + offset`, scales `d_w`; corrections unused).

use super::{OutView, KSTEP, STEP_BYTES};
use crate::legacy_common::{blocks_in, f16_le, view_blocks, QK};
use crate::q8_0::BlockQ8_0;
use crate::SimdLevel;

/// Bytes per k-step of an activation row.
pub const ACT_STEP_BYTES: usize = 192;
/// Weight rows per tile.
pub const XMR: usize = 4;
/// Tokens per tile.
pub const XNR: usize = 4;

/// Every tile of a block: `k` elements per row, weight panel rows (`w`, [n_rows, panel_row_bytes(k)]) against
/// activation rows (`a`, [n_tokens, act_row_bytes(k)]), results to `out`'s rows from `r0`.
pub type ExactBlockFn = fn(k: usize, w: &[u8], a: &[u8], out: &OutView, r0: usize);

/// Bytes of an activation row of `k` elements.
pub fn act_row_bytes(k: usize) -> usize {
    k.div_ceil(KSTEP) * ACT_STEP_BYTES
}

/// The block runner at `simd`, or `None` below AVX-512 VNNI (then the per-pair kernels are not the AVX-512 ones
/// either, and the generic integer route serves).
pub fn best(simd: SimdLevel) -> Option<ExactBlockFn> {
    match crate::legacy_common::usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => Some(x86::block_vnni),
        _ => None,
    }
}

/// Lays out a Q8_0 activation row of `k` elements for weights whose codes carry `offset`.
pub fn pack_act(act_row: &[u8], k: usize, offset: u8, dst: &mut [u8]) {
    let blocks = view_blocks::<BlockQ8_0>(act_row, blocks_in(k));
    let need = act_row_bytes(k);
    let dst = &mut dst[..need];
    for (b, block) in blocks.iter().enumerate() {
        let base = (b / 2) * ACT_STEP_BYTES + 32 * (b % 2);
        for (o, &q) in dst[base..base + QK].iter_mut().zip(&block.qs) {
            *o = q as u8;
        }
        let d = f16_le(block.d).to_ne_bytes();
        for lane in dst[base + 64..base + 96].chunks_exact_mut(4) {
            lane.copy_from_slice(&d);
        }
        for (lane, quad) in dst[base + 128..base + 160]
            .chunks_exact_mut(4)
            .zip(block.qs.chunks_exact(4))
        {
            let sum: i32 = quad.iter().map(|&q| q as i32).sum();
            lane.copy_from_slice(&(-(offset as i32) * sum).to_ne_bytes());
        }
    }
    if blocks.len() % 2 == 1 {
        // The missing second block of the last step: zero codes, scales and offsets.
        let base = (blocks.len() / 2) * ACT_STEP_BYTES;
        for half in [0, 64, 128] {
            dst[base + half + 32..base + half + 64].fill(0);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{OutView, ACT_STEP_BYTES, STEP_BYTES, XMR, XNR};
    use crate::gemm::int::pair_lane;
    use crate::gemm::int::x86::reduce_pairs16;

    pub fn block_vnni(k: usize, w: &[u8], a: &[u8], out: &OutView, r0: usize) {
        let steps = k.div_ceil(64);
        let (wrb, arb) = (steps * STEP_BYTES, steps * ACT_STEP_BYTES);
        let (n_rows, n_tokens) = (w.len() / wrb, (a.len() / arb).min(out.n_tokens()));
        if n_rows == 0 || n_tokens == 0 {
            return;
        }
        // SAFETY: w holds n_rows rows of wrb bytes and a n_tokens rows of arb bytes (divisions above); only
        // reachable through `best`, which checked the CPU.
        unsafe { block(steps, w.as_ptr(), n_rows, a.as_ptr(), n_tokens, out, r0) }
    }

    /// # Safety
    /// `w` holds `n_rows` weight panel rows and `a` `n_tokens` activation rows of `steps` k-steps; the CPU runs
    /// AVX-512 F/BW/VL/VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn block(
        steps: usize,
        w: *const u8,
        n_rows: usize,
        a: *const u8,
        n_tokens: usize,
        out: &OutView,
        r0: usize,
    ) {
        let (wrb, arb) = (steps * STEP_BYTES, steps * ACT_STEP_BYTES);
        let mut res = [[0f32; XMR]; XNR];
        for t0 in (0..n_tokens).step_by(XNR) {
            // SAFETY (both): indices below n_tokens / n_rows (the caller's promise).
            let ap: [*const u8; XNR] = std::array::from_fn(|j| unsafe { a.add((t0 + j).min(n_tokens - 1) * arb) });
            for i0 in (0..n_rows).step_by(XMR) {
                let wp: [*const u8; XMR] = std::array::from_fn(|j| unsafe { w.add((i0 + j).min(n_rows - 1) * wrb) });
                // SAFETY: whole rows of `steps` steps, as `tile` needs.
                let sums = unsafe { tile(steps, wp, ap) };
                for (t, o) in res.iter_mut().enumerate() {
                    for (r, o) in o.iter_mut().enumerate() {
                        *o = sums[4 * r + t];
                    }
                }
                out.write_tile(t0, r0 + i0, r0 + (i0 + XMR).min(n_rows), &res);
            }
        }
    }

    /// Lane `4r + t` of the result is the per-pair `vec_dot` of weight row `r` and token `t`.
    ///
    /// # Safety
    /// Every `wp` points to `steps * 128` and every `ap` to `steps * 192` readable bytes; the CPU runs AVX-512
    /// F/BW/VL/VNNI.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile(steps: usize, wp: [*const u8; XMR], ap: [*const u8; XNR]) -> [f32; 16] {
        // acc[r][j]: the per-pair kernel's accumulators of row r with tokens 2j (lanes 0..8) and 2j + 1 (lanes
        // 8..16). A last step holding one block adds 0 * 0 to them, which leaves them as they are (an accumulator is
        // never -0).
        let mut acc = [[_mm512_setzero_ps(); XNR / 2]; XMR];
        for s in 0..steps {
            let (wo, ao) = (s * STEP_BYTES, s * ACT_STEP_BYTES);
            // Block 2s, then block 2s + 1, each folded into the accumulators in turn.
            for half in 0..2 {
                let at = |j: usize, off: usize| (ap[2 * j], ap[2 * j + 1], ao + off + 32 * half);
                // SAFETY (all three): s < steps and half < 2 keep every 32-byte load inside the step.
                let acts: [__m512i; XNR / 2] = std::array::from_fn(|j| unsafe { pair_i(at(j, 0)) });
                let act_scales: [__m512; XNR / 2] =
                    std::array::from_fn(|j| unsafe { _mm512_castsi512_ps(pair_i(at(j, 64))) });
                let starts: [__m512i; XNR / 2] = std::array::from_fn(|j| unsafe { pair_i(at(j, 128)) });
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    // The block's codes and scales in both halves (broadcast loads).
                    // SAFETY: as above.
                    let (codes, w_scale) = unsafe {
                        (
                            _mm512_broadcast_i64x4(_mm256_loadu_si256(wp[r].add(wo + 32 * half).cast())),
                            _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd(
                                wp[r].add(wo + 64 + 32 * half).cast(),
                            ))),
                        )
                    };
                    for (j, acc_rj) in acc_r.iter_mut().enumerate() {
                        let sums = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(starts[j], codes, acts[j]));
                        *acc_rj = _mm512_fmadd_ps(sums, _mm512_mul_ps(w_scale, act_scales[j]), *acc_rj);
                    }
                }
            }
        }
        // Each pair's 8 lanes (moved to the low half) reduced as the per-pair kernel's `hsum_f32x8` does, sixteen
        // pairs at once.
        let totals: [__m512; 16] = std::array::from_fn(|p| {
            let (r, t) = (p / XNR, p % XNR);
            let v = acc[r][t / 2];
            if t % 2 == 0 {
                v
            } else {
                _mm512_shuffle_f32x4::<0x4E>(v, v)
            }
        });
        let z = reduce_pairs16(totals);
        let mut lanes = [0f32; 16];
        // SAFETY: 16 writable floats.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), z) };
        // Pair p's sum sits at lane pair_lane(p); return it at 4r + t.
        let mut sums = [0f32; 16];
        for p in 0..16 {
            let (r, t) = (p / XNR, p % XNR);
            sums[4 * r + t] = lanes[pair_lane(p)];
        }
        sums
    }

    /// 32 bytes at `off` of two token rows as one 512-bit vector: `a`'s in the low half, `b`'s in the high.
    ///
    /// # Safety
    /// Both rows hold 32 readable bytes at `off`; the CPU runs AVX-512F.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn pair_i((a, b, off): (*const u8, *const u8, usize)) -> __m512i {
        // SAFETY: the caller's promise; unaligned loads.
        unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(a.add(off).cast())),
                _mm256_loadu_si256(b.add(off).cast()),
            )
        }
    }
}
