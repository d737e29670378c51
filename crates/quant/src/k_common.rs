//! Pieces shared by the K-quant formats (Q2_K..Q6_K and their Q8_K activations): super-blocks of [`QK_K`]
//! elements, byte views of block rows, f16 fields, the packed 6-bit scales of Q4_K/Q5_K, the simple
//! round-to-nearest quantizers, and the SIMD level clamp that keeps the `unsafe` SIMD calls sound.

use crate::SimdLevel;

/// [`crate::Kernels::dequantize_row`]'s type.
pub type DequantizeFn = fn(&[u8], &mut [f32]);
/// [`crate::Kernels::vec_dot`]'s type.
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;

/// [`crate::Kernels::vec_dot_x4`]'s type.
pub type DotX4Fn =
    fn(n: usize, weight_row: &[u8], act_rows: &[u8], act_row_bytes: usize, out: &mut [f32; 4]);

/// The four activation rows of a tile (`act_rows[t * act_row_bytes..]`), `n_blocks` blocks each.
///
/// # Panics
/// When `act_rows` is shorter than four rows (a caller bug).
pub fn act_rows4<B: ByteBlock>(
    act_rows: &[u8],
    act_row_bytes: usize,
    n_blocks: usize,
) -> [&[B]; 4] {
    assert!(
        act_rows.len() >= 3 * act_row_bytes + n_blocks * size_of::<B>(),
        "{} bytes hold fewer than 4 activation rows of {act_row_bytes} bytes",
        act_rows.len()
    );
    std::array::from_fn(|t| blocks(&act_rows[t * act_row_bytes..], n_blocks))
}

/// Elements in one K-quant super-block.
pub const QK_K: usize = 256;

/// A block type that is plain bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]`, have alignment 1, no padding, and every bit pattern is a valid value, so any
/// byte slice of the right length may be viewed as a slice of them.
pub unsafe trait ByteBlock: Sized + Copy {
    /// The block's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: a ByteBlock is size_of::<Self>() initialized bytes with no padding.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }
}

/// Views `bytes` as `n_blocks` blocks.
///
/// # Panics
/// When `bytes` holds fewer than `n_blocks` blocks: the caller broke the kernel contract (row lengths come from
/// validated tensor shapes, never straight from a file).
pub fn blocks<B: ByteBlock>(bytes: &[u8], n_blocks: usize) -> &[B] {
    const { assert!(align_of::<B>() == 1) };
    let need = n_blocks * size_of::<B>();
    assert!(
        bytes.len() >= need,
        "row of {} bytes is shorter than {n_blocks} blocks of {} bytes",
        bytes.len(),
        size_of::<B>()
    );
    // SAFETY: B is plain bytes with alignment 1 (ByteBlock contract + the assert above), and `need` bytes exist.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n_blocks) }
}

/// Mutable twin of [`blocks`].
pub fn blocks_mut<B: ByteBlock>(bytes: &mut [u8], n_blocks: usize) -> &mut [B] {
    const { assert!(align_of::<B>() == 1) };
    let need = n_blocks * size_of::<B>();
    assert!(
        bytes.len() >= need,
        "row of {} bytes is shorter than {n_blocks} blocks of {} bytes",
        bytes.len(),
        size_of::<B>()
    );
    // SAFETY: as in `blocks`; the borrow is unique because `bytes` is.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n_blocks) }
}

/// Number of super-blocks in a row of `n` elements.
///
/// # Panics
/// When `n` is not a whole number of super-blocks (a caller bug: tensor shapes are checked at load).
pub fn super_blocks(n: usize) -> usize {
    // (`usize::is_multiple_of` is newer than the workspace's minimum Rust.)
    assert_eq!(n % QK_K, 0, "row length {n} is not a multiple of {QK_K}");
    n / QK_K
}

/// An f16 stored as two little-endian bytes.
pub fn f16_le(bits: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bits).to_f32()
}

/// The SIMD level actually usable: `requested`, lowered to what this CPU runs. The SIMD kernels are only reached
/// through this clamp, which is what makes their `unsafe` calls sound.
pub fn usable(requested: SimdLevel) -> SimdLevel {
    requested.min(SimdLevel::detect())
}

