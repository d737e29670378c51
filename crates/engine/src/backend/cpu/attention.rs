//! Attention over the CPU KV cache: one task per (token, head), causal and optionally windowed.
//!
//! Bit for bit llama.cpp's CPU attention with flash attention off (checked op by op against its graph with
//! `dev/llama-ref/llama_dump`): with an F16 cache the query is rounded to f16 before the K products and the
//! probabilities before the V products (ggml converts them to the cache's type); products, exp and sums in ggml's
//! orders (see [`super::lanes16`]): a batch of several tokens as its tiled GEMM sums, one token as `vec_dot` does.

use super::kv::{CpuKv, KvData};
use super::lanes16::{Accumulators, Lanes16, LANES};
use super::pool::WorkPool;
use super::vec_ops;
use crate::backend::{AttentionParams, ScaleAt};
use crate::batch::Batch;
use crate::model::config::LayerKind;
use half::slice::HalfFloatSliceExt;
use quant::SimdLevel;

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

/// The arithmetic of one call: the reductions' accumulator orders, the query scaling, and the kernels.
struct Plan {
    lanes: Lanes16,
    round_f16: fn(&mut [f32]),
    /// Q·K over head_dim.
    scores: Accumulators,
    /// P·V over positions.
    values: Accumulators,
    /// Round the query to f16 (an F16 cache: ggml converts it to K's type).
    round_q: bool,
    /// Round the probabilities to f16 (an F16 cache: ggml converts them to V's type).
    round_p: bool,
}

/// A worker's scratch, kept between calls (grown, never shrunk): scores [n_ctx rounded up to 16], one widened row
/// [head_dim], the query [head_dim], value accumulators [4, 16, head_dim]. `query` writes every part it reads.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    row: Vec<f32>,
    q: Vec<f32>,
    acc: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch, sized for `n_ctx` positions of `hd` values.
fn with_scratch(n_ctx: usize, hd: usize, f: impl FnOnce(&mut Scratch)) {
    SCRATCH.with(|cell| {
        let mut s = cell.borrow_mut();
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        grow(&mut s.scores, n_ctx.next_multiple_of(LANES));
        grow(&mut s.row, hd);
        grow(&mut s.q, hd);
        grow(&mut s.acc, 4 * LANES * hd);
        f(&mut s)
    })
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
    attention_with(pool, simd, q, kv, batch, p, out, true)
}

/// [`attention`], widening the cache rows only where `may_widen` (the tests hold both paths to the same bits).
#[allow(clippy::too_many_arguments)]
fn attention_with(
    pool: &WorkPool,
    simd: SimdLevel,
    q: &[f32],
    kv: &CpuKv,
    batch: &Batch,
    p: AttentionParams,
    out: &mut [f32],
    may_widen: bool,
) {
    let hd = p.head_dim;
    // ggml multiplies a batch of several tokens in its tiled GEMM and a single token with `vec_dot`; each sums in
    // its own order (see lanes16). The value product's reduction (positions, padded to 256) always fits a tile.
    // With an F32 cache the query (a permuted view, and already the cache's type) never reaches the tiled GEMM:
    // its scores are `vec_dot`'s at every batch size.
    let scores = match kv.k {
        KvData::F16(_) => Accumulators::for_product(batch.len(), hd),
        KvData::F32(_) => Accumulators::Four,
    };
    let plan = Plan {
        lanes: Lanes16::new(simd),
        round_f16: vec_ops::round_f16_fn(simd),
        scores,
        values: Accumulators::for_product(batch.len(), LANES),
        round_q: matches!(kv.k, KvData::F16(_)),
        round_p: matches!(kv.v, KvData::F16(_)),
    };
    // With several query tokens per sequence (a prompt), widen the cache rows once instead of once per (token,
    // head). A batch of one token per sequence (batched decoding) reads each row once per head anyway.
    let widen = may_widen && matches!(kv.k, KvData::F16(_)) && worth_widening(kv, batch);
    let wide = widen.then(|| Wide::new(pool, kv, batch, p.layer));
    let rows = match &wide {
        Some(w) => Rows::Wide(w),
        None => Rows::Cache(kv),
    };
    let group = p.n_heads / p.n_kv_heads;
    let out_rows = OutRows(out[..batch.len() * p.n_heads * hd].as_mut_ptr());
    if wide.is_some() {
        // A task takes up to TOKEN_TILE consecutive tokens of one sequence and the query heads of one KV head,
        // so that their K and V rows stay in cache between queries.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for t in 0..batch.len() {
            match runs.last_mut() {
                Some((a, b)) if *b == t && *b - *a < TOKEN_TILE && batch.seq_ids[*a] == batch.seq_ids[t] => *b += 1,
                _ => runs.push((t, t + 1)),
            }
        }
        pool.run(runs.len() * p.n_kv_heads, &|task| {
            let ((t0, t1), kvh) = (runs[task / p.n_kv_heads], task % p.n_kv_heads);
            with_scratch(kv.shape.n_ctx, hd, |s| {
                for t in t0..t1 {
                    for h in kvh * group..(kvh + 1) * group {
                        let i = t * p.n_heads + h;
                        // SAFETY: row i of out belongs to this task alone and lies inside out.
                        let o = unsafe { std::slice::from_raw_parts_mut(out_rows.at(i * hd), hd) };
                        query(q, &rows, batch, &p, i, o, s, &plan);
                    }
                }
            });
        });
        return;
    }
    let n = batch.len() * p.n_heads;
    let n_tasks = (pool.n_threads() * 4).min(n).max(1);
    let per_task = n.div_ceil(n_tasks);
    pool.run(n.div_ceil(per_task), &|task| {
        with_scratch(kv.shape.n_ctx, hd, |s| {
            for i in task * per_task..((task + 1) * per_task).min(n) {
                // SAFETY: row i of out belongs to this task alone and lies inside out[..n * hd].
                let o = unsafe { std::slice::from_raw_parts_mut(out_rows.at(i * hd), hd) };
                query(q, &rows, batch, &p, i, o, s, &plan);
            }
        });
    });
}

