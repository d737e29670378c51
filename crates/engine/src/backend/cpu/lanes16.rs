//! Attention and SiLU arithmetic in the order of llama.cpp's CPU backend (ggml at AVX-512), so that greedy paths
//! agree with it token for token: sixteen FMA lanes reduced by halves, and ggml's SIMD exp.
//!
//! What ggml does there, and so we do (every SIMD level here gives the same bits, the scalar code is the
//! reference):
//! - A product of queries with keys, or of probabilities with values, sums its reduction dimension in 16 lanes
//!   (element `i` in lane `i % 16`) with fused multiply-adds. A batch of several tokens goes through its tiled GEMM
//!   ("tinyBLAS"): one accumulator of 16 lanes per output. A single token goes through `vec_dot`: four
//!   accumulators taking 16-element chunks in turn, added as `(a0 + a2) + (a1 + a3)`, elements past the last
//!   64-chunk added one by one in f64. Either way the 16 lanes are then added by halves: `l + (l + 8)`, then
//!   `+ 4`, then `(0 + 2)` and `(1 + 3)`, then those two.
//! - Softmax takes `exp(x - max)` 16 at a time with ggml's SIMD exp (a degree-5 polynomial of the remainder of
//!   `x · log2 e`, scaled by the power of two; it is not libm's `expf`), sums each chunk of 16 as above in f32, and
//!   the chunks in f64.
//! - SiLU is `x / (1 + exp(-x))` with the same exp for each whole chunk of 16, libm's `expf` past the last one.

use quant::SimdLevel;

/// Lanes of one accumulator.
pub const LANES: usize = 16;

/// How many 16-lane accumulators a reduction cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulators {
    /// One (ggml's tiled GEMM, taken for batches of two tokens or more).
    One,
    /// Four, taking 16-element chunks in turn (ggml's `vec_dot`, taken for one token).
    Four,
}

impl Accumulators {
    /// ggml's choice for a product of `n_tokens` query rows with reduction length `k`: its tiled GEMM needs at
    /// least two rows and `k` a multiple of 16.
    pub fn for_product(n_tokens: usize, k: usize) -> Self {
        if n_tokens >= 2 && k.is_multiple_of(LANES) {
            Accumulators::One
        } else {
            Accumulators::Four
        }
    }

    pub fn count(self) -> usize {
        match self {
            Accumulators::One => 1,
            Accumulators::Four => 4,
        }
    }
}

/// The kernels at one SIMD level: AVX-512 intrinsics, the reference compiled for AVX2 + FMA, or the reference.
pub struct Lanes16 {
    /// `dot(a, b)` in the given accumulator order.
    pub dot: fn(&[f32], &[f32], Accumulators) -> f32,
    /// `out[j] = dot(q, rows[j * q.len()..])` in the one-accumulator order for `out.len()` consecutive rows.
    pub dot_rows: fn(&[f32], &[f32], &mut [f32]),
    /// `acc[(lane0 + j) % 16] = fma(rows[j], p[j], acc[...])` for consecutive rows j of `n` values:
    /// `acc` is one set [16, n], `lane0 + p.len() <= 16`.
    pub fma_rows: fn(&mut [f32], usize, &[f32], &[f32], usize),
    /// `out = Σ_j p[j] · rows[j]` over positions `first..first + p.len()` (rows[j] the row of position
    /// `first + j`, `n` values each) in the one-accumulator order: what [`Self::fma_rows`] into one zeroed set
    /// and [`reduce_rows`] give, with the 16 lane accumulators of each 16 columns held in registers.
    pub weighted_sum: fn(&[f32], &[f32], usize, usize, &mut [f32]),
    /// [`reduce_rows`].
    pub reduce_rows: fn(&mut [f32], Accumulators, usize, &mut [f32]),
    /// `x = exp(x - max)` in place (`x.len()` a multiple of 16); returns the sum, chunk by chunk.
    pub exp_sum: fn(&mut [f32], f32) -> f64,
    /// `acc = fma(v, p, acc)` elementwise.
    pub fma_row: fn(&mut [f32], f32, &[f32]),
    /// `gate = silu(gate) * up`.
    pub silu_mul: fn(&mut [f32], &[f32]),
}