/// Unpacks the twelve bytes of 6-bit scales and mins of Q4_K/Q5_K into eight scales and eight mins.
///
/// Bytes 0..4 hold scales 0..3 in their low six bits, bytes 4..8 mins 0..3; bytes 8..12 hold the low nibbles of
/// scales 4..7 (low half) and mins 4..7 (high half), whose top two bits sit in the spare top bits of bytes 0..4
/// (scales) and 4..8 (mins).
pub fn unpack_scales_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..4 {
        scales[j] = packed[j] & 63;
        mins[j] = packed[j + 4] & 63;
        scales[j + 4] = (packed[j + 8] & 0x0F) | ((packed[j] >> 6) << 4);
        mins[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4);
    }
    (scales, mins)
}

/// Inverse of [`unpack_scales_mins`]; every value must be below 64.
pub fn pack_scales_mins(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = (scales[j] & 63) | ((scales[j + 4] >> 4) << 6);
        packed[j + 4] = (mins[j] & 63) | ((mins[j + 4] >> 4) << 6);
        packed[j + 8] = (scales[j + 4] & 0x0F) | ((mins[j + 4] & 0x0F) << 4);
    }
    packed
}

/// The smallest f16 not below `x` (for `x >= 0`; saturates at the largest finite f16). Super-block scales are
/// rounded up so that sub-block scales computed from them never need clamping.
pub fn f16_at_least(x: f32) -> half::f16 {
    if x.is_nan() || x <= 0.0 {
        return half::f16::ZERO;
    }
    let h = half::f16::from_f32(x);
    if h.is_infinite() {
        return half::f16::MAX;
    }
    if h.to_f32() >= x {
        h
    } else {
        half::f16::from_bits(h.to_bits() + 1)
    }
}

/// Affine quantization of one super-block: `x[i] ≈ d * scale[j] * q[i] - dmin * min[j]` with sub-blocks `j` of
/// `SUB` elements, `q` in `0..=q_max` and scales/mins in `0..=scale_max`.
pub struct Affine<const N_SUB: usize> {
    pub d: half::f16,
    pub dmin: half::f16,
    pub scales: [u8; N_SUB],
    pub mins: [u8; N_SUB],
    /// [QK_K]
    pub q: [u8; QK_K],
}

/// Round-to-nearest affine quantization (no search, no importance weights).
///
/// Per sub-block the offset `dmin * min` is rounded up to cover the smallest value (or 0), the step
/// `d * scale` rounded up to cover the largest: no element is clamped, so each is off by at most half a step.
pub fn quantize_affine<const N_SUB: usize>(x: &[f32], q_max: u8, scale_max: u8) -> Affine<N_SUB> {
    let sub = QK_K / N_SUB;
    let mut lows = [0f32; N_SUB];
    let mut highs = [0f32; N_SUB];
    for j in 0..N_SUB {
        let part = &x[j * sub..(j + 1) * sub];
        lows[j] = part.iter().fold(0f32, |a, &v| a.min(v));
        highs[j] = part
            .iter()
            .fold(f32::NEG_INFINITY, |a, &v| a.max(v))
            .max(lows[j]);
    }
    let dmin = f16_at_least(lows.iter().fold(0f32, |a, &v| a.max(-v)) / scale_max as f32);
    let dmin_f = dmin.to_f32();
    let mut mins = [0u8; N_SUB];
    let mut offsets = [0f32; N_SUB];
    for j in 0..N_SUB {
        if dmin_f > 0.0 {
            mins[j] = ((-lows[j] / dmin_f).ceil() as u8).min(scale_max);
        }
        offsets[j] = dmin_f * mins[j] as f32;
    }
    let mut step_need = [0f32; N_SUB];
    for j in 0..N_SUB {
        step_need[j] = (highs[j] + offsets[j]).max(0.0) / q_max as f32;
    }
    let d = f16_at_least(step_need.iter().fold(0f32, |a, &v| a.max(v)) / scale_max as f32);
    let d_f = d.to_f32();
    let mut scales = [0u8; N_SUB];
    let mut q = [0u8; QK_K];
    for j in 0..N_SUB {
        if d_f > 0.0 {
            scales[j] = ((step_need[j] / d_f).ceil() as u8).min(scale_max);
        }
        let step = d_f * scales[j] as f32;
        if step > 0.0 {
            for i in j * sub..(j + 1) * sub {
                q[i] = ((x[i] + offsets[j]) / step)
                    .round()
                    .clamp(0.0, q_max as f32) as u8;
            }
        }
    }
    Affine {
        d,
        dmin,
        scales,
        mins,
        q,
    }
}

