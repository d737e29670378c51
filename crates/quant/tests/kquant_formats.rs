//! K-quant formats (Q2_K..Q6_K with Q8_K activations): SIMD against scalar, scalar against an independent
//! dequantizer (fixtures written by `scripts/kquant-fixtures.py` with the PyPI `gguf` package), the integer dot
//! product against an f64 dot of dequantized rows, and round-trip bounds of the quantizers.

use quarrel_quant::{kernels, q2_k, q3_k, q4_k, q5_k, q6_k, q8_k, GgmlType, Kernels, SimdLevel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const QK_K: usize = 256;
const LENGTHS: [usize; 6] = [256, 512, 768, 1024, 4096, 8192];

/// How the round-trip test bounds one format's quantizer.
#[derive(Clone, Copy)]
enum Scheme {
    /// `x = d * scale * q - dmin * min`, sub-blocks of `sub`, q in `0..=q_max`, scales/mins in `0..=scale_max`.
    Affine { sub: usize, q_max: f64, scale_max: f64 },
    /// `x = d * scale * q`, sub-blocks of 16, q in `-q_neg..q_neg`, scales in `-scale_max..=scale_max`.
    Symmetric { q_neg: f64, scale_max: f64 },
}

impl Scheme {
    /// Elements per sub-block.
    fn sub_len(self) -> usize {
        match self {
            Scheme::Affine { sub, .. } => sub,
            Scheme::Symmetric { .. } => 16,
        }
    }

    /// The largest round-trip error the quantizer allows in sub-block `part` of a super-block whose largest
    /// magnitude is `a` (f16 super-block scales are rounded up by at most 2^-10).
    fn error_bound(self, a: f64, part: &[f32]) -> f64 {
        let up = 1.0 + 2f64.powi(-10);
        match self {
            Scheme::Affine { q_max, scale_max, .. } => {
                let dmin = a / scale_max * up;
                let d = (2.0 * a + dmin) / (q_max * scale_max) * up;
                let lo = part.iter().fold(0f64, |m, &v| m.min(v as f64));
                let hi = part.iter().fold(0f64, |m, &v| m.max(v as f64));
                0.5 * ((hi - lo + dmin) / q_max + d)
            }
            Scheme::Symmetric { q_neg, scale_max } => {
                let d = a / (q_neg * scale_max) * up;
                part.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)) / q_neg * up + d
            }
        }
    }
}

struct Format {
    ty: GgmlType,
    name: &'static str,
    block_bytes: usize,
    /// Byte offsets of the block's f16 scale fields.
    f16_offsets: &'static [usize],
    quantize: fn(&[f32], &mut [u8]),
    scheme: Scheme,
}

fn formats() -> Vec<Format> {
    vec![
        Format {
            ty: GgmlType::Q4_K,
            name: "q4_k",
            block_bytes: q4_k::BLOCK_BYTES,
            f16_offsets: &[0, 2],
            quantize: q4_k::quantize_row_scalar,
            scheme: Scheme::Affine {
                sub: 32,
                q_max: 15.0,
                scale_max: 63.0,
            },
        },
        Format {
            ty: GgmlType::Q6_K,
            name: "q6_k",
            block_bytes: q6_k::BLOCK_BYTES,
            f16_offsets: &[208],
            quantize: q6_k::quantize_row_scalar,
            scheme: Scheme::Symmetric {
                q_neg: 32.0,
                scale_max: 127.0,
            },
        },
        Format {
            ty: GgmlType::Q5_K,
            name: "q5_k",
            block_bytes: q5_k::BLOCK_BYTES,
            f16_offsets: &[0, 2],
            quantize: q5_k::quantize_row_scalar,
            scheme: Scheme::Affine {
                sub: 32,
                q_max: 31.0,
                scale_max: 63.0,
            },
        },
        Format {
            ty: GgmlType::Q3_K,
            name: "q3_k",
            block_bytes: q3_k::BLOCK_BYTES,
            f16_offsets: &[108],
            quantize: q3_k::quantize_row_scalar,
            scheme: Scheme::Symmetric {
                q_neg: 4.0,
                scale_max: 31.0,
            },
        },
        Format {
            ty: GgmlType::Q2_K,
            name: "q2_k",
            block_bytes: q2_k::BLOCK_BYTES,
            f16_offsets: &[80, 82],
            quantize: q2_k::quantize_row_scalar,
            scheme: Scheme::Affine {
                sub: 16,
                q_max: 3.0,
                scale_max: 15.0,
            },
        },
    ]
}

