//! Single-thread speed of the K-quant dot kernels, in GB/s of weight bytes per activation row, per format and
//! SIMD level:
//! - `in-cache`: `vec_dot` over a ~256 KiB matrix that stays in L2 (compute bound, like prompt processing);
//! - `from-memory`: `vec_dot` over a 256 MiB matrix (memory bound, like decoding);
//! - `x4`: the tile kernel `vec_dot_x4` (where the format has one) against 4 activation rows, in-cache.
//!
//! Each figure is the best of many short trials, so that a busy machine still shows what the kernel can do.
//!
//! `cargo run --release -p quarrel-quant --example kquant_speed [-- row_len]`

use quarrel_quant::{kernels, q8_k, GgmlType, Kernels, SimdLevel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};

const FORMATS: [GgmlType; 5] = [
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::Q3_K,
    GgmlType::Q2_K,
];
/// Activation rows of a tile.
const N_ACT: usize = 4;

fn main() {
    let row_len: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let mut rng = StdRng::seed_from_u64(7);
    let act: Vec<f32> = (0..N_ACT * row_len).map(|_| rng.gen_range(-1.0..1.0)).collect(); // [N_ACT, row_len]
    println!("row_len {row_len}; GB/s of weight bytes per activation row, one thread");
    println!(
        "{:<6} {:<8} {:>10} {:>12} {:>10}",
        "format", "simd", "in-cache", "from-memory", "x4"
    );
    for ty in FORMATS {
        for level in SimdLevel::available() {
            let Some(k) = kernels(ty, level) else {
                continue;
            };
            let act_row_bytes = row_len / 256 * q8_k::BLOCK_BYTES;
            let mut act_q = vec![0u8; N_ACT * act_row_bytes]; // [N_ACT, act_row_bytes]
            for (dst, src) in act_q.chunks_exact_mut(act_row_bytes).zip(act.chunks_exact(row_len)) {
                (k.quantize_act_row)(src, dst);
            }
            let in_cache = random_matrix(&mut rng, ty, row_len, 256 << 10);
            let from_memory = random_matrix(&mut rng, ty, row_len, 256 << 20);
            let one_act = &act_q[..act_row_bytes];
            let mut line = format!("{:<6} {:<8}", ty.name(), level.name());
            line += &format!(" {:>10.1}", single(&k, row_len, &in_cache, one_act, 60));
            line += &format!(" {:>12.1}", single(&k, row_len, &from_memory, one_act, 12));
            line += &match k.vec_dot_x4 {
                Some(_) => format!(" {:>10.1}", tile(&k, row_len, &in_cache, &act_q)),
                None => format!(" {:>10}", "-"),
            };
            println!("{line}");
        }
    }
}

/// A matrix of about `total` bytes of random blocks with small f16 scales. // [n_rows, row_bytes]
fn random_matrix(rng: &mut StdRng, ty: GgmlType, row_len: usize, total: usize) -> Vec<u8> {
    let row_bytes = ty.row_bytes(row_len).expect("row_len is a multiple of 256");
    let mut weights = vec![0u8; (total / row_bytes).max(1) * row_bytes];
    rng.fill(&mut weights[..]);
    for block in weights.chunks_exact_mut(ty.block_bytes()) {
        for off in f16_offsets(ty) {
            block[off..off + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    weights
}

/// Best GB/s of `vec_dot` over every row of `weights` against one activation row.
fn single(k: &Kernels, row_len: usize, weights: &[u8], act: &[u8], trials: usize) -> f64 {
    let row_bytes = k.weight.row_bytes(row_len).expect("whole blocks");
    let passes = ((8 << 20) / weights.len()).max(1);
    best_gbps(trials, passes * weights.len(), || {
        let mut sum = 0f32;
        for _ in 0..passes {
            for row in weights.chunks_exact(row_bytes) {
                sum += (k.vec_dot)(row_len, black_box(row), act);
            }
        }
        black_box(sum);
    })
}

/// Best GB/s (weight bytes times activation rows) of `vec_dot_x4` over every row of `weights`.
fn tile(k: &Kernels, row_len: usize, weights: &[u8], acts: &[u8]) -> f64 {
    let Some(vec_dot_x4) = k.vec_dot_x4 else {
        return f64::NAN;
    };
    let row_bytes = k.weight.row_bytes(row_len).expect("whole blocks");
    let act_row_bytes = acts.len() / N_ACT;
    let passes = ((8 << 20) / (N_ACT * weights.len())).max(1);
    let mut out = [0f32; N_ACT];
    best_gbps(60, passes * N_ACT * weights.len(), || {
        for _ in 0..passes {
            for row in weights.chunks_exact(row_bytes) {
                vec_dot_x4(row_len, black_box(row), acts, act_row_bytes, &mut out);
            }
        }
        black_box(out);
    })
}

fn best_gbps(trials: usize, bytes: usize, mut run: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..trials {
        let start = Instant::now();
        run();
        best = best.min(start.elapsed());
    }
    bytes as f64 / best.as_secs_f64() / 1e9
}

fn f16_offsets(ty: GgmlType) -> Vec<usize> {
    match ty {
        GgmlType::Q2_K => vec![80, 82],
        GgmlType::Q3_K => vec![108],
        GgmlType::Q4_K | GgmlType::Q5_K => vec![0, 2],
        GgmlType::Q6_K => vec![208],
        _ => vec![],
    }
}
