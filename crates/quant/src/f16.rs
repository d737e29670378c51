//! F16: IEEE half floats, little-endian. Pairs with F32 activations: the weights are widened with F16C on the fly
//! and multiplied in f32, which keeps the activations exact and costs no more than F16 activations would (the
//! activation row sits in L1 either way; converting it to F16 would round it and add a conversion per element).
//!
//! [`f16_to_f32_row`] and [`f32_to_f16_row`] are the fast converters for other users (an F16 KV cache).

use crate::legacy_common::{check_float_row, usable, DequantizeFn, DotFn};
use crate::tile::DotX4Fn;
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
        weight: GgmlType::F16,
        act: GgmlType::F32,
        dequantize_row,
        quantize_act_row: crate::f32::quantize_act_row_scalar,
        vec_dot,
        vec_dot_x4: Some(dot_x4(simd)),
    })
}

/// The tile kernel (one weight row against four activation rows) at `simd`, lowered to what this CPU runs.
pub fn dot_x4(simd: SimdLevel) -> DotX4Fn {
    match usable(simd) {
        SimdLevel::Scalar => vec_dot_x4_scalar,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => x86::vec_dot_x4_avx2,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::vec_dot_x4_avx512,
        #[cfg(not(target_arch = "x86_64"))]
        _ => vec_dot_x4_scalar,
    }
}

/// The f32 → f16 row converter (round to nearest, ties to even) at `simd`, lowered to what this CPU runs.
pub fn f32_to_f16_converter(simd: SimdLevel) -> fn(&[f32], &mut [u8]) {
    match usable(simd) {
        SimdLevel::Scalar => f32_to_f16_row_scalar,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => x86::f32_to_f16_row_avx2,
        #[cfg(not(target_arch = "x86_64"))]
        _ => f32_to_f16_row_scalar,
    }
}

/// Widens `dst.len()` halves from `src` with the best converter this CPU runs.
pub fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
    match kernels(SimdLevel::detect()) {
        Some(k) => (k.dequantize_row)(src, dst),
        None => dequantize_row_scalar(src, dst),
    }
}

/// Rounds `src` to halves (to nearest, ties to even) into `dst` with the best converter this CPU runs.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
    f32_to_f16_converter(SimdLevel::detect())(src, dst)
}

/// Widens `dst.len()` halves from `src`: the reference.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    check_float_row(dst.len(), src, 2);
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

/// Rounds `src` to halves into `dst`: the reference.
pub fn f32_to_f16_row_scalar(src: &[f32], dst: &mut [u8]) {
    check_float_row(src.len(), dst, 2);
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&half::f16::from_f32(*x).to_le_bytes());
    }
}

/// Dot product of `n` halves of a weight row and `n` f32 of an activation row, summed in order: the reference.
pub fn vec_dot_scalar(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
    check_float_row(n, weight_row, 2);
    check_float_row(n, act_row, 4);
    let weights = weight_row
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32());
    let acts = act_row
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    weights.zip(acts).take(n).map(|(w, a)| w * a).sum()
}

