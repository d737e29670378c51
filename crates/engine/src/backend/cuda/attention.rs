//! Attention over the device KV cache: decode batches through the split decode kernel (graph-stable launch
//! shapes); batches whose sequences each come as one run of tokens run by run as each would alone, prompts through
//! the flash-attention kernel (`kernels/flash.cu`; head dims 64 and 128; a single prompt of another head size
//! through cuBLAS GEMMs, `prefill.rs`) and shorter runs through the decode kernel; interleaved sequences through
//! the warp-per-query kernel.

use super::{
    device, err, lock, Arg, CudaBackend, CudaKv, DECODE_SPLIT_KEYS, FLASH_ROWS, FLASH_THREADS, MAX_DECODE_TOKENS,
    MAX_SPLITS, NO_SPLIT_PAIRS, PROMPT_ATTENTION_TOKENS,
};
use crate::backend::{AttentionParams, KvPrecision};
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use crate::model::config::LayerKind;
use cudarc::driver::CudaSlice;

// Decode batches always take the decode kernel, which can write the 8-bit form of its output.
const _: () = assert!(MAX_DECODE_TOKENS < PROMPT_ATTENTION_TOKENS);

/// Which split count of decode attention a batch whose furthest token is at `max_pos` takes: a split per
/// DECODE_SPLIT_KEYS keys, at most MAX_SPLITS. A decode step's graph is keyed by it (`device::graph_key`), so a
/// step at position 100 runs one split and no combining launch however long the cache is.
pub(super) fn decode_split_bucket(max_pos: usize) -> usize {
    (max_pos + 1).div_ceil(DECODE_SPLIT_KEYS).clamp(1, MAX_SPLITS)
}

/// Splits of decode attention over `pairs` (token, head) pairs whose furthest token is at `max_pos`: its bucket,
/// fewer where the pairs alone fill the device.
pub(super) fn decode_splits(max_pos: usize, pairs: usize) -> usize {
    decode_split_bucket(max_pos)
        .min(NO_SPLIT_PAIRS * MAX_SPLITS / pairs.max(1))
        .max(1)
}

impl CudaBackend {
    /// Pairs of (token, head) and the attention split plan for a batch: (split_len, n_splits).
    fn split_plan(kv: &CudaKv, batch: &Batch, n_heads: usize) -> (usize, usize) {
        let max_pos = batch.positions.iter().copied().max().unwrap_or(0) as usize + 1;
        if batch.len() * n_heads >= NO_SPLIT_PAIRS {
            return (kv.shape.n_ctx.max(1), 1);
        }
        (kv.split_len, max_pos.div_ceil(kv.split_len).clamp(1, MAX_SPLITS))
    }

    /// Attention of `batch` into `out`; with `q8` (decode batches only: at most `MAX_DECODE_TOKENS` tokens, head
    /// size a multiple of 32) also the 8-bit activations of `out` at those (aq, am) pointers, for the output
    /// projection.
    pub(super) fn attention_any(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
        out: &mut CudaSlice<f32>,
        q8: Option<(u64, u64)>,
    ) -> Result<()> {
        let s = kv.shape;
        let window = self.check_attention(q, kv, batch, p)?;
        let n = batch.len();
        self.check_len("attention output", out.len(), n * p.n_heads * p.head_dim)?;
        let flash = match p.head_dim {
            64 if self.flash_prefill => Some(&self.funcs.flash_prefill_64),
            128 if self.flash_prefill => Some(&self.funcs.flash_prefill_128),
            _ => None,
        }
        .filter(|_| s.precision == KvPrecision::F16);
        let (pos, seq) = {
            let meta = lock(&self.meta);
            (self.ptr(&meta.pos), self.ptr(&meta.seq))
        };
        // Byte offsets of token `start`'s rows.
        let (q_base, out_base, row_bytes) = (self.ptr(q), self.ptr(out), (p.n_heads * p.head_dim * 4) as u64);
        let at = |start: usize| Rows {
            q: q_base + start as u64 * row_bytes,
            out: out_base + start as u64 * row_bytes,
            pos: pos + start as u64 * 4,
            seq: seq + start as u64 * 4,
        };
        match plan_attention(&batch.seq_ids, flash.is_some(), s.precision == KvPrecision::F16) {
            AttentionPlan::Decode => self.attention_rows(at(0), n, max_pos(&batch.positions), kv, p, window, q8, None),
            _ if q8.is_some() => Err(err("attention", "8-bit output outside a decode batch")),
            AttentionPlan::Interleaved => {
                let split = Self::split_plan(kv, batch, p.n_heads);
                self.attention_rows(at(0), n, 0, kv, p, window, None, Some(split))
            }
            AttentionPlan::Gemm => self.attention_gemm(q, kv, batch, p, out),
            AttentionPlan::Runs {
                flash: long,
                decode: short,
            } => {
                if let Some(f) = flash.filter(|_| !long.is_empty()) {
                    self.attention_flash(f, q, kv, &long, p, window, out)?;
                }
                for (start, len, _) in short {
                    let last = max_pos(&batch.positions[start..start + len]);
                    self.attention_rows(at(start), len, last, kv, p, window, None, None)?;
                }
                Ok(())
            }
        }
    }

