//! The GEMM held against the per-pair reference, the panels against dequantization, and the SIMD microkernels
//! against the scalar ones.
//!
//! Tolerances:
//! - Panels: `sw * u + mw` is two roundings away from the dequantized value `x` (whose own expression rounds
//!   once or twice), so `|Δ| <= 4 eps * (|sw * u| + |mw|)`.
//! - GEMM vs `vec_dot_scalar`: the integer parts are exact in both; the f32 sums of the same terms differ in order
//!   and grouping (per 4-lane here, per block there, plus the correction terms), so
//!   `|Δ| <= 1e-5 * Σ_i |w_i a_i| + 1e-6` with `w`, `a` the dequantized values (about `k * eps` for the largest `k`
//!   tested; the observed error is far below).
//! - SIMD microkernels vs the scalar ones: the same operations in the same order, so equal to 1e-6 relative (in
//!   practice bit-equal).

use super::*;
use crate::{dequantize_row_reference, kernels, GgmlType, SimdLevel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const INT_FORMATS: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];
const FLOAT_FORMATS: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// Row lengths with tails: an odd number of 32-blocks (K not a multiple of 64), and for the K-quants an odd
/// number of super-blocks; for the floats, lengths that are no multiple of 16.
fn lengths(ty: GgmlType) -> Vec<usize> {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => vec![7, 16, 100, 224, 289],
        t if t.block_elems() == 256 => vec![256, 768],
        _ => vec![32, 96, 224, 288, 896],
    }
}

fn random_floats(n: usize, rng: &mut StdRng) -> Vec<f32> {
    let mut x = vec![0f32; n];
    for block in x.chunks_mut(32) {
        let scale = 2f32.powi(rng.gen_range(-6..3));
        if rng.gen_range(0..10) == 0 {
            continue; // an all-zero block
        }
        for v in block {
            *v = rng.gen_range(-1.0f32..1.0) * scale;
        }
    }
    x
}

/// A weight matrix [rows, k] in `ty`: quantized from random floats; for Q8_0 some rows straight from random
/// bytes (so that -128 codes occur).
fn random_weights(ty: GgmlType, rows: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let rb = ty.row_bytes(k).expect("whole blocks");
    let mut out = vec![0u8; rows * rb];
    for (r, row) in out.chunks_exact_mut(rb).enumerate() {
        let x = random_floats(k, rng);
        match ty {
            GgmlType::F32 => crate::f32::quantize_act_row_scalar(&x, row),
            GgmlType::F16 => crate::f16::f32_to_f16_row_scalar(&x, row),
            GgmlType::BF16 => crate::bf16::f32_to_bf16_converter(SimdLevel::Scalar)(&x, row),
            GgmlType::Q8_0 if r % 2 == 1 => {
                for block in row.chunks_exact_mut(34) {
                    block[..2].copy_from_slice(&half::f16::from_f32(rng.gen_range(-0.01f32..0.01)).to_le_bytes());
                    block[2..].iter_mut().for_each(|b| *b = rng.gen());
                }
            }
            GgmlType::Q8_0 => crate::q8_0::quantize_row_scalar(&x, row),
            GgmlType::Q4_0 => crate::q4_0::quantize_row_scalar(&x, row),
            GgmlType::Q4_1 => crate::q4_1::quantize_row_scalar(&x, row),
            GgmlType::Q5_0 => crate::q5_0::quantize_row_scalar(&x, row),
            GgmlType::Q5_1 => crate::q5_1::quantize_row_scalar(&x, row),
            GgmlType::Q2_K => crate::q2_k::quantize_row_scalar(&x, row),
            GgmlType::Q3_K => crate::q3_k::quantize_row_scalar(&x, row),
            GgmlType::Q4_K => crate::q4_k::quantize_row_scalar(&x, row),
            GgmlType::Q5_K => crate::q5_k::quantize_row_scalar(&x, row),
            GgmlType::Q6_K => crate::q6_k::quantize_row_scalar(&x, row),
            _ => unreachable!("not a tested format"),
        }
    }
    out
}

fn levels_with_gemm() -> Vec<SimdLevel> {
    SimdLevel::available()
}

