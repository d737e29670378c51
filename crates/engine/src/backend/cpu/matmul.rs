//! Quantized matrix products on the CPU: activations are converted once into the weight format's partner format,
//! then every (row, token) pair is one integer dot product. Rows are split over the thread pool.
//!
//! Prompt-sized products (from [`Gemm::min_tokens`] tokens, 8 to 24, where the CPU has a microkernel) go through the
//! register-tiled GEMM of [`quant::gemm`] instead: the converted activations are laid out once for it,
//! then each task unpacks a block of weight rows into its thread's panel and runs every token against it. K-quant
//! weights from 8 tokens take ggml's tiled order instead ([`ktiled`], `matmul_ktiled`). Smaller products
//! (decoding) keep the per-pair path, which takes tokens four at a time through the format's tile kernel
//! ([`quant::Kernels::vec_dot_x4`]) where it has one.

use std::cell::RefCell;
use std::sync::Mutex;

use quant::gemm::ktiled::{self, KFormat};
use quant::gemm::{ActPanel, Acts, Gemm, GemmError, OutView, Route, WeightPanel, MR};
use quant::SimdLevel;

use super::{CpuBackend, CpuWeight};
use crate::error::{EngineError, Result};

/// A raw pointer the pool's tasks share; each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// A raw pointer to the activation scratch; each task converts a disjoint set of rows.
#[derive(Clone, Copy)]
struct SharedBytes(*mut u8);
unsafe impl Send for SharedBytes {}
unsafe impl Sync for SharedBytes {}

/// Activation rows per tile of a prompt-sized product on the per-pair path.
const TOKEN_TILE: usize = 64;
/// Weight rows per tile on the per-pair path.
const ROW_TILE: usize = 16;

/// Fewest tokens for which the GEMM is considered at all (below, the plan is not even looked up).
const GEMM_MIN_TOKENS: usize = 8;
/// Most weight rows a GEMM task unpacks at once (its panel stays in L2 while every token runs against it).
const GEMM_BLOCK_ROWS: usize = 64;