    /// Checks a batch's attention against its cache and queries; returns the kernels' window argument (0: global).
    pub(super) fn check_attention(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
    ) -> Result<i32> {
        let s = kv.shape;
        device::check_batch_fits(&s, batch)?;
        self.check_len("attention queries", q.len(), batch.len() * p.n_heads * p.head_dim)?;
        if p.head_dim != s.head_dim
            || p.n_kv_heads == 0
            || !p.n_heads.is_multiple_of(p.n_kv_heads)
            || p.n_kv_heads != s.n_kv_heads
        {
            return Err(EngineError::BadSetting {
                name: "attention heads",
                value: format!(
                    "{} heads, {} kv heads, head_dim {}",
                    p.n_heads, p.n_kv_heads, p.head_dim
                ),
                reason: format!("cache has {} kv heads of {}", s.n_kv_heads, s.head_dim),
            });
        }
        Ok(match p.kind {
            LayerKind::Global => 0,
            LayerKind::Sliding { window } => window as i32,
        })
    }

    /// Attention of `n` tokens from `rows` (their queries, outputs, positions and sequences): the decode kernel
    /// (a block per token and head, split by the furthest position `max_pos`: `decode_splits`), or with `split` =
    /// (keys a split, splits) the warp-per-query kernel. `q8`: the outputs' 8-bit form too (decode kernel only).
    #[allow(clippy::too_many_arguments)]
    fn attention_rows(
        &self,
        rows: Rows,
        n: usize,
        max_pos: usize,
        kv: &CudaKv,
        p: AttentionParams,
        window: i32,
        q8: Option<(u64, u64)>,
        split: Option<(usize, usize)>,
    ) -> Result<()> {
        let s = kv.shape;
        let pairs = n * p.n_heads;
        let (f, threads, n_splits) = match split {
            None => {
                let n_splits = decode_splits(max_pos, pairs);
                let (f, threads) = match s.precision {
                    KvPrecision::F16 => &self.funcs.attn_decode_f16,
                    KvPrecision::F32 => &self.funcs.attn_decode_f32,
                }
                .for_head_dim(p.head_dim);
                (f, threads, n_splits)
            }
            Some((_, n_splits)) => {
                let f = match s.precision {
                    KvPrecision::F16 => &self.funcs.attn_f16,
                    KvPrecision::F32 => &self.funcs.attn_f32,
                };
                (f, 32, n_splits)
            }
        };
        let mut args = vec![
            Arg::Ptr(rows.q),
            Arg::Ptr(self.ptr(&kv.k)),
            Arg::Ptr(self.ptr(&kv.v)),
            Arg::Ptr(rows.pos),
            Arg::Ptr(rows.seq),
            Arg::Ptr(rows.out),
            Arg::Ptr(self.ptr(&kv.part)),
            Arg::I32(p.n_heads as i32),
            Arg::I32(p.n_kv_heads as i32),
            Arg::I32(p.head_dim as i32),
            Arg::I32(s.n_ctx as i32),
            Arg::I32(s.n_seqs as i32),
            Arg::I32(p.layer as i32),
            Arg::F32(p.scale),
            Arg::I32(window),
        ];
        let (aq, am) = q8.unwrap_or((0, 0));
        match split {
            Some((split_len, _)) => args.push(Arg::I32(split_len as i32)),
            None => args.extend([Arg::Ptr(aq), Arg::Ptr(am)]),
        }
        self.launch(f, (pairs as u32, n_splits as u32, 1), threads, &args)?;
        if n_splits > 1 {
            self.launch(
                &self.funcs.attn_combine,
                (pairs as u32, 1, 1),
                p.head_dim as u32,
                &[
                    Arg::Ptr(self.ptr(&kv.part)),
                    Arg::Ptr(rows.out),
                    Arg::I32(n_splits as i32),
                    Arg::I32(p.head_dim as i32),
                    Arg::Ptr(aq),
                    Arg::Ptr(am),
                ],
            )?;
        }
        Ok(())
    }

