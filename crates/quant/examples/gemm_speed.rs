//! Times prompt-sized matrix products: the per-pair path (`vec_dot`, or `vec_dot_x4` where the format has it, in
//! the tiles the CPU backend uses) against the register-tiled GEMM, on the shapes of the real models, both split
//! over threads the way the backend splits them. Reports GMAC/s (wall clock, best of the repeats).
//!
//! Usage: cargo run --release -p quarrel-quant --example gemm_speed [threads] [tokens] [repeats] [block rows]

use std::time::Instant;

use quarrel_quant::gemm::{ActPanel, Acts, Gemm, OutView, Route, WeightPanel};
use quarrel_quant::{kernels, GgmlType, Kernels, SimdLevel};

/// Shapes (rows, k) of the real models' matrices.
const SHAPES: [(&str, usize, usize); 8] = [
    ("qwen q/o 896x896", 896, 896),
    ("qwen kv 128x896", 128, 896),
    ("qwen up 4864x896", 4864, 896),
    ("qwen down 896x4864", 896, 4864),
    ("gemma up 2048x640", 2048, 640),
    ("gemma down 640x2048", 640, 2048),
    ("smollm up 1536x576", 1536, 576),
    ("smollm down 576x1536", 576, 1536),
];

const FORMATS: [GgmlType; 5] = [
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::F16,
];

#[derive(Clone, Copy)]
struct Ptr(*mut f32);
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

