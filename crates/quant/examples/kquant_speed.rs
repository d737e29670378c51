//! Single-thread speed of the K-quant `vec_dot` kernels: GB/s of weight bytes streamed, per format and SIMD
//! level, for a cache-resident matrix (compute bound, like prompt processing) and one larger than the last-level
//! cache (memory bound, like decoding). Each figure is the best of many short trials, so that a busy machine
//! still shows what the kernel can do.
//!
//! `cargo run --release -p quarrel-quant --example kquant_speed [-- row_len]`

use quarrel_quant::{kernels, q8_k, GgmlType, SimdLevel};
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

fn main() {
    let row_len: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4096);
    let mut rng = StdRng::seed_from_u64(7);
    let act: Vec<f32> = (0..row_len).map(|_| rng.gen_range(-1.0..1.0)).collect();
    println!("row_len {row_len}; GB/s of weight bytes, one thread");
    println!(
        "{:<6} {:<8} {:>14} {:>14}",
        "format", "simd", "in-cache", "from-memory"
    );
    for ty in FORMATS {
        for level in SimdLevel::available() {
            let Some(k) = kernels(ty, level) else {
                continue;
            };
            let row_bytes = ty.row_bytes(row_len).expect("row_len is a multiple of 256");
            let mut act_q = vec![0u8; row_len / 256 * q8_k::BLOCK_BYTES];
            (k.quantize_act_row)(&act, &mut act_q);
            let mut line = format!("{:<6} {:<8}", ty.name(), level.name());
            // ~256 KiB (stays in L2) and ~256 MiB (streams from memory).
            for total in [256 << 10, 256 << 20] {
                let n_rows = (total / row_bytes).max(1);
                let mut weights = vec![0u8; n_rows * row_bytes]; // [n_rows, row_bytes]
                rng.fill(&mut weights[..]);
                for block in weights.chunks_exact_mut(ty.block_bytes()) {
                    for off in f16_offsets(ty) {
                        block[off..off + 2]
                            .copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                    }
                }
                // Many short trials, keeping the best: on a shared machine some of them run undisturbed.
                let passes = ((8 << 20) / weights.len()).max(1);
                let mut best = Duration::MAX;
                for _ in 0..if weights.len() > (64 << 20) { 12 } else { 60 } {
                    let start = Instant::now();
                    let mut sum = 0f32;
                    for _ in 0..passes {
                        for row in weights.chunks_exact(row_bytes) {
                            sum += (k.vec_dot)(row_len, black_box(row), &act_q);
                        }
                    }
                    black_box(sum);
                    best = best.min(start.elapsed());
                }
                let gbps = (passes * weights.len()) as f64 / best.as_secs_f64() / 1e9;
                line += &format!(" {gbps:>14.1}");
            }
            println!("{line}");
        }
    }
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
