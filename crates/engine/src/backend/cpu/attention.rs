//! Attention over the CPU KV cache: one task per (token, head), causal and optionally windowed.
//!
//! Matches llama.cpp's CPU numerics where it matters for agreement: with an F16 cache the query is rounded to f16
//! before the K dot products (as ggml converts it to K's type), scores and softmax are f32.

use super::kv::{CpuKv, KvData};
use crate::backend::AttentionParams;
use crate::batch::Batch;
use crate::model::config::LayerKind;
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Per-task scratch: scores [n_ctx], one converted row [head_dim], the rounded query [head_dim].
struct Scratch {
    scores: Vec<f32>,
    row: Vec<f32>,
    q: Vec<f32>,
}

/// q, out: [n_tokens, n_heads * head_dim]
pub fn attention(q: &[f32], kv: &CpuKv, batch: &Batch, p: AttentionParams, out: &mut [f32]) {
    let hd = p.head_dim;
    let group = p.n_heads / p.n_kv_heads;
    let n = batch.len() * p.n_heads;
    let n_ctx = kv.shape.n_ctx;
    out[..n * hd].par_chunks_mut(hd).enumerate().for_each_init(
        || Scratch {
            scores: vec![0.0; n_ctx],
            row: vec![0.0; hd],
            q: vec![0.0; hd],
        },
        |s, (i, o)| {
            let (t, h) = (i / p.n_heads, i % p.n_heads);
            let (seq, pos) = (batch.seq_ids[t] as usize, batch.positions[t] as usize);
            let start = match p.kind {
                LayerKind::Global => 0,
                LayerKind::Sliding { window } => (pos + 1).saturating_sub(window as usize),
            };
            let base = kv.offset(p.layer, seq, h / group, 0);
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
                let krow = read_row(&kv.k, base + j * hd, hd, &mut s.row);
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
                let vrow = read_row(&kv.v, base + j * hd, hd, &mut s.row);
                o.iter_mut().zip(vrow).for_each(|(a, &b)| *a += w * b);
            }
        },
    );
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