#[test]
fn reduce_order_matches_the_tree() {
    let mut rng = StdRng::seed_from_u64(7);
    let w_bytes: Vec<u8> = (0..4 * 256).map(|_| rng.gen()).collect();
    let a_bytes: Vec<u8> = (0..4 * 256).map(|_| rng.gen()).collect();
    let mut w_bytes = w_bytes;
    let mut a_bytes = a_bytes;
    // Finite scales.
    for row in w_bytes
        .chunks_exact_mut(STEP_BYTES)
        .chain(a_bytes.chunks_exact_mut(STEP_BYTES))
    {
        for l in 0..16 {
            let s = rng.gen_range(-1.0f32..1.0);
            row[KSTEP + 4 * l..KSTEP + 4 * l + 4].copy_from_slice(&s.to_ne_bytes());
        }
    }
    let wc: Vec<f32> = (0..4 * 16).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let ac: Vec<f32> = (0..4 * 16).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let w = int::Rows {
        bytes: &w_bytes,
        corr: &wc,
        row_bytes: 256,
        corr_len: 16,
    };
    let a = int::Rows {
        bytes: &a_bytes,
        corr: &ac,
        row_bytes: 256,
        corr_len: 16,
    };
    let mut want = [[0f32; MR]; NR];
    int_tile_reference(&w, [0, 1, 2, 3], &a, [3, 2, 1, 0], &mut want);
    if let Some(tile) = int::best_tile(SimdLevel::detect()) {
        let mut got = [[0f32; MR]; NR];
        tile(&w, [0, 1, 2, 3], &a, [3, 2, 1, 0], &mut got);
        assert_eq!(got, want, "SIMD integer tile differs from the reference");
    }
    // Float tiles of every group count, on a length that is no multiple of 16, with repeated token rows.
    let k = 37;
    let wf: Vec<f32> = (0..float::FGROUPS * float::LANES * k)
        .map(|_| rng.gen_range(-1.0f32..1.0))
        .collect();
    let af: Vec<f32> = (0..5 * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let ar = float::Rows { x: &af, ld: k };
    let ti = [4, 0, 1, 4, 2, 3];
    for groups in 1..=float::FGROUPS {
        let mut want = [[0f32; float::FMR]; float::FNR];
        float_tile_reference(k, &wf, groups, &ar, ti, &mut want);
        // The reference is the plain sequential dot product.
        for (t, row) in want.iter().enumerate() {
            for (r, &v) in row.iter().enumerate().take(groups * float::LANES) {
                let (g, j) = (r / float::LANES, r % float::LANES);
                let plain = (0..k).fold(0f32, |acc, i| {
                    wf[(g * k + i) * float::LANES + j].mul_add(af[ti[t] * k + i], acc)
                });
                assert_eq!(v, plain, "groups {groups} ({t}, {r})");
            }
        }
        if let Some(tile) = float::best(SimdLevel::detect()) {
            let mut got = [[0f32; float::FMR]; float::FNR];
            tile(k, &wf, groups, &ar, ti, &mut got);
            assert_eq!(
                got, want,
                "SIMD float tile differs from the reference ({groups} groups)"
            );
        }
    }
}

#[test]
fn interleaving_puts_sixteen_rows_in_a_vector() {
    let mut rng = StdRng::seed_from_u64(6);
    for (n, k, ld) in [
        (1usize, 1usize, 1usize),
        (16, 16, 16),
        (5, 37, 40),
        (33, 576, 576),
        (48, 17, 19),
    ] {
        let src: Vec<f32> = (0..n * ld).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let len = n.div_ceil(float::LANES) * float::LANES * k;
        let mut want = vec![f32::NAN; len];
        float::interleave_reference(&src, ld, n, k, &mut want);
        for (at, &v) in want.iter().enumerate() {
            let (g, i, j) = (at / (float::LANES * k), at / float::LANES % k, at % float::LANES);
            let r = g * float::LANES + j;
            assert_eq!(v, if r < n { src[r * ld + i] } else { 0.0 }, "n={n} k={k} element {at}");
        }
        for level in SimdLevel::available() {
            let mut got = vec![f32::NAN; len];
            float::best_interleave(level)(&src, ld, n, k, &mut got);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "n={n} k={k} {}",
                level.name()
            );
        }
    }
}

