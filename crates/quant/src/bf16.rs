//! BF16: bfloat16 (the top half of an f32), little-endian. Pairs with F32 activations: the weights are widened
//! with a shift on the fly and multiplied in f32.
//!
//! [`bf16_to_f32_row`] and [`f32_to_bf16_row`] are the fast converters for other users.

use crate::legacy_common::{check_float_row, usable, DequantizeFn, DotFn};
use crate::{GgmlType, Kernels, SimdLevel};

/// The kernels at `simd`, lowered to what this CPU runs.
pub fn kernels(simd: SimdLevel) -> Option<Kernels> {
    let (dequantize_row, vec_dot): (DequantizeFn, DotFn) = match usable(simd) {
        SimdLevel::Scalar => (dequantize_row_scalar, vec_dot_scalar),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => (x86::dequantize_row_avx2, x86::vec_dot_avx2),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => (x86::dequantize_row_avx512, x86::vec_dot_avx512),
        #[cfg(not(target_arch = "x86_64"))]
        _ => (dequantize_row_scalar, vec_dot_scalar),
    };
    Some(Kernels {
        weight: GgmlType::BF16,
        act: GgmlType::F32,
        dequantize_row,
        quantize_act_row: crate::f32::quantize_act_row_scalar,
        vec_dot,
        vec_dot_x4: None,
    })
}

/// The f32 → bf16 row converter at `simd`, lowered to what this CPU runs (rounding as [`f32_to_bf16`]).
pub fn f32_to_bf16_converter(simd: SimdLevel) -> fn(&[f32], &mut [u8]) {
    match usable(simd) {
        SimdLevel::Scalar => f32_to_bf16_row_scalar,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => x86::f32_to_bf16_row_avx2,
        #[cfg(not(target_arch = "x86_64"))]
        _ => f32_to_bf16_row_scalar,
    }
}

/// Widens `dst.len()` bf16 values from `src` with the best converter this CPU runs.
pub fn bf16_to_f32_row(src: &[u8], dst: &mut [f32]) {
    match kernels(SimdLevel::detect()) {
        Some(k) => (k.dequantize_row)(src, dst),
        None => dequantize_row_scalar(src, dst),
    }
}

/// Rounds `src` to bf16 into `dst` with the best converter this CPU runs.
pub fn f32_to_bf16_row(src: &[f32], dst: &mut [u8]) {
    f32_to_bf16_converter(SimdLevel::detect())(src, dst)
}

/// bf16 bits as f32.
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// f32 rounded to bf16 bits as ggml does it: to nearest, ties to even; NaN stays NaN (made quiet); no flushing.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7FFF_FFFF > 0x7F80_0000 {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits as u64 + 0x7FFF + u64::from((bits >> 16) & 1)) >> 16) as u16
}

/// Widens `dst.len()` bf16 values from `src`: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    check_float_row(dst.len(), src, 2);
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// Rounds `src` to bf16 into `dst`: the reference.
pub fn f32_to_bf16_row_scalar(src: &[f32], dst: &mut [u8]) {
    check_float_row(src.len(), dst, 2);
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&f32_to_bf16(*x).to_le_bytes());
    }
}