impl Lanes16 {
    pub fn new(simd: SimdLevel) -> Self {
        #[cfg(target_arch = "x86_64")]
        if simd >= SimdLevel::Avx512 && x86::usable() {
            return Self {
                dot: x86::dot,
                dot_rows: x86::dot_rows,
                weighted_sum: x86::weighted_sum,
                fma_rows: x86::fma_rows,
                reduce_rows: x86::reduce_rows,
                exp_sum: x86::exp_sum,
                fma_row: x86::fma_row,
                silu_mul: x86::silu_mul,
            };
        }
        #[cfg(target_arch = "x86_64")]
        if simd >= SimdLevel::Avx2 {
            return Self {
                dot: avx2::dot,
                dot_rows: avx2::dot_rows,
                weighted_sum: avx2::weighted_sum,
                fma_rows: avx2::fma_rows,
                reduce_rows: avx2::reduce_rows,
                exp_sum: avx2::exp_sum,
                fma_row: avx2::fma_row,
                silu_mul: avx2::silu_mul,
            };
        }
        let _ = simd;
        Self {
            dot,
            dot_rows,
            weighted_sum,
            fma_rows,
            reduce_rows,
            exp_sum,
            fma_row,
            silu_mul,
        }
    }
}

/// Adds 16 lanes by halves, as ggml's horizontal sum does.
#[inline(always)]
pub fn reduce(v: &[f32; LANES]) -> f32 {
    let mut t = *v;
    for width in [8, 4] {
        for l in 0..width {
            t[l] += t[l + width];
        }
    }
    (t[0] + t[2]) + (t[1] + t[3])
}

/// `sets` consecutive accumulator sets of `LANES` rows of `n` values ([sets, LANES, n]) reduced into `out` ([n]):
/// the sets as `vec_dot` adds them, then the lanes by halves; every step a whole-row add.
#[inline(always)]
pub fn reduce_rows(acc: &mut [f32], sets: Accumulators, n: usize, out: &mut [f32]) {
    let set = LANES * n;
    let add = |acc: &mut [f32], dst: usize, src: usize, len: usize| {
        let (lo, hi) = acc.split_at_mut(src);
        for (d, s) in lo[dst..dst + len].iter_mut().zip(&hi[..len]) {
            *d += *s;
        }
    };
    if sets == Accumulators::Four {
        add(acc, 0, 2 * set, set);
        add(acc, set, 3 * set, set);
        add(acc, 0, set, set);
    }
    for width in [8, 4] {
        for l in 0..width {
            add(acc, l * n, (l + width) * n, n);
        }
    }
    add(acc, 0, 2 * n, n);
    add(acc, n, 3 * n, n);
    for (d, (a, b)) in out.iter_mut().zip(acc[..n].iter().zip(&acc[n..2 * n])) {
        *d = a + b;
    }
}

#[inline(always)]
fn dot_rows(q: &[f32], rows: &[f32], out: &mut [f32]) {
    let n = q.len();
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(n)) {
        *o = dot(q, r, Accumulators::One);
    }
}

#[inline(always)]
fn weighted_sum(p: &[f32], rows: &[f32], first: usize, n: usize, out: &mut [f32]) {
    let mut acc = vec![0f32; LANES * n];
    let mut j = 0;
    while j < p.len() {
        let lane = (first + j) % LANES;
        let end = (j + LANES - lane).min(p.len());
        fma_rows(&mut acc, lane, &p[j..end], &rows[j * n..end * n], n);
        j = end;
    }
    reduce_rows(&mut acc, Accumulators::One, n, out);
}