    /// Prompts through the flash-attention kernel, a launch per run of one sequence's tokens (start, length,
    /// sequence): the queries in f16, then a block per 64 rows and head.
    #[allow(clippy::too_many_arguments)]
    fn attention_flash(
        &self,
        f: &cudarc::driver::CudaFunction,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        runs: &[Run],
        p: AttentionParams,
        window: i32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let s = kv.shape;
        let q_dim = p.n_heads * p.head_dim;
        let q_len = runs.iter().map(|r| r.1).sum::<usize>() * q_dim;
        let mut scratch = lock(&self.scratch);
        scratch.ensure_x16(&self.stream, q_len)?;
        self.launch_1d(
            &self.funcs.to_f16,
            q_len,
            &[
                Arg::Ptr(self.ptr(q)),
                Arg::Ptr(self.ptr(&scratch.x16)),
                Arg::Usize(q_len),
            ],
        )?;
        let meta = lock(&self.meta);
        for &(start, n, seq) in runs {
            // Byte offsets of the run's queries (f16), positions (i32) and outputs (f32).
            let (q_at, pos_at, out_at) = (
                (start * q_dim * 2) as u64,
                (start * 4) as u64,
                (start * q_dim * 4) as u64,
            );
            self.launch(
                f,
                (n.div_ceil(FLASH_ROWS) as u32, p.n_heads as u32, 1),
                FLASH_THREADS,
                &[
                    Arg::Ptr(self.ptr(&scratch.x16) + q_at),
                    Arg::Ptr(self.ptr(&kv.k)),
                    Arg::Ptr(self.ptr(&kv.v)),
                    Arg::Ptr(self.ptr(&meta.pos) + pos_at),
                    Arg::Ptr(self.ptr(out) + out_at),
                    Arg::I32(n as i32),
                    Arg::I32(p.n_heads as i32),
                    Arg::I32(p.n_kv_heads as i32),
                    Arg::I32(s.n_ctx as i32),
                    Arg::I32(s.n_seqs as i32),
                    Arg::I32(p.layer as i32),
                    Arg::I32(seq as i32),
                    Arg::F32(p.scale),
                    Arg::I32(window),
                ],
            )?;
        }
        Ok(())
    }
}

/// One sequence's run of tokens in a batch: (start, length, sequence).
type Run = (usize, usize, u32);

/// The furthest of some positions (0 for none).
pub(super) fn max_pos(positions: &[u32]) -> usize {
    positions.iter().copied().max().unwrap_or(0) as usize
}

/// Which kernels a batch's attention takes.
#[derive(Debug, PartialEq)]
enum AttentionPlan {
    /// Decode batches: one launch of the decode kernel, its splits fixed by the cache size (not by positions), so
    /// that a captured graph stays valid.
    Decode,
    /// Sequences interleaved: a warp per (token, head), split by the batch's positions.
    Interleaved,
    /// One sequence's prompt in an F16 cache without a flash-attention instance for its head size: cuBLAS GEMMs.
    Gemm,
    /// Each sequence's run as it would run alone (so that prompts batched together attend exactly as alone):
    /// prompts through the flash-attention kernel on tensor cores, shorter runs through the decode kernel.
    Runs { flash: Vec<Run>, decode: Vec<Run> },
}

/// The plan for a batch of `seq_ids`; `flash`: a flash-attention instance serves this head size and cache.
fn plan_attention(seq_ids: &[u32], flash: bool, f16: bool) -> AttentionPlan {
    let n = seq_ids.len();
    if n <= MAX_DECODE_TOKENS {
        return AttentionPlan::Decode;
    }
    let Some(runs) = seq_runs(seq_ids) else {
        return AttentionPlan::Interleaved;
    };
    if !flash && f16 && runs.len() == 1 && n >= PROMPT_ATTENTION_TOKENS {
        return AttentionPlan::Gemm;
    }
    let (long, short) = runs.into_iter().partition(|r| flash && r.1 >= PROMPT_ATTENTION_TOKENS);
    AttentionPlan::Runs {
        flash: long,
        decode: short,
    }
}

/// Device addresses of a batch's rows from some token on: queries and outputs [n, n_heads, head_dim] f32,
/// positions and sequences [n] i32.
struct Rows {
    q: u64,
    out: u64,
    pos: u64,
    seq: u64,
}