/// Dot product of `n` bf16 of a weight row and `n` f32 of an activation row, summed in order: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    check_float_row(n, weight_row, 2);
    check_float_row(n, act_row, 4);
    let weights = weight_row
        .chunks_exact(2)
        .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])));
    let acts = act_row
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    weights.zip(acts).take(n).map(|(w, a)| w * a).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::legacy_common::check_float_row;
    use crate::x86_common::hsum_f32x8;

    pub fn dequantize_row_avx2(src: &[u8], dst: &mut [f32]) {
        check_float_row(dst.len(), src, 2);
        // SAFETY: `src` holds dst.len() values (checked above); only reachable through `kernels`, which checked
        // the CPU features.
        unsafe { widen_avx2(src.as_ptr(), dst) }
    }

    /// # Safety
    /// `src` points to `dst.len()` readable values; the CPU runs AVX2/F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn widen_avx2(src: *const u8, dst: &mut [f32]) {
        let n = dst.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n on both sides; unaligned.
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(i), widen8(_mm_loadu_si128(src.add(2 * i).cast()))) };
            i += 8;
        }
        for (k, o) in dst[i..].iter_mut().enumerate() {
            // SAFETY: i + k < n.
            let bits = unsafe { src.add(2 * (i + k)).cast::<u16>().read_unaligned() };
            *o = super::bf16_to_f32(bits);
        }
    }

    pub fn dequantize_row_avx512(src: &[u8], dst: &mut [f32]) {
        check_float_row(dst.len(), src, 2);
        // SAFETY: as in `dequantize_row_avx2`, with AVX-512F/BW/VL checked by `kernels`.
        unsafe { widen_avx512(src.as_ptr(), dst) }
    }

    /// # Safety
    /// `src` points to `dst.len()` readable values; the CPU runs AVX-512F/BW/VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    unsafe fn widen_avx512(src: *const u8, dst: &mut [f32]) {
        let n = dst.len();
        let mut i = 0;
        while i < n {
            let mask: u16 = if n - i >= 16 { 0xFFFF } else { (1u16 << (n - i)) - 1 };
            // SAFETY: the masks touch only the min(16, n - i) elements that exist.
            unsafe {
                let values = _mm256_maskz_loadu_epi16(mask, src.add(2 * i).cast());
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, widen16(values));
            }
            i += 16;
        }
    }

    pub fn f32_to_bf16_row_avx2(src: &[f32], dst: &mut [u8]) {
        check_float_row(src.len(), dst, 2);
        // SAFETY: `dst` holds src.len() values (checked above); only reachable through `f32_to_bf16_converter`,
        // which checked the CPU features.
        unsafe { narrow_avx2(src, dst.as_mut_ptr()) }
    }

    /// # Safety
    /// `dst` points to `src.len()` writable bf16; the CPU runs AVX2.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn narrow_avx2(src: &[f32], dst: *mut u8) {
        let n = src.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n on both sides; unaligned.
            unsafe {
                let bits = _mm256_loadu_si256(src.as_ptr().add(i).cast());
                let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
                let rounded =
                    _mm256_srli_epi32::<16>(_mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))));
                let magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFF_FFFF));
                let nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F80_0000));
                let quiet = _mm256_or_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(0x40));
                let words = _mm256_blendv_epi8(rounded, quiet, nan);
                // packus keeps 0..=0xFFFF as is; it works per 128-bit lane, the permute puts the values together.
                let packed = _mm256_permute4x64_epi64::<0b10_00>(_mm256_packus_epi32(words, words));
                _mm_storeu_si128(dst.add(2 * i).cast(), _mm256_castsi256_si128(packed));
            }
            i += 8;
        }
        for (k, &x) in src[i..].iter().enumerate() {
            // SAFETY: i + k < n.
            unsafe {
                dst.add(2 * (i + k))
                    .cast::<u16>()
                    .write_unaligned(super::f32_to_bf16(x))
            };
        }
    }

    /// Eight bf16 as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn widen8(bits: __m128i) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(bits)))
    }

    /// Sixteen bf16 as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    fn widen16(bits: __m256i) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(bits)))
    }

    pub fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        check_float_row(n, weight_row, 2);
        check_float_row(n, act_row, 4);
        // SAFETY: the rows hold n values and n floats (checked above); CPU features checked by `kernels`.
        unsafe { dot_avx2(n, weight_row.as_ptr(), act_row.as_ptr().cast()) }
    }

    /// # Safety
    /// `w` points to `n` readable values and `a` to `n` readable floats; the CPU runs AVX2/FMA/F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_avx2(n: usize, w: *const u8, a: *const f32) -> f32 {
        // SAFETY (all loads): element ranges below n by the loop conditions; the caller's promise.
        let load = |i: usize| unsafe { (widen8(_mm_loadu_si128(w.add(2 * i).cast())), _mm256_loadu_ps(a.add(i))) };
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let (wv, av) = load(i + 8 * k);
                *acc = _mm256_fmadd_ps(wv, av, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let (wv, av) = load(i);
            acc[0] = _mm256_fmadd_ps(wv, av, acc[0]);
            i += 8;
        }
        let mut sum = hsum_f32x8(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while i < n {
            // SAFETY: i < n.
            let (bits, x) = unsafe { (w.add(2 * i).cast::<u16>().read_unaligned(), a.add(i).read_unaligned()) };
            sum += super::bf16_to_f32(bits) * x;
            i += 1;
        }
        sum
    }

    pub fn vec_dot_avx512(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        check_float_row(n, weight_row, 2);
        check_float_row(n, act_row, 4);
        // SAFETY: as in `vec_dot_avx2`, with AVX-512F/BW/VL checked by `kernels`.
        unsafe { dot_avx512(n, weight_row.as_ptr(), act_row.as_ptr().cast()) }
    }

    /// # Safety
    /// `w` points to `n` readable values and `a` to `n` readable floats; the CPU runs AVX-512F/BW/VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    unsafe fn dot_avx512(n: usize, w: *const u8, a: *const f32) -> f32 {
        // SAFETY (all loads): the masks keep every access below n; the caller's promise.
        let load = |i: usize, mask: u16| unsafe {
            let values = _mm256_maskz_loadu_epi16(mask, w.add(2 * i).cast());
            (widen16(values), _mm512_maskz_loadu_ps(mask, a.add(i)))
        };
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let (wv, av) = load(i + 16 * k, 0xFFFF);
                *acc = _mm512_fmadd_ps(wv, av, *acc);
            }
            i += 64;
        }
        while i < n {
            let (wv, av) = load(i, if n - i >= 16 { 0xFFFF } else { (1u16 << (n - i)) - 1 });
            acc[0] = _mm512_fmadd_ps(wv, av, acc[0]);
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }
}