#[test]
fn panels_reconstruct_the_dequantized_weights() {
    let mut rng = StdRng::seed_from_u64(1);
    for ty in INT_FORMATS {
        for k in lengths(ty) {
            let rows = 3;
            let w = random_weights(ty, rows, k, &mut rng);
            let rb = ty.row_bytes(k).expect("whole blocks");
            for level in SimdLevel::available() {
                let (unpack, _) = int_parts(ty, level).expect("an integer route");
                for row in w.chunks_exact(rb) {
                    let mut want = vec![0f32; k];
                    dequantize_row_reference(ty, row, &mut want).expect("known format");
                    let mut dst = vec![0xAAu8; panel_row_bytes(k)];
                    let mut mw = vec![f32::NAN; corrections(k)];
                    unpack(row, k, &mut dst, &mut mw);
                    for (i, &x) in want.iter().enumerate() {
                        let (s, u, m) = (scale_of(&dst, i), code_of(&dst, i) as f32, mw[i / GROUP]);
                        let got = s * u + m;
                        let tol = 4.0 * f32::EPSILON * ((s * u).abs() + m.abs());
                        assert!(
                            (got - x).abs() <= tol,
                            "{ty} k={k} {}: element {i}: {s} * {u} + {m} = {got}, dequantized {x}",
                            level.name()
                        );
                    }
                    for i in k..steps(k) * KSTEP {
                        assert_eq!((code_of(&dst, i), scale_of(&dst, i)), (0, 0.0), "{ty} tail element {i}");
                    }
                    assert!(mw[k / GROUP..].iter().all(|&m| m == 0.0), "{ty} tail corrections");
                }
            }
        }
    }
}

#[test]
fn activation_panels_hold_the_converted_values() {
    let mut rng = StdRng::seed_from_u64(2);
    for ty in INT_FORMATS {
        for k in lengths(ty) {
            let kern = kernels(ty, SimdLevel::detect()).expect("kernels");
            let gemm = Gemm::with_tiles(&kern, k, SimdLevel::detect(), int_block_reference, float_tile_reference)
                .expect("a plan");
            let x = random_floats(k, &mut rng);
            let mut converted = vec![0u8; kern.act.row_bytes(k).expect("whole blocks")];
            (kern.quantize_act_row)(&x, &mut converted);
            let mut want = vec![0f32; k];
            dequantize_row_reference(kern.act, &converted, &mut want).expect("known format");
            let mut panel = ActPanel::default();
            let mut scratch = Vec::new();
            gemm.pack_acts(&x, 1, &mut panel, &mut scratch);
            let row = &panel.rows.as_slice()[..panel_row_bytes(k)];
            let ma = &panel.corr.as_slice()[..corrections(k)];
            for (i, &v) in want.iter().enumerate() {
                let got = scale_of(row, i) * code_of(row, i) as i8 as f32;
                assert_eq!(got, v, "{ty} k={k} activation {i}");
            }
            // Q8_1 keeps its stored `s` per block (see q8_1::pack_gemm_act).
            for g in (0..k / GROUP).filter(|_| kern.act != GgmlType::Q8_1) {
                let s = scale_of(row, GROUP * g);
                let sum: i32 = (0..GROUP).map(|j| code_of(row, GROUP * g + j) as i8 as i32).sum();
                assert_eq!(ma[g], s * sum as f32, "{ty} k={k} group {g}");
            }
        }
    }
}

/// Runs the whole product through `gemm` in row blocks of `block` rows and checks every pair against `vec_dot`.
fn check_product(ty: GgmlType, gemm: &Gemm, k: usize, rows: usize, n_tokens: usize, block: usize, rng: &mut StdRng) {
    let kern = gemm.kernels;
    let reference = kernels(ty, SimdLevel::Scalar).expect("scalar kernels");
    let w = random_weights(ty, rows, k, rng);
    let rb = ty.row_bytes(k).expect("whole blocks");
    let x: Vec<f32> = (0..n_tokens).flat_map(|_| random_floats(k, rng)).collect(); // [n_tokens, k]
    let mut panel = ActPanel::default();
    let mut scratch = Vec::new();
    gemm.pack_acts(&x, n_tokens, &mut panel, &mut scratch);
    let acts = match gemm.route {
        Route::Float { .. } => Acts::Float { x: &x, n_tokens },
        _ => Acts::Int(&panel),
    };
    let mut out = vec![f32::NAN; n_tokens * rows]; // [n_tokens, rows]
    let view = OutView::of(&mut out, rows, n_tokens).expect("big enough");
    let mut wp = WeightPanel::default();
    for r0 in (0..rows).step_by(block) {
        gemm.rows(&w, rb, (r0, (r0 + block).min(rows)), &acts, &mut wp, &view)
            .expect("sizes fit");
    }
    let ab = kern.act.row_bytes(k).expect("whole blocks");
    let mut act = vec![0u8; ab];
    let (mut wd, mut ad) = (vec![0f32; k], vec![0f32; k]);
    for t in 0..n_tokens {
        (kern.quantize_act_row)(&x[t * k..(t + 1) * k], &mut act);
        dequantize_row_reference(kern.act, &act, &mut ad).expect("known format");
        for r in 0..rows {
            let wrow = &w[r * rb..(r + 1) * rb];
            let want = (reference.vec_dot)(k, wrow, &act);
            dequantize_row_reference(ty, wrow, &mut wd).expect("known format");
            let mag: f32 = wd.iter().zip(&ad).map(|(a, b)| (a * b).abs()).sum();
            let got = out[t * rows + r];
            assert!(
                (got - want).abs() <= 1e-5 * mag + 1e-6,
                "{ty} k={k} rows={rows} tokens={n_tokens}: ({t}, {r}) gemm {got} vs vec_dot {want} (Σ|wa| {mag})"
            );
        }
    }
}

