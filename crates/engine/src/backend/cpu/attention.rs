//! Attention over the CPU KV cache: one task per (token, head), causal and optionally windowed.
//!
//! Matches llama.cpp's CPU numerics where it matters for agreement: with an F16 cache the query is rounded to f16
//! before the K dot products (as ggml converts it to K's type), scores and softmax are f32.

use super::kv::{CpuKv, KvData};
use super::pool::WorkPool;
use crate::backend::AttentionParams;
use crate::batch::Batch;
use crate::model::config::LayerKind;
use half::f16;
use half::slice::HalfFloatSliceExt;

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
pub fn attention(pool: &WorkPool, q: &[f32], kv: &CpuKv, batch: &Batch, p: AttentionParams, out: &mut [f32]) {
    let hd = p.head_dim;
    // With several query tokens per sequence (a prompt), widen the cache rows once instead of once per (token,
    // head). A batch of one token per sequence (batched decoding) reads each row once per head anyway.
    let widen = matches!(kv.k, KvData::F16(_)) && worth_widening(kv, batch);
    let wide = widen.then(|| Wide::new(pool, kv, batch, p.layer));
    let rows = match &wide {
        Some(w) => Rows::Wide(w),
        None => Rows::Cache(kv),
    };
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
            head(q, kv, &rows, batch, &p, i, o, &mut s);
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
    match &kv.k {
        KvData::F16(_) => {
            s.q.iter_mut()
                .zip(qh)
                .for_each(|(d, &v)| *d = f16::from_f32(v).to_f32())
        }
        KvData::F32(_) => s.q.copy_from_slice(qh),
    }
    let scores = &mut s.scores[start..=pos];
    let mut max = f32::NEG_INFINITY;
    for (j, sc) in (start..=pos).zip(scores.iter_mut()) {
        let krow = rows.k(base + j * hd, hd, &mut s.row);
        *sc = dot(&s.q, krow) * p.scale;
        max = max.max(*sc);
    }
    let mut sum = 0.0f32;
    for sc in scores.iter_mut() {
        *sc = (*sc - max).exp();
        sum += *sc;
    }
    let inv = 1.0 / sum;
    // With an F16 cache ggml multiplies V by the probabilities rounded to f16; so do we.
    let round = matches!(kv.v, KvData::F16(_));
    o.fill(0.0);
    for (j, &sc) in (start..=pos).zip(scores.iter()) {
        let w = if round {
            f16::from_f32(sc * inv).to_f32()
        } else {
            sc * inv
        };
        let vrow = rows.v(base + j * hd, hd, &mut s.row);
        o.iter_mut().zip(vrow).for_each(|(a, &b)| *a += w * b);
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

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent lanes so the compiler vectorizes.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}
