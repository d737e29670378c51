//! The integer microkernel: [`MR`] panel rows of weights × [`NR`] panel rows of activations (see the module docs of
//! [`crate::gemm`] for the layout), 16-lane f32 accumulators, one horizontal sum per pair at the end.

use super::{OutView, KSTEP, MR, NR, STEP_BYTES};
use crate::SimdLevel;

/// Panel rows: [n, row_bytes] codes and scales, [n, corr_len] corrections.
pub struct Rows<'a> {
    pub bytes: &'a [u8],
    pub corr: &'a [f32],
    pub row_bytes: usize,
    pub corr_len: usize,
}

impl Rows<'_> {
    fn n(&self) -> usize {
        if self.row_bytes == 0 {
            return 0;
        }
        (self.bytes.len() / self.row_bytes).min(self.corr.len().checked_div(self.corr_len).unwrap_or(usize::MAX))
    }
}

/// A microkernel: `out[t][r] = Σ w[wi[r]] · a[ti[t]]` (indices into the panels; repeated indices are allowed, for
/// the edges of the matrix).
///
/// # Panics
/// When an index lies outside its panel or the two panels' row shapes differ (caller bugs).
pub type IntTileFn = fn(w: &Rows<'_>, wi: [usize; MR], a: &Rows<'_>, ti: [usize; NR], out: &mut [[f32; MR]; NR]);

/// Every tile of a block: panel rows `0..w.n()` against activation rows `0..n_tokens`, the results to `out`'s rows
/// from `r0` (edge tiles repeat the last row or token and drop the extra results).
pub type IntBlockFn = fn(w: &Rows<'_>, a: &Rows<'_>, n_tokens: usize, out: &OutView, r0: usize);

/// The best integer microkernel at `simd` (lowered to what this CPU runs), or `None` below AVX-512 VNNI (for the
/// tests that hold it against the reference tile by tile).
#[cfg(test)]
pub fn best_tile(simd: SimdLevel) -> Option<IntTileFn> {
    match crate::legacy_common::usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => Some(x86::int_tile_vnni),
        _ => None,
    }
}

/// The block runner of [`best_tile`] (its tiles inlined into the loops), or `None` below AVX-512 VNNI.
pub fn best(simd: SimdLevel) -> Option<IntBlockFn> {
    match crate::legacy_common::usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => Some(x86::int_block_vnni),
        _ => None,
    }
}

/// Runs `tile` over every tile of a block (see [`IntBlockFn`]): tokens in groups of [`NR`] outside, rows in groups
/// of [`MR`] inside, so that a group of tokens stays in L1 while the block's panel rows stream past it.
pub fn run_block(tile: IntTileFn, w: &Rows<'_>, a: &Rows<'_>, n_tokens: usize, out: &OutView, r0: usize) {
    let n_rows = w.n();
    if n_rows == 0 || n_tokens == 0 {
        return;
    }
    let mut res = [[0f32; MR]; NR];
    for t0 in (0..n_tokens).step_by(NR) {
        for i0 in (0..n_rows).step_by(MR) {
            let wi = std::array::from_fn(|j| (i0 + j).min(n_rows - 1));
            let ti = std::array::from_fn(|j| (t0 + j).min(n_tokens - 1));
            tile(w, wi, a, ti, &mut res);
            out.write_tile(t0, r0 + i0, r0 + (i0 + MR).min(n_rows), &res);
        }
    }
}

/// [`run_block`] with the reference microkernel.
pub fn int_block_reference(w: &Rows<'_>, a: &Rows<'_>, n_tokens: usize, out: &OutView, r0: usize) {
    run_block(int_tile_reference, w, a, n_tokens, out, r0)
}

fn check(w: &Rows<'_>, wi: &[usize; MR], a: &Rows<'_>, ti: &[usize; NR]) {
    assert!(
        w.row_bytes == a.row_bytes && w.corr_len == a.corr_len && w.row_bytes.is_multiple_of(STEP_BYTES),
        "weight and activation panels differ in shape"
    );
    let (nw, na) = (w.n(), a.n());
    assert!(
        wi.iter().all(|&i| i < nw) && ti.iter().all(|&i| i < na),
        "tile index outside the panels"
    );
}

/// Where `x86::reduce_pairs16` puts the sum of its input `p`.
pub const fn pair_lane(p: usize) -> usize {
    4 * (p % 4) + p / 4
}

/// The sum of 16 lanes in the order of the SIMD reduction: halves, then quarters, then pairs.
pub fn hsum_tree(mut v: [f32; 16]) -> f32 {
    let mut width = 8;
    while width > 0 {
        for i in 0..width {
            v[i] += v[i + width];
        }
        width /= 2;
    }
    v[0]
}

