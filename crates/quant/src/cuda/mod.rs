//! CUDA C sources of the formats, for the engine's CUDA backend to compile at run time (NVRTC). Each format's
//! device code lives beside its Rust file (`q4_k.cu` next to `q4_k.rs`); this module only hands them out, in the
//! order they must be concatenated.
//!
//! Every quantized format defines a `Fmt<Name>` struct with `BLOCK_ELEMS`, `BLOCK_BYTES` and
//! `load32(row, chunk, Chunk&)`, which unpacks the 32 elements `32*chunk..32*chunk+32` of a row into packed
//! 8-bit integers plus per-16-element scales and offsets (see `common.cuh`). Kernels are generic over that.
//! Rows of formats whose blocks are not 16-byte multiples lie regrouped on the GPU ([`regroup`]); their loaders
//! read that layout (`SCALAR_BYTES`, `rg_scalars`, `rg_array`).

use crate::GgmlType;

pub mod regroup;

/// Declarations every kernel needs (integer types, f16 conversions through PTX, warp reductions, [`Chunk`]).
pub const COMMON: &str = include_str!("common.cuh");

/// The formats' device code, in dependency order (Q5_1 uses Q5_0's bit spreading, Q5_K Q4_K's scale unpacking).
pub const FORMATS: [(&str, &str); 10] = [
    ("q4_0", include_str!("../q4_0.cu")),
    ("q4_1", include_str!("../q4_1.cu")),
    ("q5_0", include_str!("../q5_0.cu")),
    ("q5_1", include_str!("../q5_1.cu")),
    ("q8_0", include_str!("../q8_0.cu")),
    ("q2_k", include_str!("../q2_k.cu")),
    ("q3_k", include_str!("../q3_k.cu")),
    ("q4_k", include_str!("../q4_k.cu")),
    ("q5_k", include_str!("../q5_k.cu")),
    ("q6_k", include_str!("../q6_k.cu")),
];

/// The suffix of a weight format's kernels (`matvec1_q4_k`, `dequant_f16`), or `None` for formats that are not
/// weights (the activation formats).
pub fn kernel_suffix(ty: GgmlType) -> Option<&'static str> {
    Some(match ty {
        GgmlType::F32 => "f32",
        GgmlType::F16 => "f16",
        GgmlType::BF16 => "bf16",
        GgmlType::Q4_0 => "q4_0",
        GgmlType::Q4_1 => "q4_1",
        GgmlType::Q5_0 => "q5_0",
        GgmlType::Q5_1 => "q5_1",
        GgmlType::Q8_0 => "q8_0",
        GgmlType::Q2_K => "q2_k",
        GgmlType::Q3_K => "q3_k",
        GgmlType::Q4_K => "q4_k",
        GgmlType::Q5_K => "q5_k",
        GgmlType::Q6_K => "q6_k",
        GgmlType::Q8_1 | GgmlType::Q8_K => return None,
    })
}

/// Whether a weight format is a plain float format (activations stay f32) rather than an integer-quantized one
/// (activations are quantized to 8 bits per 32 elements).
pub fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// The suffix of the kernels that take `ty`'s rows against f32 activations: the float formats' own, and Q8_0's
/// float view (`FmtQ8_0::load8`, kernels `*_q8_0f`); `None` for formats whose products always take 8-bit
/// activations.
pub fn float_view_suffix(ty: GgmlType) -> Option<&'static str> {
    match ty {
        GgmlType::Q8_0 => Some("q8_0f"),
        _ if is_float(ty) => kernel_suffix(ty),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quantized_weight_format_has_device_code() {
        for ty in GgmlType::ALL {
            let Some(suffix) = kernel_suffix(ty) else { continue };
            if is_float(ty) {
                continue;
            }
            let (_, src) = FORMATS.iter().find(|(name, _)| *name == suffix).expect("source");
            let (elems, bytes) = (ty.block_elems(), ty.block_bytes());
            assert!(
                src.contains(&format!("BLOCK_BYTES = {bytes};")),
                "{suffix}: block bytes {bytes}"
            );
            assert!(
                src.contains(&format!("BLOCK_ELEMS = {elems};")),
                "{suffix}: block elems {elems}"
            );
            // The device code reads a regrouped row with the host's split of the block.
            match regroup::block_split(ty) {
                Some(split) => assert!(
                    src.contains(&format!("SCALAR_BYTES = {};", split.scalar_bytes())),
                    "{suffix}: scalar bytes {}",
                    split.scalar_bytes()
                ),
                None => assert!(!src.contains("SCALAR_BYTES"), "{suffix} is not regrouped"),
            }
        }
    }
}