fn kernels_at(ty: GgmlType, level: SimdLevel) -> Kernels {
    kernels(ty, level).unwrap_or_else(|| panic!("{ty} has no kernels at {}", level.name()))
}

/// A finite f16 of either sign with magnitude in [2^-12, 2^-2], as little-endian bytes.
fn small_f16(rng: &mut StdRng) -> [u8; 2] {
    let magnitude = 2f32.powf(rng.gen_range(-12.0..-2.0));
    let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
    half::f16::from_f32(sign * magnitude).to_le_bytes()
}

/// Random block bytes with the f16 fields set to small finite values. // [n / 256, block_bytes]
fn random_row(rng: &mut StdRng, format: &Format, n: usize) -> Vec<u8> {
    let mut row = vec![0u8; n / QK_K * format.block_bytes];
    rng.fill(&mut row[..]);
    for block in row.chunks_exact_mut(format.block_bytes) {
        for &off in format.f16_offsets {
            block[off..off + 2].copy_from_slice(&small_f16(rng));
        }
    }
    row
}

/// Standard normal samples (Box-Muller).
fn gaussian(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let v: f64 = rng.gen();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn dequantize(k: &Kernels, row: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    (k.dequantize_row)(row, &mut out);
    out
}

fn quantize_act(k: &Kernels, act: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; act.len() / QK_K * q8_k::BLOCK_BYTES];
    (k.quantize_act_row)(act, &mut out);
    out
}

/// Σ |w_i a_i| in f64: the scale the dot-product tolerances are relative to.
fn magnitude(w: &[f32], a: &[f32]) -> f64 {
    w.iter().zip(a).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum()
}

/// SIMD kernels hold to the scalar reference: dequantization bit for bit, the dot product within 1e-6 of
/// Σ|w_i a_i|. The integer parts are exact at every level; only the f32 work per block and the sum over blocks
/// are ordered differently (and a block's integer total above 2^24 rounds when converted), which moves the result
/// by a few f32 ulps (6e-8) of the per-block terms: we see up to ~3e-8, so 1e-6 leaves room for unlucky
/// cancellation while a wrong sub-block scale or bit (an error near 1/(16 * blocks) of the magnitude, above 4e-4
/// at 8192 elements) fails by far.
#[test]
fn simd_matches_scalar() {
    let mut rng = StdRng::seed_from_u64(1);
    for format in formats() {
        let scalar = kernels_at(format.ty, SimdLevel::Scalar);
        for level in SimdLevel::available() {
            let fast = kernels_at(format.ty, level);
            assert_eq!((fast.weight, fast.act), (format.ty, GgmlType::Q8_K));
            let mut worst = 0f64;
            for n in LENGTHS {
                for _ in 0..4 {
                    let row = random_row(&mut rng, &format, n);
                    let expect = dequantize(&scalar, &row, n);
                    let got = dequantize(&fast, &row, n);
                    let same = expect.iter().zip(&got).all(|(e, g)| e.to_bits() == g.to_bits());
                    assert!(same, "{} {} dequantize differs at n={n}", format.name, level.name());

                    let act_f32 = gaussian(&mut rng, n);
                    let act = quantize_act(&fast, &act_f32);
                    assert_eq!(
                        act,
                        quantize_act(&scalar, &act_f32),
                        "{} {} Q8_K",
                        format.name,
                        level.name()
                    );
                    let want = (scalar.vec_dot)(n, &row, &act) as f64;
                    let have = (fast.vec_dot)(n, &row, &act) as f64;
                    let mut act_deq = vec![0f32; n];
                    q8_k::dequantize_row_scalar(&act, &mut act_deq);
                    let ratio = (have - want).abs() / magnitude(&expect, &act_deq);
                    worst = worst.max(ratio);
                    assert!(
                        ratio <= 1e-6,
                        "{} {} n={n}: simd {have} vs scalar {want} (relative {ratio:e})",
                        format.name,
                        level.name()
                    );
                }
            }
            eprintln!(
                "{} {}: worst |simd - scalar| / Σ|w a| = {worst:e}",
                format.name,
                level.name()
            );
        }
    }
}