/// Symmetric quantization of one super-block: `x[i] ≈ d * scale[k] * q[i]` with sub-blocks of 16, `q` in
/// `-q_neg..=q_neg - 1` and signed scales in `-scale_max..=scale_max`.
pub struct Symmetric {
    pub d: half::f16,
    /// [QK_K / 16]
    pub scales: [i8; QK_K / 16],
    /// [QK_K]
    pub q: [i8; QK_K],
}

/// Round-to-nearest symmetric quantization (no search, no importance weights).
///
/// Each sub-block's largest-magnitude value maps to `-q_neg` (the longer side of the range); its step is
/// rounded up in magnitude, so only a value of the opposite sign and equal magnitude gets clamped (by one step).
pub fn quantize_symmetric(x: &[f32], q_neg: i8, scale_max: i8) -> Symmetric {
    let mut want = [0f32; QK_K / 16];
    for (k, part) in x.chunks_exact(16).enumerate() {
        let extreme = part
            .iter()
            .fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
        want[k] = extreme / -(q_neg as f32);
    }
    let d = f16_at_least(want.iter().fold(0f32, |a, &v| a.max(v.abs())) / scale_max as f32);
    let d_f = d.to_f32();
    let mut scales = [0i8; QK_K / 16];
    let mut q = [0i8; QK_K];
    for (k, part) in x.chunks_exact(16).enumerate() {
        if d_f > 0.0 {
            let magnitude = (want[k].abs() / d_f).ceil().min(scale_max as f32);
            scales[k] = (magnitude as i8) * if want[k] < 0.0 { -1 } else { 1 };
        }
        let step = d_f * scales[k] as f32;
        if step != 0.0 {
            for (i, &v) in part.iter().enumerate() {
                q[16 * k + i] = (v / step)
                    .round()
                    .clamp(-(q_neg as f32), (q_neg - 1) as f32)
                    as i8;
            }
        }
    }
    Symmetric { d, scales, q }
}