fn weights(ty: GgmlType, rows: usize, k: usize) -> Vec<u8> {
    let rb = ty.row_bytes(k).expect("whole blocks");
    let mut w = vec![0u8; rows * rb];
    let mut seed = 12345u32;
    let mut next = || {
        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let x: Vec<f32> = (0..k).map(|_| next()).collect();
    for row in w.chunks_exact_mut(rb) {
        match ty {
            GgmlType::F16 => quarrel_quant::f16::f32_to_f16_row(&x, row),
            GgmlType::Q5_0 => quarrel_quant::q5_0::quantize_row_scalar(&x, row),
            GgmlType::Q8_0 => quarrel_quant::q8_0::quantize_row_scalar(&x, row),
            GgmlType::Q4_K => quarrel_quant::q4_k::quantize_row_scalar(&x, row),
            GgmlType::Q6_K => quarrel_quant::q6_k::quantize_row_scalar(&x, row),
            _ => unreachable!(),
        }
    }
    w
}

/// The backend's per-pair path: activations converted, then row chunks over the threads, 64-token × 16-row tiles.
#[allow(clippy::too_many_arguments)]
fn old_path(
    kern: &Kernels,
    w: &[u8],
    rows: usize,
    k: usize,
    x: &[f32],
    n_tokens: usize,
    threads: usize,
    out: &mut [f32],
) {
    let ab = kern.act.row_bytes(k).expect("whole blocks");
    let rb = kern.weight.row_bytes(k).expect("whole blocks");
    let mut act = vec![0u8; n_tokens * ab];
    std::thread::scope(|s| {
        let per = n_tokens.div_ceil(threads);
        for (ci, chunk) in act.chunks_mut(per * ab).enumerate() {
            s.spawn(move || {
                for (j, row) in chunk.chunks_exact_mut(ab).enumerate() {
                    let t = ci * per + j;
                    (kern.quantize_act_row)(&x[t * k..(t + 1) * k], row);
                }
            });
        }
    });
    let act = &act;
    let o = Ptr(out.as_mut_ptr());
    let n_chunks = (threads * 4).min(rows);
    let chunk_rows = rows.div_ceil(n_chunks);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let next = &next;
            s.spawn(move || loop {
                let o = o;
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let r0 = c * chunk_rows;
                if r0 >= rows {
                    break;
                }
                let r1 = (r0 + chunk_rows).min(rows);
                for t0 in (0..n_tokens).step_by(64) {
                    let t1 = (t0 + 64).min(n_tokens);
                    for rt in (r0..r1).step_by(16) {
                        for r in rt..(rt + 16).min(r1) {
                            let wrow = &w[r * rb..(r + 1) * rb];
                            let mut t = t0;
                            if let Some(x4) = kern.vec_dot_x4 {
                                while t + 4 <= t1 {
                                    let mut v4 = [0f32; 4];
                                    x4(k, wrow, &act[t * ab..(t + 4) * ab], ab, &mut v4);
                                    for (j, v) in v4.into_iter().enumerate() {
                                        unsafe { *o.0.add((t + j) * rows + r) = v };
                                    }
                                    t += 4;
                                }
                            }
                            for t in t..t1 {
                                let v = (kern.vec_dot)(k, wrow, &act[t * ab..(t + 1) * ab]);
                                unsafe { *o.0.add(t * rows + r) = v };
                            }
                        }
                    }
                }
            });
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn new_path(
    gemm: &Gemm,
    w: &[u8],
    rows: usize,
    x: &[f32],
    n_tokens: usize,
    threads: usize,
    block: usize,
    acts: &mut ActPanel,
    panels: &mut [WeightPanel],
    out: &mut [f32],
) {
    let k = gemm.k;
    let rb = gemm.kernels.weight.row_bytes(k).expect("whole blocks");
    if gemm.uses_act_panel() {
        gemm.reset_acts(acts, n_tokens);
        let writer = acts.writer();
        std::thread::scope(|s| {
            let per = n_tokens.div_ceil(threads);
            for c in 0..threads {
                let writer = &writer;
                s.spawn(move || {
                    let mut scratch = Vec::new();
                    for t in c * per..((c + 1) * per).min(n_tokens) {
                        // SAFETY: each thread packs its own tokens.
                        if let Some(slot) = unsafe { writer.slot(t) } {
                            gemm.pack_token(&x[t * k..(t + 1) * k], &mut scratch, slot);
                        }
                    }
                });
            }
        });
    }
    let a = match gemm.route {
        Route::Float { .. } => Acts::Float { x, n_tokens },
        _ => Acts::Int(acts),
    };
    // SAFETY: out holds n_tokens * rows floats; the threads take disjoint row blocks.
    let view = unsafe { OutView::new(out.as_mut_ptr(), rows, n_tokens) };
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for panel in panels.iter_mut().take(threads) {
            let (next, view, a) = (&next, &view, &a);
            s.spawn(move || loop {
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let r0 = c * block;
                if r0 >= rows {
                    break;
                }
                gemm.rows(w, rb, (r0, (r0 + block).min(rows)), a, panel, view)
                    .expect("sizes fit");
            });
        }
    });
}

/// CPU seconds this thread has run (from /proc/thread-self/schedstat, in ns): unlike wall time, not inflated when
/// other processes share the cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e9
}

