//! The vector kernels of attention (dot products, scaled row adds, exp, f16 rounding) at each SIMD level, every
//! level giving the same bits.

use half::f16;
use quant::SimdLevel;

/// Two queries' `dot8` against the same 8 rows.
pub type Dot8x2 = fn(&[f32], &[f32], &[f32], &mut [[f32; 8]; 2]);

/// The vector kernels of attention at one SIMD level. Every level gives the same bits: eight dot-product lanes
/// summed in lane order, products rounded before they are added (no FMA), f16 rounding to nearest even. (A SIMD
/// exp was measured no faster here and stays out, so scores keep std's exp.)
pub struct VecOps {
    /// `x = exp(x - max)` in place; returns the sum as [`chunk_sum`] takes it.
    pub exp_sum: fn(&mut [f32], f32) -> f64,
    pub dot: fn(&[f32], &[f32]) -> f32,
    /// `out[j] = dot(q, rows[j * q.len()..])` for 8 consecutive rows, each exactly as `dot` computes it.
    pub dot8: fn(&[f32], &[f32], &mut [f32; 8]),
    /// `dot8` of two queries of the same length against the same 8 rows: `out[0]` for `qa`, `out[1]` for `qb`.
    pub dot8x2: Dot8x2,
    pub axpy: fn(&mut [f32], f32, &[f32]),
    /// `axpy` of 8 consecutive rows in order (each element gets the same adds in the same order).
    pub axpy8: fn(&mut [f32], &[f32; 8], &[f32]),
    pub round_f16: fn(&mut [f32]),
}

impl VecOps {
    pub fn new(simd: SimdLevel) -> Self {
        #[cfg(target_arch = "x86_64")]
        if simd >= SimdLevel::Avx2 {
            let avx2 = Self {
                exp_sum: x86::exp_sum,
                dot: x86::dot,
                dot8: x86::dot8,
                dot8x2: |qa, qb, rows, out| {
                    x86::dot8(qa, rows, &mut out[0]);
                    x86::dot8(qb, rows, &mut out[1]);
                },
                axpy8: x86::axpy8,
                axpy: x86::axpy,
                round_f16: x86::round_f16,
            };
            // Twice the lanes for the same per-lane arithmetic: two queries' eight lanes in one vector, rows added
            // sixteen elements at a time.
            if simd >= SimdLevel::Avx512 && x86_512::usable() {
                return Self {
                    dot8x2: x86_512::dot8x2,
                    axpy8: x86_512::axpy8,
                    ..avx2
                };
            }
            return avx2;
        }
        let _ = simd;
        Self {
            exp_sum,
            dot,
            dot8,
            dot8x2: |qa, qb, rows, out| {
                dot8(qa, rows, &mut out[0]);
                dot8(qb, rows, &mut out[1]);
            },
            axpy,
            axpy8,
            round_f16,
        }
    }
}

fn dot8(q: &[f32], rows: &[f32], out: &mut [f32; 8]) {
    let n = q.len();
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot(q, &rows[j * n..(j + 1) * n]);
    }
}

fn axpy8(o: &mut [f32], p: &[f32; 8], rows: &[f32]) {
    let n = o.len();
    for (j, &w) in p.iter().enumerate() {
        axpy(o, w, &rows[j * n..(j + 1) * n]);
    }
}

/// `x = exp(x - max)` in place; returns the sum as [`chunk_sum`] takes it.
fn exp_sum(x: &mut [f32], max: f32) -> f64 {
    for v in x.iter_mut() {
        *v = (*v - max).exp();
    }
    chunk_sum(x)
}

/// The sum of `x` as ggml's softmax takes it: each whole chunk of 16 summed in f32 by halves (`c[i] + c[i + 8]`,
/// then `+ 4`, `+ 2`, `+ 1`), the chunks and then the elements past the last one added in f64.
pub fn chunk_sum(x: &[f32]) -> f64 {
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    let mut sum = 0f64;
    for c in chunks {
        let mut v: [f32; 16] = c.try_into().expect("16 elements");
        for width in [8, 4, 2, 1] {
            for i in 0..width {
                v[i] += v[i + width];
            }
        }
        sum += v[0] as f64;
    }
    tail.iter().fold(sum, |s, &v| s + v as f64)
}