/// Rows may start at any byte address (GGUF only aligns whole tensors): every level gives the same bits for a
/// row and its copy shifted by 1..63 bytes, for weights and activations alike.
#[test]
fn rows_at_any_byte_offset() {
    let mut rng = StdRng::seed_from_u64(6);
    let n = 1024;
    for format in formats() {
        let row = random_row(&mut rng, &format, n);
        for level in SimdLevel::available() {
            let k = kernels_at(format.ty, level);
            let act = quantize_act(&k, &gaussian(&mut rng, n));
            let want_dot = (k.vec_dot)(n, &row, &act);
            let want_values = dequantize(&k, &row, n);
            for offset in [1, 3, 17, 63] {
                let mut w_buf = vec![0u8; offset + row.len()];
                w_buf[offset..].copy_from_slice(&row);
                let mut a_buf = vec![0u8; offset + act.len()];
                a_buf[offset..].copy_from_slice(&act);
                let have = (k.vec_dot)(n, &w_buf[offset..], &a_buf[offset..]);
                assert_eq!(
                    have.to_bits(),
                    want_dot.to_bits(),
                    "{} {} offset {offset}",
                    format.name,
                    level.name()
                );
                let values = dequantize(&k, &w_buf[offset..], n);
                let same = values.iter().zip(&want_values).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{} {} dequantize at offset {offset}", format.name, level.name());
            }
        }
    }
}

/// Where a format has a tile kernel (`vec_dot_x4`), it gives, bit for bit, what `vec_dot` gives per activation
/// row at the same level (the K-quant tiles keep each row's integer sums and float steps), with the four rows
/// at any stride.
#[test]
fn vec_dot_x4_matches_vec_dot() {
    let mut rng = StdRng::seed_from_u64(7);
    for format in formats() {
        for level in SimdLevel::available() {
            let k = kernels_at(format.ty, level);
            let Some(vec_dot_x4) = k.vec_dot_x4 else {
                continue;
            };
            for n in [256, 1024, 4096] {
                let row = random_row(&mut rng, &format, n);
                let act_bytes = n / QK_K * q8_k::BLOCK_BYTES;
                let stride = act_bytes + 7; // [4, stride]: rows need not be back to back
                let mut acts = vec![0u8; 4 * stride];
                for t in 0..4 {
                    let act = quantize_act(&k, &gaussian(&mut rng, n));
                    acts[t * stride..t * stride + act_bytes].copy_from_slice(&act);
                }
                let mut out = [0f32; 4];
                vec_dot_x4(n, &row, &acts, stride, &mut out);
                for (t, &have) in out.iter().enumerate() {
                    let want = (k.vec_dot)(n, &row, &acts[t * stride..t * stride + act_bytes]);
                    assert_eq!(
                        have.to_bits(),
                        want.to_bits(),
                        "{} {} n={n} row {t}: {have} vs {want}",
                        format.name,
                        level.name()
                    );
                }
            }
        }
    }
}

