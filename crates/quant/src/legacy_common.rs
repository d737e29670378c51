//! Pieces shared by the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1) and the plain float
//! formats: byte views of block rows, f16 fields, length checks, the round-to-nearest quantizers of ggml's
//! reference implementation, and the SIMD level clamp that keeps the `unsafe` SIMD calls sound.

use crate::SimdLevel;

/// Elements in one block of the legacy formats.
pub const QK: usize = 32;

/// [`crate::Kernels::dequantize_row`]'s type.
pub type DequantizeFn = fn(&[u8], &mut [f32]);
/// [`crate::Kernels::vec_dot`]'s type.
pub type DotFn = fn(usize, &[u8], &[u8]) -> f32;

/// A block type that is plain bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]`, have alignment 1, no padding, and every bit pattern is a valid value, so any
/// byte slice of the right length may be viewed as a slice of them.
pub unsafe trait PlainBlock: Sized + Copy {}

/// Views the first `n_blocks` blocks of `bytes`.
///
/// # Panics
/// When `bytes` holds fewer than `n_blocks` blocks: the caller broke the kernel contract (row lengths come from
/// validated tensor shapes, never straight from a file).
pub fn view_blocks<B: PlainBlock>(bytes: &[u8], n_blocks: usize) -> &[B] {
    const { assert!(align_of::<B>() == 1) };
    let need = n_blocks * size_of::<B>();
    assert!(
        bytes.len() >= need,
        "row of {} bytes is shorter than {n_blocks} blocks of {} bytes",
        bytes.len(),
        size_of::<B>()
    );
    // SAFETY: B is plain bytes with alignment 1 (PlainBlock contract), and `need` bytes exist (assert above).
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n_blocks) }
}

/// Mutable twin of [`view_blocks`].
pub fn view_blocks_mut<B: PlainBlock>(bytes: &mut [u8], n_blocks: usize) -> &mut [B] {
    const { assert!(align_of::<B>() == 1) };
    let need = n_blocks * size_of::<B>();
    assert!(
        bytes.len() >= need,
        "row of {} bytes is shorter than {n_blocks} blocks of {} bytes",
        bytes.len(),
        size_of::<B>()
    );
    // SAFETY: as in `view_blocks`; the borrow is unique because `bytes` is.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n_blocks) }
}

/// Number of blocks in a row of `n` elements.
///
/// # Panics
/// When `n` is not a whole number of blocks (a caller bug: tensor shapes are checked at load).
pub fn blocks_in(n: usize) -> usize {
    assert!(n.is_multiple_of(QK), "row length {n} is not a multiple of {QK}");
    n / QK
}

/// Checks that a float row of `n` elements fits in `bytes` at `elem_bytes` per element.
///
/// # Panics
/// When it does not (a caller bug).
pub fn check_float_row(n: usize, bytes: &[u8], elem_bytes: usize) {
    assert!(
        bytes.len() >= n * elem_bytes,
        "row of {} bytes is shorter than {n} elements of {elem_bytes} bytes",
        bytes.len()
    );
}

/// An f16 stored as two little-endian bytes, as f32.
pub fn f16_le(bits: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bits).to_f32()
}

/// An f32 rounded to the nearest f16 (ties to even), as two little-endian bytes.
pub fn f16_le_from(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

/// The SIMD level actually usable: `requested`, lowered to what this CPU runs. The SIMD kernels are only reached
/// through this clamp, which is what makes their `unsafe` calls sound.
pub fn usable(requested: SimdLevel) -> SimdLevel {
    requested.min(SimdLevel::detect())
}

/// Byte `j` of a packed nibble array holds element `j` in its low nibble and element `j + 16` in its high one.
pub fn pack_nibbles(q: &[u8; QK]) -> [u8; QK / 2] {
    std::array::from_fn(|j| (q[j] & 0x0F) | ((q[j + QK / 2] & 0x0F) << 4))
}

/// Inverse of [`pack_nibbles`].
pub fn unpack_nibbles(qs: &[u8; QK / 2]) -> [u8; QK] {
    std::array::from_fn(|i| if i < QK / 2 { qs[i] & 0x0F } else { qs[i - QK / 2] >> 4 })
}

/// Bit `i` of the returned word is bit 4 of `q[i]` (the fifth bit of the 5-bit formats).
pub fn pack_fifth_bits(q: &[u8; QK]) -> [u8; 4] {
    let word = q
        .iter()
        .enumerate()
        .fold(0u32, |w, (i, &v)| w | ((((v >> 4) & 1) as u32) << i));
    word.to_le_bytes()
}

/// `unpack_nibbles` with the fifth bits of `qh` added: codes in 0..32.
pub fn unpack_five_bits(qh: [u8; 4], qs: &[u8; QK / 2]) -> [u8; QK] {
    let high = u32::from_le_bytes(qh);
    let low = unpack_nibbles(qs);
    std::array::from_fn(|i| low[i] | ((((high >> i) & 1) as u8) << 4))
}

/// Symmetric round-to-nearest quantization of one block to `bits`-bit codes, as ggml's reference does for
/// Q4_0/Q5_0: the element of largest magnitude (the first, on ties) maps to code 0 (`-2^(bits-1)`), so
/// `x ≈ d * (code - 2^(bits-1))` with `d = max / -2^(bits-1)`. Returns `(d, codes)` with codes in `0..2^bits`.
pub fn quantize_block_symmetric(x: &[f32], bits: u32) -> (f32, [u8; QK]) {
    let offset = (1u32 << (bits - 1)) as f32;
    let top = ((1u32 << bits) - 1) as u8;
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -offset;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // `as i8` truncates toward zero, as C's `(int8_t)` conversion does; the sum is in 0.5..=2^bits + 0.5.
    let codes = std::array::from_fn(|i| ((x[i] * id + (offset + 0.5)) as i8 as u8).min(top));
    (d, codes)
}

/// Affine round-to-nearest quantization of one block to `bits`-bit codes, as ggml's reference does for
/// Q4_1/Q5_1: `x ≈ d * code + min` with `d = (max - min) / (2^bits - 1)`. Returns `(d, min, codes)`.
pub fn quantize_block_affine(x: &[f32], bits: u32) -> (f32, f32, [u8; QK]) {
    let top = ((1u32 << bits) - 1) as u8;
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        min = min.min(v);
        max = max.max(v);
    }
    let d = (max - min) / top as f32;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let codes = std::array::from_fn(|i| (((x[i] - min) * id + 0.5) as i8 as u8).min(top));
    (d, min, codes)
}

/// llama.cpp's activation quantization on x86 (its AVX2 `quantize_row_q8_0`/`q8_1`): `d = amax / 127`,
/// `q = round_ties_even(x * (127 / amax))`. Returns `(d, q)` with `q` in `-127..=127`.
///
/// This differs in the last bit now and then from the weight quantizer of [`crate::q8_0::quantize_row_scalar`]
/// (which multiplies by `1 / d` and rounds ties away from zero, as ggml's reference and gguf-py do); activations
/// follow the x86 route because that is what llama.cpp computes with on the machines quarrel is compared on.
pub fn quantize_act_block(x: &[f32]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let q = std::array::from_fn(|i| (x[i] * id).round_ties_even() as i8);
    (d, q)
}
