//! The non-K formats (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the Q8_0/Q8_1 activations), held together:
//! every SIMD level against the scalar reference, the scalar dot product against an f64 dot product of the
//! dequantized rows, and quantize → dequantize round trips against the error the format allows.
//!
//! Tolerances come from the standard bound for a float sum: summing `k` terms in f32, in any order, is off by at
//! most about `k * eps * Σ|term|`. The integer parts of the quantized dot products are exact, so only the per-block
//! float terms count (`k` = blocks + a few for the final reductions); two such sums differ by at most twice that.

use quarrel_quant::{bf16, dequantize_row_reference, f16, kernels, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1};
use quarrel_quant::{GgmlType, Kernels, SimdLevel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The weight formats under test.
const FORMATS: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
];

/// Row lengths: one block, a few, not a multiple of the 8-block groups of the SIMD loops, and long rows.
const BLOCK_LENGTHS: [usize; 9] = [32, 64, 96, 224, 256, 288, 1024, 1056, 4096];
/// Extra lengths for the plain float formats, whose "blocks" are single elements (SIMD tails).
const FLOAT_LENGTHS: [usize; 6] = [1, 7, 17, 33, 100, 1000];

fn kernels_at(ty: GgmlType, level: SimdLevel) -> Kernels {
    kernels(ty, level).unwrap_or_else(|| panic!("{ty} has kernels at {}", level.name()))
}

fn lengths(ty: GgmlType) -> Vec<usize> {
    let mut all = BLOCK_LENGTHS.to_vec();
    if !ty.is_quantized() {
        all.extend(FLOAT_LENGTHS);
    }
    all
}

fn row_bytes(ty: GgmlType, n: usize) -> usize {
    ty.row_bytes(n)
        .unwrap_or_else(|| panic!("{n} is a whole number of {ty} blocks"))
}

/// Byte offsets of the f16 fields of one block that are scales or offsets (the rest of a block may be any bytes).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => &[0, 2],
        _ => &[],
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f64 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f64()
}

/// A random weight row of `n` elements: random bytes with finite f16 scales of either sign (1/1000..1) for the
/// quantized formats, random finite values of varied size for the float formats.
fn random_weights(ty: GgmlType, n: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut float = || rng.gen_range(-1.0f32..1.0) * 2f32.powi(rng.gen_range(-8..8));
    match ty {
        GgmlType::F32 => (0..n).flat_map(|_| float().to_le_bytes()).collect(),
        GgmlType::F16 => (0..n)
            .flat_map(|_| half::f16::from_f32(float()).to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(float()).to_le_bytes())
            .collect(),
        _ => {
            let mut bytes: Vec<u8> = (0..row_bytes(ty, n)).map(|_| rng.gen()).collect();
            for block in bytes.chunks_exact_mut(ty.block_bytes()) {
                for &at in f16_fields(ty) {
                    let scale = rng.gen_range(0.001f32..1.0) * if rng.gen() { 1.0 } else { -1.0 };
                    block[at..at + 2].copy_from_slice(&half::f16::from_f32(scale).to_le_bytes());
                }
            }
            bytes
        }
    }
}

/// Random activations of varied size per block (some blocks all zero, some so tiny that their f16 scale is
/// subnormal or zero).
fn random_activations(n: usize, rng: &mut StdRng) -> Vec<f32> {
    random_floats(n, true, rng)
}

fn random_floats(n: usize, with_tiny_blocks: bool, rng: &mut StdRng) -> Vec<f32> {
    let mut x = vec![0f32; n]; // [n]
    for block in x.chunks_mut(32) {
        let scale = match rng.gen_range(0..10) {
            0 => 0.0,
            1 if with_tiny_blocks => 1e-6,
            _ => 2f32.powi(rng.gen_range(-6..6)),
        };
        for v in block {
            *v = rng.gen_range(-1.0f32..1.0) * scale;
        }
    }
    x
}

/// The activation row in the kernels' partner format, through the scalar reference quantizer.
fn quantized_activations(k: &Kernels, x: &[f32]) -> Vec<u8> {
    let reference = kernels_at(k.weight, SimdLevel::Scalar);
    let mut act = vec![0u8; row_bytes(k.act, x.len())]; // [n] in act blocks
    (reference.quantize_act_row)(x, &mut act);
    act
}

fn dequantized(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n]; // [n]
    dequantize_row_reference(ty, bytes, &mut out).unwrap_or_else(|| panic!("{ty} dequantizes"));
    out
}