#[test]
fn gemm_equals_vec_dot_with_the_reference_tiles() {
    let mut rng = StdRng::seed_from_u64(3);
    for ty in INT_FORMATS.into_iter().chain(FLOAT_FORMATS) {
        for k in lengths(ty) {
            let kern = kernels(ty, SimdLevel::detect()).expect("kernels");
            let gemm = Gemm::with_tiles(&kern, k, SimdLevel::detect(), int_block_reference, float_tile_reference)
                .expect("a plan");
            check_product(ty, &gemm, k, 7, 6, 8, &mut rng);
        }
    }
}

#[test]
fn gemm_equals_vec_dot_with_the_simd_tiles() {
    let mut rng = StdRng::seed_from_u64(4);
    for level in levels_with_gemm() {
        for ty in INT_FORMATS.into_iter().chain(FLOAT_FORMATS) {
            let Some(kern) = kernels(ty, level) else { continue };
            for k in lengths(ty) {
                let Some(gemm) = Gemm::new(&kern, k, level) else {
                    continue;
                };
                // Rows in blocks of 5 (not a multiple of MR), tokens not a multiple of NR.
                check_product(ty, &gemm, k, 13, 11, 5, &mut rng);
                check_product(ty, &gemm, k, 3, 1, 64, &mut rng);
                if FLOAT_FORMATS.contains(&ty) {
                    // Blocks of five row groups (a whole float tile and one group), the last one partial.
                    check_product(ty, &gemm, k, 100, 13, 80, &mut rng);
                }
            }
        }
    }
}

#[test]
fn bad_sizes_are_errors() {
    let kern = kernels(GgmlType::Q8_0, SimdLevel::Scalar).expect("kernels");
    let gemm = Gemm::with_tiles(&kern, 64, SimdLevel::Scalar, int_block_reference, float_tile_reference).expect("plan");
    let mut out = vec![0f32; 4];
    let view = OutView::of(&mut out, 2, 2).expect("fits");
    let panel = ActPanel::default();
    let mut wp = WeightPanel::default();
    let w = vec![0u8; 68];
    assert!(gemm.rows(&w, 68, (0, 2), &Acts::Int(&panel), &mut wp, &view).is_err());
    assert!(gemm.rows(&w, 34, (0, 2), &Acts::Int(&panel), &mut wp, &view).is_err());
    assert!(gemm.rows(&w, 68, (0, 3), &Acts::Int(&panel), &mut wp, &view).is_err());
}

