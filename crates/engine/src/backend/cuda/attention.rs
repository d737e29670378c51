//! Attention over the device KV cache: decode batches through the split decode kernel (graph-stable launch
//! shapes), prompts of one sequence through the flash-attention kernel (`kernels/flash.cu`; head dims 64 and 128)
//! or cuBLAS GEMMs (`prefill.rs`; other head dims), anything else through the warp-per-query kernel.

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

impl CudaBackend {
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
        device::check_batch_fits(&s, batch)?;
        let n = batch.len();
        let pairs = n * p.n_heads;
        self.check_len("attention queries", q.len(), pairs * p.head_dim)?;
        self.check_len("attention output", out.len(), pairs * p.head_dim)?;
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
        let window = match p.kind {
            LayerKind::Global => 0,
            LayerKind::Sliding { window } => window as i32,
        };
        let meta = lock(&self.meta);
        // A prompt of one sequence in an F16 cache: on tensor cores, in one flash-attention kernel where it has an
        // instance for the head size, else through cuBLAS GEMMs.
        let one_seq = batch.seq_ids.windows(2).all(|w| w[0] == w[1]);
        if s.precision == KvPrecision::F16 && one_seq && n >= PROMPT_ATTENTION_TOKENS {
            drop(meta);
            let flash = match p.head_dim {
                64 => Some(&self.funcs.flash_prefill_64),
                128 => Some(&self.funcs.flash_prefill_128),
                _ => None,
            };
            return match flash {
                Some(f) if self.flash_prefill => self.attention_flash(f, q, kv, batch, p, window, out),
                _ => self.attention_gemm(q, kv, batch, p, out),
            };
        }
        // Decode batches: the 4-warp kernel with splits fixed by the cache size (not by positions), so that a captured
        // graph stays valid. Other batches: a warp per (token, head), split by the batch's positions.
        let (f, threads, n_splits, split_len) = if n <= MAX_DECODE_TOKENS {
            let n_splits = s
                .n_ctx
                .div_ceil(DECODE_SPLIT_KEYS)
                .clamp(1, MAX_SPLITS)
                .min(NO_SPLIT_PAIRS * MAX_SPLITS / pairs.max(1))
                .max(1);
            let (f, threads) = match s.precision {
                KvPrecision::F16 => &self.funcs.attn_decode_f16,
                KvPrecision::F32 => &self.funcs.attn_decode_f32,
            }
            .for_head_dim(p.head_dim);
            (f, threads, n_splits, None)
        } else {
            let (split_len, n_splits) = Self::split_plan(kv, batch, p.n_heads);
            let f = match s.precision {
                KvPrecision::F16 => &self.funcs.attn_f16,
                KvPrecision::F32 => &self.funcs.attn_f32,
            };
            (f, 32, n_splits, Some(split_len))
        };
        let mut args = vec![
            Arg::Ptr(self.ptr(q)),
            Arg::Ptr(self.ptr(&kv.k)),
            Arg::Ptr(self.ptr(&kv.v)),
            Arg::Ptr(self.ptr(&meta.pos)),
            Arg::Ptr(self.ptr(&meta.seq)),
            Arg::Ptr(self.ptr(out)),
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
        args.extend(split_len.map(|l| Arg::I32(l as i32)));
        let (aq, am) = q8.unwrap_or((0, 0));
        if split_len.is_none() {
            args.extend([Arg::Ptr(aq), Arg::Ptr(am)]);
        } else if q8.is_some() {
            return Err(err("attention", "8-bit output outside a decode batch"));
        }
        self.launch(f, (pairs as u32, n_splits as u32, 1), threads, &args)?;
        if n_splits > 1 {
            self.launch(
                &self.funcs.attn_combine,
                (pairs as u32, 1, 1),
                p.head_dim as u32,
                &[
                    Arg::Ptr(self.ptr(&kv.part)),
                    Arg::Ptr(self.ptr(out)),
                    Arg::I32(n_splits as i32),
                    Arg::I32(p.head_dim as i32),
                    Arg::Ptr(aq),
                    Arg::Ptr(am),
                ],
            )?;
        }
        Ok(())
    }

    /// A one-sequence prompt through the flash-attention kernel: the queries in f16, then a block per 64 rows and
    /// head.
    #[allow(clippy::too_many_arguments)]
    fn attention_flash(
        &self,
        f: &cudarc::driver::CudaFunction,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
        window: i32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let s = kv.shape;
        let n = batch.len();
        let q_len = n * p.n_heads * p.head_dim;
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
        self.launch(
            f,
            (n.div_ceil(FLASH_ROWS) as u32, p.n_heads as u32, 1),
            FLASH_THREADS,
            &[
                Arg::Ptr(self.ptr(&scratch.x16)),
                Arg::Ptr(self.ptr(&kv.k)),
                Arg::Ptr(self.ptr(&kv.v)),
                Arg::Ptr(self.ptr(&meta.pos)),
                Arg::Ptr(self.ptr(out)),
                Arg::I32(n as i32),
                Arg::I32(p.n_heads as i32),
                Arg::I32(p.n_kv_heads as i32),
                Arg::I32(s.n_ctx as i32),
                Arg::I32(s.n_seqs as i32),
                Arg::I32(p.layer as i32),
                Arg::I32(batch.seq_ids[0] as i32),
                Arg::F32(p.scale),
                Arg::I32(window),
            ],
        )
    }
}
