//! The tile kernels ([`Kernels::vec_dot_x4`]: one weight row against four activation rows) held against four calls
//! of the scalar reference `vec_dot`, at every SIMD level this CPU runs.
//!
//! Tolerance as in `legacy_formats.rs`: the integer parts of the quantized dot products are exact, so two f32 sums
//! of the same per-block terms in different orders differ by at most `2 * k * eps * Σ|term|` (`k` = blocks, or
//! elements for F16, plus a few for the final reductions).

use quarrel_quant::tile::DotX4Fn;
use quarrel_quant::{dequantize_row_reference, f16, kernels, GgmlType, Kernels, SimdLevel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The formats with tile kernels tested here (Q4_K and Q6_K have theirs tested with the K-quant formats).
const FORMATS: [GgmlType; 1] = [GgmlType::F16];

/// Row lengths: one block, a few, not a multiple of the SIMD loops' strides, and long rows.
const LENGTHS: [usize; 8] = [32, 64, 96, 224, 288, 896, 1056, 4096];
/// Extra lengths for F16, whose "blocks" are single elements (SIMD tails).
const FLOAT_LENGTHS: [usize; 6] = [1, 7, 17, 33, 100, 1000];

fn kernels_at(ty: GgmlType, level: SimdLevel) -> Kernels {
    kernels(ty, level).unwrap_or_else(|| panic!("{ty} has kernels at {}", level.name()))
}

fn lengths(ty: GgmlType) -> Vec<usize> {
    let mut all = LENGTHS.to_vec();
    if !ty.is_quantized() {
        all.extend(FLOAT_LENGTHS);
    }
    all
}

fn row_bytes(ty: GgmlType, n: usize) -> usize {
    ty.row_bytes(n)
        .unwrap_or_else(|| panic!("{n} is a whole number of {ty} blocks"))
}

/// A random weight row: random bytes with finite f16 scales of either sign for the quantized formats (so Q8_0
/// values include -128), random finite halves of varied size for F16.
fn random_weights(ty: GgmlType, n: usize, rng: &mut StdRng) -> Vec<u8> {
    if ty == GgmlType::F16 {
        return (0..n)
            .flat_map(|_| {
                let x = rng.gen_range(-1.0f32..1.0) * 2f32.powi(rng.gen_range(-8..8));
                half::f16::from_f32(x).to_le_bytes()
            })
            .collect();
    }
    let mut bytes: Vec<u8> = (0..row_bytes(ty, n)).map(|_| rng.gen()).collect();
    for block in bytes.chunks_exact_mut(ty.block_bytes()) {
        let scale = rng.gen_range(0.001f32..1.0) * if rng.gen() { 1.0 } else { -1.0 };
        block[..2].copy_from_slice(&half::f16::from_f32(scale).to_le_bytes());
    }
    bytes
}

/// Random activations of varied size per block, some blocks all zero.
fn random_activations(n: usize, rng: &mut StdRng) -> Vec<f32> {
    let mut x = vec![0f32; n]; // [n]
    for block in x.chunks_mut(32) {
        let scale = if rng.gen_range(0..10) == 0 {
            0.0
        } else {
            2f32.powi(rng.gen_range(-6..6))
        };
        for v in block {
            *v = rng.gen_range(-1.0f32..1.0) * scale;
        }
    }
    x
}

fn dequantized(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n]; // [n]
    dequantize_row_reference(ty, bytes, &mut out).unwrap_or_else(|| panic!("{ty} dequantizes"));
    out
}

/// `Σ|w_i * a_i|` of the dequantized rows.
fn magnitude(k: &Kernels, w: &[u8], act: &[u8], n: usize) -> f64 {
    let (wf, af) = (dequantized(k.weight, w, n), dequantized(k.act, act, n));
    wf.iter().zip(&af).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum()
}

/// Four activation rows converted by the scalar reference, `stride` bytes apart: [4, stride].
fn activation_rows(k: &Kernels, n: usize, stride: usize, rng: &mut StdRng) -> Vec<u8> {
    let reference = kernels_at(k.weight, SimdLevel::Scalar);
    let mut rows = vec![0xA5u8; 4 * stride]; // [4, stride]
    for row in rows.chunks_exact_mut(stride) {
        (reference.quantize_act_row)(&random_activations(n, rng), &mut row[..row_bytes(k.act, n)]);
    }
    rows
}

/// The tile kernel of `ty` at `level`.
fn dot_x4_at(ty: GgmlType, level: SimdLevel) -> DotX4Fn {
    match ty {
        GgmlType::F16 => f16::dot_x4(level),
        _ => panic!("{ty} has no tile kernel"),
    }
}

#[test]
fn table_tile_kernels_are_the_tested_ones() {
    for level in SimdLevel::available() {
        let table = kernels_at(GgmlType::F16, level).vec_dot_x4;
        assert_eq!(
            table.map(|f| f as usize),
            Some(dot_x4_at(GgmlType::F16, level) as usize),
            "F16 {}",
            level.name()
        );
    }
}

#[test]
fn tile_kernels_match_four_scalar_dots_within_reordering_error() {
    let mut rng = StdRng::seed_from_u64(11);
    for ty in FORMATS {
        let reference = kernels_at(ty, SimdLevel::Scalar);
        for n in lengths(ty) {
            let act_bytes = row_bytes(reference.act, n);
            // Packed rows and rows with padding between them (the stride must be honoured).
            for stride in [act_bytes, act_bytes + 6] {
                let w = random_weights(ty, n, &mut rng);
                let acts = activation_rows(&reference, n, stride, &mut rng);
                let terms = if ty.is_quantized() { n / 32 } else { n } + 16;
                for level in SimdLevel::available() {
                    let dot_x4 = dot_x4_at(ty, level);
                    let mut got = [f32::NAN; 4];
                    dot_x4(n, &w, &acts, stride, &mut got);
                    for (t, &g) in got.iter().enumerate() {
                        let act = &acts[t * stride..t * stride + act_bytes];
                        let want = (reference.vec_dot)(n, &w, act) as f64;
                        let tol = 2.0 * terms as f64 * f32::EPSILON as f64 * magnitude(&reference, &w, act, n);
                        assert!(
                            (g as f64 - want).abs() <= tol,
                            "{ty} {} n={n} stride={stride} row {t}: {g} vs {want} (tol {tol})",
                            level.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn scalar_tile_kernel_is_bit_exact_with_scalar_dot() {
    let mut rng = StdRng::seed_from_u64(12);
    for ty in FORMATS {
        let reference = kernels_at(ty, SimdLevel::Scalar);
        let dot_x4 = dot_x4_at(ty, SimdLevel::Scalar);
        for n in lengths(ty) {
            let stride = row_bytes(reference.act, n);
            let w = random_weights(ty, n, &mut rng);
            let acts = activation_rows(&reference, n, stride, &mut rng);
            let mut got = [f32::NAN; 4];
            dot_x4(n, &w, &acts, stride, &mut got);
            for (t, g) in got.iter().enumerate() {
                let want = (reference.vec_dot)(n, &w, &acts[t * stride..(t + 1) * stride]);
                assert_eq!(g.to_bits(), want.to_bits(), "{ty} n={n} row {t}: {g} vs {want}");
            }
        }
    }
}