/// The reference microkernel: the same operations as the SIMD one, lane by lane, in the same order.
pub fn int_tile_reference(w: &Rows<'_>, wi: [usize; MR], a: &Rows<'_>, ti: [usize; NR], out: &mut [[f32; MR]; NR]) {
    check(w, &wi, a, &ti);
    let steps = w.row_bytes / STEP_BYTES;
    let scale = |row: &[u8], s: usize, l: usize| {
        let at = s * STEP_BYTES + KSTEP + 4 * l;
        f32::from_ne_bytes([row[at], row[at + 1], row[at + 2], row[at + 3]])
    };
    for (t, out_t) in out.iter_mut().enumerate() {
        let arow = &a.bytes[ti[t] * a.row_bytes..][..a.row_bytes];
        let acorr = &a.corr[ti[t] * a.corr_len..][..a.corr_len];
        for (r, o) in out_t.iter_mut().enumerate() {
            let wrow = &w.bytes[wi[r] * w.row_bytes..][..w.row_bytes];
            let wcorr = &w.corr[wi[r] * w.corr_len..][..w.corr_len];
            let mut acc = [0f32; 16];
            for s in 0..steps {
                for (l, acc) in acc.iter_mut().enumerate() {
                    let base = s * STEP_BYTES + 4 * l;
                    let d: i32 = (0..4)
                        .map(|j| wrow[base + j] as i32 * arow[base + j] as i8 as i32)
                        .sum();
                    *acc = (d as f32 * scale(arow, s, l)).mul_add(scale(wrow, s, l), *acc);
                }
            }
            for (wc, ac) in wcorr.chunks_exact(16).zip(acorr.chunks_exact(16)) {
                for l in 0..16 {
                    acc[l] = wc[l].mul_add(ac[l], acc[l]);
                }
            }
            *o = hsum_tree(acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{check, OutView, Rows, MR, NR, STEP_BYTES};

    pub fn int_block_vnni(w: &Rows<'_>, a: &Rows<'_>, n_tokens: usize, out: &OutView, r0: usize) {
        let n_rows = w.n();
        if n_rows == 0 || n_tokens == 0 {
            return;
        }
        // Every index the loops below use is at most (n_rows - 1, n_tokens - 1).
        check(w, &[n_rows - 1; MR], a, &[n_tokens - 1; NR]);
        // SAFETY: the panels hold n_rows and n_tokens whole rows (checked above); only reachable through `best`,
        // which checked the CPU.
        unsafe { block(w, a, n_rows, n_tokens, out, r0) }
    }

    /// # Safety
    /// `w` holds `n_rows` and `a` `n_tokens` whole panel rows of the same shape; the CPU runs AVX-512
    /// F/BW/VL/VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn block(w: &Rows<'_>, a: &Rows<'_>, n_rows: usize, n_tokens: usize, out: &OutView, r0: usize) {
        let (steps, gvecs) = (w.row_bytes / STEP_BYTES, w.corr_len / 16);
        let (wb, wc, ab, ac) = (w.bytes.as_ptr(), w.corr.as_ptr(), a.bytes.as_ptr(), a.corr.as_ptr());
        let mut res = [[0f32; MR]; NR];
        for t0 in (0..n_tokens).step_by(NR) {
            let ti: [usize; NR] = std::array::from_fn(|j| (t0 + j).min(n_tokens - 1));
            // SAFETY (all four): indices below n_tokens / n_rows, whole rows inside the panels (the caller's
            // promise).
            let ap = ti.map(|i| unsafe { ab.add(i * a.row_bytes) });
            let acp = ti.map(|i| unsafe { ac.add(i * a.corr_len) });
            for i0 in (0..n_rows).step_by(MR) {
                let wi: [usize; MR] = std::array::from_fn(|j| (i0 + j).min(n_rows - 1));
                let wp = wi.map(|i| unsafe { wb.add(i * w.row_bytes) });
                let wcp = wi.map(|i| unsafe { wc.add(i * w.corr_len) });
                // SAFETY: whole panel rows, as `tile` needs.
                let sums = unsafe { tile(steps, gvecs, wp, wcp, ap, acp) };
                for (t, o) in res.iter_mut().enumerate() {
                    for (r, o) in o.iter_mut().enumerate() {
                        *o = sums[4 * t + r];
                    }
                }
                out.write_tile(t0, r0 + i0, r0 + (i0 + MR).min(n_rows), &res);
            }
        }
    }

    #[cfg(test)]
    pub fn int_tile_vnni(w: &Rows<'_>, wi: [usize; MR], a: &Rows<'_>, ti: [usize; NR], out: &mut [[f32; MR]; NR]) {
        check(w, &wi, a, &ti);
        let wp = wi.map(|i| w.bytes[i * w.row_bytes..].as_ptr());
        let wc = wi.map(|i| w.corr[i * w.corr_len..].as_ptr());
        let ap = ti.map(|i| a.bytes[i * a.row_bytes..].as_ptr());
        let ac = ti.map(|i| a.corr[i * a.corr_len..].as_ptr());
        // SAFETY: every pointer starts a whole panel row (`check` bounded the indices), so `row_bytes` bytes and
        // `corr_len` floats are readable from it; only reachable through `best`, which checked the CPU.
        let sums = unsafe { tile(w.row_bytes / STEP_BYTES, w.corr_len / 16, wp, wc, ap, ac) };
        for (t, o) in out.iter_mut().enumerate() {
            for (r, o) in o.iter_mut().enumerate() {
                *o = sums[4 * t + r];
            }
        }
    }

    /// # Safety
    /// `wp`/`ap` point to `steps * 128` readable bytes, `wc`/`ac` to `gvecs * 16` readable floats; the CPU runs
    /// AVX-512 F/BW/VL/VNNI.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile(
        steps: usize,
        gvecs: usize,
        wp: [*const u8; MR],
        wc: [*const f32; MR],
        ap: [*const u8; NR],
        ac: [*const f32; NR],
    ) -> [f32; 16] {
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        let zero = _mm512_setzero_si512();
        for s in 0..steps {
            let off = s * STEP_BYTES;
            // SAFETY: off + 128 <= steps * 128 (the caller's promise); unaligned loads.
            let (av, sa): ([__m512i; NR], [__m512; NR]) = unsafe {
                (
                    std::array::from_fn(|t| _mm512_loadu_si512(ap[t].add(off).cast())),
                    std::array::from_fn(|t| _mm512_loadu_ps(ap[t].add(off + 64).cast())),
                )
            };
            for r in 0..MR {
                // SAFETY: as above.
                let (uv, sw) = unsafe {
                    (
                        _mm512_loadu_si512(wp[r].add(off).cast()),
                        _mm512_loadu_ps(wp[r].add(off + 64).cast()),
                    )
                };
                for t in 0..NR {
                    let d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, uv, av[t]));
                    acc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(d, sa[t]), sw, acc[r][t]);
                }
            }
        }
        for g in 0..gvecs {
            for r in 0..MR {
                // SAFETY: 16 * g + 16 <= gvecs * 16 (the caller's promise).
                let mw = unsafe { _mm512_loadu_ps(wc[r].add(16 * g)) };
                for t in 0..NR {
                    // SAFETY: as above.
                    let ma = unsafe { _mm512_loadu_ps(ac[t].add(16 * g)) };
                    acc[r][t] = _mm512_fmadd_ps(mw, ma, acc[r][t]);
                }
            }
        }
        // v[4r + t] reduced: lane 4m + c of the result holds v[4c + m] = (row c, token m).
        let v: [__m512; 16] = std::array::from_fn(|i| acc[i / 4][i % 4]);
        let z = reduce16(v);
        let mut lanes = [0f32; 16];
        // SAFETY: 16 writable floats.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), z) };
        // Back to [t][r]: token m, row c sits at lane 4m + c.
        lanes
    }

    /// Sixteen horizontal sums at once (each in the order of [`super::hsum_tree`]): lane `4m + c` of the result
    /// is the sum of `v[4c + m]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub fn reduce16(v: [__m512; 16]) -> __m512 {
        let w: [__m512; 8] = std::array::from_fn(|i| {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b))
        });
        reduce_halves(w)
    }

    /// Sixteen 8-lane sums (the low halves of `t`) at once, each as halves, quarters, pairs (the order of the
    /// per-pair kernels' `hsum_f32x8`): the sum of `t[p]` lands in lane [`super::pair_lane`]`(p)`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub fn reduce_pairs16(t: [__m512; 16]) -> __m512 {
        reduce_halves(std::array::from_fn(|i| {
            _mm512_shuffle_f32x4::<0x44>(t[2 * i], t[2 * i + 1])
        }))
    }

    /// The last three levels of [`reduce16`]: `w[i]` holds two 8-lane vectors `[h(2i) | h(2i + 1)]`; lane `4m + c`
    /// of the result is the sum of `h(4c + m)` as `(i, i + 4)`, `(i, i + 2)`, `(i, i + 1)`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn reduce_halves(w: [__m512; 8]) -> __m512 {
        let x: [__m512; 4] = std::array::from_fn(|j| {
            let (a, b) = (w[2 * j], w[2 * j + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xDD>(a, b))
        });
        let y: [__m512; 2] = std::array::from_fn(|k| {
            let (a, b) = (x[2 * k], x[2 * k + 1]);
            _mm512_add_ps(_mm512_shuffle_ps::<0x44>(a, b), _mm512_shuffle_ps::<0xEE>(a, b))
        });
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(y[0], y[1]),
            _mm512_shuffle_ps::<0xDD>(y[0], y[1]),
        )
    }
}