/// Single-thread CPU-time comparison (`gemm_speed single`): the per-pair path against the GEMM, everything on this
/// thread, interleaved, three rounds.
fn compare_single(n_tokens: usize, block: usize, only: Option<String>) {
    let simd = SimdLevel::detect();
    for ty in FORMATS {
        if only.as_deref().is_some_and(|o| o != ty.to_string()) {
            continue;
        }
        let kern = kernels(ty, simd).expect("kernels");
        for (name, rows, k) in [SHAPES[0], SHAPES[3], SHAPES[5]] {
            let Some(rb) = ty.row_bytes(k) else { continue };
            let Some(gemm) = Gemm::new(&kern, k, simd) else {
                continue;
            };
            // With a fifth argument "generic": the plain integer route even where the exact one exists.
            let gemm = match (
                std::env::args().nth(5).as_deref(),
                quarrel_quant::gemm::int_block_best(simd),
            ) {
                (Some("generic"), Some(block)) => {
                    Gemm::with_tiles(&kern, k, simd, block, quarrel_quant::gemm::float_tile_reference).unwrap_or(gemm)
                }
                _ => gemm,
            };
            let w = weights(ty, rows, k);
            let x: Vec<f32> = (0..n_tokens * k)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut acts = ActPanel::default();
            let mut panel = WeightPanel::default();
            let mut out = vec![0f32; n_tokens * rows];
            let ab = kern.act.row_bytes(k).expect("whole blocks");
            let mut act = vec![0u8; n_tokens * ab];
            let (mut t_old, mut t_new) = (0f64, 0f64);
            let rounds = (20e9 / (rows * k * n_tokens) as f64).ceil() as usize;
            for _round in 0..rounds {
                let t = cpu_seconds();
                for (tok, row) in act.chunks_exact_mut(ab).enumerate() {
                    (kern.quantize_act_row)(&x[tok * k..(tok + 1) * k], row);
                }
                for r in 0..rows {
                    let wrow = &w[r * rb..(r + 1) * rb];
                    let mut tok = 0;
                    if let Some(x4) = kern.vec_dot_x4 {
                        while tok + 4 <= n_tokens {
                            let mut v4 = [0f32; 4];
                            x4(k, wrow, &act[tok * ab..(tok + 4) * ab], ab, &mut v4);
                            for (j, v) in v4.into_iter().enumerate() {
                                out[(tok + j) * rows + r] = v;
                            }
                            tok += 4;
                        }
                    }
                    for tok in tok..n_tokens {
                        out[tok * rows + r] = (kern.vec_dot)(k, wrow, &act[tok * ab..(tok + 1) * ab]);
                    }
                }
                t_old += cpu_seconds() - t;
                let t = cpu_seconds();
                let mut scratch = Vec::new();
                if gemm.uses_act_panel() {
                    gemm.pack_acts(&x, n_tokens, &mut acts, &mut scratch);
                }
                let a = match gemm.route {
                    Route::Float { .. } => Acts::Float { x: &x, n_tokens },
                    _ => Acts::Int(&acts),
                };
                let view = OutView::of(&mut out, rows, n_tokens).expect("fits");
                for r0 in (0..rows).step_by(block) {
                    gemm.rows(&w, rb, (r0, (r0 + block).min(rows)), &a, &mut panel, &view)
                        .expect("sizes fit");
                }
                t_new += cpu_seconds() - t;
            }
            let mac = (rows * k * n_tokens * rounds) as f64;
            println!(
                "{ty} {name:22} (1 thread, CPU time): old {:6.1} GMAC/s, new {:6.1} GMAC/s ({:.2}x)",
                mac / t_old / 1e9,
                mac / t_new / 1e9,
                t_old / t_new
            );
        }
    }
}

