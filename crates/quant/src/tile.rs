//! Tile kernels for prompt-sized matrix products: one weight row against four consecutive activation rows.
//!
//! [`crate::Kernels::vec_dot`] unpacks every weight block once per activation row; the tile kernels unpack (or
//! widen) it once and keep four accumulators, one per activation row. Each format's reference is four calls of
//! its scalar `vec_dot` ([`x4_by_rows`]); the SIMD versions sum the same terms in another order.

use crate::legacy_common::{blocks_in, view_blocks, DotFn};
use crate::q8_0::BlockQ8_0;

/// [`crate::Kernels::vec_dot_x4`]'s type: `out[t] = vec_dot(n, weight_row, act row t)` for the four activation
/// rows at `act_rows[t * act_row_bytes..]`.
pub type DotX4Fn = fn(n: usize, weight_row: &[u8], act_rows: &[u8], act_row_bytes: usize, out: &mut [f32; 4]);

/// The four activation rows of a tile.
///
/// # Panics
/// When `act_rows` is shorter than four rows of `act_row_bytes` (a caller bug).
pub fn split_rows4(act_rows: &[u8], act_row_bytes: usize) -> [&[u8]; 4] {
    assert!(
        act_rows.len() >= 4 * act_row_bytes,
        "{} bytes hold fewer than 4 activation rows of {act_row_bytes} bytes",
        act_rows.len()
    );
    std::array::from_fn(|t| &act_rows[t * act_row_bytes..(t + 1) * act_row_bytes])
}

/// Four calls of `vec_dot`: the reference of every tile kernel (and the fallback where a format has none).
pub fn x4_by_rows(
    vec_dot: DotFn,
    n: usize,
    weight_row: &[u8],
    act_rows: &[u8],
    act_row_bytes: usize,
    out: &mut [f32; 4],
) {
    for (o, act_row) in out.iter_mut().zip(split_rows4(act_rows, act_row_bytes)) {
        *o = vec_dot(n, weight_row, act_row);
    }
}

/// The four Q8_0 activation rows of a tile, `blocks_in(n)` blocks each.
pub fn q8_0_rows4(n: usize, act_rows: &[u8], act_row_bytes: usize) -> [&[BlockQ8_0]; 4] {
    let nb = blocks_in(n);
    split_rows4(act_rows, act_row_bytes).map(|row| view_blocks::<BlockQ8_0>(row, nb))
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use crate::q8_0::BlockQ8_0;
    use crate::x86_common::{f16_fields8, f16_to_f32, hsum_f32x8};

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn act_qs(block: &BlockQ8_0) -> __m256i {
        // SAFETY: `qs` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(block.qs.as_ptr().cast()) }
    }

    /// `d_w * d_a[t]` of up to 8 consecutive blocks (`w8`, and blocks `b0..` of each activation row) as
    /// `[t][k]`. Whole groups of 8 go through word inserts ([`f16_fields8`]); scalar stores of the halves followed
    /// by one wide load would stall on store forwarding.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scales_4x8<W>(w8: &[W], d_w: &impl Fn(&W) -> [u8; 2], acts: &[&[BlockQ8_0]; 4], b0: usize) -> [[f32; 8]; 4] {
        let mut scales = [[0f32; 8]; 4];
        if w8.len() == 8 {
            let act_blocks: [&[BlockQ8_0]; 4] = std::array::from_fn(|t| &acts[t][b0..b0 + 8]);
            let halves: [u16; 8] = std::array::from_fn(|k| u16::from_le_bytes(d_w(&w8[k])));
            // SAFETY: 8 readable halves.
            let d_w8 = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(halves.as_ptr().cast()) });
            for (row, blocks) in scales.iter_mut().zip(act_blocks) {
                // SAFETY: 8 activation blocks of 34 bytes (sliced above), `d` at byte 0; 8 writable floats.
                unsafe {
                    let d_a8 = f16_fields8(blocks.as_ptr().cast(), size_of::<BlockQ8_0>(), 0);
                    _mm256_storeu_ps(row.as_mut_ptr(), _mm256_mul_ps(d_a8, d_w8));
                }
            }
        } else {
            for (k, wb) in w8.iter().enumerate() {
                let d = f16_to_f32(d_w(wb));
                for (t, row) in scales.iter_mut().enumerate() {
                    row[k] = d * f16_to_f32(acts[t][b0 + k].d);
                }
            }
        }
        scales
    }

    /// `out[t] = Σ_b d_w * d_a[t] * Σ w_b · a[t]_b` for weight blocks whose values `signed(block)` gives as 32 signed
    /// bytes (any i8, -128 included) and `d_w(block)` scales: AVX2 (sign trick into `maddubs`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn legacy_x4_avx2<W>(
        w: &[W],
        acts: [&[BlockQ8_0]; 4],
        d_w: impl Fn(&W) -> [u8; 2],
        signed: impl Fn(&W) -> __m256i,
        out: &mut [f32; 4],
    ) {
        assert!(acts.iter().all(|a| a.len() >= w.len()));
        let mut acc = [_mm256_setzero_ps(); 4];
        let ones = _mm256_set1_epi16(1);
        for (g, w8) in w.chunks(8).enumerate() {
            // Through memory on purpose: a broadcast from memory is a plain load.
            let scales = std::hint::black_box(scales_4x8(w8, &d_w, &acts, 8 * g));
            let acts8: [&[BlockQ8_0]; 4] = std::array::from_fn(|t| &acts[t][8 * g..8 * g + w8.len()]);
            for (k, wb) in w8.iter().enumerate() {
                let values = signed(wb);
                let magnitudes = _mm256_sign_epi8(values, values);
                for t in 0..4 {
                    let signed_act = _mm256_sign_epi8(act_qs(&acts8[t][k]), values);
                    let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitudes, signed_act), ones);
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_broadcast_ss(&scales[t][k]), acc[t]);
                }
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum_f32x8(a);
        }
    }

    /// [`legacy_x4_avx2`] with AVX-512 VNNI: one `dpbusd` per block pair.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub fn legacy_x4_vnni<W>(
        w: &[W],
        acts: [&[BlockQ8_0]; 4],
        d_w: impl Fn(&W) -> [u8; 2],
        signed: impl Fn(&W) -> __m256i,
        out: &mut [f32; 4],
    ) {
        assert!(acts.iter().all(|a| a.len() >= w.len()));
        let mut acc = [_mm256_setzero_ps(); 4];
        for (g, w8) in w.chunks(8).enumerate() {
            let scales = std::hint::black_box(scales_4x8(w8, &d_w, &acts, 8 * g));
            let acts8: [&[BlockQ8_0]; 4] = std::array::from_fn(|t| &acts[t][8 * g..8 * g + w8.len()]);
            for (k, wb) in w8.iter().enumerate() {
                let values = signed(wb);
                let magnitudes = _mm256_sign_epi8(values, values);
                for t in 0..4 {
                    let signed_act = _mm256_sign_epi8(act_qs(&acts8[t][k]), values);
                    let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), magnitudes, signed_act);
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_broadcast_ss(&scales[t][k]), acc[t]);
                }
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum_f32x8(a);
        }
    }
}
