//! The float microkernel, laid out as a BLAS kernel: the weight rows are interleaved sixteen at a time (one
//! 16-lane vector holds element `i` of sixteen rows), each token's element `i` is broadcast, and a tile of up to
//! [`FGROUPS`] × 16 rows × [`FNR`] tokens keeps one accumulator vector per (row group, token). Every lane sums its
//! own output, so no horizontal reduction is needed and a result is stored as it is: row `r`, token `t` is
//! `fma(w[r][k-1], x[t][k-1], … fma(w[r][1], x[t][1], w[r][0] * x[t][0] + 0) …)`, the plain sequential dot product.

/// Rows per interleaved group: one 16-lane vector.
pub const LANES: usize = 16;
/// Row groups per tile: 4 × [`FNR`] = 24 accumulators, with 4 weight vectors and 1 broadcast in flight (29 of
/// AVX-512's 32 registers); 10 loads per 24 FMAs.
pub const FGROUPS: usize = 4;
/// Weight rows per float tile.
pub const FMR: usize = FGROUPS * LANES;
/// Activation rows (tokens) per float tile.
pub const FNR: usize = 6;

use crate::SimdLevel;

/// Rows of floats: row `i` is `x[i * ld..i * ld + k]`.
pub struct Rows<'a> {
    pub x: &'a [f32],
    pub ld: usize,
}

/// A microkernel: `out[t][16 g + j] = Σ_(i < k) w[(g k + i) 16 + j] * a[ti[t]][i]` for the `groups` (1 to
/// [`FGROUPS`]) interleaved row groups of `w`, summed in order of `i` with one FMA a term (repeated token indices
/// allowed). Lanes of `out` past `16 groups` are left as they are.
///
/// # Panics
/// When `w` holds fewer than `groups` groups of `k`, `groups` is 0 or above [`FGROUPS`], or a token row lies
/// outside `a` (caller bugs).
pub type FloatTileFn =
    fn(k: usize, w: &[f32], groups: usize, a: &Rows<'_>, ti: [usize; FNR], out: &mut [[f32; FMR]; FNR]);

/// Interleaves `n` row-major rows of `src` (`ld` floats apart, `k` used) into whole groups of [`LANES`] rows in
/// `dst` (`⌈n / 16⌉ * 16 * k` floats): `dst[(g k + i) 16 + j] = src[(16 g + j) ld + i]`, zero for the rows past
/// `n`.
pub type InterleaveFn = fn(src: &[f32], ld: usize, n: usize, k: usize, dst: &mut [f32]);

/// The best float microkernel at `simd` (lowered to what this CPU runs), or `None` below AVX-512.
pub fn best(simd: SimdLevel) -> Option<FloatTileFn> {
    match crate::legacy_common::usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => Some(x86::float_tile_avx512),
        _ => None,
    }
}

/// The best interleaver at `simd` (each gives the same floats).
pub fn best_interleave(simd: SimdLevel) -> InterleaveFn {
    match crate::legacy_common::usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::interleave_avx512,
        _ => interleave_reference,
    }
}

fn check_interleave(src: &[f32], ld: usize, n: usize, k: usize, dst: &[f32]) {
    assert!(ld >= k, "rows of {ld} floats hold fewer than {k}");
    assert!(
        n == 0 || src.len() >= (n - 1) * ld + k,
        "{n} rows lie outside {} floats",
        src.len()
    );
    assert!(
        dst.len() >= n.div_ceil(LANES) * LANES * k,
        "panel too short for {n} rows of {k}"
    );
}

/// The reference interleaver.
pub fn interleave_reference(src: &[f32], ld: usize, n: usize, k: usize, dst: &mut [f32]) {
    check_interleave(src, ld, n, k, dst);
    for g in 0..n.div_ceil(LANES) {
        for i in 0..k {
            for j in 0..LANES {
                let r = g * LANES + j;
                dst[(g * k + i) * LANES + j] = if r < n { src[r * ld + i] } else { 0.0 };
            }
        }
    }
}

fn check(k: usize, w: &[f32], groups: usize, a: &Rows<'_>, ti: &[usize]) {
    assert!((1..=FGROUPS).contains(&groups), "{groups} row groups in a tile");
    assert!(
        w.len() >= groups * k * LANES,
        "panel of {} floats holds fewer than {groups} groups",
        w.len()
    );
    assert!(a.ld >= k, "rows of {} floats hold fewer than {k}", a.ld);
    for &i in ti {
        assert!(a.x.len() >= i * a.ld + k, "row {i} lies outside {} floats", a.x.len());
    }
}