thread_local! {
    /// Each pool thread's unpacked weight rows, kept between calls (sized by the largest block seen).
    static WEIGHT_PANEL: RefCell<WeightPanel> = RefCell::new(WeightPanel::default());
    /// The calling thread's activations laid out for the GEMM, kept between calls.
    static ACT_PANEL: RefCell<ActPanel> = RefCell::new(ActPanel::default());
    /// Each pool thread's unpacked K-quant rows, and the calling thread's activation bands, for [`ktiled`].
    static KTILED_ROWS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static KTILED_ACTS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// out: [n_tokens, w.rows] = x: [n_tokens, w.row_len] · wᵀ
pub fn matmul(be: &CpuBackend, w: &CpuWeight, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<()> {
    let kernels = w.kernels.ok_or(EngineError::UnsupportedType {
        name: w.src.info.name.clone(),
        ty: w.ty,
        backend: "cpu",
    })?;
    let k = w.row_len;
    let rows = w.rows;
    let act_row_bytes = kernels.act.row_bytes(k).ok_or_else(|| EngineError::Shape {
        name: w.src.info.name.clone(),
        expected: vec![kernels.act.block_elems() as u64],
        found: w.src.info.dims.clone(),
    })?;
    if x.len() < n_tokens * k || out.len() < n_tokens * rows {
        return Err(EngineError::BadSetting {
            name: "matmul buffers",
            value: format!("x {} / out {}", x.len(), out.len()),
            reason: format!(
                "{} needs x >= {} and out >= {}",
                w.src.info.name,
                n_tokens * k,
                n_tokens * rows
            ),
        });
    }
    let mut scratch = be.act_scratch.lock().unwrap_or_else(|e| e.into_inner());
    if scratch.len() < n_tokens * act_row_bytes {
        scratch.resize(n_tokens * act_row_bytes, 0);
    }
    // [n_tokens, act_row_bytes]
    let act = &mut scratch[..n_tokens * act_row_bytes];
    // K-quants from 8 tokens: ggml's tiled order (llama.cpp's products bit for bit), where this CPU has its kernel.
    let ktiled_fmt = KFormat::of(w.ty).filter(|_| be.simd >= SimdLevel::Avx512 && n_tokens >= ktiled::MIN_TOKENS);
    if n_tokens >= GEMM_MIN_TOKENS && ktiled_fmt.is_none() {
        if let Some(gemm) = Gemm::new(&kernels, k, be.simd).filter(|g| n_tokens >= g.min_tokens()) {
            return matmul_gemm(be, w, &gemm, x, n_tokens, act, out);
        }
    }
    if n_tokens == 1 {
        (kernels.quantize_act_row)(&x[..k], act);
    } else {
        // Tokens split over the pool, each converted into its own activation row.
        let per_task = n_tokens.div_ceil(be.n_threads * 2);
        let act_out = SharedBytes(act.as_mut_ptr());
        be.work.run(n_tokens.div_ceil(per_task), &|task| {
            let dst = act_out;
            for t in task * per_task..((task + 1) * per_task).min(n_tokens) {
                // SAFETY: row t of the activation scratch belongs to this task alone and lies inside it.
                let row = unsafe { std::slice::from_raw_parts_mut(dst.0.add(t * act_row_bytes), act_row_bytes) };
                (kernels.quantize_act_row)(&x[t * k..(t + 1) * k], row);
            }
        });
    }
    let act = &*act;
    if let Some(fmt) = ktiled_fmt {
        return matmul_ktiled(be, w, &fmt, act, act_row_bytes, n_tokens, out);
    }
    let weights = w.bytes();
    let rb = w.row_bytes;
    // Enough chunks to balance the threads, few enough to keep per-task overhead small.
    let n_chunks = (be.n_threads * 4).min(rows).max(1);
    let chunk_rows = rows.div_ceil(n_chunks);
    let shared = SharedOut(out.as_mut_ptr());
    be.work.run(rows.div_ceil(chunk_rows), &|c| {
        {
            let out = shared;
            let r0 = c * chunk_rows;
            let r1 = (r0 + chunk_rows).min(rows);
            // Tiles of TOKEN_TILE activations x ROW_TILE weight rows stay in cache while every pair is dotted.
            for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
                let t1 = (t0 + TOKEN_TILE).min(n_tokens);
                for rt in (r0..r1).step_by(ROW_TILE) {
                    for r in rt..(rt + ROW_TILE).min(r1) {
                        let wrow = &weights[r * rb..(r + 1) * rb];
                        // Groups of four tokens through the tile kernel (each weight block unpacked once per
                        // group), the rest one by one.
                        let mut t = t0;
                        if let Some(vec_dot_x4) = kernels.vec_dot_x4 {
                            while t + 4 <= t1 {
                                // [4, act_row_bytes]
                                let a4 = &act[t * act_row_bytes..(t + 4) * act_row_bytes];
                                let mut v4 = [0f32; 4];
                                vec_dot_x4(k, wrow, a4, act_row_bytes, &mut v4);
                                for (j, v) in v4.into_iter().enumerate() {
                                    // SAFETY: as below.
                                    unsafe { *out.0.add((t + j) * rows + r) = v };
                                }
                                t += 4;
                            }
                        }
                        for t in t..t1 {
                            let a = &act[t * act_row_bytes..(t + 1) * act_row_bytes];
                            let v = (kernels.vec_dot)(k, wrow, a);
                            // SAFETY: (t, r) pairs are disjoint across tasks (rows split by chunk) and inside
                            // out's bounds (checked above).
                            unsafe { *out.0.add(t * rows + r) = v };
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

/// The K-quant product in ggml's tiled order ([`ktiled`]): `act` holds the tokens' Q8_K rows, laid out here in
/// bands of 16; each task unpacks a block of weight rows into its thread's panel and runs every band against it.
fn matmul_ktiled(
    be: &CpuBackend,
    w: &CpuWeight,
    fmt: &KFormat,
    act: &[u8],
    act_row_bytes: usize,
    n_tokens: usize,
    out: &mut [f32],
) -> Result<()> {
    let (rows, k) = (w.rows, w.row_len);
    let busy = || EngineError::BadSetting {
        name: "matmul",
        value: w.src.info.name.clone(),
        reason: "re-entered on one thread".into(),
    };
    KTILED_ACTS.with(|cell| {
        let mut bands = cell.try_borrow_mut().map_err(|_| busy())?;
        bands.clear();
        bands.resize(ktiled::act_bytes(k, n_tokens), 0);
        for t in 0..n_tokens {
            ktiled::pack_act(&act[t * act_row_bytes..(t + 1) * act_row_bytes], k, t, &mut bands);
        }
        let bands = &*bands;
        let run = ktiled::best(be.simd);
        let block = GEMM_BLOCK_ROWS.min(rows.div_ceil(2 * be.n_threads)).max(4);
        // SAFETY: out holds n_tokens * rows floats (checked by `matmul`) and outlives the view; the tasks below
        // take disjoint row blocks.
        let view = unsafe { OutView::new(out.as_mut_ptr(), rows, n_tokens) };
        let weights = w.bytes();
        let failed = Mutex::new(false);
        be.work.run(rows.div_ceil(block), &|c| {
            let (r0, r1) = (c * block, ((c + 1) * block).min(rows));
            let wrb = ktiled::weight_row_bytes(k);
            let done = KTILED_ROWS.with(|panel| {
                let Ok(mut panel) = panel.try_borrow_mut() else {
                    return false;
                };
                panel.resize(wrb * (r1 - r0), 0);
                for r in r0..r1 {
                    let row = &weights[r * w.row_bytes..(r + 1) * w.row_bytes];
                    ktiled::unpack_row(fmt, row, k, &mut panel[(r - r0) * wrb..(r - r0 + 1) * wrb]);
                }
                run(fmt, k, &panel[..wrb * (r1 - r0)], bands, n_tokens, &view, r0);
                true
            });
            if !done {
                *failed.lock().unwrap_or_else(|e| e.into_inner()) = true;
            }
        });
        match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            true => Err(busy()),
            false => Ok(()),
        }
    })
}

/// Rows per GEMM task. The integer routes: at most [`GEMM_BLOCK_ROWS`], and enough blocks for every thread to get
/// two. The float route (tiles of 16-row groups): the multiple of 16 up to [`GEMM_BLOCK_ROWS`] that gives the
/// busiest thread the fewest rows when the blocks are dealt out evenly (576 rows on 2 threads: 12 blocks of 48
/// rather than 9 of 64), the largest such.
fn gemm_block(gemm: &Gemm, rows: usize, n_threads: usize) -> usize {
    let align = gemm.tile_rows();
    if align == MR {
        return rows
            .div_ceil(n_threads * 2)
            .next_multiple_of(MR)
            .clamp(MR, GEMM_BLOCK_ROWS);
    }
    let busiest = |b: usize| rows.div_ceil(b).div_ceil(n_threads.max(1)) * b;
    (1..=GEMM_BLOCK_ROWS.max(align) / align)
        .rev()
        .map(|m| m * align)
        .min_by_key(|&b| busiest(b))
        .unwrap_or(align)
}

/// The GEMM route of [`matmul`] (buffers already checked): `act` is the activation scratch, [n_tokens,
/// act_row_bytes].
fn matmul_gemm(
    be: &CpuBackend,
    w: &CpuWeight,
    gemm: &Gemm,
    x: &[f32],
    n_tokens: usize,
    act: &mut [u8],
    out: &mut [f32],
) -> Result<()> {
    let rows = w.rows;
    let k = w.row_len;
    let to_engine = |e: GemmError| EngineError::BadSetting {
        name: "matmul",
        value: w.src.info.name.clone(),
        reason: e.to_string(),
    };
    ACT_PANEL.with(|cell| {
        let mut acts = cell.try_borrow_mut().map_err(|_| EngineError::BadSetting {
            name: "matmul",
            value: w.src.info.name.clone(),
            reason: "re-entered on one thread".into(),
        })?;
        if gemm.uses_act_panel() {
            // Tokens split over the pool: each converted into its activation row, then laid out in its slot.
            let act_row_bytes = act.len() / n_tokens;
            gemm.reset_acts(&mut acts, n_tokens);
            let writer = acts.writer();
            let per_task = n_tokens.div_ceil(be.n_threads * 2);
            let act_out = SharedBytes(act.as_mut_ptr());
            be.work.run(n_tokens.div_ceil(per_task), &|task| {
                let dst = act_out;
                for t in task * per_task..((task + 1) * per_task).min(n_tokens) {
                    // SAFETY: row t of the activation scratch belongs to this task alone and lies inside it.
                    let row = unsafe { std::slice::from_raw_parts_mut(dst.0.add(t * act_row_bytes), act_row_bytes) };
                    (gemm.kernels.quantize_act_row)(&x[t * k..(t + 1) * k], row);
                    // SAFETY: token t's slot is this task's alone.
                    if let Some(slot) = unsafe { writer.slot(t) } {
                        gemm.pack_converted(row, slot);
                    }
                }
            });
        }
        let acts = match gemm.route {
            Route::Float { .. } => Acts::Float { x, n_tokens },
            _ => Acts::Int(&acts),
        };
        let block = gemm_block(gemm, rows, be.n_threads);
        // SAFETY: out holds n_tokens * rows floats (checked by `matmul`) and outlives the view; the tasks below
        // take disjoint row blocks.
        let view = unsafe { OutView::new(out.as_mut_ptr(), rows, n_tokens) };
        let weights = w.bytes();
        let failed: Mutex<Option<GemmError>> = Mutex::new(None);
        be.work.run(rows.div_ceil(block), &|c| {
            let r0 = c * block;
            let result = WEIGHT_PANEL.with(|panel| match panel.try_borrow_mut() {
                Ok(mut panel) => gemm.rows(
                    weights,
                    w.row_bytes,
                    (r0, (r0 + block).min(rows)),
                    &acts,
                    &mut panel,
                    &view,
                ),
                Err(_) => Err(GemmError::Busy),
            });
            if let Err(e) = result {
                *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        });
        match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(to_engine(e)),
            None => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quant::gemm::{float_tile_reference, int_block_reference};
    use quant::{kernels, GgmlType, SimdLevel};

    fn plan(ty: GgmlType) -> Gemm {
        let kern = kernels(ty, SimdLevel::Scalar).expect("kernels");
        Gemm::with_tiles(&kern, 576, SimdLevel::Scalar, int_block_reference, float_tile_reference).expect("a plan")
    }

    #[test]
    fn float_blocks_balance_the_threads() {
        let f16 = plan(GgmlType::F16);
        // (rows, threads, block): 576 rows are 12 blocks of 48 (9 of 64 leave one thread a block more).
        for (rows, threads, want) in [
            (576, 2, 48),
            (1536, 2, 64),
            (192, 2, 48),
            (49152, 2, 64),
            (576, 1, 64),
            (7, 2, 16),
        ] {
            let b = gemm_block(&f16, rows, threads);
            assert_eq!(b, want, "{rows} rows on {threads} threads");
            assert_eq!(b % 16, 0);
        }
    }

    #[test]
    fn integer_blocks_stay_as_they_were() {
        let q4k = plan(GgmlType::Q4_K);
        assert_eq!(gemm_block(&q4k, 576, 2), 64);
        assert_eq!(gemm_block(&q4k, 192, 2), 48);
        assert_eq!(gemm_block(&q4k, 6, 2), 4);
    }
}
