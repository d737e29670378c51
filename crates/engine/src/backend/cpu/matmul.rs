//! Quantized matrix products on the CPU: activations are converted once into the weight format's partner format,
//! then every (row, token) pair is one integer dot product. Rows are split over the thread pool. Prompt-sized
//! products take tokens four at a time through the format's tile kernel ([`quarrel_quant::Kernels::vec_dot_x4`])
//! where it has one.

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

/// Activation rows per tile of a prompt-sized product.
const TOKEN_TILE: usize = 64;
/// Weight rows per tile.
const ROW_TILE: usize = 16;

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