/// Horizontal sums and shuffles used by the x86 kernels of several formats.
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::*;

    /// An f16 stored as two little-endian bytes, converted with F16C (the `half` crate's portable conversion is
    /// an out-of-line call here).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn f16_le(bits: [u8; 2]) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            u16::from_le_bytes(bits) as i32
        )))
    }

    /// How far ahead of the block being read the kernels prefetch weights. Hardware prefetchers alone leave a
    /// single thread well short of memory bandwidth here (measured: Q4_K from memory ~6 GB/s without, ~9 with).
    pub const PREFETCH_BYTES: usize = 1024;

    /// Prefetches the cache lines of the bytes [`PREFETCH_BYTES`] past `block`. Rows lie back to back in a
    /// weight matrix, so near a row's end this warms the next row; past the matrix it only wastes a hint (a
    /// prefetch never faults, and the address is never dereferenced).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn prefetch_ahead<B>(block: &B) {
        let ahead = (block as *const B)
            .cast::<i8>()
            .wrapping_add(PREFETCH_BYTES);
        let mut offset = 0;
        while offset < size_of::<B>() {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(offset));
            offset += 64;
        }
    }

    /// `sum + madd(dot, scale)`: i16 pairs multiplied and added into i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn madd_add(sum: __m256i, dot: __m256i, scale: __m256i) -> __m256i {
        _mm256_add_epi32(sum, _mm256_madd_epi16(dot, scale))
    }

    /// [`madd_add`] in one AVX-512 VNNI `vpdpwssd`. Written as inline assembly because LLVM's generic x86-64
    /// tuning splits the intrinsic back into `vpmaddwd` + `vpaddd`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx512vnni")]
    pub fn dpwssd(sum: __m256i, dot: __m256i, scale: __m256i) -> __m256i {
        let mut sum = sum;
        // SAFETY: a register-only instruction the enabled features provide.
        unsafe {
            std::arch::asm!(
                "vpdpwssd {sum:y}, {dot:y}, {scale:y}",
                sum = inout(zmm_reg) sum,
                dot = in(zmm_reg) dot,
                scale = in(zmm_reg) scale,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        sum
    }

    /// Sum of the eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn hsum_ps(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let one = _mm_add_ss(pair, _mm_movehdup_ps(pair));
        _mm_cvtss_f32(one)
    }

    /// Shuffle control that copies i16 lane `lane_lo` across the low 128 bits and `lane_hi` across the high 128
    /// bits (lanes index within their own 128-bit half).
    pub const fn broadcast_epi16_control(lane_lo: u8, lane_hi: u8) -> [u8; 32] {
        let mut control = [0u8; 32];
        let mut i = 0;
        while i < 16 {
            control[i] = 2 * lane_lo + (i as u8 & 1);
            control[16 + i] = 2 * lane_hi + (i as u8 & 1);
            i += 1;
        }
        control
    }

    /// Shuffle control that turns byte `byte_lo` (low 128 bits) and `byte_hi` (high 128 bits) into zero-extended
    /// i16 copies across their half.
    pub const fn broadcast_u8_as_epi16_control(byte_lo: u8, byte_hi: u8) -> [u8; 32] {
        let mut control = [0x80u8; 32];
        let mut i = 0;
        while i < 16 {
            control[i] = byte_lo;
            control[16 + i] = byte_hi;
            i += 2;
        }
        control
    }

    /// The unpacked scales (bytes 0..8) and mins (bytes 8..16) of Q4_K/Q5_K: the vector twin of
    /// `unpack_scales_mins`, reading the 12 packed bytes from the start of `packed` (the rest is ignored).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn scales_mins_q4k(packed: &[u8; 16]) -> __m128i {
        // SAFETY: `packed` is 16 readable bytes.
        let packed = unsafe { _mm_loadu_si128(packed.as_ptr().cast()) };
        // [bytes 0..4, 8..12, 4..8, 8..12]: the low bits of scales 0..3, scales 4..7, mins 0..3, mins 4..7.
        let low_src = _mm_shuffle_epi8(
            packed,
            _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11),
        );
        let low = _mm_and_si128(
            _mm_srlv_epi32(low_src, _mm_setr_epi32(0, 0, 0, 4)),
            _mm_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F),
        );
        // The top two bits of scales 4..7 (mins 4..7) are bits 6..7 of bytes 0..4 (4..8), moved to bits 4..5.
        let high_src = _mm_shuffle_epi8(
            packed,
            _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7),
        );
        let high = _mm_and_si128(_mm_srli_epi16::<2>(high_src), _mm_set1_epi8(0x30));
        _mm_or_si128(low, high)
    }

    /// For [`scales_mins_q4k`]'s output: control `j` copies scale byte `j` into zero-extended i16 lanes across the whole vector.
    pub const Q4K_SCALE_CONTROLS: [[u8; 32]; 8] = {
        let mut c = [[0u8; 32]; 8];
        let mut j = 0;
        while j < 8 {
            c[j] = broadcast_u8_as_epi16_control(j as u8, j as u8);
            j += 1;
        }
        c
    };

    /// The accumulators of the Q4_K/Q5_K dots, summed in the order ggml's x86 `vec_dot` sums them, so that
    /// the results are llama.cpp's bit for bit: eight lanes of `d * d8 * Σ scale[j] * dot[j]`, four lanes of
    /// `dmin * d8 * Σ min[j] * (bsum[2j] + bsum[2j+1])` (pairs of sub-blocks per lane), reduced separately.
    #[derive(Clone, Copy)]
    pub struct ScaleMinAcc {
        main: __m256,
        mins: __m128,
    }

    impl ScaleMinAcc {
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        pub fn new() -> Self {
            Self {
                main: _mm256_setzero_ps(),
                mins: _mm_setzero_ps(),
            }
        }

        /// Adds one block: `sum` is its `Σ scale[j] * dot[j]` in eight i32 lanes, `d` holds
        /// `[d * d8, dmin * d8, _, _]`, `scales_mins` is [`scales_mins_q4k`]'s output (low 128 bits used).
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        pub fn add_block(
            &mut self,
            sum: __m256i,
            d: __m128,
            scales_mins: __m256i,
            bsums: &[[u8; 2]; 16],
        ) {
            const MINS_I16: [i8; 16] =
                [8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1];
            // SAFETY: MINS_I16 is 16 bytes, bsums 32.
            let (control, bsums) = unsafe {
                (
                    _mm_loadu_si128(MINS_I16.as_ptr().cast()),
                    _mm256_loadu_si256(bsums.as_ptr().cast()),
                )
            };
            let mins = _mm_shuffle_epi8(_mm256_castsi256_si128(scales_mins), control);
            let pairs = _mm_hadd_epi16(
                _mm256_castsi256_si128(bsums),
                _mm256_extracti128_si256::<1>(bsums),
            );
            let min_dot = _mm_madd_epi16(mins, pairs);
            self.main =
                _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(sum), self.main);
            let dmin = _mm_permute_ps::<0b01_01_01_01>(d);
            self.mins = _mm_fmadd_ps(dmin, _mm_cvtepi32_ps(min_dot), self.mins);
        }

        /// The dot product.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        pub fn total(self) -> f32 {
            let pair = _mm_add_ps(self.mins, _mm_movehl_ps(self.mins, self.mins));
            let mins = _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
            hsum_ps(self.main) - mins
        }
    }

    /// [`ScaleMinAcc`] for Q5_K, whose ggml kernel sums each block's min term as one integer and accumulates
    /// `dmin * d8 * that` in a scalar.
    #[derive(Clone, Copy)]
    pub struct ScaleMinAccQ5 {
        main: __m256,
        mins: f32,
    }

    impl ScaleMinAccQ5 {
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        pub fn new() -> Self {
            Self {
                main: _mm256_setzero_ps(),
                mins: 0.0,
            }
        }

        /// As [`ScaleMinAcc::add_block`].
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        pub fn add_block(
            &mut self,
            sum: __m256i,
            d: __m128,
            scales_mins: __m256i,
            bsums: &[[u8; 2]; 16],
        ) {
            const MINS_I16: [i8; 16] =
                [8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1];
            // SAFETY: MINS_I16 is 16 bytes, bsums 32.
            let (control, bsums) = unsafe {
                (
                    _mm_loadu_si128(MINS_I16.as_ptr().cast()),
                    _mm256_loadu_si256(bsums.as_ptr().cast()),
                )
            };
            let mins = _mm_shuffle_epi8(_mm256_castsi256_si128(scales_mins), control);
            let pairs = _mm_hadd_epi16(
                _mm256_castsi256_si128(bsums),
                _mm256_extracti128_si256::<1>(bsums),
            );
            let min_dot = _mm_madd_epi16(mins, pairs);
            let total = _mm_hadd_epi32(_mm_hadd_epi32(min_dot, min_dot), min_dot);
            self.main =
                _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(sum), self.main);
            let dmin = _mm_cvtss_f32(_mm_movehdup_ps(d));
            // A fused multiply-add, as C compilers contract ggml's `summs += dmin * sum`.
            self.mins = dmin.mul_add(_mm_cvtsi128_si32(total) as f32, self.mins);
        }

        /// The dot product.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        pub fn total(self) -> f32 {
            hsum_ps(self.main) - self.mins
        }
    }

    /// For formats with sixteen sub-blocks of 16 whose i16 scales sit in both 128-bit halves of a vector (the
    /// eight of one half-block): control `j` copies scale `2j` across the low 128 bits and `2j + 1` across the
    /// high 128 bits, meeting `maddubs` output of elements `32j..32j + 32`.
    pub const SIXTEENTHS_CONTROLS: [[u8; 32]; 4] = {
        let mut c = [[0u8; 32]; 4];
        let mut j = 0;
        while j < 4 {
            c[j] = broadcast_epi16_control(2 * j as u8, 2 * j as u8 + 1);
            j += 1;
        }
        c
    };

    /// Loads 32 bytes from a shuffle-control table.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn load_control(control: &[u8; 32]) -> __m256i {
        // SAFETY: `control` is 32 readable bytes; loadu has no alignment need.
        unsafe { _mm256_loadu_si256(control.as_ptr().cast()) }
    }
}
