//! Times `vec_dot` four times against `vec_dot_x4` once on a prompt-shaped tile (64 tokens x 16 weight rows).
//! Usage: cargo run --release -p quarrel-quant --example tile_speed [n]

use quarrel_quant::{kernels, GgmlType, SimdLevel};

/// CPU seconds this process has run (user + system, from /proc/self/stat at 100 ticks a second): unlike wall time,
/// not inflated when other processes share the cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(896);
    let tokens: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let rows = 16;
    // The formats whose kernel table has a tile kernel (the legacy formats' products go through the GEMM).
    for ty in [GgmlType::F16, GgmlType::Q4_K, GgmlType::Q6_K] {
        let Some(k) = kernels(ty, SimdLevel::detect()) else {
            continue;
        };
        let (Some(wb), Some(ab)) = (ty.row_bytes(n), k.act.row_bytes(n)) else {
            continue;
        };
        // Weights: bytes with a small f16 scale in every 2-byte slot that could be one (values are irrelevant).
        let weights: Vec<u8> = (0..rows * wb)
            .map(|i| if i % 2 == 1 { 0x1c } else { (i * 37) as u8 })
            .collect(); // [rows, wb]
        let x: Vec<f32> = (0..tokens * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect(); // [tokens, n]
        let mut act = vec![0u8; tokens * ab]; // [tokens, ab]
        for (dst, src) in act.chunks_exact_mut(ab).zip(x.chunks_exact(n)) {
            (k.quantize_act_row)(src, dst);
        }
        let mut out = vec![0f32; tokens * rows]; // [tokens, rows]
        let iters = 20000;
        let t = cpu_seconds();
        for _ in 0..iters {
            for r in 0..rows {
                for tok in 0..tokens {
                    out[tok * rows + r] =
                        (k.vec_dot)(n, &weights[r * wb..(r + 1) * wb], &act[tok * ab..(tok + 1) * ab]);
                }
            }
        }
        let single = cpu_seconds() - t;
        let sum1: f32 = out.iter().sum();
        let Some(x4) = k.vec_dot_x4 else {
            continue;
        };
        let t = cpu_seconds();
        for _ in 0..iters {
            for r in 0..rows {
                for tok in (0..tokens).step_by(4) {
                    let mut o = [0f32; 4];
                    x4(
                        n,
                        &weights[r * wb..(r + 1) * wb],
                        &act[tok * ab..(tok + 4) * ab],
                        ab,
                        &mut o,
                    );
                    for (j, v) in o.into_iter().enumerate() {
                        out[(tok + j) * rows + r] = v;
                    }
                }
            }
        }
        let tiled = cpu_seconds() - t;
        let sum4: f32 = out.iter().sum();
        let pairs = (iters * rows * tokens) as f64;
        println!(
            "{ty} n={n}: vec_dot {:.1} ns/pair, vec_dot_x4 {:.1} ns/pair ({:.2}x) [sums {sum1} {sum4}]",
            single / pairs * 1e9,
            tiled / pairs * 1e9,
            single / tiled
        );
    }
}