/// The scalar dot product agrees with an f64 dot product of the dequantized rows within 1e-6 of Σ|w_i a_i|.
/// The two differ only by f32 rounding: the reference rounds each dequantized weight (`step * q - offset`, a
/// few ulps) and the kernel rounds its per-block float terms and their running sum (a few ulps each, growing
/// with the block count); we see up to ~1e-8, while a wrong scale, min or bit position fails by orders of
/// magnitude.
#[test]
fn scalar_dot_matches_dequantized_dot() {
    let mut rng = StdRng::seed_from_u64(2);
    for format in formats() {
        let scalar = kernels_at(format.ty, SimdLevel::Scalar);
        let mut worst = 0f64;
        for n in LENGTHS {
            for _ in 0..4 {
                let row = random_row(&mut rng, &format, n);
                let w = dequantize(&scalar, &row, n);
                let act = quantize_act(&scalar, &gaussian(&mut rng, n));
                let mut a = vec![0f32; n];
                q8_k::dequantize_row_scalar(&act, &mut a);
                let want: f64 = w.iter().zip(&a).map(|(&x, &y)| x as f64 * y as f64).sum();
                let have = (scalar.vec_dot)(n, &row, &act) as f64;
                let ratio = (have - want).abs() / magnitude(&w, &a);
                worst = worst.max(ratio);
                assert!(
                    ratio <= 1e-6,
                    "{} n={n}: dot {have} vs f64 {want} (relative {ratio:e})",
                    format.name
                );
            }
        }
        eprintln!("{}: worst |dot - f64 dot| / Σ|w a| = {worst:e}", format.name);
    }
}

/// Fixture file: `b"KQF1"`, u32 n_blocks, u32 block_bytes, the blocks, then n_blocks * 256 f32 (little-endian).
fn read_fixture(name: &str, block_bytes: usize) -> (Vec<u8>, Vec<f32>) {
    let path = format!("{}/tests/fixtures/kquant/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (run scripts/kquant-fixtures.py)"));
    assert_eq!(&bytes[..4], b"KQF1", "{path}: bad magic");
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (n_blocks, stored_block_bytes) = (word(4), word(8));
    assert_eq!(stored_block_bytes, block_bytes, "{path}: block size");
    let blocks_end = 12 + n_blocks * block_bytes;
    assert_eq!(bytes.len(), blocks_end + n_blocks * QK_K * 4, "{path}: length");
    let values = bytes[blocks_end..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (bytes[12..blocks_end].to_vec(), values)
}

/// Every level's dequantizer reproduces the `gguf` package's values bit for bit (both compute `d * scale` and
/// `dmin * min` in f32 first, then `step * q - offset`).
#[test]
fn dequantize_matches_gguf_py() {
    for format in formats() {
        let (blocks, expect) = read_fixture(format.name, format.block_bytes);
        for level in SimdLevel::available() {
            let got = dequantize(&kernels_at(format.ty, level), &blocks, expect.len());
            for (i, (e, g)) in expect.iter().zip(&got).enumerate() {
                assert!(
                    e.to_bits() == g.to_bits(),
                    "{} {} element {i} (block {}): gguf-py {e} vs ours {g}",
                    format.name,
                    level.name(),
                    i / QK_K
                );
            }
        }
    }
}

/// llama.cpp fixture: `b"KQD1"`, u32 n, n_rows, row_bytes, act_bytes, then the activation row (n f32), ggml's
/// Q8_K bytes of it, the weight rows, and ggml's `vec_dot` of each row (n_rows f32), little-endian.
struct GgmlDots {
    n: usize,
    act: Vec<f32>,
    act_q8k: Vec<u8>,
    rows: Vec<u8>, // [n_rows, row_bytes]
    row_bytes: usize,
    dots: Vec<f32>,
}

fn read_ggml_dots(name: &str) -> GgmlDots {
    let path = format!(
        "{}/tests/fixtures/kquant/ggml_dots_{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (run scripts/kquant-fixtures.py)"));
    assert_eq!(&bytes[..4], b"KQD1", "{path}: bad magic");
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (n, n_rows, row_bytes, act_bytes) = (word(4), word(8), word(12), word(16));
    let floats = |from: usize, count: usize| -> Vec<f32> {
        bytes[from..from + 4 * count]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let mut at = 20;
    let act = floats(at, n);
    at += 4 * n;
    let act_q8k = bytes[at..at + act_bytes].to_vec();
    at += act_bytes;
    let rows = bytes[at..at + n_rows * row_bytes].to_vec();
    at += n_rows * row_bytes;
    let dots = floats(at, n_rows);
    assert_eq!(at + 4 * n_rows, bytes.len(), "{path}: length");
    GgmlDots {
        n,
        act,
        act_q8k,
        rows,
        row_bytes,
        dots,
    }
}