/// The largest of `x` (negative infinity when empty), NaN ignored as `f32::max` ignores it, in eight lanes (the
/// same value as one chain of `max`, without its latency).
pub fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let groups = x.chunks_exact(8);
    let tail = groups.remainder();
    for g in groups {
        for (l, &v) in lanes.iter_mut().zip(g) {
            *l = l.max(v);
        }
    }
    lanes.iter().chain(tail).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

fn axpy(o: &mut [f32], w: f32, v: &[f32]) {
    o.iter_mut().zip(v).for_each(|(a, &b)| *a += w * b);
}

fn round_f16(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: chosen only when AVX2/FMA/F16C were detected (SimdLevel::Avx2 or better).
        unsafe { dot_avx2(a, b) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, both slices hold n elements; unaligned loads.
            let (x, y) = unsafe { (_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i))) };
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
            i += 8;
        }
        let mut lanes = [0f32; 8];
        // SAFETY: 8 writable floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        lanes.iter().sum::<f32>() + a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum::<f32>()
    }

    pub fn dot8(q: &[f32], rows: &[f32], out: &mut [f32; 8]) {
        if !q.len().is_multiple_of(8) || rows.len() < 8 * q.len() {
            return super::dot8(q, rows, out);
        }
        // SAFETY: as in `dot`; lengths checked above.
        unsafe { dot8_avx2(q, rows, out) }
    }

    /// Eight dot products with eight lanes each, then an 8x8 transpose so that every key's lanes are summed in
    /// lane order (0 + 1, + 2, ... + 7) exactly as `dot` sums them, eight keys per vector add.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot8_avx2(q: &[f32], rows: &[f32], out: &mut [f32; 8]) {
        let n = q.len();
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n (n is a multiple of 8) and rows holds 8 rows of n.
            unsafe {
                let x = _mm256_loadu_ps(q.as_ptr().add(i));
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(x, _mm256_loadu_ps(rows.as_ptr().add(j * n + i))));
                }
            }
            i += 8;
        }
        // Transpose: t[l] holds lane l of the eight accumulators.
        let t0 = _mm256_unpacklo_ps(acc[0], acc[1]);
        let t1 = _mm256_unpackhi_ps(acc[0], acc[1]);
        let t2 = _mm256_unpacklo_ps(acc[2], acc[3]);
        let t3 = _mm256_unpackhi_ps(acc[2], acc[3]);
        let t4 = _mm256_unpacklo_ps(acc[4], acc[5]);
        let t5 = _mm256_unpackhi_ps(acc[4], acc[5]);
        let t6 = _mm256_unpacklo_ps(acc[6], acc[7]);
        let t7 = _mm256_unpackhi_ps(acc[6], acc[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let l = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        let mut sum = l[0];
        for v in &l[1..] {
            sum = _mm256_add_ps(sum, *v);
        }
        // SAFETY: 8 writable floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    }

    pub fn exp_sum(x: &mut [f32], max: f32) -> f64 {
        // SAFETY: as in `dot`.
        unsafe { exp_sum_avx2(x, max) }
    }

    /// ln of the smallest normal f32: below it exp is 0 here (the true value is subnormal).
    const LOWEST: f32 = -87.336_54;

    /// exp(x) for x <= 0 (scores minus their maximum): 2^(x·log2 e) split into an integer power of two and a
    /// degree-6 polynomial of the remainder, within a few ulp of f32 exp; below [`LOWEST`] the result is 0.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn exp8(x_in: __m256) -> __m256 {
        let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x_in, _mm256_set1_ps(LOWEST));
        let x = _mm256_max_ps(x_in, _mm256_set1_ps(LOWEST));
        let t = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E));
        let k = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 120.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 24.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 6.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)));
        _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(pow2)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn exp_sum_avx2(x: &mut [f32], max: f32) -> f64 {
        let n = x.len();
        let m = _mm256_set1_ps(max);
        let mut sum = 0f64;
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                let lo = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), m));
                let hi = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(8)), m));
                _mm256_storeu_ps(p, lo);
                _mm256_storeu_ps(p.add(8), hi);
                // The chunk by halves, as `chunk_sum` takes it: 16 -> 8 -> 4 -> 2 -> 1.
                let a = _mm256_add_ps(lo, hi);
                let b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let c = _mm_add_ps(b, _mm_movehl_ps(b, b));
                let d = _mm_add_ss(c, _mm_movehdup_ps(c));
                sum += _mm_cvtss_f32(d) as f64;
            }
            i += 16;
        }
        for v in x[i..].iter_mut() {
            *v = (*v - max).exp();
        }
        x[i..].iter().fold(sum, |s, &v| s + v as f64)
    }

    pub fn axpy8(o: &mut [f32], p: &[f32; 8], rows: &[f32]) {
        if !o.len().is_multiple_of(64) || rows.len() < 8 * o.len() {
            return super::axpy8(o, p, rows);
        }
        // SAFETY: as in `dot`; lengths checked above.
        unsafe { axpy8_avx2(o, p, rows) }
    }

    /// 64 output elements at a time held in registers while the 8 rows are added in order.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy8_avx2(o: &mut [f32], p: &[f32; 8], rows: &[f32]) {
        let n = o.len();
        let w: [__m256; 8] = std::array::from_fn(|j| _mm256_set1_ps(p[j]));
        for c in (0..n).step_by(64) {
            // SAFETY: c + 64 <= n (n is a multiple of 64); rows holds 8 rows of n.
            unsafe {
                let op = o.as_mut_ptr().add(c);
                let mut acc: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(op.add(8 * k)));
                for (j, wj) in w.iter().enumerate() {
                    let rp = rows.as_ptr().add(j * n + c);
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(*wj, _mm256_loadu_ps(rp.add(8 * k))));
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(op.add(8 * k), *a);
                }
            }
        }
    }

    pub fn axpy(o: &mut [f32], w: f32, v: &[f32]) {
        // SAFETY: as in `dot`.
        unsafe { axpy_avx2(o, w, v) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy_avx2(o: &mut [f32], w: f32, v: &[f32]) {
        let n = o.len().min(v.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let p = o.as_mut_ptr().add(i);
                let x = _mm256_add_ps(
                    _mm256_loadu_ps(p),
                    _mm256_mul_ps(wv, _mm256_loadu_ps(v.as_ptr().add(i))),
                );
                _mm256_storeu_ps(p, x);
            }
            i += 8;
        }
        for (a, &b) in o[i..n].iter_mut().zip(&v[i..n]) {
            *a += w * b;
        }
    }

    pub fn round_f16(x: &mut [f32]) {
        // SAFETY: as in `dot`.
        unsafe { round_f16_f16c(x) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn round_f16_f16c(x: &mut [f32]) {
        let n = x.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(p));
                _mm256_storeu_ps(p, _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        super::round_f16(&mut x[i..]);
    }
}

/// AVX-512 kernels with the AVX2 ones' per-lane arithmetic (see [`VecOps::new`]).
#[cfg(target_arch = "x86_64")]
mod x86_512 {
    use std::arch::x86_64::*;

    /// Whether this CPU runs AVX-512 F (the caller asked for the level; this guards the unsafe calls below).
    pub fn usable() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    pub fn axpy8(o: &mut [f32], p: &[f32; 8], rows: &[f32]) {
        if !o.len().is_multiple_of(64) || rows.len() < 8 * o.len() {
            return super::axpy8(o, p, rows);
        }
        // SAFETY: chosen only where `usable` holds; lengths checked above.
        unsafe { axpy8_avx512(o, p, rows) }
    }

    /// 64 output elements at a time held in four registers while the 8 rows are added in order: every element
    /// gets `o + p[j] * v[j]` (product rounded, then the add) for j = 0..8, as in the AVX2 kernel.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    fn axpy8_avx512(o: &mut [f32], p: &[f32; 8], rows: &[f32]) {
        let n = o.len();
        let w: [__m512; 8] = std::array::from_fn(|j| _mm512_set1_ps(p[j]));
        for c in (0..n).step_by(64) {
            // SAFETY: c + 64 <= n (n is a multiple of 64); rows holds 8 rows of n.
            unsafe {
                let op = o.as_mut_ptr().add(c);
                let mut acc: [__m512; 4] = std::array::from_fn(|k| _mm512_loadu_ps(op.add(16 * k)));
                for (j, wj) in w.iter().enumerate() {
                    let rp = rows.as_ptr().add(j * n + c);
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_add_ps(*a, _mm512_mul_ps(*wj, _mm512_loadu_ps(rp.add(16 * k))));
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(op.add(16 * k), *a);
                }
            }
        }
    }

    pub fn dot8x2(qa: &[f32], qb: &[f32], rows: &[f32], out: &mut [[f32; 8]; 2]) {
        let n = qa.len();
        if !n.is_multiple_of(8) || qb.len() != n || rows.len() < 8 * n {
            super::dot8(qa, rows, &mut out[0]);
            super::dot8(qb, rows, &mut out[1]);
            return;
        }
        // SAFETY: chosen only where `usable` holds; lengths checked above.
        unsafe { dot8x2_avx512(qa, qb, rows, out) }
    }

    /// Lanes 0..8 of each accumulator are `qa`'s eight dot-product lanes with one key, lanes 8..16 `qb`'s, each
    /// summed as the AVX2 `dot8` sums them; the same 8 × 8 transpose then runs in both 256-bit halves.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    fn dot8x2_avx512(qa: &[f32], qb: &[f32], rows: &[f32], out: &mut [[f32; 8]; 2]) {
        let n = qa.len();
        let mut acc = [_mm512_setzero_ps(); 8];
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n (n is a multiple of 8), both queries hold n and rows holds 8 rows of n.
            unsafe {
                let lo = _mm256_castps_pd(_mm256_loadu_ps(qa.as_ptr().add(i)));
                let hi = _mm256_castps_pd(_mm256_loadu_ps(qb.as_ptr().add(i)));
                let q = _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castpd256_pd512(lo), hi));
                for (j, a) in acc.iter_mut().enumerate() {
                    let k = _mm256_castps_pd(_mm256_loadu_ps(rows.as_ptr().add(j * n + i)));
                    let k = _mm512_castpd_ps(_mm512_broadcast_f64x4(k));
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(q, k));
                }
            }
            i += 8;
        }
        // The AVX2 transpose per 128-bit lane (unpack, shuffle), then its cross-lane step per 256-bit half.
        let t0 = _mm512_unpacklo_ps(acc[0], acc[1]);
        let t1 = _mm512_unpackhi_ps(acc[0], acc[1]);
        let t2 = _mm512_unpacklo_ps(acc[2], acc[3]);
        let t3 = _mm512_unpackhi_ps(acc[2], acc[3]);
        let t4 = _mm512_unpacklo_ps(acc[4], acc[5]);
        let t5 = _mm512_unpackhi_ps(acc[4], acc[5]);
        let t6 = _mm512_unpacklo_ps(acc[6], acc[7]);
        let t7 = _mm512_unpackhi_ps(acc[6], acc[7]);
        let u0 = _mm512_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm512_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm512_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm512_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm512_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm512_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm512_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm512_shuffle_ps::<0xEE>(t5, t7);
        // permute2f128 0x20 (low 128 bits of a, then of b) and 0x31 (high halves) in each 256-bit half.
        let lo_idx = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        let hi_idx = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        let l = [
            _mm512_permutex2var_ps(u0, lo_idx, u4),
            _mm512_permutex2var_ps(u1, lo_idx, u5),
            _mm512_permutex2var_ps(u2, lo_idx, u6),
            _mm512_permutex2var_ps(u3, lo_idx, u7),
            _mm512_permutex2var_ps(u0, hi_idx, u4),
            _mm512_permutex2var_ps(u1, hi_idx, u5),
            _mm512_permutex2var_ps(u2, hi_idx, u6),
            _mm512_permutex2var_ps(u3, hi_idx, u7),
        ];
        let mut sum = l[0];
        for v in &l[1..] {
            sum = _mm512_add_ps(sum, *v);
        }
        let mut lanes = [0f32; 16];
        // SAFETY: 16 writable floats.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), sum) };
        out[0].copy_from_slice(&lanes[..8]);
        out[1].copy_from_slice(&lanes[8..]);
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent lanes so the compiler vectorizes.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_exp_stays_within_a_few_ulp_of_std() {
        for level in SimdLevel::available() {
            let ops = VecOps::new(level);
            let mut x: Vec<f32> = (0..20_000).map(|i| -(i as f32) * 0.0045).collect();
            let want: Vec<f32> = x.iter().map(|v| v.exp()).collect();
            let sum = (ops.exp_sum)(&mut x, 0.0);
            for (i, (&g, &w)) in x.iter().zip(&want).enumerate() {
                let tol = 4.0 * f32::EPSILON * w + f32::MIN_POSITIVE;
                assert!(
                    (g - w).abs() <= tol,
                    "{level:?} exp({}) = {g}, std {w}",
                    -(i as f32) * 0.0045
                );
            }
            let exact: f64 = want.iter().map(|&v| v as f64).sum();
            assert!((sum - exact).abs() <= 1e-6 * exact, "{level:?} sum {sum}, {exact}");
            assert_eq!(sum.to_bits(), chunk_sum(&x).to_bits(), "{level:?} sum order");
            for n in [0, 1, 7, 8, 9, 16, 17, 23, 33] {
                let mut y: Vec<f32> = (0..n).map(|i| -(i as f32) * 0.3).collect();
                let s = (ops.exp_sum)(&mut y, 0.0);
                assert_eq!(
                    s.to_bits(),
                    chunk_sum(&y).to_bits(),
                    "{level:?} sum order, {n} elements"
                );
            }
        }
    }

    #[test]
    fn lane_max_is_the_chain_max() {
        for n in [0usize, 1, 7, 8, 9, 64, 100] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let chain = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            assert_eq!(max(&x).to_bits(), chain.to_bits(), "{n}");
            let mut y = x.clone();
            if n > 3 {
                y[3] = f32::NAN;
                let chain = y.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                assert_eq!(max(&y).to_bits(), chain.to_bits(), "{n} with a NaN");
            }
        }
    }

    #[test]
    fn every_simd_level_gives_the_scalar_bits() {
        let scalar = VecOps::new(SimdLevel::Scalar);
        for level in SimdLevel::available() {
            let ops = VecOps::new(level);
            for n in [1usize, 7, 8, 64, 100, 128, 256] {
                let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
                let b: Vec<f32> = (0..n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021).collect();
                assert_eq!(
                    (ops.dot)(&a, &b).to_bits(),
                    (scalar.dot)(&a, &b).to_bits(),
                    "{level:?} dot {n}"
                );
                let (mut x, mut y) = (a.clone(), a.clone());
                (ops.axpy)(&mut x, 0.37, &b);
                (scalar.axpy)(&mut y, 0.37, &b);
                assert_eq!(x, y, "{level:?} axpy {n}");
                if n % 8 == 0 {
                    let rows: Vec<f32> = (0..8 * n).map(|i| ((i * 29 % 89) as f32 - 44.0) * 0.017).collect();
                    let (mut d, mut e) = ([0f32; 8], [0f32; 8]);
                    (ops.dot8)(&a, &rows, &mut d);
                    (scalar.dot8)(&a, &rows, &mut e);
                    let singles: Vec<u32> = (0..8)
                        .map(|j| (scalar.dot)(&a, &rows[j * n..(j + 1) * n]).to_bits())
                        .collect();
                    assert_eq!(d.map(f32::to_bits).to_vec(), singles, "{level:?} dot8 {n}");
                    assert_eq!(e.map(f32::to_bits).to_vec(), singles, "scalar dot8 {n}");
                    let mut d2 = [[0f32; 8]; 2];
                    (ops.dot8x2)(&b, &a, &rows, &mut d2);
                    let singles_b: Vec<u32> = (0..8)
                        .map(|j| (scalar.dot)(&b, &rows[j * n..(j + 1) * n]).to_bits())
                        .collect();
                    assert_eq!(
                        d2[0].map(f32::to_bits).to_vec(),
                        singles_b,
                        "{level:?} dot8x2 first {n}"
                    );
                    assert_eq!(d2[1].map(f32::to_bits).to_vec(), singles, "{level:?} dot8x2 second {n}");
                    let p8 = [0.1f32, -0.3, 0.25, 0.0, 1.5, -2.0, 0.7, 0.01];
                    let (mut x, mut y) = (a.clone(), a.clone());
                    (ops.axpy8)(&mut x, &p8, &rows);
                    for (j, &w) in p8.iter().enumerate() {
                        (scalar.axpy)(&mut y, w, &rows[j * n..(j + 1) * n]);
                    }
                    assert_eq!(x, y, "{level:?} axpy8 {n}");
                }
                let (mut x, mut y) = (b.clone(), b.clone());
                (ops.round_f16)(&mut x);
                (scalar.round_f16)(&mut y);
                assert_eq!(x, y, "{level:?} f16 rounding {n}");
            }
        }
    }
}