/// The exact route gives bit for bit what the per-pair kernels at the same level give (prefill equals decoding).
#[test]
fn exact_route_equals_vec_dot_bitwise() {
    let mut rng = StdRng::seed_from_u64(5);
    let level = SimdLevel::detect();
    for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_0] {
        let kern = kernels(ty, level).expect("kernels");
        // Block counts 1, 3, 7, 8, 9, 15, 16, 28, 152: every remainder pattern of the groups of eight.
        for k in [32, 96, 224, 256, 288, 480, 512, 896, 4864] {
            let Some(gemm) = Gemm::new(&kern, k, level) else {
                continue;
            };
            assert!(matches!(gemm.route, Route::Exact { .. }), "{ty} takes the exact route");
            let (rows, n_tokens) = (7, 5);
            let w = random_weights(ty, rows, k, &mut rng);
            let rb = ty.row_bytes(k).expect("whole blocks");
            let x: Vec<f32> = (0..n_tokens).flat_map(|_| random_floats(k, &mut rng)).collect();
            let mut panel = ActPanel::default();
            gemm.pack_acts(&x, n_tokens, &mut panel, &mut Vec::new());
            let mut out = vec![f32::NAN; n_tokens * rows];
            let view = OutView::of(&mut out, rows, n_tokens).expect("big enough");
            let mut wp = WeightPanel::default();
            for r0 in (0..rows).step_by(5) {
                gemm.rows(&w, rb, (r0, (r0 + 5).min(rows)), &Acts::Int(&panel), &mut wp, &view)
                    .expect("sizes fit");
            }
            let mut act = vec![0u8; kern.act.row_bytes(k).expect("whole blocks")];
            for t in 0..n_tokens {
                (kern.quantize_act_row)(&x[t * k..(t + 1) * k], &mut act);
                for r in 0..rows {
                    let want = (kern.vec_dot)(k, &w[r * rb..(r + 1) * rb], &act);
                    let got = out[t * rows + r];
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{ty} k={k} ({t}, {r}): gemm {got} vs vec_dot {want}"
                    );
                }
            }
        }
    }
}

/// The K-quant tiled route: its SIMD kernel gives the reference's bits, and the reference is the dot product of
/// the dequantized values (to float rounding), so its codes, scales and biases mean what the formats say.
#[test]
fn ktiled_route_matches_its_reference_and_the_dequantized_product() {
    let mut rng = StdRng::seed_from_u64(11);
    for ty in [
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let fmt = ktiled::KFormat::of(ty).expect("a K-quant");
        let kern = kernels(ty, SimdLevel::Scalar).expect("kernels");
        for (k, rows, n_tokens) in [(256, 5, 8), (768, 9, 21), (512, 4, 33)] {
            let w = random_weights(ty, rows, k, &mut rng);
            let x = random_floats(n_tokens * k, &mut rng);
            let arb = kern.act.row_bytes(k).expect("whole blocks");
            let mut act = vec![0u8; n_tokens * arb];
            for t in 0..n_tokens {
                (kern.quantize_act_row)(&x[t * k..(t + 1) * k], &mut act[t * arb..(t + 1) * arb]);
            }
            let rb = ty.row_bytes(k).expect("whole blocks");
            let wrb = ktiled::weight_row_bytes(k);
            let mut wp = vec![0u8; rows * wrb];
            for r in 0..rows {
                ktiled::unpack_row(&fmt, &w[r * rb..(r + 1) * rb], k, &mut wp[r * wrb..(r + 1) * wrb]);
            }
            let mut ap = vec![0u8; ktiled::act_bytes(k, n_tokens)];
            for t in 0..n_tokens {
                ktiled::pack_act(&act[t * arb..(t + 1) * arb], k, t, &mut ap);
            }
            let run = |f: ktiled::KTiledFn| {
                let mut out = vec![0f32; n_tokens * rows];
                let view = OutView::of(&mut out, rows, n_tokens).expect("sized");
                f(&fmt, k, &wp, &ap, n_tokens, &view, 0);
                out
            };
            let want = run(ktiled::run_reference);
            let fast = run(ktiled::best(SimdLevel::detect()));
            assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{ty:?} k {k}: SIMD against reference"
            );
            // Against the dequantized product (weights and the Q8_K activations as floats, summed in f64).
            let mut wf = vec![0f32; k];
            let mut af = vec![0f32; k];
            for r in 0..rows {
                (kern.dequantize_row)(&w[r * rb..(r + 1) * rb], &mut wf);
                for t in 0..n_tokens {
                    let blocks = crate::k_common::blocks::<crate::q8_k::BlockQ8K>(&act[t * arb..], k / 256);
                    for (b, block) in blocks.iter().enumerate() {
                        let d = f32::from_le_bytes(block.d);
                        for (i, &q) in block.qs.iter().enumerate() {
                            af[256 * b + i] = d * q as f32;
                        }
                    }
                    let exact: f64 = wf.iter().zip(&af).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let mag: f64 = wf.iter().zip(&af).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                    let got = want[t * rows + r] as f64;
                    assert!(
                        (got - exact).abs() <= 1e-5 * mag + 1e-6,
                        "{ty:?} k {k} row {r} token {t}: {got} vs {exact}"
                    );
                }
            }
        }
    }
}
