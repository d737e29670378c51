//! x86 pieces shared by the K-quant kernels: prefetching, the scale-multiply-accumulate step, horizontal sums,
//! shuffle controls, Q4_K/Q5_K scale unpacking and the float accumulators that follow ggml's summation order.

use std::arch::x86_64::*;

/// An f16 stored as two little-endian bytes, converted with F16C (the `half` crate's portable conversion is
/// an out-of-line call here).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16_le(bits: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes(bits) as i32)))
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
    let ahead = (block as *const B).cast::<i8>().wrapping_add(PREFETCH_BYTES);
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

/// `[m0 p0 + m1 p1, m2 p2 + m3 p3, ..]` with `p_j = bsum[2j] + bsum[2j+1]` (the activation sum of sub-block
/// `j`): the Q4_K/Q5_K min term of one block in four i32 lanes, grouped as ggml groups it. `scales_mins` is
/// [`scales_mins_q4k`]'s output (low 128 bits used).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn min_dots_q4k(scales_mins: __m256i, bsums: &[[u8; 2]; 16]) -> __m128i {
    const MINS_I16: [i8; 16] = [8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1];
    // SAFETY: MINS_I16 is 16 bytes, bsums 32.
    let (control, bsums) = unsafe {
        (
            _mm_loadu_si128(MINS_I16.as_ptr().cast()),
            _mm256_loadu_si256(bsums.as_ptr().cast()),
        )
    };
    let mins = _mm_shuffle_epi8(_mm256_castsi256_si128(scales_mins), control);
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256::<1>(bsums));
    _mm_madd_epi16(mins, pairs)
}

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
    pub fn add_block(&mut self, sum: __m256i, d: __m128, scales_mins: __m256i, bsums: &[[u8; 2]; 16]) {
        let min_dot = min_dots_q4k(scales_mins, bsums);
        self.main = _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(sum), self.main);
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
    pub fn add_block(&mut self, sum: __m256i, d: __m128, scales_mins: __m256i, bsums: &[[u8; 2]; 16]) {
        let min_dot = min_dots_q4k(scales_mins, bsums);
        let total = _mm_hadd_epi32(_mm_hadd_epi32(min_dot, min_dot), min_dot);
        self.main = _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(sum), self.main);
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
