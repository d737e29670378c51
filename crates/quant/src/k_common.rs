//! Pieces shared by the K-quant formats (Q2_K..Q6_K and their Q8_K activations): super-blocks of [`QK_K`]
//! elements, byte views of block rows, f16 fields, the packed 6-bit scales of Q4_K/Q5_K, the simple
//! round-to-nearest quantizers, and the SIMD level clamp that keeps the `unsafe` SIMD calls sound.

use crate::SimdLevel;

/// [`crate::Kernels::dequantize_row`]'s type.
pub type DequantizeFn = fn(&[u8], &mut [f32]);
/// [`crate::Kernels::vec_dot`]'s type.
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;

/// The four activation rows of a tile (`act_rows[t * act_row_bytes..]`), `n_blocks` blocks each.
///
/// # Panics
/// When `act_rows` is shorter than four rows (a caller bug).
pub fn act_rows4<B: ByteBlock>(act_rows: &[u8], act_row_bytes: usize, n_blocks: usize) -> [&[B]; 4] {
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

mod quantize;
pub use quantize::{quantize_affine, quantize_symmetric};

#[cfg(target_arch = "x86_64")]
pub mod x86;