/// Microkernel throughput with everything in L1 (`gemm_speed l1`): one tile's rows, run again and again.
fn l1_tiles() {
    let simd = SimdLevel::detect();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::F16] {
        let kern = kernels(ty, simd).expect("kernels");
        let (k, rows, n_tokens) = (512, 4, 4);
        let Some(gemm) = Gemm::new(&kern, k, simd) else {
            continue;
        };
        let rb = ty.row_bytes(k).expect("whole blocks");
        let w = weights(ty, rows, k);
        let x: Vec<f32> = (0..n_tokens * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut acts = ActPanel::default();
        if gemm.uses_act_panel() {
            gemm.pack_acts(&x, n_tokens, &mut acts, &mut Vec::new());
        }
        let a = match gemm.route {
            Route::Float { .. } => Acts::Float { x: &x, n_tokens },
            _ => Acts::Int(&acts),
        };
        let mut panel = WeightPanel::default();
        let mut out = vec![0f32; n_tokens * rows];
        let view = OutView::of(&mut out, rows, n_tokens).expect("fits");
        let iters = 200_000;
        let t = cpu_seconds();
        for _ in 0..iters {
            gemm.rows(&w, rb, (0, rows), &a, &mut panel, &view).expect("fits");
        }
        let secs = cpu_seconds() - t;
        println!(
            "{ty}: {:.1} GMAC/s in L1 (one 4x4 tile of k={k} per call, unpack included)",
            (iters * rows * n_tokens * k) as f64 / secs / 1e9
        );
    }
    // The float microkernel alone on interleaved f32 rows in L1.
    for k in [256, 576, 1024] {
        let Some(tile) = quarrel_quant::gemm::float::best(simd) else {
            break;
        };
        use quarrel_quant::gemm::float::{FGROUPS, FMR, FNR, LANES};
        let wv: Vec<f32> = (0..FGROUPS * LANES * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let av: Vec<f32> = (0..FNR * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let a = quarrel_quant::gemm::float::Rows { x: &av, ld: k };
        let mut res = [[0f32; FMR]; FNR];
        let iters = 100_000 * 1024 / k;
        let t = cpu_seconds();
        for _ in 0..iters {
            tile(k, &wv, FGROUPS, &a, std::array::from_fn(|t| t), &mut res);
            std::hint::black_box(&mut res);
        }
        let secs = cpu_seconds() - t;
        println!(
            "float tile alone, k={k}: {:.1} GMAC/s",
            (iters * FMR * FNR * k) as f64 / secs / 1e9
        );
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("l1") {
        l1_tiles();
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("single") {
        let arg = |i: usize, d: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(d);
        compare_single(arg(2, 512), arg(3, 64), std::env::args().nth(4));
        return;
    }
    let arg = |i: usize, d: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let threads = arg(1, 2);
    let n_tokens = arg(2, 512);
    let repeats = arg(3, 3);
    let block = arg(4, 64);
    let simd = SimdLevel::detect();
    println!(
        "{threads} threads, {n_tokens} tokens, block {block} rows, simd {}",
        simd.name()
    );
    let mut acts = ActPanel::default();
    let mut panels: Vec<WeightPanel> = (0..threads).map(|_| WeightPanel::default()).collect();
    for ty in FORMATS {
        let kern = kernels(ty, simd).expect("kernels");
        let (mut t_old, mut t_new, mut macs) = (0f64, 0f64, 0f64);
        for (name, rows, k) in SHAPES {
            if ty.row_bytes(k).is_none() {
                continue;
            }
            let w = weights(ty, rows, k);
            let x: Vec<f32> = (0..n_tokens * k)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let Some(gemm) = Gemm::new(&kern, k, simd) else {
                println!("{ty}: no GEMM at this level");
                break;
            };
            let mut out_old = vec![0f32; n_tokens * rows];
            let mut out_new = vec![0f32; n_tokens * rows];
            let (mut best_old, mut best_new) = (f64::MAX, f64::MAX);
            for _ in 0..repeats {
                let t = Instant::now();
                old_path(&kern, &w, rows, k, &x, n_tokens, threads, &mut out_old);
                best_old = best_old.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                new_path(
                    &gemm,
                    &w,
                    rows,
                    &x,
                    n_tokens,
                    threads,
                    block,
                    &mut acts,
                    &mut panels,
                    &mut out_new,
                );
                best_new = best_new.min(t.elapsed().as_secs_f64());
            }
            let max_diff = out_old
                .iter()
                .zip(&out_new)
                .map(|(a, b)| (a - b).abs() / (a.abs() + 1.0))
                .fold(0f32, f32::max);
            let mac = (rows * k * n_tokens) as f64;
            println!(
                "{ty} {name:22}: old {:6.1} GMAC/s, new {:6.1} GMAC/s ({:.2}x) [max rel diff {max_diff:.1e}]",
                mac / best_old / 1e9,
                mac / best_new / 1e9,
                best_old / best_new
            );
            t_old += best_old;
            t_new += best_new;
            macs += mac;
        }
        if t_new > 0.0 {
            println!(
                "{ty} all shapes: old {:.1} GMAC/s, new {:.1} GMAC/s ({:.2}x)",
                macs / t_old / 1e9,
                macs / t_new / 1e9,
                t_old / t_new
            );
        }
    }
}
