//! Attention over the CPU KV cache: one task per (token, head), causal and optionally windowed.
//!
//! Matches llama.cpp's CPU numerics where it matters for agreement: with an F16 cache the query is rounded to f16
//! before the K dot products (as ggml converts it to K's type), scores and softmax are f32.

use super::kv::{CpuKv, KvData};
use super::pool::WorkPool;
use super::vec_ops::{self, VecOps};
use crate::backend::AttentionParams;
use crate::batch::Batch;
use crate::model::config::LayerKind;
use half::slice::HalfFloatSliceExt;
use quant::SimdLevel;

/// Per-task scratch: scores [n_ctx], one converted row [head_dim], the rounded query [head_dim].
struct Scratch {
    scores: Vec<f32>,
    row: Vec<f32>,
    q: Vec<f32>,
}

/// A raw pointer to the output rows; each task writes a disjoint set of rows.
#[derive(Clone, Copy)]
struct OutRows(*mut f32);
unsafe impl Send for OutRows {}
unsafe impl Sync for OutRows {}

impl OutRows {
    /// The pointer, through a method so that closures capture the whole (Sync) wrapper.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// This layer's K and V of the batch's sequences, widened from f16 once per call: [slots, n_kv_heads, n_rows,
/// head_dim] each. A prompt-sized batch reads every cached row once per query head otherwise.
struct Wide {
    k: Vec<f32>,
    v: Vec<f32>,
    /// [n_seqs] slot of each sequence in the batch (usize::MAX when absent)
    slot_of_seq: Vec<usize>,
    n_rows: usize,
}

impl Wide {
    fn new(pool: &WorkPool, kv: &CpuKv, batch: &Batch, layer: usize) -> Self {
        let sh = &kv.shape;
        let (hd, nkv) = (sh.head_dim, sh.n_kv_heads);
        let mut slot_of_seq = vec![usize::MAX; sh.n_seqs];
        let mut seqs = Vec::new();
        for &s in &batch.seq_ids {
            if slot_of_seq[s as usize] == usize::MAX {
                slot_of_seq[s as usize] = seqs.len();
                seqs.push(s as usize);
            }
        }
        let n_rows = batch.positions.iter().map(|&p| p as usize + 1).max().unwrap_or(0);
        let len = seqs.len() * nkv * n_rows * hd;
        let (mut k, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (kp, vp) = (OutRows(k.as_mut_ptr()), OutRows(v.as_mut_ptr()));
        pool.run(seqs.len() * nkv, &|i| {
            let (kp, vp) = (kp, vp);
            let (seq, head) = (seqs[i / nkv], i % nkv);
            let from = kv.offset(layer, seq, head, 0);
            let n = n_rows * hd;
            // SAFETY: block i of the wide buffers belongs to this task alone.
            let (kd, vd) = unsafe {
                (
                    std::slice::from_raw_parts_mut(kp.0.add(i * n), n),
                    std::slice::from_raw_parts_mut(vp.0.add(i * n), n),
                )
            };
            if let (KvData::F16(ks), KvData::F16(vs)) = (&kv.k, &kv.v) {
                ks[from..from + n].convert_to_f32_slice(kd);
                vs[from..from + n].convert_to_f32_slice(vd);
            }
        });
        Self {
            k,
            v,
            slot_of_seq,
            n_rows,
        }
    }

    fn base(&self, seq: usize, head: usize, n_kv_heads: usize, hd: usize) -> usize {
        (self.slot_of_seq[seq] * n_kv_heads + head) * self.n_rows * hd
    }
}

/// Most bytes the widened rows of one layer may take.
const MAX_WIDE_BYTES: usize = 256 << 20;

/// Widening pays when the batch holds at least two query tokens per sequence and its copy stays small.
fn worth_widening(kv: &CpuKv, batch: &Batch) -> bool {
    let mut seqs: Vec<u32> = batch.seq_ids.clone();
    seqs.sort_unstable();
    seqs.dedup();
    let n_rows = batch.positions.iter().map(|&p| p as usize + 1).max().unwrap_or(0);
    let bytes = 2 * 4 * seqs.len() * kv.shape.n_kv_heads * n_rows * kv.shape.head_dim;
    batch.len() >= 2 * seqs.len() && bytes <= MAX_WIDE_BYTES
}

/// Where a (token, head) task reads its K and V rows.
enum Rows<'a> {
    Cache(&'a CpuKv),
    Wide(&'a Wide),
}

impl Rows<'_> {
    fn k<'a>(&'a self, at: usize, hd: usize, tmp: &'a mut [f32]) -> &'a [f32] {
        match self {
            Rows::Cache(kv) => read_row(&kv.k, at, hd, tmp),
            Rows::Wide(w) => &w.k[at..at + hd],
        }
    }
    fn v<'a>(&'a self, at: usize, hd: usize, tmp: &'a mut [f32]) -> &'a [f32] {
        match self {
            Rows::Cache(kv) => read_row(&kv.v, at, hd, tmp),
            Rows::Wide(w) => &w.v[at..at + hd],
        }
    }
}

/// q, out: [n_tokens, n_heads * head_dim]
pub fn attention(
    pool: &WorkPool,
    simd: SimdLevel,
    q: &[f32],
    kv: &CpuKv,
    batch: &Batch,
    p: AttentionParams,
    out: &mut [f32],
) {
    let hd = p.head_dim;
    let ops = VecOps::new(simd);
    // With several query tokens per sequence (a prompt), widen the cache rows once instead of once per (token,
    // head). A batch of one token per sequence (batched decoding) reads each row once per head anyway.
    let widen = matches!(kv.k, KvData::F16(_)) && worth_widening(kv, batch);
    let wide = widen.then(|| Wide::new(pool, kv, batch, p.layer));
    let rows = match &wide {
        Some(w) => Rows::Wide(w),
        None => Rows::Cache(kv),
    };
    if let Some(w) = &wide {
        return attention_tiled(pool, &ops, q, kv, w, batch, p, out);
    }
    let n = batch.len() * p.n_heads;
    let n_tasks = (pool.n_threads() * 4).min(n).max(1);
    let per_task = n.div_ceil(n_tasks);
    let out_rows = OutRows(out[..n * hd].as_mut_ptr());
    pool.run(n.div_ceil(per_task), &|task| {
        let mut s = Scratch {
            scores: vec![0.0; kv.shape.n_ctx],
            row: vec![0.0; hd],
            q: vec![0.0; hd],
        };
        for i in task * per_task..((task + 1) * per_task).min(n) {
            // SAFETY: row i of out belongs to this task alone and lies inside out[..n * hd].
            let o = unsafe { std::slice::from_raw_parts_mut(out_rows.at(i * hd), hd) };
            head(q, kv, &rows, batch, &p, i, o, &mut s, &ops);
        }
    });
}

/// Consecutive batch tokens of one sequence that share K/V row reads in a prompt.
const TOKEN_TILE: usize = 4;

/// Prompt attention over widened rows: a task takes up to TOKEN_TILE consecutive tokens of one sequence and the
/// query heads of one KV head, so that each K and V row is read once for all of them. Every query's arithmetic is
/// [`head`]'s, in the same order (scores by increasing position, the same max, exp, normalization and rounding,
/// values accumulated by increasing position), so the results are bit for bit those of the per-head path.
#[allow(clippy::too_many_arguments)]
fn attention_tiled(
    pool: &WorkPool,
    ops: &VecOps,
    q: &[f32],
    kv: &CpuKv,
    w: &Wide,
    batch: &Batch,
    p: AttentionParams,
    out: &mut [f32],
) {
    let hd = p.head_dim;
    let group = p.n_heads / p.n_kv_heads;
    // Runs of consecutive tokens of one sequence, at most TOKEN_TILE long.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for t in 0..batch.len() {
        match runs.last_mut() {
            Some((a, b)) if *b == t && *b - *a < TOKEN_TILE && batch.seq_ids[*a] == batch.seq_ids[t] => *b += 1,
            _ => runs.push((t, t + 1)),
        }
    }
    let n_tasks = runs.len() * p.n_kv_heads;
    let out_rows = OutRows(out[..batch.len() * p.n_heads * hd].as_mut_ptr());
    let round_q = matches!(kv.k, KvData::F16(_));
    let round_p = matches!(kv.v, KvData::F16(_));
    pool.run(n_tasks, &|task| {
        let ((t0, t1), kvh) = (runs[task / p.n_kv_heads], task % p.n_kv_heads);
        let n_q = (t1 - t0) * group;
        // [n_q, hd] rounded queries, [n_q, n_rows] scores, per query (out index, start, pos)
        let mut qs = vec![0f32; n_q * hd];
        let mut scores = vec![0f32; n_q * w.n_rows];
        let mut spans = Vec::with_capacity(n_q);
        for t in t0..t1 {
            let pos = batch.positions[t] as usize;
            let start = match p.kind {
                LayerKind::Global => 0,
                LayerKind::Sliding { window } => (pos + 1).saturating_sub(window as usize),
            };
            for g in 0..group {
                let i = t * p.n_heads + kvh * group + g;
                let qd = &mut qs[spans.len() * hd..(spans.len() + 1) * hd];
                let qh = &q[i * hd..(i + 1) * hd];
                qd.copy_from_slice(qh);
                if round_q {
                    (ops.round_f16)(qd);
                }
                spans.push((i, start, pos));
            }
        }
        let seq = batch.seq_ids[t0] as usize;
        let base = w.base(seq, kvh, p.n_kv_heads, hd);
        let lo = spans.iter().map(|s| s.1).min().unwrap_or(0);
        let hi = spans.iter().map(|s| s.2).max().unwrap_or(0);
        // Keys in blocks of 8: a query whose range covers the whole block takes the 8 dot products at once, two
        // such queries together.
        for jb in (lo..=hi).step_by(8) {
            let je = (jb + 8).min(hi + 1);
            let covers = |&(_, start, pos): &(usize, usize, usize)| je - jb == 8 && start <= jb && je - 1 <= pos;
            let mut qi = 0;
            while qi < spans.len() {
                let qv = &qs[qi * hd..(qi + 1) * hd];
                let row = qi * w.n_rows;
                if qi + 1 < spans.len() && covers(&spans[qi]) && covers(&spans[qi + 1]) {
                    let mut d = [[0f32; 8]; 2];
                    let qb = &qs[(qi + 1) * hd..(qi + 2) * hd];
                    (ops.dot8x2)(qv, qb, &w.k[base + jb * hd..base + (jb + 8) * hd], &mut d);
                    for (q, d8) in d.iter().enumerate() {
                        let row = (qi + q) * w.n_rows;
                        for (sc, d) in scores[row + jb..row + jb + 8].iter_mut().zip(d8) {
                            *sc = d * p.scale;
                        }
                    }
                    qi += 2;
                    continue;
                }
                let (_, start, pos) = spans[qi];
                if covers(&spans[qi]) {
                    let mut d8 = [0f32; 8];
                    (ops.dot8)(qv, &w.k[base + jb * hd..base + (jb + 8) * hd], &mut d8);
                    for (sc, d) in scores[row + jb..row + jb + 8].iter_mut().zip(d8) {
                        *sc = d * p.scale;
                    }
                } else {
                    for j in jb.max(start)..je.min(pos + 1) {
                        let krow = &w.k[base + j * hd..base + (j + 1) * hd];
                        scores[row + j] = (ops.dot)(qv, krow) * p.scale;
                    }
                }
                qi += 1;
            }
        }
        for (qi, &(_, start, pos)) in spans.iter().enumerate() {
            let sc = &mut scores[qi * w.n_rows + start..=qi * w.n_rows + pos];
            let max = vec_ops::max(sc);
            let inv = (1.0 / (ops.exp_sum)(sc, max)) as f32;
            sc.iter_mut().for_each(|v| *v *= inv);
            if round_p {
                (ops.round_f16)(sc);
            }
            // SAFETY: output row i belongs to this task alone (its token and head) and lies inside out.
            unsafe { std::slice::from_raw_parts_mut(out_rows.at(spans[qi].0 * hd), hd) }.fill(0.0);
        }
        for jb in (lo..=hi).step_by(8) {
            let je = (jb + 8).min(hi + 1);
            for (qi, &(i, start, pos)) in spans.iter().enumerate() {
                // SAFETY: as above.
                let o = unsafe { std::slice::from_raw_parts_mut(out_rows.at(i * hd), hd) };
                let row = qi * w.n_rows;
                if je - jb == 8 && start <= jb && je - 1 <= pos {
                    let mut p8 = [0f32; 8];
                    p8.copy_from_slice(&scores[row + jb..row + jb + 8]);
                    (ops.axpy8)(o, &p8, &w.v[base + jb * hd..base + (jb + 8) * hd]);
                } else {
                    for j in jb.max(start)..je.min(pos + 1) {
                        (ops.axpy)(o, scores[row + j], &w.v[base + j * hd..base + (j + 1) * hd]);
                    }
                }
            }
        }
    });
}

/// One (token, head) pair: i = t * n_heads + h.
#[allow(clippy::too_many_arguments)]
fn head(
    q: &[f32],
    kv: &CpuKv,
    rows: &Rows<'_>,
    batch: &Batch,
    p: &AttentionParams,
    i: usize,
    o: &mut [f32],
    s: &mut Scratch,
    ops: &VecOps,
) {
    let hd = p.head_dim;
    let group = p.n_heads / p.n_kv_heads;
    let (t, h) = (i / p.n_heads, i % p.n_heads);
    let (seq, pos) = (batch.seq_ids[t] as usize, batch.positions[t] as usize);
    let start = match p.kind {
        LayerKind::Global => 0,
        LayerKind::Sliding { window } => (pos + 1).saturating_sub(window as usize),
    };
    let base = match rows {
        Rows::Cache(kv) => kv.offset(p.layer, seq, h / group, 0),
        Rows::Wide(w) => w.base(seq, h / group, p.n_kv_heads, hd),
    };
    let qh = &q[i * hd..(i + 1) * hd];
    s.q.copy_from_slice(qh);
    if matches!(kv.k, KvData::F16(_)) {
        (ops.round_f16)(&mut s.q);
    }
    let scores = &mut s.scores[start..=pos];
    let mut max = f32::NEG_INFINITY;
    for (j, sc) in (start..=pos).zip(scores.iter_mut()) {
        let krow = rows.k(base + j * hd, hd, &mut s.row);
        *sc = (ops.dot)(&s.q, krow) * p.scale;
        max = max.max(*sc);
    }
    let inv = (1.0 / (ops.exp_sum)(scores, max)) as f32;
    // With an F16 cache ggml multiplies V by the probabilities rounded to f16; so do we.
    let round = matches!(kv.v, KvData::F16(_));
    scores.iter_mut().for_each(|sc| *sc *= inv);
    if round {
        (ops.round_f16)(scores);
    }
    o.fill(0.0);
    for (j, &w) in (start..=pos).zip(scores.iter()) {
        let vrow = rows.v(base + j * hd, hd, &mut s.row);
        (ops.axpy)(o, w, vrow);
    }
}

fn read_row<'a>(data: &'a KvData, at: usize, n: usize, tmp: &'a mut [f32]) -> &'a [f32] {
    match data {
        KvData::F32(d) => &d[at..at + n],
        KvData::F16(d) => {
            d[at..at + n].convert_to_f32_slice(tmp);
            tmp
        }
    }
}

#[cfg(test)]
mod tiled_tests {
    use super::*;
    use crate::backend::{KvPrecision, KvShape};