#[inline(always)]
fn fma_rows(acc: &mut [f32], lane0: usize, p: &[f32], rows: &[f32], n: usize) {
    for (j, (&p, v)) in p.iter().zip(rows.chunks_exact(n)).enumerate() {
        let l = lane0 + j;
        fma_row(&mut acc[l * n..(l + 1) * n], p, v);
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32], order: Accumulators) -> f32 {
    let n = a.len().min(b.len());
    match order {
        Accumulators::One => {
            let mut acc = [0f32; LANES];
            for (ca, cb) in a[..n].chunks_exact(LANES).zip(b[..n].chunks_exact(LANES)) {
                for l in 0..LANES {
                    acc[l] = ca[l].mul_add(cb[l], acc[l]);
                }
            }
            reduce(&acc)
        }
        Accumulators::Four => {
            let np = n & !(4 * LANES - 1);
            let mut acc = [[0f32; LANES]; 4];
            for i in (0..np).step_by(LANES) {
                let s = &mut acc[(i / LANES) % 4];
                for l in 0..LANES {
                    s[l] = a[i + l].mul_add(b[i + l], s[l]);
                }
            }
            let mut s = [0f32; LANES];
            for l in 0..LANES {
                s[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
            }
            let mut sum = reduce(&s) as f64;
            for i in np..n {
                sum += (a[i] * b[i]) as f64;
            }
            sum as f32
        }
    }
}

/// ggml's SIMD exp of one lane (the AVX-512 form): `x · log2 e` split into an integer `n` and a remainder `b`,
/// `2^n · (1 + p(b))` with a degree-5 polynomial, 0 or infinity beyond |n| > 192.
#[inline(always)]
pub fn exp_lane(x: f32) -> f32 {
    let c = |bits: u32| f32::from_bits(bits);
    let shift = c(0x4b40_0000); // 1.5 · 2^23: adding it rounds to an integer
    let z = x.mul_add(c(0x3fb8_aa3b), shift); // log2 e
    let n = z - shift;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x)); // ln 2 in two parts
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    scale_by_power_of_two(j, n)
}

/// `j · 2^n` rounded once (what AVX-512's `scalef` gives), for integral `n` with |n| <= 192.
#[inline(always)]
fn scale_by_power_of_two(j: f32, n: f32) -> f32 {
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let k = n as i32;
    if k < -126 {
        // The first product is exact (normal), so only the second rounds.
        j * pow2(k + 100) * pow2(-100)
    } else if k > 127 {
        j * pow2(127) * pow2(k - 127)
    } else {
        j * pow2(k)
    }
}

#[inline(always)]
fn exp_sum(x: &mut [f32], max: f32) -> f64 {
    let mut sum = 0f64;
    for chunk in x.chunks_exact_mut(LANES) {
        let mut v = [0f32; LANES];
        for (o, x) in v.iter_mut().zip(chunk.iter_mut()) {
            *x = exp_lane(*x - max);
            *o = *x;
        }
        sum += reduce(&v) as f64;
    }
    sum
}

#[inline(always)]
fn fma_row(acc: &mut [f32], p: f32, v: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = x.mul_add(p, *a);
    }
}

#[inline(always)]
fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let whole = gate.len() / LANES * LANES;
    for (g, &u) in gate[..whole].iter_mut().zip(up) {
        *g = *g / (1.0 + exp_lane(0.0 - *g)) * u;
    }
    for (g, &u) in gate[whole..].iter_mut().zip(&up[whole..]) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// The reference functions compiled for AVX2 + FMA: the same code, so the same bits (its `mul_add`s become FMA
