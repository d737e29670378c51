//! F32: plain little-endian floats. Activations stay F32: "quantizing" them copies their bytes.

use crate::legacy_common::{check_float_row, usable};
use crate::{GgmlType, Kernels, SimdLevel};

/// The kernels at `simd`, lowered to what this CPU runs.
pub fn kernels(simd: SimdLevel) -> Option<Kernels> {
    let vec_dot: fn(usize, &[u8], &[u8]) -> f32 = match usable(simd) {
        SimdLevel::Scalar => vec_dot_scalar,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => x86::vec_dot_avx2,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::vec_dot_avx512,
        #[cfg(not(target_arch = "x86_64"))]
        _ => vec_dot_scalar,
    };
    Some(Kernels {
        weight: GgmlType::F32,
        act: GgmlType::F32,
        dequantize_row: dequantize_row_scalar,
        quantize_act_row: quantize_act_row_scalar,
        vec_dot,
        vec_dot_x4: None,
    })
}

/// Reads `dst.len()` little-endian floats from `src` (a copy: the compiler vectorizes it; there is no SIMD twin).
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    check_float_row(dst.len(), src, 4);
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Writes `src` as little-endian floats into `dst`.
pub fn quantize_act_row_scalar(src: &[f32], dst: &mut [u8]) {
    check_float_row(src.len(), dst, 4);
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(4)) {
        b.copy_from_slice(&x.to_le_bytes());
    }
}

/// Dot product of `n` floats of a weight row and an activation row, summed in order: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    check_float_row(n, weight_row, 4);
    check_float_row(n, act_row, 4);
    let read = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    weight_row
        .chunks_exact(4)
        .zip(act_row.chunks_exact(4))
        .take(n)
        .map(|(w, a)| read(w) * read(a))
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::legacy_common::check_float_row;
    use crate::x86_common::hsum_f32x8;

    pub fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        check_float_row(n, weight_row, 4);
        check_float_row(n, act_row, 4);
        // SAFETY: both rows hold `n` floats (checked above); only reachable through `kernels`, which checked the
        // CPU features.
        unsafe { dot_avx2(n, weight_row.as_ptr().cast(), act_row.as_ptr().cast()) }
    }

    /// # Safety
    /// `w` and `a` point to `n` readable floats (unaligned is fine); the CPU runs AVX2/FMA.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_avx2(n: usize, w: *const f32, a: *const f32) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): i + 32 <= n, resp. i + 8 <= n, in the loops below; the caller's promise.
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let (wv, av) = unsafe { (_mm256_loadu_ps(w.add(i + 8 * k)), _mm256_loadu_ps(a.add(i + 8 * k))) };
                *acc = _mm256_fmadd_ps(wv, av, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let (wv, av) = unsafe { (_mm256_loadu_ps(w.add(i)), _mm256_loadu_ps(a.add(i))) };
            acc[0] = _mm256_fmadd_ps(wv, av, acc[0]);
            i += 8;
        }
        let mut sum = hsum_f32x8(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while i < n {
            // SAFETY: i < n.
            sum += unsafe { w.add(i).read_unaligned() * a.add(i).read_unaligned() };
            i += 1;
        }
        sum
    }

    pub fn vec_dot_avx512(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        check_float_row(n, weight_row, 4);
        check_float_row(n, act_row, 4);
        // SAFETY: as in `vec_dot_avx2`, with AVX-512F checked by `kernels`.
        unsafe { dot_avx512(n, weight_row.as_ptr().cast(), act_row.as_ptr().cast()) }
    }

    /// # Safety
    /// `w` and `a` point to `n` readable floats (unaligned is fine); the CPU runs AVX-512F.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn dot_avx512(n: usize, w: *const f32, a: *const f32) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        // Weight rows stream from memory: align their loads to cache lines (GGUF promises only 32 bytes, and a
        // 64-byte load across two lines costs two), taking the first few elements under a mask.
        let head = ((64 - w as usize % 64) % 64 / 4).min(n);
        if head > 0 {
            let mask: __mmask16 = (1u16 << head) - 1;
            // SAFETY: head <= n elements, under the mask.
            let (wv, av) = unsafe { (_mm512_maskz_loadu_ps(mask, w), _mm512_maskz_loadu_ps(mask, a)) };
            acc[1] = _mm512_fmadd_ps(wv, av, acc[1]);
        }
        let mut i = head;
        // SAFETY (all loads): in bounds by the loop conditions and masks; the caller's promise.
        while i + 64 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let (wv, av) = unsafe { (_mm512_loadu_ps(w.add(i + 16 * k)), _mm512_loadu_ps(a.add(i + 16 * k))) };
                *acc = _mm512_fmadd_ps(wv, av, *acc);
            }
            i += 64;
        }
        while i < n {
            // Masked loads read only the `min(16, n - i)` elements that exist.
            let mask: __mmask16 = if n - i >= 16 { 0xFFFF } else { (1u16 << (n - i)) - 1 };
            let (wv, av) = unsafe {
                (
                    _mm512_maskz_loadu_ps(mask, w.add(i)),
                    _mm512_maskz_loadu_ps(mask, a.add(i)),
                )
            };
            acc[0] = _mm512_fmadd_ps(wv, av, acc[0]);
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }
}