    /// The tiled prompt path against the per-head path on the same cache and queries: bit for bit.
    #[test]
    fn tiled_prompt_attention_equals_the_per_head_path() {
        let pool = WorkPool::new(2).expect("pool");
        for (precision, kind) in [
            (KvPrecision::F16, LayerKind::Global),
            (KvPrecision::F16, LayerKind::Sliding { window: 5 }),
        ] {
            let shape = KvShape {
                n_layers: 1,
                n_seqs: 2,
                n_ctx: 32,
                n_kv_heads: 2,
                head_dim: 16,
                precision,
            };
            let mut kv = CpuKv::new(shape);
            let mut batch = Batch::new();
            for i in 0..11u32 {
                batch.push(0, i, 0, false);
                if i < 6 {
                    batch.push(0, i, 1, false);
                }
            }
            let kv_dim = 2 * 16;
            let vals = |n: usize, salt: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| (((i * 31 + salt * 17) % 97) as f32 - 48.0) * 0.03)
                    .collect()
            };
            kv.store(
                0,
                &vals(batch.len() * kv_dim, 1),
                &vals(batch.len() * kv_dim, 2),
                &batch,
            )
            .unwrap();
            let p = AttentionParams {
                layer: 0,
                n_heads: 6,
                n_kv_heads: 2,
                head_dim: 16,
                scale: 0.25,
                kind,
            };
            let q = vals(batch.len() * 6 * 16, 3);
            let mut tiled = vec![0f32; q.len()];
            attention(&pool, SimdLevel::detect(), &q, &kv, &batch, p, &mut tiled);
            // The per-head path: decode-shaped calls (one token each) never widen.
            let mut per_head = vec![0f32; q.len()];
            for t in 0..batch.len() {
                let mut one = Batch::new();
                one.push(0, batch.positions[t], batch.seq_ids[t], false);
                let qt = &q[t * 96..(t + 1) * 96];
                attention(
                    &pool,
                    SimdLevel::detect(),
                    qt,
                    &kv,
                    &one,
                    p,
                    &mut per_head[t * 96..(t + 1) * 96],
                );
            }
            assert_eq!(tiled, per_head, "{precision:?} {kind:?}");
        }
    }
}