/// The reference microkernel: the SIMD one's operations lane by lane, in the same order.
pub fn float_tile_reference(
    k: usize,
    w: &[f32],
    groups: usize,
    a: &Rows<'_>,
    ti: [usize; FNR],
    out: &mut [[f32; FMR]; FNR],
) {
    check(k, w, groups, a, &ti);
    for (t, out_t) in out.iter_mut().enumerate() {
        let arow = &a.x[ti[t] * a.ld..][..k];
        for (r, o) in out_t.iter_mut().enumerate().take(groups * LANES) {
            let (g, j) = (r / LANES, r % LANES);
            let mut acc = 0f32;
            for (i, &av) in arow.iter().enumerate() {
                acc = w[(g * k + i) * LANES + j].mul_add(av, acc);
            }
            *o = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{check, check_interleave, Rows, FMR, FNR, LANES};

    pub fn float_tile_avx512(
        k: usize,
        w: &[f32],
        groups: usize,
        a: &Rows<'_>,
        ti: [usize; FNR],
        out: &mut [[f32; FMR]; FNR],
    ) {
        check(k, w, groups, a, &ti);
        let ap = ti.map(|i| a.x[i * a.ld..].as_ptr());
        let o = out.as_mut_ptr().cast::<f32>();
        // SAFETY: `w` holds `groups` groups of k vectors and each token pointer starts k readable floats
        // (`check`); `out` holds FNR rows of FMR >= 16 groups floats. Only reachable through `best`, which checked
        // the CPU.
        unsafe {
            match groups {
                4 => tile::<4>(k, w.as_ptr(), ap, o),
                3 => tile::<3>(k, w.as_ptr(), ap, o),
                2 => tile::<2>(k, w.as_ptr(), ap, o),
                _ => tile::<1>(k, w.as_ptr(), ap, o),
            }
        }
    }

    /// # Safety
    /// `w` points to `G * k * 16` readable floats, every `ap[t]` to `k`, `out` to `FNR * FMR` writable ones; the
    /// CPU runs AVX-512 F.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    unsafe fn tile<const G: usize>(k: usize, w: *const f32, ap: [*const f32; FNR], out: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); G]; FNR];
        for i in 0..k {
            // SAFETY: i < k, inside every group and token row (the caller's promise).
            let wv: [__m512; G] = std::array::from_fn(|g| unsafe { _mm512_loadu_ps(w.add((g * k + i) * LANES)) });
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let b = _mm512_set1_ps(unsafe { *ap[t].add(i) });
                for (acc, &wv) in acc.iter_mut().zip(&wv) {
                    *acc = _mm512_fmadd_ps(wv, b, *acc);
                }
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            for (g, &v) in acc.iter().enumerate() {
                // SAFETY: t < FNR, 16 g + 16 <= FMR.
                unsafe { _mm512_storeu_ps(out.add(t * FMR + g * LANES), v) };
            }
        }
    }

    pub fn interleave_avx512(src: &[f32], ld: usize, n: usize, k: usize, dst: &mut [f32]) {
        check_interleave(src, ld, n, k, dst);
        // SAFETY: bounds checked above; only reachable through `best_interleave`, which checked the CPU.
        unsafe { interleave(src, ld, n, k, dst) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    fn interleave(src: &[f32], ld: usize, n: usize, k: usize, dst: &mut [f32]) {
        for g in 0..n.div_ceil(LANES) {
            let rows = (n - g * LANES).min(LANES);
            let group = &mut dst[g * k * LANES..(g + 1) * k * LANES];
            let mut i = 0;
            while i < k {
                let m = (k - i).min(LANES);
                let mask: u16 = if m == LANES { 0xFFFF } else { (1u16 << m) - 1 };
                // Row j's elements i..i + m (zero past them and for rows past n).
                let v: [__m512; LANES] = std::array::from_fn(|j| {
                    if j < rows {
                        let row = &src[(g * LANES + j) * ld + i..][..m];
                        // SAFETY: the mask keeps the load inside the row's m floats.
                        unsafe { _mm512_maskz_loadu_ps(mask, row.as_ptr()) }
                    } else {
                        _mm512_setzero_ps()
                    }
                });
                let cols = transpose16(v);
                for (c, &col) in cols.iter().enumerate().take(m) {
                    let d = &mut group[(i + c) * LANES..][..LANES];
                    // SAFETY: 16 writable floats.
                    unsafe { _mm512_storeu_ps(d.as_mut_ptr(), col) };
                }
                i += LANES;
            }
        }
    }

    /// The transpose of a 16 × 16 block: lane `j` of output `c` is lane `c` of input `j`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // Pairs of rows: t[2p] = [a0 b0 a1 b1 | a4 b4 a5 b5 | …], t[2p + 1] = [a2 b2 a3 b3 | …] (a, b = rows 2p, 2p + 1).
        let t: [__m512; 16] = std::array::from_fn(|q| {
            let (a, b) = (r[q / 2 * 2], r[q / 2 * 2 + 1]);
            if q % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        // Quads of rows 4m..4m + 4: u[4m + c] holds column c (+ 4, 8, 12 in the other 128-bit lanes) of those rows.
        let u: [__m512; 16] = std::array::from_fn(|q| {
            let (m, c) = (q / 4, q % 4);
            let (x, y) = (t[4 * m + c / 2], t[4 * m + 2 + c / 2]);
            if c % 2 == 0 {
                _mm512_shuffle_ps::<0x44>(x, y)
            } else {
                _mm512_shuffle_ps::<0xEE>(x, y)
            }
        });
        // Eights of rows: v[8h + c] for c < 4 holds [rows 8h..8h+4 col c, col c + 8, rows 8h+4..8h+8 col c, col c
        // + 8]; for c >= 4 the same with columns c - 4 + 4 and c - 4 + 12.
        let v: [__m512; 16] = std::array::from_fn(|q| {
            let (h, c) = (q / 8, q % 8);
            let (x, y) = (u[8 * h + c % 4], u[8 * h + 4 + c % 4]);
            if c < 4 {
                _mm512_shuffle_f32x4::<0x88>(x, y)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(x, y)
            }
        });
        // Columns: col c (< 4) = low 128-bit halves of v[c] and v[8 + c]; col c + 8 the high halves; col c + 4 and
        // c + 12 the same from v[4 + c], v[12 + c].
        std::array::from_fn(|col| {
            let (base, hi) = (col % 8, col >= 8);
            let (x, y) = (v[base], v[8 + base]);
            if hi {
                _mm512_shuffle_f32x4::<0xDD>(x, y)
            } else {
                _mm512_shuffle_f32x4::<0x88>(x, y)
            }
        })
    }
}