/// [`vec_dot_scalar`] for four activation rows at once: the reference of the tile kernels.
pub fn vec_dot_x4_scalar(n: usize, weight_row: &[u8], act_rows: &[u8], act_row_bytes: usize, out: &mut [f32; 4]) {
    crate::tile::x4_by_rows(vec_dot_scalar, n, weight_row, act_rows, act_row_bytes, out)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::legacy_common::check_float_row;
    use crate::x86_common::hsum_f32x8;

    pub fn dequantize_row_avx2(src: &[u8], dst: &mut [f32]) {
        check_float_row(dst.len(), src, 2);
        // SAFETY: `src` holds dst.len() halves (checked above); only reachable through `kernels`, which checked
        // the CPU features.
        unsafe { widen_avx2(src.as_ptr(), dst) }
    }

    /// # Safety
    /// `src` points to `dst.len()` readable halves; the CPU runs AVX2/F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn widen_avx2(src: *const u8, dst: &mut [f32]) {
        let n = dst.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n on both sides; unaligned.
            unsafe {
                _mm256_storeu_ps(
                    dst.as_mut_ptr().add(i),
                    _mm256_cvtph_ps(_mm_loadu_si128(src.add(2 * i).cast())),
                )
            };
            i += 8;
        }
        for (k, o) in dst[i..].iter_mut().enumerate() {
            // SAFETY: i + k < n.
            let bits = unsafe { src.add(2 * (i + k)).cast::<u16>().read_unaligned() };
            *o = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))));
        }
    }

    pub fn dequantize_row_avx512(src: &[u8], dst: &mut [f32]) {
        check_float_row(dst.len(), src, 2);
        // SAFETY: as in `dequantize_row_avx2`, with AVX-512F/BW/VL checked by `kernels`.
        unsafe { widen_avx512(src.as_ptr(), dst) }
    }

    /// # Safety
    /// `src` points to `dst.len()` readable halves; the CPU runs AVX-512F/BW/VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    unsafe fn widen_avx512(src: *const u8, dst: &mut [f32]) {
        let n = dst.len();
        let mut i = 0;
        while i < n {
            let mask: u16 = if n - i >= 16 { 0xFFFF } else { (1u16 << (n - i)) - 1 };
            // SAFETY: the masks touch only the min(16, n - i) elements that exist.
            unsafe {
                let halves = _mm256_maskz_loadu_epi16(mask, src.add(2 * i).cast());
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, _mm512_cvtph_ps(halves));
            }
            i += 16;
        }
    }

    pub fn f32_to_f16_row_avx2(src: &[f32], dst: &mut [u8]) {
        check_float_row(src.len(), dst, 2);
        // SAFETY: `dst` holds src.len() halves (checked above); only reachable through `f32_to_f16_converter`,
        // which checked the CPU features.
        unsafe { narrow_avx2(src, dst.as_mut_ptr()) }
    }

    /// # Safety
    /// `dst` points to `src.len()` writable halves; the CPU runs AVX2/F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn narrow_avx2(src: &[f32], dst: *mut u8) {
        let n = src.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n on both sides; unaligned.
            unsafe {
                let halves = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr().add(i)));
                _mm_storeu_si128(dst.add(2 * i).cast(), halves);
            }
            i += 8;
        }
        for (k, &x) in src[i..].iter().enumerate() {
            let bits = _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x))) as u16;
            // SAFETY: i + k < n.
            unsafe { dst.add(2 * (i + k)).cast::<u16>().write_unaligned(bits) };
        }
    }

    pub fn vec_dot_avx2(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32 {
        check_float_row(n, weight_row, 2);
        check_float_row(n, act_row, 4);
        // SAFETY: the rows hold n halves and n floats (checked above); CPU features checked by `kernels`.
        unsafe { dot_avx2(n, weight_row.as_ptr(), act_row.as_ptr().cast()) }
    }

    /// # Safety
    /// `w` points to `n` readable halves and `a` to `n` readable floats; the CPU runs AVX2/FMA/F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_avx2(n: usize, w: *const u8, a: *const f32) -> f32 {
        // SAFETY (all loads): element ranges below n by the loop conditions; the caller's promise.
        let load = |i: usize| unsafe {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * i).cast())),
                _mm256_loadu_ps(a.add(i)),
            )
        };
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
            sum += _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits)))) * x;
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
    /// `w` points to `n` readable halves and `a` to `n` readable floats; the CPU runs AVX-512F/BW/VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    unsafe fn dot_avx512(n: usize, w: *const u8, a: *const f32) -> f32 {
        // SAFETY (all loads): the masks keep every access below n; the caller's promise.
        let load = |i: usize, mask: u16| unsafe {
            let halves = _mm256_maskz_loadu_epi16(mask, w.add(2 * i).cast());
            (_mm512_cvtph_ps(halves), _mm512_maskz_loadu_ps(mask, a.add(i)))
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
    /// The four activation rows of a tile as float pointers, each checked to hold `n` floats.
    fn act_ptrs4(n: usize, act_rows: &[u8], act_row_bytes: usize) -> [*const f32; 4] {
        crate::tile::split_rows4(act_rows, act_row_bytes).map(|row| {
            check_float_row(n, row, 4);
            row.as_ptr().cast::<f32>()
        })
    }

    pub fn vec_dot_x4_avx2(n: usize, weight_row: &[u8], act_rows: &[u8], act_row_bytes: usize, out: &mut [f32; 4]) {
        check_float_row(n, weight_row, 2);
        let acts = act_ptrs4(n, act_rows, act_row_bytes);
        // SAFETY: the weight row holds n halves and each activation row n floats (checked above); CPU features
        // checked by `kernels`.
        unsafe { dot_x4_avx2(n, weight_row.as_ptr(), acts, out) }
    }

    /// # Safety
    /// `w` points to `n` readable halves and each of `a` to `n` readable floats; the CPU runs AVX2/FMA/F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_x4_avx2(n: usize, w: *const u8, a: [*const f32; 4], out: &mut [f32; 4]) {
        // SAFETY (all loads): element ranges below n by the loop conditions; the caller's promise.
        let load_w = |i: usize| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * i).cast())) };
        let load_a = |t: usize, i: usize| unsafe { _mm256_loadu_ps(a[t].add(i)) };
        // Two accumulators per row: eight independent FMA chains.
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let mut i = 0;
        while i + 16 <= n {
            for (k, w8) in [load_w(i), load_w(i + 8)].into_iter().enumerate() {
                for (t, acc) in acc.iter_mut().enumerate() {
                    acc[k] = _mm256_fmadd_ps(w8, load_a(t, i + 8 * k), acc[k]);
                }
            }
            i += 16;
        }
        while i + 8 <= n {
            let w8 = load_w(i);
            for (t, acc) in acc.iter_mut().enumerate() {
                acc[0] = _mm256_fmadd_ps(w8, load_a(t, i), acc[0]);
            }
            i += 8;
        }
        for (t, (o, acc)) in out.iter_mut().zip(acc).enumerate() {
            let mut sum = hsum_f32x8(_mm256_add_ps(acc[0], acc[1]));
            for j in i..n {
                // SAFETY: j < n.
                let (bits, x) = unsafe {
                    (
                        w.add(2 * j).cast::<u16>().read_unaligned(),
                        a[t].add(j).read_unaligned(),
                    )
                };
                sum += _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits)))) * x;
            }
            *o = sum;
        }
    }

    pub fn vec_dot_x4_avx512(n: usize, weight_row: &[u8], act_rows: &[u8], act_row_bytes: usize, out: &mut [f32; 4]) {
        check_float_row(n, weight_row, 2);
        let acts = act_ptrs4(n, act_rows, act_row_bytes);
        // SAFETY: as in `vec_dot_x4_avx2`, with AVX-512F/BW/VL checked by `kernels`.
        unsafe { dot_x4_avx512(n, weight_row.as_ptr(), acts, out) }
    }

    /// # Safety
    /// `w` points to `n` readable halves and each of `a` to `n` readable floats; the CPU runs AVX-512F/BW/VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    unsafe fn dot_x4_avx512(n: usize, w: *const u8, a: [*const f32; 4], out: &mut [f32; 4]) {
        // SAFETY (all loads): the masks keep every access below n; the caller's promise.
        let load_w =
            |i: usize, mask: u16| unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, w.add(2 * i).cast())) };
        let load_a = |t: usize, i: usize, mask: u16| unsafe { _mm512_maskz_loadu_ps(mask, a[t].add(i)) };
        let mut acc = [[_mm512_setzero_ps(); 2]; 4];
        let mut i = 0;
        while i + 32 <= n {
            for k in 0..2 {
                let w16 = load_w(i + 16 * k, 0xFFFF);
                for (t, acc) in acc.iter_mut().enumerate() {
                    acc[k] = _mm512_fmadd_ps(w16, load_a(t, i + 16 * k, 0xFFFF), acc[k]);
                }
            }
            i += 32;
        }
        while i < n {
            let mask = if n - i >= 16 { 0xFFFF } else { (1u16 << (n - i)) - 1 };
            let w16 = load_w(i, mask);
            for (t, acc) in acc.iter_mut().enumerate() {
                acc[0] = _mm512_fmadd_ps(w16, load_a(t, i, mask), acc[0]);
            }
            i += 16;
        }
        for (o, acc) in out.iter_mut().zip(acc) {
            *o = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
        }
    }
}