/// `Σ|term|` of the float terms a dot product of these rows adds up: `|w_i * a_i|`, with the offset parts of
/// Q4_1/Q5_1 (`m_w * s_a` per block, summed separately from `d_w * q_w * a_i`) counted on their own.
fn magnitude(ty: GgmlType, act_ty: GgmlType, w: &[u8], act: &[u8], n: usize) -> f64 {
    let (wf, af) = (dequantized(ty, w, n), dequantized(act_ty, act, n));
    let affine = matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1);
    let mut total = 0.0;
    for (b, (wq, aq)) in wf.chunks(32).zip(af.chunks(32)).enumerate() {
        let m = if affine {
            f16_at(w, b * ty.block_bytes() + 2)
        } else {
            0.0
        };
        total += wq
            .iter()
            .zip(aq)
            .map(|(&x, &y)| (x as f64 - m).abs() * (y as f64).abs())
            .sum::<f64>();
        if affine {
            total += m.abs() * f16_at(act, b * act_ty.block_bytes() + 2).abs();
        }
    }
    total
}

/// Float terms summed by a dot product of `n` elements (blocks for the quantized formats), plus the reductions.
fn summed_terms(ty: GgmlType, n: usize) -> f64 {
    (n / ty.block_elems() + 16) as f64
}

#[test]
fn simd_dequantize_is_bit_exact_with_scalar() {
    let mut rng = StdRng::seed_from_u64(1);
    for ty in FORMATS {
        let reference = kernels_at(ty, SimdLevel::Scalar);
        for n in lengths(ty) {
            let w = random_weights(ty, n, &mut rng);
            let mut want = vec![0f32; n]; // [n]
            (reference.dequantize_row)(&w, &mut want);
            for level in SimdLevel::available() {
                let mut got = vec![f32::NAN; n]; // [n]
                (kernels_at(ty, level).dequantize_row)(&w, &mut got);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "{ty} {} n={n} element {i}: {g} vs {e}",
                        level.name()
                    );
                }
            }
        }
    }
}

#[test]
fn simd_vec_dot_matches_scalar_within_reordering_error() {
    let mut rng = StdRng::seed_from_u64(2);
    for ty in FORMATS {
        let reference = kernels_at(ty, SimdLevel::Scalar);
        for n in lengths(ty) {
            for _ in 0..4 {
                let w = random_weights(ty, n, &mut rng);
                let act = quantized_activations(&reference, &random_activations(n, &mut rng));
                let want = (reference.vec_dot)(n, &w, &act) as f64;
                let tol = 2.0 * summed_terms(ty, n) * f32::EPSILON as f64 * magnitude(ty, reference.act, &w, &act, n);
                for level in SimdLevel::available() {
                    let got = (kernels_at(ty, level).vec_dot)(n, &w, &act) as f64;
                    assert!(
                        (got - want).abs() <= tol,
                        "{ty} {} n={n}: {got} vs {want} (tol {tol})",
                        level.name()
                    );
                }
            }
        }
    }
}

#[test]
fn rows_at_any_byte_offset_give_the_same_results() {
    // Rows come straight from a mapped file: the kernels read unaligned, and may pick their loop split by
    // alignment (F32 aligns its weight loads), which only reorders the float sum.
    let mut rng = StdRng::seed_from_u64(8);
    for ty in FORMATS {
        let n = 1056;
        let reference = kernels_at(ty, SimdLevel::Scalar);
        let w = random_weights(ty, n, &mut rng);
        let act = quantized_activations(&reference, &random_activations(n, &mut rng));
        let want = (reference.vec_dot)(n, &w, &act) as f64;
        let tol = 2.0 * summed_terms(ty, n) * f32::EPSILON as f64 * magnitude(ty, reference.act, &w, &act, n);
        let mut want_values = vec![0f32; n]; // [n]
        (reference.dequantize_row)(&w, &mut want_values);
        for level in SimdLevel::available() {
            let k = kernels_at(ty, level);
            for (w_offset, a_offset) in [(1, 0), (2, 3), (4, 4), (16, 8), (32, 0), (33, 17), (60, 12)] {
                let mut w_buf = vec![0u8; w.len() + 64];
                w_buf[w_offset..w_offset + w.len()].copy_from_slice(&w);
                let mut a_buf = vec![0u8; act.len() + 64];
                a_buf[a_offset..a_offset + act.len()].copy_from_slice(&act);
                let got = (k.vec_dot)(n, &w_buf[w_offset..], &a_buf[a_offset..]) as f64;
                assert!(
                    (got - want).abs() <= tol,
                    "{ty} {} offsets {w_offset}/{a_offset}",
                    level.name()
                );
                let mut values = vec![0f32; n]; // [n]
                (k.dequantize_row)(&w_buf[w_offset..], &mut values);
                assert!(
                    values == want_values,
                    "{ty} {} dequantize at offset {w_offset}",
                    level.name()
                );
            }
        }
    }
}

