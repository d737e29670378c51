//! The float microkernel: [`FMR`] f32 weight rows × [`FNR`] f32 activation rows, 16-lane FMA accumulators, one
//! horizontal sum per pair at the end.

/// Weight rows per float tile: 6 × 4 = 24 accumulators, with 4 activation vectors and 1 weight vector in flight
/// (29 of AVX-512's 32 registers); 10 loads per 24 FMAs where a 4 × 4 tile takes 8 per 16.
pub const FMR: usize = 6;
/// Activation rows (tokens) per float tile. The reduction's lane order assumes 4.
pub const FNR: usize = 4;
const _: () = assert!(FNR == 4);
use crate::SimdLevel;

/// Rows of floats: row `i` is `x[i * ld..i * ld + k]`.
pub struct Rows<'a> {
    pub x: &'a [f32],
    pub ld: usize,
}

/// A microkernel: `out[t][r] = Σ_(i < k) w[wi[r]][i] * a[ti[t]][i]` (repeated indices allowed).
///
/// # Panics
/// When a row index lies outside its rows or a row is shorter than `k` (caller bugs).
pub type FloatTileFn =
    fn(k: usize, w: &Rows<'_>, wi: [usize; FMR], a: &Rows<'_>, ti: [usize; FNR], out: &mut [[f32; FMR]; FNR]);

/// The best float microkernel at `simd` (lowered to what this CPU runs), or `None` below AVX-512.
pub fn best(simd: SimdLevel) -> Option<FloatTileFn> {
    match crate::legacy_common::usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => Some(x86::float_tile_avx512),
        _ => None,
    }
}

fn check(k: usize, rows: &Rows<'_>, idx: &[usize]) {
    assert!(rows.ld >= k, "rows of {} floats hold fewer than {k}", rows.ld);
    for &i in idx {
        assert!(
            rows.x.len() >= i * rows.ld + k,
            "row {i} lies outside {} floats",
            rows.x.len()
        );
    }
}

/// The reference microkernel: the SIMD one's operations lane by lane, in the same order.
pub fn float_tile_reference(
    k: usize,
    w: &Rows<'_>,
    wi: [usize; FMR],
    a: &Rows<'_>,
    ti: [usize; FNR],
    out: &mut [[f32; FMR]; FNR],
) {
    check(k, w, &wi);
    check(k, a, &ti);
    for (t, out_t) in out.iter_mut().enumerate() {
        let arow = &a.x[ti[t] * a.ld..][..k];
        for (r, o) in out_t.iter_mut().enumerate() {
            let wrow = &w.x[wi[r] * w.ld..][..k];
            let mut acc = [0f32; 16];
            for (i, (&wv, &av)) in wrow.iter().zip(arow).enumerate() {
                acc[i % 16] = wv.mul_add(av, acc[i % 16]);
            }
            *o = super::int::hsum_tree(acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{check, Rows, FMR, FNR};
    use crate::gemm::int::x86::reduce16;

    pub fn float_tile_avx512(
        k: usize,
        w: &Rows<'_>,
        wi: [usize; FMR],
        a: &Rows<'_>,
        ti: [usize; FNR],
        out: &mut [[f32; FMR]; FNR],
    ) {
        check(k, w, &wi);
        check(k, a, &ti);
        let wp = wi.map(|i| w.x[i * w.ld..].as_ptr());
        let ap = ti.map(|i| a.x[i * a.ld..].as_ptr());
        // SAFETY: each pointer starts a row of at least k readable floats (`check`); only reachable through
        // `best`, which checked the CPU.
        let sums = unsafe { tile(k, wp, ap) };
        for (t, o) in out.iter_mut().enumerate() {
            for (r, o) in o.iter_mut().enumerate() {
                *o = sums[r * FNR + t];
            }
        }
    }

    /// # Safety
    /// Every pointer points to `k` readable floats; the CPU runs AVX-512 F.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile(k: usize, wp: [*const f32; FMR], ap: [*const f32; FNR]) -> [f32; FMR * FNR] {
        let mut acc = [[_mm512_setzero_ps(); FNR]; FMR];
        let mut i = 0;
        while i < k {
            let mask: u16 = if k - i >= 16 { 0xFFFF } else { (1u16 << (k - i)) - 1 };
            // SAFETY: the mask keeps every access below k (the caller's promise).
            let av: [__m512; FNR] = std::array::from_fn(|t| unsafe { _mm512_maskz_loadu_ps(mask, ap[t].add(i)) });
            for r in 0..FMR {
                // SAFETY: as above.
                let wv = unsafe { _mm512_maskz_loadu_ps(mask, wp[r].add(i)) };
                for t in 0..FNR {
                    acc[r][t] = _mm512_fmadd_ps(wv, av[t], acc[r][t]);
                }
            }
            i += 16;
        }
        // Pair p = r * FNR + t; reduced 16 at a time (each pair's lanes by the same tree as the reference).
        let flat: [__m512; FMR * FNR] = std::array::from_fn(|p| acc[p / FNR][p % FNR]);
        let mut sums = [0f32; FMR * FNR];
        for (c, chunk) in flat.chunks(16).enumerate() {
            let v: [__m512; 16] = std::array::from_fn(|j| chunk.get(j).copied().unwrap_or(_mm512_setzero_ps()));
            let mut lanes = [0f32; 16];
            // SAFETY: 16 writable floats.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), reduce16(v)) };
            // reduce16 puts the sum of input 4a + b in lane 4b + a.
            for q in 0..chunk.len() {
                sums[16 * c + q] = lanes[4 * (q % 4) + q / 4];
            }
        }
        sums
    }
}
