//! x86-64 SIMD pieces shared by the legacy block formats and the float formats: horizontal sums, f16 scale
//! conversion, nibble and bit unpacking, signed 8-bit dot products, and the AVX2 activation quantizer.
//!
//! Everything here is `#[inline]` with the target features of its callers so that it melts into their loops.

use std::arch::x86_64::*;

use crate::legacy_common::QK;

/// Sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hsum_f32x8(v: __m256) -> f32 {
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)))
}

/// Sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hsum_i32x8(v: __m256i) -> i32 {
    let quad = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let pair = _mm_add_epi32(quad, _mm_unpackhi_epi64(quad, quad));
    _mm_cvtsi128_si32(_mm_add_epi32(pair, _mm_shuffle_epi32(pair, 1)))
}

/// The product of two f16 values given as little-endian bytes (one conversion for both).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16_product(a: [u8; 2], b: [u8; 2]) -> f32 {
    let packed = u32::from(u16::from_le_bytes(a)) | (u32::from(u16::from_le_bytes(b)) << 16);
    let both = _mm_cvtph_ps(_mm_cvtsi32_si128(packed as i32));
    _mm_cvtss_f32(_mm_mul_ss(both, _mm_movehdup_ps(both)))
}

/// One f16 (little-endian bytes) as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16_to_f32(bits: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le_bytes(bits)))))
}

/// The 32 nibbles of 16 packed bytes as 32 bytes: low nibbles (elements 0..16) in bytes 0..16, high nibbles
/// (elements 16..32) in bytes 16..32. One broadcast load, one variable shift, one and: no cross-lane shuffle.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn nibbles_to_bytes(packed: &[u8; QK / 2]) -> __m256i {
    // SAFETY: `packed` is 16 readable bytes; the load is unaligned.
    let bytes = unsafe { _mm_loadu_si128(packed.as_ptr().cast()) };
    let both = _mm256_broadcastsi128_si256(bytes);
    let shifted = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
}

/// The 32 5-bit values of a 5-bit block: [`nibbles_to_bytes`] with 16 added where bit `i` of `fifth_bits` is set.
/// AVX-512 BW/VL: the bits go straight into a mask register; a three-input logic op merges them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub fn five_bit_values(packed: &[u8; QK / 2], fifth_bits: u32) -> __m256i {
    // SAFETY: `packed` is 16 readable bytes; the load is unaligned.
    let bytes = unsafe { _mm_loadu_si128(packed.as_ptr().cast()) };
    let shifted = _mm256_srlv_epi64(_mm256_broadcastsi128_si256(bytes), _mm256_setr_epi64x(0, 0, 4, 4));
    let fifth = _mm256_maskz_mov_epi8(fifth_bits, _mm256_set1_epi8(16));
    // (shifted & 0x0F) | fifth
    _mm256_ternarylogic_epi32::<0xEA>(shifted, _mm256_set1_epi8(0x0F), fifth)
}

/// 0xFF in byte `i` where bit `i` of `bits` is set, 0 elsewhere.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn bits_to_byte_mask(bits: u32) -> __m256i {
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303),
    );
    let select = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select)
}

/// Products of 32 signed byte pairs, summed four by four into eight i32 lanes.
///
/// `y` must avoid -128 (activations are quantized to -127..=127): the sign trick negates `y` where `x < 0`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_i8x32(x: __m256i, y: __m256i) -> __m256i {
    let abs_x = _mm256_sign_epi8(x, x);
    let signed_y = _mm256_sign_epi8(y, x);
    let pairs = _mm256_maddubs_epi16(abs_x, signed_y);
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// [`dot_i8x32`] with AVX-512 VNNI: `acc` plus the products of 32 signed byte pairs, four by four.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub fn dot_i8x32_vnni(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// Unsigned bytes `u` (0..=255) times signed bytes `y`, summed four by four into eight i32 lanes (AVX2).
///
/// The pairs are summed in i16 first, so `2 * u * |y|` must stay below 32768 (true for `u` < 128).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_u8i8x32(u: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
}