/// Against llama.cpp itself (fixtures of ggml's `from_float` and `vec_dot`, from `libggml-cpu.a` through its
/// public API): every level's Q8_K quantizer gives ggml's bytes, and the SIMD dot products give ggml's results bit
/// for bit: the same integer lanes summed in the same float order (which is what lets greedy decoding follow
/// llama.cpp's path). The scalar reference sums in another order and is held within 1e-6 of Σ|w a|.
#[test]
fn dots_match_llama_cpp() {
    for format in formats() {
        let fixture = read_ggml_dots(format.name);
        let n = fixture.n;
        for level in SimdLevel::available() {
            let k = kernels_at(format.ty, level);
            let act = quantize_act(&k, &fixture.act);
            assert!(
                act == fixture.act_q8k,
                "{} {}: Q8_K bytes differ from ggml's",
                format.name,
                level.name()
            );
            let mut a = vec![0f32; n];
            q8_k::dequantize_row_scalar(&act, &mut a);
            for (r, (row, &want)) in fixture
                .rows
                .chunks_exact(fixture.row_bytes)
                .zip(&fixture.dots)
                .enumerate()
            {
                let have = (k.vec_dot)(n, row, &act);
                if level == SimdLevel::Scalar {
                    let ratio = (have - want).abs() as f64 / magnitude(&dequantize(&k, row, n), &a);
                    assert!(
                        ratio <= 1e-6,
                        "{} scalar row {r}: {have} vs ggml {want} ({ratio:e})",
                        format.name
                    );
                } else {
                    assert_eq!(
                        have.to_bits(),
                        want.to_bits(),
                        "{} {} row {r}: {have} vs ggml {want}",
                        format.name,
                        level.name()
                    );
                }
            }
        }
    }
}

/// Inputs for the round trip: gaussian, gaussian with outliers, all positive, all negative, one spike, zeros.
fn round_trip_inputs(rng: &mut StdRng) -> Vec<Vec<f32>> {
    let mut inputs = vec![gaussian(rng, 4 * QK_K)];
    let mut outliers = gaussian(rng, 4 * QK_K);
    for i in (0..outliers.len()).step_by(97) {
        outliers[i] *= 40.0;
    }
    inputs.push(outliers);
    inputs.push(gaussian(rng, QK_K).iter().map(|v| v.abs() + 0.5).collect());
    inputs.push(gaussian(rng, QK_K).iter().map(|v| -v.abs() * 1e-3).collect());
    let mut spike = vec![0.25f32; QK_K];
    spike[77] = -9.0;
    inputs.push(spike);
    inputs.push(vec![0.0; QK_K]);
    inputs
}

/// Quantize then dequantize stays within the bound the scheme guarantees, per super-block (A = its largest |x|):
/// - affine: half a step, where the step is at most `(range_j + dmin) / q_max + d` with `dmin <= A / scale_max`
///   and `d <= (2A + dmin) / (q_max * scale_max)` (f16 scales rounded up by at most 2^-10);
/// - symmetric: one step (only the value opposite the sub-block's extreme can be clamped), the step being at
///   most `A_k / q_neg + d` with `d <= A / (q_neg * scale_max)`.
///
/// Plus 1e-6 * A of f32 slack.
#[test]
fn quantize_round_trip_within_bounds() {
    let mut rng = StdRng::seed_from_u64(3);
    for format in formats() {
        let scalar = kernels_at(format.ty, SimdLevel::Scalar);
        for x in round_trip_inputs(&mut rng) {
            let mut row = vec![0u8; x.len() / QK_K * format.block_bytes];
            (format.quantize)(&x, &mut row);
            let y = dequantize(&scalar, &row, x.len());
            for (b, (xb, yb)) in x.chunks_exact(QK_K).zip(y.chunks_exact(QK_K)).enumerate() {
                let a = xb.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
                let sub = format.scheme.sub_len();
                for (j, (xs, ys)) in xb.chunks_exact(sub).zip(yb.chunks_exact(sub)).enumerate() {
                    let bound = format.scheme.error_bound(a, xs) + 1e-6 * a;
                    for (i, (&xv, &yv)) in xs.iter().zip(ys).enumerate() {
                        let err = (xv as f64 - yv as f64).abs();
                        assert!(
                            err <= bound,
                            "{} block {b} sub-block {j} element {i}: {xv} -> {yv}, error {err} > bound {bound}",
                            format.name
                        );
                    }
                }
            }
        }
    }
}

