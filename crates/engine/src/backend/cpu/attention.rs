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
        // Keys in blocks of 8: a query whose range covers the whole block takes the 8 dot products at once.
        for jb in (lo..=hi).step_by(8) {
            let je = (jb + 8).min(hi + 1);
            for (qi, &(_, start, pos)) in spans.iter().enumerate() {
                let qv = &qs[qi * hd..(qi + 1) * hd];
                let row = qi * w.n_rows;
                if je - jb == 8 && start <= jb && je - 1 <= pos {
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
            }
        }
        for (qi, &(_, start, pos)) in spans.iter().enumerate() {
            let sc = &mut scores[qi * w.n_rows + start..=qi * w.n_rows + pos];
            let max = sc.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let inv = 1.0 / (ops.exp_sum)(sc, max);
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
    let sum = (ops.exp_sum)(scores, max);
    let inv = 1.0 / sum;
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

/// The vector kernels of attention at one SIMD level. Every level gives the same bits: eight dot-product lanes
/// summed in lane order, products rounded before they are added (no FMA), f16 rounding to nearest even. (A SIMD
/// exp was measured no faster here and stays out, so scores keep std's exp.)
struct VecOps {
    /// `x = exp(x - max)` in place; returns the sum in element order.
    exp_sum: fn(&mut [f32], f32) -> f32,
    dot: fn(&[f32], &[f32]) -> f32,
    /// `out[j] = dot(q, rows[j * q.len()..])` for 8 consecutive rows, each exactly as `dot` computes it.
    dot8: fn(&[f32], &[f32], &mut [f32; 8]),
    axpy: fn(&mut [f32], f32, &[f32]),
    /// `axpy` of 8 consecutive rows in order (each element gets the same adds in the same order).
    axpy8: fn(&mut [f32], &[f32; 8], &[f32]),
    round_f16: fn(&mut [f32]),
}

impl VecOps {
    fn new(simd: SimdLevel) -> Self {
        #[cfg(target_arch = "x86_64")]
        if simd >= SimdLevel::Avx2 {
            return Self {
                exp_sum: x86::exp_sum,
                dot: x86::dot,
                dot8: x86::dot8,
                axpy8: x86::axpy8,
                axpy: x86::axpy,
                round_f16: x86::round_f16,
            };
        }
        let _ = simd;
        Self {
            exp_sum,
            dot,
            dot8,
            axpy,
            axpy8,
            round_f16,
        }
    }
}

fn dot8(q: &[f32], rows: &[f32], out: &mut [f32; 8]) {
    let n = q.len();
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot(q, &rows[j * n..(j + 1) * n]);
    }
}

fn axpy8(o: &mut [f32], p: &[f32; 8], rows: &[f32]) {
    let n = o.len();
    for (j, &w) in p.iter().enumerate() {
        axpy(o, w, &rows[j * n..(j + 1) * n]);
    }
}

/// `x = exp(x - max)` in place; returns the sum in element order.
fn exp_sum(x: &mut [f32], max: f32) -> f32 {
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

fn axpy(o: &mut [f32], w: f32, v: &[f32]) {
    o.iter_mut().zip(v).for_each(|(a, &b)| *a += w * b);
}

fn round_f16(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: chosen only when AVX2/FMA/F16C were detected (SimdLevel::Avx2 or better).
        unsafe { dot_avx2(a, b) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, both slices hold n elements; unaligned loads.
            let (x, y) = unsafe { (_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i))) };
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
            i += 8;
        }
        let mut lanes = [0f32; 8];
        // SAFETY: 8 writable floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        lanes.iter().sum::<f32>() + a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum::<f32>()
    }

    pub fn dot8(q: &[f32], rows: &[f32], out: &mut [f32; 8]) {
        if !q.len().is_multiple_of(8) || rows.len() < 8 * q.len() {
            return super::dot8(q, rows, out);
        }
        // SAFETY: as in `dot`; lengths checked above.
        unsafe { dot8_avx2(q, rows, out) }
    }

    /// Eight dot products with eight lanes each, then an 8x8 transpose so that every key's lanes are summed in
    /// lane order (0 + 1, + 2, ... + 7) exactly as `dot` sums them, eight keys per vector add.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot8_avx2(q: &[f32], rows: &[f32], out: &mut [f32; 8]) {
        let n = q.len();
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n (n is a multiple of 8) and rows holds 8 rows of n.
            unsafe {
                let x = _mm256_loadu_ps(q.as_ptr().add(i));
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(x, _mm256_loadu_ps(rows.as_ptr().add(j * n + i))));
                }
            }
            i += 8;
        }
        // Transpose: t[l] holds lane l of the eight accumulators.
        let t0 = _mm256_unpacklo_ps(acc[0], acc[1]);
        let t1 = _mm256_unpackhi_ps(acc[0], acc[1]);
        let t2 = _mm256_unpacklo_ps(acc[2], acc[3]);
        let t3 = _mm256_unpackhi_ps(acc[2], acc[3]);
        let t4 = _mm256_unpacklo_ps(acc[4], acc[5]);
        let t5 = _mm256_unpackhi_ps(acc[4], acc[5]);
        let t6 = _mm256_unpacklo_ps(acc[6], acc[7]);
        let t7 = _mm256_unpackhi_ps(acc[6], acc[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let l = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        let mut sum = l[0];
        for v in &l[1..] {
            sum = _mm256_add_ps(sum, *v);
        }
        // SAFETY: 8 writable floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    }

    pub fn exp_sum(x: &mut [f32], max: f32) -> f32 {
        // SAFETY: as in `dot`.
        unsafe { exp_sum_avx2(x, max) }
    }

    /// ln of the smallest normal f32: below it exp is 0 here (the true value is subnormal).
    const LOWEST: f32 = -87.336_54;

    /// exp(x) for x <= 0 (scores minus their maximum): 2^(x·log2 e) split into an integer power of two and a
    /// degree-6 polynomial of the remainder, within a few ulp of f32 exp; below [`LOWEST`] the result is 0.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn exp8(x_in: __m256) -> __m256 {
        let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x_in, _mm256_set1_ps(LOWEST));
        let x = _mm256_max_ps(x_in, _mm256_set1_ps(LOWEST));
        let t = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E));
        let k = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 120.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 24.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0 / 6.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)));
        _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(pow2)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn exp_sum_avx2(x: &mut [f32], max: f32) -> f32 {
        let n = x.len();
        let m = _mm256_set1_ps(max);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, exp8(_mm256_sub_ps(_mm256_loadu_ps(p), m)));
            }
            i += 8;
        }
        for v in x[i..].iter_mut() {
            *v = (*v - max).exp();
        }
        x.iter().sum()
    }

    pub fn axpy8(o: &mut [f32], p: &[f32; 8], rows: &[f32]) {
        if !o.len().is_multiple_of(64) || rows.len() < 8 * o.len() {
            return super::axpy8(o, p, rows);
        }
        // SAFETY: as in `dot`; lengths checked above.
        unsafe { axpy8_avx2(o, p, rows) }
    }

    /// 64 output elements at a time held in registers while the 8 rows are added in order.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy8_avx2(o: &mut [f32], p: &[f32; 8], rows: &[f32]) {
        let n = o.len();
        let w: [__m256; 8] = std::array::from_fn(|j| _mm256_set1_ps(p[j]));
        for c in (0..n).step_by(64) {
            // SAFETY: c + 64 <= n (n is a multiple of 64); rows holds 8 rows of n.
            unsafe {
                let op = o.as_mut_ptr().add(c);
                let mut acc: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(op.add(8 * k)));
                for (j, wj) in w.iter().enumerate() {
                    let rp = rows.as_ptr().add(j * n + c);
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(*wj, _mm256_loadu_ps(rp.add(8 * k))));
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(op.add(8 * k), *a);
                }
            }
        }
    }

    pub fn axpy(o: &mut [f32], w: f32, v: &[f32]) {
        // SAFETY: as in `dot`.
        unsafe { axpy_avx2(o, w, v) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy_avx2(o: &mut [f32], w: f32, v: &[f32]) {
        let n = o.len().min(v.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let p = o.as_mut_ptr().add(i);
                let x = _mm256_add_ps(
                    _mm256_loadu_ps(p),
                    _mm256_mul_ps(wv, _mm256_loadu_ps(v.as_ptr().add(i))),
                );
                _mm256_storeu_ps(p, x);
            }
            i += 8;
        }
        for (a, &b) in o[i..n].iter_mut().zip(&v[i..n]) {
            *a += w * b;
        }
    }

    pub fn round_f16(x: &mut [f32]) {
        // SAFETY: as in `dot`.
        unsafe { round_f16_f16c(x) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn round_f16_f16c(x: &mut [f32]) {
        let n = x.len();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(p));
                _mm256_storeu_ps(p, _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        super::round_f16(&mut x[i..]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_exp_stays_within_a_few_ulp_of_std() {
        for level in SimdLevel::available() {
            let ops = VecOps::new(level);
            let mut x: Vec<f32> = (0..20_000).map(|i| -(i as f32) * 0.0045).collect();
            let want: Vec<f32> = x.iter().map(|v| v.exp()).collect();
            let sum = (ops.exp_sum)(&mut x, 0.0);
            for (i, (&g, &w)) in x.iter().zip(&want).enumerate() {
                let tol = 4.0 * f32::EPSILON * w + f32::MIN_POSITIVE;
                assert!(
                    (g - w).abs() <= tol,
                    "{level:?} exp({}) = {g}, std {w}",
                    -(i as f32) * 0.0045
                );
            }
            assert!((sum - want.iter().sum::<f32>()).abs() <= 1e-4 * sum, "{level:?} sum");
        }
    }

    #[test]
    fn every_simd_level_gives_the_scalar_bits() {
        let scalar = VecOps::new(SimdLevel::Scalar);
        for level in SimdLevel::available() {
            let ops = VecOps::new(level);
            for n in [1usize, 7, 8, 64, 100, 128, 256] {
                let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
                let b: Vec<f32> = (0..n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021).collect();
                assert_eq!(
                    (ops.dot)(&a, &b).to_bits(),
                    (scalar.dot)(&a, &b).to_bits(),
                    "{level:?} dot {n}"
                );
                let (mut x, mut y) = (a.clone(), a.clone());
                (ops.axpy)(&mut x, 0.37, &b);
                (scalar.axpy)(&mut y, 0.37, &b);
                assert_eq!(x, y, "{level:?} axpy {n}");
                if n % 8 == 0 {
                    let rows: Vec<f32> = (0..8 * n).map(|i| ((i * 29 % 89) as f32 - 44.0) * 0.017).collect();
                    let (mut d, mut e) = ([0f32; 8], [0f32; 8]);
                    (ops.dot8)(&a, &rows, &mut d);
                    (scalar.dot8)(&a, &rows, &mut e);
                    let singles: Vec<u32> = (0..8)
                        .map(|j| (scalar.dot)(&a, &rows[j * n..(j + 1) * n]).to_bits())
                        .collect();
                    assert_eq!(d.map(f32::to_bits).to_vec(), singles, "{level:?} dot8 {n}");
                    assert_eq!(e.map(f32::to_bits).to_vec(), singles, "scalar dot8 {n}");
                    let p8 = [0.1f32, -0.3, 0.25, 0.0, 1.5, -2.0, 0.7, 0.01];
                    let (mut x, mut y) = (a.clone(), a.clone());
                    (ops.axpy8)(&mut x, &p8, &rows);
                    for (j, &w) in p8.iter().enumerate() {
                        (scalar.axpy)(&mut y, w, &rows[j * n..(j + 1) * n]);
                    }
                    assert_eq!(x, y, "{level:?} axpy8 {n}");
                }
                let (mut x, mut y) = (b.clone(), b.clone());
                (ops.round_f16)(&mut x);
                (scalar.round_f16)(&mut y);
                assert_eq!(x, y, "{level:?} f16 rounding {n}");
            }
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
