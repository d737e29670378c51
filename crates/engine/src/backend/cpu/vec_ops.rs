//! Small vector helpers of attention: the row maximum and f16 rounding (the products, exp and sums are in
//! [`super::lanes16`]).

use half::f16;
use quant::SimdLevel;

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

/// Rounds every value to the nearest f16 (ties to even) and back: what ggml's conversion of an f32 operand to
/// an F16 cache's type does.
pub fn round_f16_fn(simd: SimdLevel) -> fn(&mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd >= SimdLevel::Avx2 {
        return x86::round_f16;
    }
    let _ = simd;
    round_f16
}

fn round_f16(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub fn round_f16(x: &mut [f32]) {
        // SAFETY: chosen only at SimdLevel::Avx2 or above, whose detection includes F16C.
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_level_rounds_to_the_same_f16() {
        let x: Vec<f32> = (0..1000).map(|i| ((i * 37 % 1001) as f32 - 500.0) * 0.0131).collect();
        for level in SimdLevel::available() {
            let (mut a, mut b) = (x.clone(), x.clone());
            round_f16_fn(level)(&mut a);
            round_f16(&mut b);
            assert_eq!(a, b, "{level:?}");
        }
    }
}