/// instructions instead of calls to libm's `fmaf`, and the 16-lane loops vectorize).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Accumulators;

    macro_rules! compiled_for_avx2 {
        ($($name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {$(
            pub fn $name($($arg: $ty),*) $(-> $ret)? {
                #[target_feature(enable = "avx2,fma")]
                fn inner($($arg: $ty),*) $(-> $ret)? {
                    super::$name($($arg),*)
                }
                // SAFETY: handed out only at SimdLevel::Avx2 or above, whose detection includes AVX2 and FMA.
                unsafe { inner($($arg),*) }
            }
        )*};
    }

    compiled_for_avx2! {
        dot(a: &[f32], b: &[f32], order: Accumulators) -> f32;
        dot_rows(q: &[f32], rows: &[f32], out: &mut [f32]);
        weighted_sum(p: &[f32], rows: &[f32], first: usize, n: usize, out: &mut [f32]);
        fma_rows(acc: &mut [f32], lane0: usize, p: &[f32], rows: &[f32], n: usize);
        reduce_rows(acc: &mut [f32], sets: Accumulators, n: usize, out: &mut [f32]);
        exp_sum(x: &mut [f32], max: f32) -> f64;
        fma_row(acc: &mut [f32], p: f32, v: &[f32]);
        silu_mul(gate: &mut [f32], up: &[f32]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Accumulators, LANES};
    use std::arch::x86_64::*;

    pub fn usable() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")
    }

    /// ggml's horizontal sum of 16 lanes (its compiler's `_mm512_reduce_add_ps`: halves, quarters, then pairs).
    #[target_feature(enable = "avx512f")]
    fn hsum(v: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(v);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let h8 = _mm256_add_ps(hi, lo);
        let h4 = _mm_add_ps(_mm256_extractf128_ps::<1>(h8), _mm256_castps256_ps128(h8));
        let h2 = _mm_add_ps(h4, _mm_shuffle_ps::<0b01_00_11_10>(h4, h4));
        _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps::<0b00_01_00_01>(h2, h2)))
    }

    pub fn dot(a: &[f32], b: &[f32], order: Accumulators) -> f32 {
        // SAFETY: `usable()` was checked when these kernels were chosen.
        unsafe { dot_avx512(a, b, order) }
    }

    #[target_feature(enable = "avx512f")]
    fn dot_avx512(a: &[f32], b: &[f32], order: Accumulators) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // SAFETY (loads below): every index read is < n.
        match order {
            Accumulators::One => {
                let mut acc = _mm512_setzero_ps();
                let mut i = 0;
                while i + LANES <= n {
                    acc = unsafe { _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc) };
                    i += LANES;
                }
                hsum(acc)
            }
            Accumulators::Four => {
                let np = n & !(4 * LANES - 1);
                let mut s = [_mm512_setzero_ps(); 4];
                let mut i = 0;
                while i < np {
                    for (j, s) in s.iter_mut().enumerate() {
                        let k = i + j * LANES;
                        *s = unsafe { _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(k)), _mm512_loadu_ps(pb.add(k)), *s) };
                    }
                    i += 4 * LANES;
                }
                let s0 = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3]));
                let mut sum = hsum(s0) as f64;
                for k in np..n {
                    sum += (a[k] * b[k]) as f64;
                }
                sum as f32
            }
        }
    }

    /// [`super::exp_lane`] on 16 lanes.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn exp16(x: __m512) -> __m512 {
        let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
        let shift = c(0x4b40_0000);
        let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), shift);
        let n = _mm512_sub_ps(z, shift);
        let b = _mm512_fnmadd_ps(n, c(0x35bf_be8e), _mm512_fnmadd_ps(n, c(0x3f31_7200), x));
        let far = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
        );
        let res = _mm512_scalef_ps(j, n);
        if far == 0 {
            return res;
        }
        let below = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
        let alt = _mm512_mask_blend_ps(below, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
        _mm512_mask_blend_ps(far, res, alt)
    }

    pub fn dot_rows(q: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: as in `dot`.
        unsafe { dot_rows_avx512(q, rows, out) }
    }

    /// Four rows at a time: four independent accumulator chains.
    #[target_feature(enable = "avx512f")]
    fn dot_rows_avx512(q: &[f32], rows: &[f32], out: &mut [f32]) {
        let n = q.len();
        assert!(
            rows.len() >= out.len() * n,
            "dot_rows: {} rows of {n} in {}",
            out.len(),
            rows.len()
        );
        let whole = n / LANES * LANES;
        let mut quads = out.chunks_exact_mut(4);
        let mut r0 = 0;
        for o in &mut quads {
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i < whole {
                // SAFETY: row r0 + 3 ends within rows (asserted), i + 16 <= n.
                unsafe {
                    let qv = _mm512_loadu_ps(q.as_ptr().add(i));
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(qv, _mm512_loadu_ps(rows.as_ptr().add((r0 + j) * n + i)), *a);
                    }
                }
                i += LANES;
            }
            for (o, a) in o.iter_mut().zip(acc) {
                *o = hsum(a);
            }
            r0 += 4;
        }
        for (j, o) in quads.into_remainder().iter_mut().enumerate() {
            *o = dot(q, &rows[(r0 + j) * n..(r0 + j + 1) * n], Accumulators::One);
        }
    }

    pub fn weighted_sum(p: &[f32], rows: &[f32], first: usize, n: usize, out: &mut [f32]) {
        // SAFETY: as in `dot`.
        unsafe { weighted_sum_avx512(p, rows, first, n, out) }
    }

    #[target_feature(enable = "avx512f")]
    fn weighted_sum_avx512(p: &[f32], rows: &[f32], first: usize, n: usize, out: &mut [f32]) {
        assert!(
            rows.len() >= p.len() * n && out.len() >= n && n.is_multiple_of(LANES),
            "weighted_sum: {} rows of {n}",
            p.len()
        );
        for c in (0..n).step_by(LANES) {
            let mut acc = [_mm512_setzero_ps(); LANES];
            // Position first + j goes to lane (first + j) % 16: whole chunks of 16 with constant lanes, the ragged
            // ends one position at a time.
            let mut j = 0;
            let lead = ((LANES - first % LANES) % LANES).min(p.len());
            // SAFETY (loads): j < p.len() rows of n, c + 16 <= n.
            let row = |j: usize| unsafe { _mm512_loadu_ps(rows.as_ptr().add(j * n + c)) };
            while j < lead {
                let l = (first + j) % LANES;
                acc[l] = _mm512_fmadd_ps(row(j), _mm512_set1_ps(p[j]), acc[l]);
                j += 1;
            }
            while j + LANES <= p.len() {
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(row(j + l), _mm512_set1_ps(p[j + l]), *a);
                }
                j += LANES;
            }
            while j < p.len() {
                let l = (first + j) % LANES;
                acc[l] = _mm512_fmadd_ps(row(j), _mm512_set1_ps(p[j]), acc[l]);
                j += 1;
            }
            for width in [8, 4] {
                for l in 0..width {
                    acc[l] = _mm512_add_ps(acc[l], acc[l + width]);
                }
            }
            let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
            // SAFETY: c + 16 <= n <= out.len().
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(c), sum) };
        }
    }

    pub fn fma_rows(acc: &mut [f32], lane0: usize, p: &[f32], rows: &[f32], n: usize) {
        // SAFETY: as in `dot`.
        unsafe { fma_rows_avx512(acc, lane0, p, rows, n) }
    }

    #[target_feature(enable = "avx512f")]
    fn fma_rows_avx512(acc: &mut [f32], lane0: usize, p: &[f32], rows: &[f32], n: usize) {
        assert!(
            (lane0 + p.len()) * n <= acc.len() && rows.len() >= p.len() * n,
            "fma_rows: {} rows of {n} from lane {lane0}",
            p.len()
        );
        for (j, &pj) in p.iter().enumerate() {
            let (a, v) = (
                &mut acc[(lane0 + j) * n..(lane0 + j + 1) * n],
                &rows[j * n..(j + 1) * n],
            );
            fma_row_avx512(a, pj, v);
        }
    }

    pub fn reduce_rows(acc: &mut [f32], sets: Accumulators, n: usize, out: &mut [f32]) {
        // SAFETY: as in `dot`.
        unsafe { reduce_rows_avx512(acc, sets, n, out) }
    }

    /// [`super::reduce_rows`] compiled for 512-bit vectors (the same element-wise adds).
    #[target_feature(enable = "avx512f")]
    fn reduce_rows_avx512(acc: &mut [f32], sets: Accumulators, n: usize, out: &mut [f32]) {
        super::reduce_rows(acc, sets, n, out)
    }

    pub fn exp_sum(x: &mut [f32], max: f32) -> f64 {
        // SAFETY: as in `dot`.
        unsafe { exp_sum_avx512(x, max) }
    }

    #[target_feature(enable = "avx512f,avx512dq")]
    fn exp_sum_avx512(x: &mut [f32], max: f32) -> f64 {
        let m = _mm512_set1_ps(max);
        let mut sum = 0f64;
        for chunk in x.chunks_exact_mut(LANES) {
            // SAFETY: a chunk holds 16 floats.
            unsafe {
                let v = exp16(_mm512_sub_ps(_mm512_loadu_ps(chunk.as_ptr()), m));
                _mm512_storeu_ps(chunk.as_mut_ptr(), v);
                sum += hsum(v) as f64;
            }
        }
        sum
    }

    pub fn fma_row(acc: &mut [f32], p: f32, v: &[f32]) {
        // SAFETY: as in `dot`.
        unsafe { fma_row_avx512(acc, p, v) }
    }

    #[target_feature(enable = "avx512f")]
    fn fma_row_avx512(acc: &mut [f32], p: f32, v: &[f32]) {
        let n = acc.len().min(v.len());
        let pv = _mm512_set1_ps(p);
        let mut i = 0;
        while i + LANES <= n {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                let a = acc.as_mut_ptr().add(i);
                _mm512_storeu_ps(
                    a,
                    _mm512_fmadd_ps(_mm512_loadu_ps(v.as_ptr().add(i)), pv, _mm512_loadu_ps(a)),
                );
            }
            i += LANES;
        }
        for k in i..n {
            acc[k] = v[k].mul_add(p, acc[k]);
        }
    }

    pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
        // SAFETY: as in `dot`.
        unsafe { silu_mul_avx512(gate, up) }
    }

    #[target_feature(enable = "avx512f,avx512dq")]
    fn silu_mul_avx512(gate: &mut [f32], up: &[f32]) {
        let n = gate.len().min(up.len());
        let one = _mm512_set1_ps(1.0);
        let mut i = 0;
        while i + LANES <= n {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                let g = gate.as_mut_ptr().add(i);
                let x = _mm512_loadu_ps(g);
                let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
                let s = _mm512_div_ps(x, _mm512_add_ps(one, e));
                _mm512_storeu_ps(g, _mm512_mul_ps(s, _mm512_loadu_ps(up.as_ptr().add(i))));
            }
            i += LANES;
        }
        for k in i..n {
            gate[k] = gate[k] / (1.0 + (-gate[k]).exp()) * up[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, salt: u32) -> Vec<f32> {
        let mut s = 0x9e37_79b9u32 ^ salt;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 8.0
            })
            .collect()
    }

    #[test]
    fn every_level_gives_the_reference_bits() {
        for level in SimdLevel::available() {
            every_kernel_gives_the_reference_bits(level);
        }
    }

    fn every_kernel_gives_the_reference_bits(level: SimdLevel) {
        let fast = Lanes16::new(level);
        let slow = Lanes16::new(SimdLevel::Scalar);
        for n in [16, 64, 80, 256, 1000] {
            let (a, b) = (values(n, 1), values(n, 2));
            let rows = values(7 * n, 10);
            let (mut d1, mut d2) = ([0f32; 7], [0f32; 7]);
            (fast.dot_rows)(&a, &rows, &mut d1);
            (slow.dot_rows)(&a, &rows, &mut d2);
            assert_eq!(d1, d2, "dot_rows {n}");
            let singles: [f32; 7] =
                std::array::from_fn(|j| (slow.dot)(&a, &rows[j * n..(j + 1) * n], Accumulators::One));
            assert_eq!(d1, singles, "dot_rows {n} against dot");
            if n % 16 == 0 {
                for first in [0, 5, 16, 29] {
                    let m = (7 * n / n).min(7);
                    let (mut w1, mut w2) = (vec![0f32; n], vec![0f32; n]);
                    (fast.weighted_sum)(&b[..m], &rows, first, n, &mut w1);
                    (slow.weighted_sum)(&b[..m], &rows, first, n, &mut w2);
                    assert_eq!(w1, w2, "weighted_sum {n} from {first}");
                }
                let long = values(40 * n, 40);
                let (mut w1, mut w2) = (vec![0f32; n], vec![0f32; n]);
                (fast.weighted_sum)(&values(40, 41), &long, 3, n, &mut w1);
                (slow.weighted_sum)(&values(40, 41), &long, 3, n, &mut w2);
                assert_eq!(w1, w2, "weighted_sum {n}, 40 rows");
            }
            let (mut x1, mut x2) = (values(16 * n, 30), values(16 * n, 30));
            (fast.fma_rows)(&mut x1, 9, &b[..7], &rows, n);
            (slow.fma_rows)(&mut x2, 9, &b[..7], &rows, n);
            assert_eq!(x1, x2, "fma_rows {n}");
            for sets in [Accumulators::One, Accumulators::Four] {
                let len = sets.count() * LANES * 24;
                let (mut x1, mut x2) = (values(len, 20), values(len, 20));
                let (mut o1, mut o2) = (vec![0f32; 24], vec![0f32; 24]);
                (fast.reduce_rows)(&mut x1, sets, 24, &mut o1);
                (slow.reduce_rows)(&mut x2, sets, 24, &mut o2);
                assert_eq!(o1, o2, "reduce_rows {sets:?}");
            }
            for order in [Accumulators::One, Accumulators::Four] {
                assert_eq!(
                    (fast.dot)(&a, &b, order).to_bits(),
                    (slow.dot)(&a, &b, order).to_bits(),
                    "dot {n} {order:?}"
                );
            }
            let n16 = n / 16 * 16;
            let (mut x, mut y) = (a[..n16].to_vec(), a[..n16].to_vec());
            x[3] = f32::NEG_INFINITY;
            y[3] = f32::NEG_INFINITY;
            let (sx, sy) = ((fast.exp_sum)(&mut x, 2.5), (slow.exp_sum)(&mut y, 2.5));
            assert_eq!(sx.to_bits(), sy.to_bits(), "exp_sum {n}");
            assert_eq!(x, y);
            let (mut g1, mut g2) = (values(n, 3), values(n, 3));
            (fast.silu_mul)(&mut g1, &b);
            (slow.silu_mul)(&mut g2, &b);
            assert_eq!(g1, g2, "silu {n}");
            let (mut r1, mut r2) = (b.clone(), b.clone());
            (fast.fma_row)(&mut r1, 0.37, &a);
            (slow.fma_row)(&mut r2, 0.37, &a);
            assert_eq!(r1, r2);
        }
    }

    #[test]
    fn the_exp_is_close_to_std_and_saturates() {
        for i in -2000..=800 {
            let x = i as f32 * 0.11;
            let (ours, std) = (exp_lane(x), x.exp());
            if std > 1e-37 && std < 1e37 {
                assert!(((ours - std) / std).abs() < 4e-7, "exp({x}) = {ours}, std {std}");
            }
        }
        assert_eq!(exp_lane(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_lane(-300.0), 0.0);
        assert_eq!(exp_lane(300.0), f32::INFINITY);
        assert_eq!(exp_lane(0.0), 1.0);
    }

    #[test]
    fn reductions_add_by_halves() {
        let v: [f32; 16] = std::array::from_fn(|i| [1e8, 1.0, -1e8, 3.0][i % 4] * (1 + i / 4) as f32);
        // ((0+8)+(4+12)) + ((2+10)+(6+14)) and the odd lanes: the big terms cancel before the small ones join.
        let mut t = v;
        for w in [8, 4] {
            for l in 0..w {
                t[l] += t[l + w];
            }
        }
        assert_eq!(reduce(&v), (t[0] + t[2]) + (t[1] + t[3]));
        // reduce_rows of one set equals reduce per column.
        let n = 3;
        let mut acc: Vec<f32> = (0..LANES * n).map(|i| v[i / n] + i as f32).collect();
        let cols: Vec<f32> = (0..n)
            .map(|d| reduce(&std::array::from_fn(|l| acc[l * n + d])))
            .collect();
        let mut out = vec![0f32; n];
        reduce_rows(&mut acc, Accumulators::One, n, &mut out);
        assert_eq!(out, cols);
    }
}