#[test]
fn simd_activation_quantizers_are_bit_exact_with_scalar() {
    let mut rng = StdRng::seed_from_u64(3);
    // Q4_0 quantizes activations to Q8_0, Q4_1 to Q8_1, F16 copies them as F32.
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::F16] {
        let reference = kernels_at(ty, SimdLevel::Scalar);
        for n in BLOCK_LENGTHS {
            let x = random_activations(n, &mut rng);
            let want = quantized_activations(&reference, &x);
            for level in SimdLevel::available() {
                let k = kernels_at(ty, level);
                let mut got = vec![0u8; row_bytes(k.act, n)]; // [n] in act blocks
                (k.quantize_act_row)(&x, &mut got);
                assert!(got == want, "{} activations of {ty} at {} n={n}", k.act, level.name());
            }
        }
    }
}

#[test]
fn activations_round_half_to_even_like_llama_cpp_on_x86() {
    // amax = 127 makes the multiplier exactly 1, so x * id is x: 2.5 -> 2, -2.5 -> -2, 3.5 -> 4, 0.5 -> 0.
    let mut x = vec![0f32; 32]; // [32]
    x[..5].copy_from_slice(&[127.0, 2.5, -2.5, 3.5, 0.5]);
    let want_q: [i8; 5] = [127, 2, -2, 4, 0];
    for level in SimdLevel::available() {
        let mut q8_0 = [0u8; 34];
        q8_0::act_quantizer(level)(&x, &mut q8_0);
        let mut q8_1 = [0u8; 36];
        q8_1::act_quantizer(level)(&x, &mut q8_1);
        for (i, &want) in want_q.iter().enumerate() {
            assert_eq!(q8_0[2 + i] as i8, want, "Q8_0 element {i} at {}", level.name());
            assert_eq!(q8_1[4 + i] as i8, want, "Q8_1 element {i} at {}", level.name());
        }
        assert_eq!(f16_at(&q8_0, 0), 1.0, "d = 127 / 127");
        assert_eq!(f16_at(&q8_1, 2), (127 + 2 - 2 + 4) as f64, "s = d * Σq");
    }
}

#[test]
fn scalar_vec_dot_matches_f64_dot_of_dequantized_rows() {
    let mut rng = StdRng::seed_from_u64(4);
    for ty in FORMATS {
        let k = kernels_at(ty, SimdLevel::Scalar);
        for n in lengths(ty) {
            for _ in 0..4 {
                let w = random_weights(ty, n, &mut rng);
                let act = quantized_activations(&k, &random_activations(n, &mut rng));
                let (wf, af) = (dequantized(ty, &w, n), dequantized(k.act, &act, n));
                let exact: f64 = wf.iter().zip(&af).map(|(&x, &y)| x as f64 * y as f64).sum();
                let got = (k.vec_dot)(n, &w, &act) as f64;
                let mut tol = summed_terms(ty, n) * f32::EPSILON as f64 * magnitude(ty, k.act, &w, &act, n);
                if k.act == GgmlType::Q8_1 {
                    // The dot uses the stored f16 `s = d * Σq` (from the unrounded d) where the dequantized row
                    // has `f16(d) * Σq`. Rounding to f16 errs by at most 2^-11 relative plus 2^-25 absolute (half
                    // the smallest subnormal), so each is that close to `d * Σq`, and the two that close to each
                    // other twice over.
                    for b in 0..n / 32 {
                        let (wb, ab) = (&w[b * ty.block_bytes()..], &act[b * 36..]);
                        let sum_q: f64 = ab[4..36].iter().map(|&q| q as i8 as f64).sum();
                        let relative = (f16_at(ab, 2).abs() + (f16_at(ab, 0) * sum_q).abs()) * 2f64.powi(-10);
                        let absolute = (1.0 + sum_q.abs()) * 2f64.powi(-24);
                        tol += f16_at(wb, 2).abs() * (relative + absolute);
                    }
                }
                assert!((got - exact).abs() <= tol, "{ty} n={n}: {got} vs {exact} (tol {tol})");
            }
        }
    }
}