/// The AVX2 Q8_K quantizer is bit-exact with the scalar one (ties of ±max, exact .5 products, zeros included),
/// every `bsum` is the sum of its sixteen values, and each element is within half a step of its input.
#[test]
fn q8_k_quantizers_agree() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut inputs = vec![gaussian(&mut rng, 8 * QK_K), vec![0.0; QK_K]];
    let mut ties = gaussian(&mut rng, QK_K);
    ties[3] = 4.0;
    ties[200] = -4.0; // same magnitude, later: the first one decides the sign
    inputs.push(ties);
    let mut negative_first = gaussian(&mut rng, QK_K);
    negative_first[10] = -127.0;
    negative_first[11] = 127.0;
    negative_first[12] = 62.5; // iscale is exactly 1 here: ties go to even
    negative_first[13] = 0.5;
    inputs.push(negative_first);
    let scalar = q8_k::quantizer(SimdLevel::Scalar);
    for level in SimdLevel::available() {
        let quantize = q8_k::quantizer(level);
        for x in &inputs {
            let mut want = vec![0u8; x.len() / QK_K * q8_k::BLOCK_BYTES];
            let mut have = want.clone();
            scalar(x, &mut want);
            quantize(x, &mut have);
            assert!(want == have, "Q8_K {} differs from scalar", level.name());
            let mut y = vec![0f32; x.len()];
            q8_k::dequantize_row_scalar(&have, &mut y);
            for (b, block) in have.chunks_exact(q8_k::BLOCK_BYTES).enumerate() {
                let d = f32::from_le_bytes(block[..4].try_into().unwrap());
                let qs = &block[4..4 + QK_K];
                for k in 0..16 {
                    let sum: i32 = qs[16 * k..16 * k + 16].iter().map(|&q| q as i8 as i32).sum();
                    let stored = i16::from_le_bytes(block[4 + QK_K + 2 * k..4 + QK_K + 2 * k + 2].try_into().unwrap());
                    assert_eq!(sum, stored as i32, "Q8_K {} block {b} bsum {k}", level.name());
                }
                for i in 0..QK_K {
                    let (xv, yv) = (x[b * QK_K + i], y[b * QK_K + i]);
                    assert!(
                        (xv - yv).abs() <= 0.5 * d.abs() * 1.0001,
                        "Q8_K element {i}: {xv} -> {yv} (d {d})"
                    );
                }
            }
        }
        assert_eq!(i8::from_le_bytes([want_byte(&inputs[3], scalar, 10)]), -127);
        assert_eq!(i8::from_le_bytes([want_byte(&inputs[3], scalar, 11)]), 127);
        assert_eq!(i8::from_le_bytes([want_byte(&inputs[3], scalar, 12)]), 62);
        assert_eq!(i8::from_le_bytes([want_byte(&inputs[3], scalar, 13)]), 0);
    }
}

/// Quantized byte `i` of the first block of `x`.
fn want_byte(x: &[f32], quantize: fn(&[f32], &mut [u8]), i: usize) -> u8 {
    let mut out = vec![0u8; x.len() / QK_K * q8_k::BLOCK_BYTES];
    quantize(x, &mut out);
    out[4 + i]
}
