//! Tensor formats. One file per format holds its `#[repr(C)]` block (with a compile-time size assert), the scalar
//! reference dequantize/dot, and the SIMD versions chosen at run time. The [`Kernels`] table is the only thing the
//! engine sees.
//!
//! Weights stay in their GGUF format. A matrix product quantizes the activations once into the weight format's
//! partner format ([`Kernels::act`]: Q8_0, Q8_1 or Q8_K for the quantized formats, F32 for plain floats) and then
//! takes integer dot products, as llama.cpp does.

pub use gguf::GgmlType;

mod simd;
pub use simd::SimdLevel;

mod legacy_common;
#[cfg(target_arch = "x86_64")]
mod x86_common;

mod k_common;

pub mod cuda;
pub mod gemm;
pub mod tile;

pub mod bf16;
pub mod f16;
pub mod f32;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

/// The kernels of one weight format at one SIMD level.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// The weight format these kernels read.
    pub weight: GgmlType,
    /// The format activations are converted to before [`Kernels::vec_dot`].
    pub act: GgmlType,
    /// Dequantizes one row: `src` holds `dst.len() / block_elems` whole blocks.
    pub dequantize_row: fn(src: &[u8], dst: &mut [f32]),
    /// Converts one activation row of `src.len()` floats into `act` blocks in `dst`.
    pub quantize_act_row: fn(src: &[f32], dst: &mut [u8]),
    /// Dot product of one weight row and one converted activation row, both of `n` elements.
    pub vec_dot: fn(n: usize, weight_row: &[u8], act_row: &[u8]) -> f32,
    /// One weight row against four consecutive converted activation rows (`act_rows[t * act_row_bytes..]`, `t` in
    /// 0..4): `out[t]` is what [`Kernels::vec_dot`] gives for row `t`, up to float summation order. Each weight block
    /// is unpacked once for the four rows. `None` where the format has no tile kernel (use `vec_dot`).
    pub vec_dot_x4: Option<tile::DotX4Fn>,
}

/// The kernels for `weight` at `simd` (falling back to lower levels where a format has no faster version),
/// or `None` when the format cannot be used as a weight.
pub fn kernels(weight: GgmlType, simd: SimdLevel) -> Option<Kernels> {
    match weight {
        GgmlType::F32 => f32::kernels(simd),
        GgmlType::F16 => f16::kernels(simd),
        GgmlType::BF16 => bf16::kernels(simd),
        GgmlType::Q4_0 => q4_0::kernels(simd),
        GgmlType::Q4_1 => q4_1::kernels(simd),
        GgmlType::Q5_0 => q5_0::kernels(simd),
        GgmlType::Q5_1 => q5_1::kernels(simd),
        GgmlType::Q8_0 => q8_0::kernels(simd),
        GgmlType::Q2_K => q2_k::kernels(simd),
        GgmlType::Q3_K => q3_k::kernels(simd),
        GgmlType::Q4_K => q4_k::kernels(simd),
        GgmlType::Q5_K => q5_k::kernels(simd),
        GgmlType::Q6_K => q6_k::kernels(simd),
        GgmlType::Q8_1 | GgmlType::Q8_K => None,
    }
}

/// Dequantizes a row of any known format (activation formats included) with the scalar reference.
pub fn dequantize_row_reference(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Option<()> {
    match ty {
        GgmlType::Q8_1 => q8_1::dequantize_row_scalar(src, dst),
        GgmlType::Q8_K => q8_k::dequantize_row_scalar(src, dst),
        _ => (kernels(ty, SimdLevel::Scalar)?.dequantize_row)(src, dst),
    }
    Some(())
}