#[test]
fn quantize_dequantize_round_trip_stays_within_the_step() {
    type Quantize = fn(&[f32], &mut [u8]);
    // (format, quantizer, allowed error in steps |d|): half a step when rounding, a full step for the one value of
    // the symmetric formats that gets clamped (the negated extreme), plus the f16 rounding of d (and m) times
    // the largest code: up to 31 * 2^-11 < 0.02 steps, 127 * 2^-11 < 0.07 for Q8_0. The inputs keep d in f16's
    // normal range, where that rounding is relative (subnormal scales are covered by the gguf-py fixtures).
    let cases: [(GgmlType, Quantize, f64); 5] = [
        (GgmlType::Q4_0, q4_0::quantize_row_scalar, 1.01),
        (GgmlType::Q5_0, q5_0::quantize_row_scalar, 1.01),
        (GgmlType::Q4_1, q4_1::quantize_row_scalar, 0.52),
        (GgmlType::Q5_1, q5_1::quantize_row_scalar, 0.52),
        (GgmlType::Q8_0, q8_0::quantize_row_scalar, 0.57),
    ];
    let mut rng = StdRng::seed_from_u64(5);
    for (ty, quantize, steps) in cases {
        let n = 4096;
        let x = random_floats(n, false, &mut rng);
        let mut q = vec![0u8; row_bytes(ty, n)]; // [n] in ty blocks
        quantize(&x, &mut q);
        let back = dequantized(ty, &q, n);
        for (b, (xb, yb)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
            let d = f16_at(&q, b * ty.block_bytes()).abs();
            let m = if f16_fields(ty).len() == 2 {
                f16_at(&q, b * ty.block_bytes() + 2).abs()
            } else {
                0.0
            };
            let allowed = steps * d + m * 2f64.powi(-11) + 1e-30;
            for (i, (&v, &r)) in xb.iter().zip(yb).enumerate() {
                let err = (v as f64 - r as f64).abs();
                assert!(
                    err <= allowed,
                    "{ty} block {b} element {i}: {v} -> {r} (err {err}, allowed {allowed})"
                );
            }
        }
    }
}

#[test]
fn float_converters_round_trip() {
    let mut rng = StdRng::seed_from_u64(6);
    for level in SimdLevel::available() {
        for n in [1, 8, 9, 100, 1000] {
            let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-1e4f32..1e4)).collect(); // [n]
            let mut halves = vec![0u8; 2 * n]; // [n] f16
            f16::f32_to_f16_converter(level)(&x, &mut halves);
            let mut scalar = vec![0u8; 2 * n]; // [n] f16
            f16::f32_to_f16_row_scalar(&x, &mut scalar);
            assert!(halves == scalar, "f32 -> f16 at {} n={n}", level.name());
            let mut brain = vec![0u8; 2 * n]; // [n] bf16
            bf16::f32_to_bf16_converter(level)(&x, &mut brain);
            bf16::f32_to_bf16_row_scalar(&x, &mut scalar);
            assert!(brain == scalar, "f32 -> bf16 at {} n={n}", level.name());
            let (mut back16, mut back_b16) = (vec![0f32; n], vec![0f32; n]); // [n]
            f16::f16_to_f32_row(&halves, &mut back16);
            bf16::bf16_to_f32_row(&brain, &mut back_b16);
            for i in 0..n {
                // Relative rounding error of f16 (11-bit significand) and bf16 (8-bit), ties included.
                assert!((back16[i] - x[i]).abs() <= x[i].abs() * 2f32.powi(-11), "f16 {}", x[i]);
                assert!(
                    (back_b16[i] - x[i]).abs() <= x[i].abs() * 2f32.powi(-8),
                    "bf16 {}",
                    x[i]
                );
            }
        }
    }
}

#[test]
fn kernel_tables_pair_formats_as_llama_cpp_does() {
    let pairs = [
        (GgmlType::F32, GgmlType::F32),
        (GgmlType::F16, GgmlType::F32),
        (GgmlType::BF16, GgmlType::F32),
        (GgmlType::Q4_0, GgmlType::Q8_0),
        (GgmlType::Q4_1, GgmlType::Q8_1),
        (GgmlType::Q5_0, GgmlType::Q8_0),
        (GgmlType::Q5_1, GgmlType::Q8_1),
        (GgmlType::Q8_0, GgmlType::Q8_0),
    ];
    for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
        for (weight, act) in pairs {
            let k = kernels_at(weight, level);
            assert_eq!((k.weight, k.act), (weight, act), "at {}", level.name());
        }
    }
}

#[test]
fn q8_1_dequantizes_without_its_sum() {
    let mut rng = StdRng::seed_from_u64(7);
    let x = random_activations(256, &mut rng);
    let (mut q8_0, mut q8_1) = (vec![0u8; 8 * 34], vec![0u8; 8 * 36]); // [256] in blocks
    q8_0::quantize_act_row_scalar(&x, &mut q8_0);
    q8_1::quantize_act_row_scalar(&x, &mut q8_1);
    // Same d and codes, so the same values; and `s` is d * Σq rounded to f16.
    assert_eq!(
        dequantized(GgmlType::Q8_0, &q8_0, 256),
        dequantized(GgmlType::Q8_1, &q8_1, 256)
    );
    for b in 0..8 {
        let block = &q8_1[b * 36..(b + 1) * 36];
        let sum_q: f64 = block[4..].iter().map(|&q| q as i8 as f64).sum();
        let s = f16_at(block, 2);
        assert!(
            (s - f16_at(block, 0) * sum_q).abs() <= (s.abs() + 1e-7) * 2f64.powi(-10),
            "block {b}"
        );
    }
}
