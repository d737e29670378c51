//! Single-thread speed of `vec_dot` for the non-K formats, in GB/s of weight bytes, at every SIMD level.
//!
//! `cargo run --release -p quarrel-quant --example legacy_speed [-- FORMAT...]`
//!
//! Two working sets: a small one that stays in L2 (the kernel's own ceiling, what prompt processing sees when the
//! engine tiles) and a large one streamed from memory (what decoding sees). Activations are one row, quantized once,
//! as in the engine; weight rows start 32 bytes past a cache line (the worst GGUF's 32-byte alignment allows).
//! Each figure is the 95th percentile of many ~4 MB samples, so that a busy shared machine
//! reports what the kernel does when it has the core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use quarrel_quant::{kernels, GgmlType, SimdLevel};
use rand::{Rng, SeedableRng};

/// Elements per row: the width of a small model's hidden state.
const ROW: usize = 2048;

fn main() {
    let wanted: Vec<GgmlType> = std::env::args()
        .skip(1)
        .filter_map(|a| GgmlType::from_name(&a))
        .collect();
    let formats = [
        GgmlType::Q8_0,
        GgmlType::Q5_0,
        GgmlType::Q4_0,
        GgmlType::Q5_1,
        GgmlType::Q4_1,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let act: Vec<f32> = (0..ROW).map(|_| rng.gen_range(-1.0..1.0)).collect(); // [ROW]
    println!("{:<6} {:<7} {:>10} {:>10}", "format", "simd", "L2 GB/s", "mem GB/s");
    for ty in formats.into_iter().filter(|t| wanted.is_empty() || wanted.contains(t)) {
        for level in SimdLevel::available() {
            let Some(k) = kernels(ty, level) else {
                continue;
            };
            let row_bytes = ty.row_bytes(ROW).expect("ROW is a whole number of blocks");
            let mut act_q = vec![0u8; k.act.row_bytes(ROW).expect("whole blocks")]; // [ROW] in act blocks
            (k.quantize_act_row)(&act, &mut act_q);
            let (act_storage, act_at) = placed(&act_q, 0);
            let act_q = &act_storage[act_at..act_at + act_q.len()];
            let mut speeds = Vec::new();
            for (working_set, sample_bytes) in [(256 << 10, 4 << 20), (512 << 20, 4 << 20)] {
                let rows = (working_set / row_bytes).max(1);
                let weights = weight_rows(ty, rows, &mut rng); // [rows, row_bytes]
                let (storage, at) = placed(&weights, WEIGHT_ALIGN_OFFSET);
                let weights = &storage[at..at + weights.len()];
                let sample_rows = (sample_bytes / row_bytes).max(1);
                let mut samples = Vec::new(); // GB/s of each timed sample
                let mut next_row = 0;
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(600) {
                    let t = Instant::now();
                    let mut sink = 0f32;
                    for _ in 0..sample_rows {
                        let row = &weights[next_row * row_bytes..(next_row + 1) * row_bytes];
                        sink += (k.vec_dot)(ROW, row, act_q);
                        next_row = (next_row + 1) % rows;
                    }
                    black_box(sink);
                    samples.push((sample_rows * row_bytes) as f64 / t.elapsed().as_secs_f64() / 1e9);
                }
                // The machine may be shared: the fastest samples are the ones that had the core to themselves.
                samples.sort_by(|a, b| b.total_cmp(a));
                speeds.push(samples[samples.len() / 20]);
            }
            println!(
                "{:<6} {:<7} {:>10.1} {:>10.1}",
                ty.name(),
                level.name(),
                speeds[0],
                speeds[1]
            );
        }
    }
}

/// Where weight rows start relative to a 64-byte line: GGUF only promises 32-byte alignment, so the worst case a
/// model file can give (every 64-byte load split across two lines) is what gets measured.
const WEIGHT_ALIGN_OFFSET: usize = 32;

/// A copy of `bytes` starting `offset` bytes past a 64-byte boundary: (storage, start index).
fn placed(bytes: &[u8], offset: usize) -> (Vec<u8>, usize) {
    let mut storage = vec![0u8; bytes.len() + 128];
    let at = (64 + offset - storage.as_ptr() as usize % 64) % 64;
    storage[at..at + bytes.len()].copy_from_slice(bytes);
    (storage, at)
}

/// `rows` weight rows of random codes with small finite scales (plain floats: random values in -1..1).
fn weight_rows(ty: GgmlType, rows: usize, rng: &mut impl Rng) -> Vec<u8> {
    let floats: Vec<f32> = (0..rows * ROW).map(|_| rng.gen_range(-1.0..1.0)).collect();
    match ty {
        GgmlType::F32 => floats.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => floats
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => floats
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => {
            let mut bytes: Vec<u8> = (0..rows * ty.row_bytes(ROW).expect("whole blocks"))
                .map(|_| rng.gen())
                .collect();
            let scale = half::f16::from_f32(0.01).to_le_bytes();
            let scaled_fields = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                2
            } else {
                1
            };
            for block in bytes.chunks_exact_mut(ty.block_bytes()) {
                for f in 0..scaled_fields {
                    block[2 * f..2 * f + 2].copy_from_slice(&scale);
                }
            }
            bytes
        }
    }
}