/// Consecutive batch tokens of one sequence in one prompt task.
const TOKEN_TILE: usize = 4;

/// One (token, head) pair, i = t * n_heads + h, as ggml computes it with flash attention off: the query (scaled
/// first where the architecture says so, then rounded to the cache's type) times each key; the scores scaled,
/// masked, and put through softmax over the whole 16-aligned span of positions (masked ones give exp 0); the
/// probabilities rounded to the cache's type times the values. Positions count from the sequence's first cache
/// row, which is how llama.cpp's cache cells line up for one sequence.
#[allow(clippy::too_many_arguments)]
fn query(
    q: &[f32],
    rows: &Rows<'_>,
    batch: &Batch,
    p: &AttentionParams,
    i: usize,
    o: &mut [f32],
    s: &mut Scratch,
    plan: &Plan,
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
    let (qv, row) = (&mut s.q[..hd], &mut s.row[..hd]);
    qv.copy_from_slice(&q[i * hd..(i + 1) * hd]);
    let score_scale = match p.scale_at {
        ScaleAt::Query => {
            qv.iter_mut().for_each(|v| *v *= p.scale);
            1.0
        }
        ScaleAt::Scores => p.scale,
    };
    if plan.round_q {
        (plan.round_f16)(qv);
    }
    let (c0, c1) = (start / LANES * LANES, (pos / LANES + 1) * LANES);
    s.scores[c0..start].fill(f32::NEG_INFINITY);
    s.scores[pos + 1..c1].fill(f32::NEG_INFINITY);
    match (rows, plan.scores) {
        (Rows::Wide(w), Accumulators::One) => {
            let sc = &mut s.scores[start..=pos];
            (plan.lanes.dot_rows)(qv, &w.k[base + start * hd..base + (pos + 1) * hd], sc);
            sc.iter_mut().for_each(|v| *v *= score_scale);
        }
        _ => {
            for j in start..=pos {
                let krow = rows.k(base + j * hd, hd, &mut row[..]);
                s.scores[j] = (plan.lanes.dot)(qv, krow, plan.scores) * score_scale;
            }
        }
    }
    let max = vec_ops::max(&s.scores[start..=pos]);
    let inv = (1.0 / (plan.lanes.exp_sum)(&mut s.scores[c0..c1], max)) as f32;
    let probs = &mut s.scores[start..=pos];
    probs.iter_mut().for_each(|v| *v *= inv);
    if plan.round_p {
        (plan.round_f16)(probs);
    }
    if let (Rows::Wide(w), Accumulators::One) = (rows, plan.values) {
        if hd.is_multiple_of(LANES) {
            let vrows = &w.v[base + start * hd..base + (pos + 1) * hd];
            (plan.lanes.weighted_sum)(&s.scores[start..=pos], vrows, start, hd, o);
            return;
        }
    }
    let sets = plan.values.count();
    let acc = &mut s.acc[..sets * LANES * hd];
    acc.fill(0.0);
    match rows {
        Rows::Wide(w) => {
            // A run of positions within one 16-chunk at a time (one accumulator set, consecutive lanes).
            let mut j = start;
            while j <= pos {
                let end = ((j / LANES + 1) * LANES).min(pos + 1);
                let set = &mut acc[(j / LANES) % sets * LANES * hd..][..LANES * hd];
                let vrows = &w.v[base + j * hd..base + end * hd];
                (plan.lanes.fma_rows)(set, j % LANES, &s.scores[j..end], vrows, hd);
                j = end;
            }
        }
        Rows::Cache(_) => {
            for j in start..=pos {
                let at = ((j / LANES) % sets * LANES + j % LANES) * hd;
                let vrow = rows.v(base + j * hd, hd, &mut row[..]);
                (plan.lanes.fma_row)(&mut acc[at..at + hd], s.scores[j], vrow);
            }
        }
    }
    (plan.lanes.reduce_rows)(acc, plan.values, hd, o);
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
mod tests {
    use super::*;
    use crate::backend::{KvPrecision, KvShape};

    fn vals(n: usize, salt: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 31 + salt * 17) % 97) as f32 - 48.0) * 0.03)
            .collect()
    }

    fn params(kind: LayerKind, scale_at: ScaleAt) -> AttentionParams {
        AttentionParams {
            layer: 0,
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 32,
            scale: 0.25,
            scale_at,
            kind,
        }
    }

    /// A cache of two sequences (11 and 6 positions, interleaved in one batch) and the batch's queries.
    fn setup(precision: KvPrecision) -> (CpuKv, Batch, Vec<f32>) {
        let shape = KvShape {
            n_layers: 1,
            n_seqs: 2,
            n_ctx: 40,
            n_kv_heads: 2,
            head_dim: 32,
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
        let kv_dim = 2 * 32;
        kv.store(
            0,
            &vals(batch.len() * kv_dim, 1),
            &vals(batch.len() * kv_dim, 2),
            &batch,
        )
        .unwrap();
        let q = vals(batch.len() * 6 * 32, 3);
        (kv, batch, q)
    }

    /// The widened prompt path and the plain one give the same bits for the same batch.
    #[test]
    fn widened_rows_give_the_same_bits() {
        let pool = WorkPool::new(2).expect("pool");
        for kind in [LayerKind::Global, LayerKind::Sliding { window: 5 }] {
            for scale_at in [ScaleAt::Scores, ScaleAt::Query] {
                let (kv, batch, q) = setup(KvPrecision::F16);
                let p = params(kind, scale_at);
                let (mut a, mut b) = (vec![0f32; q.len()], vec![0f32; q.len()]);
                attention_with(&pool, SimdLevel::detect(), &q, &kv, &batch, p, &mut a, true);
                attention_with(&pool, SimdLevel::detect(), &q, &kv, &batch, p, &mut b, false);
                assert_eq!(a, b, "{kind:?} {scale_at:?}");
            }
        }
    }

    /// Every SIMD level gives the scalar bits, for a batch (one accumulator) and for single tokens (four).
    #[test]
    fn every_level_gives_the_scalar_bits() {
        let pool = WorkPool::new(2).expect("pool");
        for precision in [KvPrecision::F16, KvPrecision::F32] {
            let (kv, batch, q) = setup(precision);
            let p = params(LayerKind::Sliding { window: 7 }, ScaleAt::Scores);
            let run = |level: SimdLevel, b: &Batch, q: &[f32]| {
                let mut o = vec![0f32; q.len()];
                attention(&pool, level, q, &kv, b, p, &mut o);
                o
            };
            let want = run(SimdLevel::Scalar, &batch, &q);
            let mut one = Batch::new();
            one.push(0, 10, 0, false);
            let q1 = &q[..6 * 32];
            let want1 = run(SimdLevel::Scalar, &one, q1);
            for level in SimdLevel::available() {
                assert_eq!(run(level, &batch, &q), want, "{precision:?} {level:?} batch");
                assert_eq!(run(level, &one, q1), want1, "{precision:?} {level:?} one token");
            }
        }
    }

    /// A single token (four accumulators) and the same token inside a batch (one) differ only by rounding.
    #[test]
    fn batch_and_single_token_orders_agree_closely() {
        let pool = WorkPool::new(2).expect("pool");
        let (kv, batch, q) = setup(KvPrecision::F16);
        let p = params(LayerKind::Global, ScaleAt::Query);
        let mut all = vec![0f32; q.len()];
        attention(&pool, SimdLevel::detect(), &q, &kv, &batch, p, &mut all);
        for t in 0..batch.len() {
            let mut one = Batch::new();
            one.push(0, batch.positions[t], batch.seq_ids[t], false);
            let mut o = vec![0f32; 6 * 32];
            attention(
                &pool,
                SimdLevel::detect(),
                &q[t * 192..(t + 1) * 192],
                &kv,
                &one,
                p,
                &mut o,
            );
            for (a, b) in o.iter().zip(&all[t * 192..(t + 1) * 192]) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "token {t}: {a} vs {b}");
            }
        }
    }
}