/// The batch's runs of one sequence's tokens as (start, length, sequence), or `None` when a sequence's tokens are
/// split over several runs.
fn seq_runs(seq_ids: &[u32]) -> Option<Vec<Run>> {
    let mut runs: Vec<Run> = Vec::new();
    for (i, &seq) in seq_ids.iter().enumerate() {
        if let Some(last) = runs.last_mut().filter(|r| r.2 == seq) {
            last.1 += 1;
        } else if runs.iter().any(|r| r.2 == seq) {
            return None;
        } else {
            runs.push((i, 1, seq));
        }
    }
    Some(runs)
}

#[cfg(test)]
mod tests {
    use super::{decode_split_bucket, decode_splits, plan_attention, seq_runs, AttentionPlan, Run};
    use crate::backend::cuda::{DECODE_SPLIT_KEYS, MAX_SPLITS, NO_SPLIT_PAIRS};

    #[test]
    fn decode_splits_follow_the_furthest_position() {
        // One split up to DECODE_SPLIT_KEYS keys (positions 0..DECODE_SPLIT_KEYS - 1), one more per as many keys.
        assert_eq!(decode_split_bucket(0), 1);
        assert_eq!(decode_split_bucket(DECODE_SPLIT_KEYS - 1), 1);
        assert_eq!(decode_split_bucket(DECODE_SPLIT_KEYS), 2);
        assert_eq!(decode_split_bucket(3 * DECODE_SPLIT_KEYS + 5), 4);
        // Capped, however long the context.
        assert_eq!(decode_split_bucket(1 << 30), MAX_SPLITS);
        // A batch whose (token, head) pairs fill the device alone takes fewer, and never none.
        assert_eq!(decode_splits(8 * DECODE_SPLIT_KEYS, 9), 9);
        assert_eq!(decode_splits(1 << 30, NO_SPLIT_PAIRS * MAX_SPLITS / 4), 4);
        assert_eq!(decode_splits(1 << 30, NO_SPLIT_PAIRS * MAX_SPLITS + 1), 1);
    }

    #[test]
    fn runs_of_one_sequence_each() {
        assert_eq!(seq_runs(&[3, 3, 3, 1, 1]), Some(vec![(0, 3, 3), (3, 2, 1)]));
        assert_eq!(seq_runs(&[0]), Some(vec![(0, 1, 0)]));
        assert_eq!(seq_runs(&[]), Some(vec![]));
        // Sequence 0 comes back after sequence 1: not runs the flash kernel can take one by one.
        assert_eq!(seq_runs(&[0, 1, 0]), None);
    }

    fn seqs(runs: &[(u32, usize)]) -> Vec<u32> {
        runs.iter().flat_map(|&(s, n)| std::iter::repeat_n(s, n)).collect()
    }

    #[test]
    fn batches_attend_run_by_run_as_alone() {
        // Decode batches (up to 8 tokens, any sequences): one launch whatever the flash kernels.
        assert_eq!(
            plan_attention(&seqs(&[(0, 1), (1, 1), (2, 1)]), true, true),
            AttentionPlan::Decode
        );
        assert_eq!(plan_attention(&seqs(&[(0, 8)]), false, false), AttentionPlan::Decode);
        // One prompt: flash attention where an instance exists, else GEMMs in an F16 cache, else the decode kernel.
        let one = seqs(&[(3, 40)]);
        let runs = |flash: Vec<Run>, decode: Vec<Run>| AttentionPlan::Runs { flash, decode };
        assert_eq!(plan_attention(&one, true, true), runs(vec![(0, 40, 3)], vec![]));
        assert_eq!(plan_attention(&one, false, true), AttentionPlan::Gemm);
        assert_eq!(plan_attention(&one, false, false), runs(vec![], vec![(0, 40, 3)]));
        // Two prompts, a prompt and a short run, two short runs: each run as it would go alone (a run alone of at
        // most 8 tokens takes the decode kernel too).
        assert_eq!(
            plan_attention(&seqs(&[(1, 40), (0, 20)]), true, true),
            runs(vec![(0, 40, 1), (40, 20, 0)], vec![])
        );
        assert_eq!(
            plan_attention(&seqs(&[(1, 40), (0, 5)]), true, true),
            runs(vec![(0, 40, 1)], vec![(40, 5, 0)])
        );
        assert_eq!(
            plan_attention(&seqs(&[(1, 6), (0, 5)]), true, true),
            runs(vec![], vec![(0, 6, 1), (6, 5, 0)])
        );
        // Interleaved sequences: the warp-per-query kernel.
        let mixed: Vec<u32> = (0..20).map(|i| i % 2).collect();
        assert_eq!(plan_attention(&mixed, true, true), AttentionPlan::Interleaved);
    }
}