/// llama.cpp's x86 activation quantization of one block (see [`crate::legacy_common::quantize_act_block`]):
/// returns `(d, Σq)` and writes the 32 codes to `out`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn quantize_act_block(x: &[f32], out: &mut [i8; QK]) -> (f32, i32) {
    assert!(x.len() >= QK);
    // SAFETY: `x` holds 32 floats (assert above), read unaligned in four loads of eight.
    let v: [__m256; 4] = std::array::from_fn(|k| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) });
    let sign = _mm256_set1_ps(-0.0);
    let abs01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
    let abs23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
    let abs8 = _mm256_max_ps(abs01, abs23);
    let abs4 = _mm_max_ps(_mm256_castps256_ps128(abs8), _mm256_extractf128_ps(abs8, 1));
    let abs2 = _mm_max_ps(abs4, _mm_movehl_ps(abs4, abs4));
    let amax = _mm_cvtss_f32(_mm_max_ss(abs2, _mm_movehdup_ps(abs2)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let q: [__m256i; 4] = std::array::from_fn(|k| {
        let scaled = _mm256_mul_ps(v[k], id);
        _mm256_cvtps_epi32(_mm256_round_ps(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
    });
    let sum = hsum_i32x8(_mm256_add_epi32(
        _mm256_add_epi32(q[0], q[1]),
        _mm256_add_epi32(q[2], q[3]),
    ));
    // packs work within 128-bit lanes: 0..4 8..12 16..20 24..28 | 4..8 12..16 20..24 28..32 in 32-bit groups.
    let words = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    let ordered = _mm256_permutevar8x32_epi32(words, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `out` is 32 writable bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), ordered) };
    (d, sum)
}

/// Eight f16 fields (little-endian bytes at `field` of 8 consecutive blocks of `block_bytes` bytes at `blocks`) as
/// eight f32, through word inserts: cheaper here than a gather, and unlike word permutes of wide loads it keeps
/// LLVM from rebuilding the neighbouring block loads byte by byte.
///
/// # Safety
/// Bytes `field + k * block_bytes + {0, 1}` from `blocks` must be readable for `k` in 0..8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f16_fields8(blocks: *const u8, block_bytes: usize, field: usize) -> __m256 {
    // SAFETY: the caller's promise; unaligned 2-byte reads.
    let h = |k: usize| unsafe { blocks.add(field + k * block_bytes).cast::<i16>().read_unaligned() };
    _mm256_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)))
}

/// `Σ_b scale_b * Σ(lanes of block(w_b, a_b)) + Σ_b extra_b`: the loop shared by the legacy integer dot products,
/// in ggml's order (its AVX2 `vec_dot` and llamafile's tinyBLAS tiles, which llama.cpp takes for these formats at
/// every batch size), so that the results are bit for bit llama.cpp's (`tests/ggml_vec_dot.rs`).
///
/// `scales8` gives the scales `d_w * d_a` of 8 consecutive block pairs, `scale1` that of one pair (for the tail),
/// `block` the eight i32 partial sums of one pair's integer dot product (lane j: elements 4j..4j+4); `extra1` the
/// constant term of one pair (`m_w * s_a` for Q4_1/Q5_1).
///
/// Every block goes into one 8-lane accumulator by FMA, in order; the lanes are reduced as halves, quarters,
/// pairs; the constant terms are summed in order apart and added last.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_blocks<W, A>(
    w: &[W],
    a: &[A],
    scales8: impl Fn(&[W], &[A]) -> __m256,
    scale1: impl Fn(&W, &A) -> f32,
    block: impl Fn(&W, &A) -> __m256i,
    extra1: impl Fn(&W, &A) -> f32,
) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut extra = 0f32;
    let (w_main, a_main) = (w.chunks_exact(8), a.chunks_exact(8));
    let (w_tail, a_tail) = (w_main.remainder(), a_main.remainder());
    for (w8, a8) in w_main.zip(a_main) {
        let mut scales = [0f32; 8];
        // SAFETY: 8 writable floats.
        unsafe { _mm256_storeu_ps(scales.as_mut_ptr(), scales8(w8, a8)) };
        // Through memory on purpose: a broadcast from memory is a plain load, while LLVM's register shuffles
        // would compete with the dot product for the vector ports.
        let scales = std::hint::black_box(&scales);
        for k in 0..8 {
            let sums = _mm256_cvtepi32_ps(block(&w8[k], &a8[k]));
            acc = _mm256_fmadd_ps(sums, _mm256_broadcast_ss(&scales[k]), acc);
            extra += extra1(&w8[k], &a8[k]);
        }
    }
    for (wb, ab) in w_tail.iter().zip(a_tail) {
        let sums = _mm256_cvtepi32_ps(block(wb, ab));
        acc = _mm256_fmadd_ps(sums, _mm256_set1_ps(scale1(wb, ab)), acc);
        extra += extra1(wb, ab);
    }
    hsum_f32x8(acc) + extra
}

/// Stores `d * q + m` for 32 signed bytes `q` (bit-exact with the scalar `d * q as f32 + m`: a multiply, then an
/// add, no fused rounding). `m` is `None` for the formats without an offset.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn store_scaled_bytes(q: __m256i, d: __m256, m: Option<__m256>, out: &mut [f32]) {
    assert!(out.len() >= QK);
    let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
    for (h, half) in halves.into_iter().enumerate() {
        for (p, part) in [half, _mm_unpackhi_epi64(half, half)].into_iter().enumerate() {
            let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part)), d);
            let x = match m {
                Some(m) => _mm256_add_ps(scaled, m),
                None => scaled,
            };
            // SAFETY: 8 floats at 16h + 8p < 32 <= out.len() (assert above); unaligned store.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(16 * h + 8 * p), x) };
        }
    }
}
