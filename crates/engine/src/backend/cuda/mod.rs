//! The CUDA backend: weights uploaded in their GGUF formats, kernels compiled at run time by NVRTC (cached on
//! disk), decode steps captured once as CUDA graphs and replayed, prefill matmuls through cuBLAS.
//!
//! Every op is launched on one stream made with `new_stream()` while cudarc's event tracking is off: graph capture
//! needs both (the default stream, or tracked events, fail with `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED`).
//! Token metadata (ids, positions, sequences, logit rows) is uploaded once per forward pass into device buffers
//! that the kernels read, so a replayed graph sees the new tokens without new launch parameters.

mod attention;
mod decode;
mod device;
mod launch;
mod layer_tail;
mod open;
mod prefill;
pub mod runtime;
mod sampling;
mod weights;

use super::{AttentionParams, Backend, FfnBlock, KvPrecision, KvShape, TailScratch, WeightSource};
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use crate::model::config::{Activation, RopeParams, RopeStyle};
use crate::sampling::Candidates;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use device::{Funcs, Graphs, Meta, Scratch};
use gguf::GgmlType;
use launch::Arg;
use sampling::ChainStep;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use runtime::probe_libraries;

/// Most tokens a forward pass may have to run as a matrix-vector product (and be captured as a graph).
pub const MAX_DECODE_TOKENS: usize = 8;
/// Threads per block of the matrix-vector kernels (a warp per row).
const MATVEC_THREADS: u32 = 128;
/// Query rows and threads per block of the flash-attention kernel (`kernels/flash.cu`: 16 rows a warp).
const FLASH_ROWS: usize = 64;
const FLASH_THREADS: u32 = 128;
const _: () = assert!(FLASH_ROWS == 16 * (FLASH_THREADS as usize / 32));
/// Positions per attention split are a multiple of this.
const SPLIT_QUANTUM: usize = 256;
/// Most splits of one (token, head) in flash-decoding.
const MAX_SPLITS: usize = 32;
/// Keys per split of decode attention (before the split count is capped).
const DECODE_SPLIT_KEYS: usize = 1024;
/// Tokens of one sequence from which attention runs through GEMMs.
const PROMPT_ATTENTION_TOKENS: usize = 16;
/// Token-head pairs from which a batch runs attention without splitting.
const NO_SPLIT_PAIRS: usize = 512;
/// Lanes that score each key in decode attention compiled for a head size (blocks of 128 times as many threads);
/// the kernel for other head sizes takes one lane a key and 128 threads. Measured on H100, tg128: 1 -> 2 -> 4 lanes
/// took smollm2-135m f16 from 1,964 to 2,098 and 2,132 tok/s, 8B q4_k from 387.6 to 395.2 and 395.3; 8 lanes
/// (1,024-thread blocks) do not launch with the registers the kernel takes.
const DECODE_LANES_PER_KEY: u32 = 4;
/// Lanes scoring each key in the decode attention compiled for head size 256 (Gemma 3), in blocks of 4 times as
/// many warps. Measured on H100 (synth gemma3-270m f16 tg128): 1 lane 1,278, 2 lanes 1,307, 4 lanes 1,288.
const DECODE_LANES_PER_KEY_256: u32 = 2;
const _: () = assert!(DECODE_LANES_PER_KEY.is_power_of_two() && DECODE_LANES_PER_KEY <= 4);
const _: () = assert!(DECODE_LANES_PER_KEY_256.is_power_of_two() && DECODE_LANES_PER_KEY_256 <= 4);

/// Settings of the CUDA backend.
#[derive(Debug, Clone, Default)]
pub struct CudaConfig {
    /// Which GPU (0 = the first).
    pub ordinal: usize,
    /// Where compiled kernels are cached; `None` compiles at every start.
    pub kernel_cache: Option<PathBuf>,
    /// Let each kernel launch while its predecessor finishes (programmatic dependent launch, sm_90 and later);
    /// off launches every kernel after the previous one ends.
    pub dependent_launch: bool,
    /// Prompt attention through cuBLAS GEMMs and a softmax kernel instead of the flash-attention kernel (for A/B
    /// timing; head sizes without a flash instance take the GEMMs anyway).
    pub gemm_prompt_attention: bool,
    /// Quantized weights always take 8-bit activations, as llama.cpp's CUDA products do. Off, single-token products
    /// of short Q8_0 rows take f32 activations through the format's float view (fewer launches a decode step).
    pub int8_activations: bool,
}

pub use weights::CudaWeight;

/// The KV cache on the GPU, and the scratch of split attention.
pub struct CudaKv {
    shape: KvShape,
    k: CudaSlice<u8>, // [n_layers, n_seqs, n_kv_heads, n_ctx, head_dim] f16 or f32
    v: CudaSlice<u8>, // same
    /// Positions per attention split.
    split_len: usize,
    part: CudaSlice<f32>, // [NO_SPLIT_PAIRS, MAX_SPLITS, head_dim + 2]
}

pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: cudarc::cublas::CudaBlas,
    funcs: Funcs,
    name: String,
    compute_capability: (i32, i32),
    /// Streaming multiprocessors (sizes the grids of the single-token products).
    n_sms: usize,
    total_mem: usize,
    /// Bytes of weights uploaded so far.
    loaded: AtomicU64,
    /// Largest matrix row length loaded (sizes the decode scratch).
    max_row_len: AtomicUsize,
    meta: Mutex<Meta>,
    scratch: Mutex<Scratch>,
    graphs: Mutex<Graphs>,
    /// Chained greedy steps' picks (made at the first chained step).
    chain: Mutex<Option<sampling::Chain>>,
    /// The run state whose last forward scope queued its chained pick itself (`forward_scope` with `pick`).
    pick_in_scope: Mutex<Option<u64>>,
    /// Whether launches overlap their predecessor's tail (`CudaConfig::dependent_launch` on a device that has it).
    dependent_launch: bool,
    /// Whether one-sequence prompts take the flash-attention kernel (`!CudaConfig::gemm_prompt_attention`).
    flash_prefill: bool,
    /// Whether quantized weights always take 8-bit activations (`CudaConfig::int8_activations`).
    int8_activations: bool,
    /// Whether the kernels came from the on-disk cache at start.
    pub kernels_cached: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn err(what: &str, e: impl std::fmt::Debug) -> EngineError {
    EngineError::Cuda {
        what: what.into(),
        reason: format!("{e:?}"),
    }
}

impl CudaBackend {
    fn ptr<T>(&self, s: &CudaSlice<T>) -> u64 {
        let (p, _sync) = s.device_ptr(&self.stream);
        p
    }

    /// The buffers of an attention input hold `n_tokens` rows of every product's input and output.
    fn check_attn_input(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        n_tokens: usize,
        w: [&CudaWeight; 3],
        xn: &CudaSlice<f32>,
        qkv: &[&mut CudaSlice<f32>; 3],
    ) -> Result<()> {
        for (wi, out) in w.iter().zip(qkv) {
            self.check_len("attention input", out.len(), n_tokens * wi.rows)?;
        }
        self.check_len("attention input", x.len().min(xn.len()), n_tokens * norm.row_len)
    }

    fn check_len(&self, what: &'static str, have: usize, need: usize) -> Result<()> {
        if have < need {
            return Err(EngineError::BadSetting {
                name: what,
                value: have.to_string(),
                reason: format!("needs at least {need} elements"),
            });
        }
        Ok(())
    }

    /// Puts `batch`'s tokens, positions and sequences on the device, for the forward pass of run state `state`
    /// (nothing for a chained batch, whose token and position are there already); the following ops read them.
    fn upload_batch(&self, batch: &Batch, state: u64) -> Result<()> {
        if self.take_chained(batch, state)? {
            return Ok(());
        }
        let mut meta = lock(&self.meta);
        if meta.capacity < batch.len() {
            *meta = Meta::new(&self.stream, batch.len().next_power_of_two())?;
            // Captured graphs hold the old buffers' addresses.
            lock(&self.graphs).clear();
        }
        meta.upload(&self.stream, batch)
    }
}

impl Backend for CudaBackend {
    type Weight = CudaWeight;
    type Buf = CudaSlice<f32>;
    type Kv = CudaKv;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_info(&self) -> String {
        format!(
            "{} (sm_{}{}, {} MiB)",
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.total_mem >> 20
        )
    }

    fn supports_matmul(&self, ty: GgmlType) -> bool {
        quant::cuda::kernel_suffix(ty).is_some()
    }

    fn prepare_load(&self, total_bytes: u64) -> Result<()> {
        let (free, _) = self.memory()?;
        // Leave room for the run state, cuBLAS and the kernels.
        let need = total_bytes + (256 << 20);
        if need > free as u64 {
            return Err(EngineError::OverBudget {
                what: format!("the model's weights on {} ({} MiB free)", self.name, free >> 20),
                need,
                budget: free as u64,
            });
        }
        Ok(())
    }

    fn memory_budget(&self) -> Option<u64> {
        let free = self.memory().ok()?.0 as u64;
        // The weights are already resident; the budget covers them plus what is still free, less a margin.
        Some(self.loaded.load(Ordering::Relaxed) + free.saturating_sub(256 << 20))
    }

    fn load_weight(&self, src: &WeightSource) -> Result<CudaWeight> {
        self.upload_weight(src)
    }

    fn alloc(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| err("allocating a buffer", e))
    }

    fn alloc_kv(&self, shape: KvShape) -> Result<CudaKv> {
        let elems = shape.n_layers * shape.n_seqs * shape.n_kv_heads * shape.n_ctx * shape.head_dim;
        let bytes = elems * shape.precision.bytes();
        if !shape.head_dim.is_multiple_of(32) || shape.head_dim > 256 {
            return Err(EngineError::BadSetting {
                name: "head_dim",
                value: shape.head_dim.to_string(),
                reason: "the CUDA attention kernel needs a multiple of 32 up to 256".into(),
            });
        }
        let k = self
            .stream
            .alloc_zeros::<u8>(bytes.max(2))
            .map_err(|e| err("allocating the KV cache", e))?;
        let v = self
            .stream
            .alloc_zeros::<u8>(bytes.max(2))
            .map_err(|e| err("allocating the KV cache", e))?;
        let split_len = shape.n_ctx.div_ceil(MAX_SPLITS).div_ceil(SPLIT_QUANTUM).max(1) * SPLIT_QUANTUM;
        let part = self
            .stream
            .alloc_zeros::<f32>(NO_SPLIT_PAIRS * MAX_SPLITS * (shape.head_dim + 2))
            .map_err(|e| err("allocating attention scratch", e))?;
        // Size the decode scratch now, so that no allocation happens while a graph is captured.
        let k_max = self.max_row_len.load(Ordering::Relaxed);
        lock(&self.scratch).ensure_q8(&self.stream, MAX_DECODE_TOKENS * k_max)?;
        Ok(CudaKv {
            shape,
            k,
            v,
            split_len,
            part,
        })
    }

    fn argmax_rows(&self, logits: &CudaSlice<f32>, n_rows: usize, vocab: usize) -> Result<Option<Vec<u32>>> {
        self.argmax_on_device(logits, n_rows, vocab).map(Some)
    }

    fn chains_greedy(&self) -> bool {
        true
    }

    fn argmax_chain(&self, logits: &CudaSlice<f32>, vocab: usize, state: u64, seq: u32, pos: u32) -> Result<()> {
        self.argmax_chain_on_device(logits, vocab, ChainStep { state, seq, pos })
    }

    fn chain_pick(&self, state: u64, pos: u32) -> Result<u32> {
        self.chain_pick_on_device(state, pos)
    }

    fn top_candidates(
        &self,
        logits: &CudaSlice<f32>,
        n_rows: usize,
        vocab: usize,
        n: usize,
    ) -> Result<Option<Vec<Candidates>>> {
        self.top_candidates_on_device(logits, n_rows, vocab, n).map(Some)
    }

    fn write(&self, dst: &mut CudaSlice<f32>, src: &[f32]) -> Result<()> {
        self.check_len("write", dst.len(), src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        self.stream
            .memcpy_htod(src, &mut dst.slice_mut(0..src.len()))
            .map_err(|e| err("writing to the device", e))
    }

    fn read(&self, src: &CudaSlice<f32>, dst: &mut [f32]) -> Result<()> {
        self.check_len("read", src.len(), dst.len())?;
        self.stream
            .memcpy_dtoh(&src.slice(0..dst.len()), dst)
            .map_err(|e| err("reading back", e))?;
        self.stream.synchronize().map_err(|e| err("synchronize", e))
    }

    fn forward_scope(&self, batch: &Batch, state_id: u64, pick: bool, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        *lock(&self.pick_in_scope) = None;
        self.upload_batch(batch, state_id)?;
        self.run_scope(batch, state_id, pick, f)?;
        *lock(&self.pick_in_scope) = pick.then_some(state_id);
        Ok(())
    }

    fn queue_chain_pick(&self, logits: &CudaSlice<f32>, vocab: usize) -> Result<()> {
        self.queue_chain_pick_on_device(logits, vocab)
    }

    fn embed(&self, table: &CudaWeight, ids: &[u32], scale: f32, out: &mut CudaSlice<f32>) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table.rows) {
            return Err(EngineError::BadToken {
                id: bad,
                vocab: table.rows,
            });
        }
        self.check_len("embedding output", out.len(), ids.len() * table.row_len)?;
        let meta = lock(&self.meta);
        meta.check_tokens(ids)?;
        let fns = self.funcs.weight(table.ty, &table.name)?;
        let per_row = if quant::cuda::is_float(table.ty) {
            table.row_len / 8
        } else {
            table.row_len / 32
        };
        self.launch_1d(
            &fns.dequant,
            ids.len() * per_row,
            &[
                Arg::Ptr(self.ptr(&table.data)),
                Arg::Usize(table.row_bytes),
                Arg::I32(table.row_len as i32),
                Arg::Ptr(self.ptr(&meta.tokens)),
                Arg::I32(ids.len() as i32),
                Arg::F32(scale),
                Arg::Ptr(self.ptr(out)),
                Arg::Ptr(0),
            ],
        )
    }

    fn rms_norm(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaWeight,
        eps: f32,
        n_rows: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = w.row_len;
        self.check_len("rms_norm input", x.len(), n_rows * n)?;
        self.check_len("rms_norm output", out.len(), n_rows * n)?;
        self.norm_rows(self.ptr(x), w, eps, n_rows, self.ptr(out))
    }

    fn rms_norm_in_place(&self, x: &mut CudaSlice<f32>, w: &CudaWeight, eps: f32, n_rows: usize) -> Result<()> {
        self.check_len("rms_norm input", x.len(), n_rows * w.row_len)?;
        let p = self.ptr(x);
        self.norm_rows(p, w, eps, n_rows, p)
    }

    fn matmul(&self, w: &CudaWeight, x: &CudaSlice<f32>, n_tokens: usize, out: &mut CudaSlice<f32>) -> Result<()> {
        if w.vector.is_some() {
            return Err(EngineError::BadSetting {
                name: "matmul weight",
                value: w.name.clone(),
                reason: "is a vector".into(),
            });
        }
        self.check_len("matmul input", x.len(), n_tokens * w.row_len)?;
        self.check_len("matmul output", out.len(), n_tokens * w.rows)?;
        if n_tokens == 0 {
            return Ok(());
        }
        if n_tokens <= MAX_DECODE_TOKENS {
            self.matmul_decode(w, x, n_tokens, out, false)
        } else {
            self.matmul_prefill(w, x, n_tokens, out, false)
        }
    }

    fn attn_input(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        eps: f32,
        n_tokens: usize,
        w: [&CudaWeight; 3],
        bias: [Option<&CudaWeight>; 3],
        xn: &mut CudaSlice<f32>,
        qkv: [&mut CudaSlice<f32>; 3],
    ) -> Result<()> {
        self.check_attn_input(x, norm, n_tokens, w, xn, &qkv)?;
        let [q, k, v] = qkv;
        if self.attn_input_fused(x, norm, eps, n_tokens, w, bias, xn, [&mut *q, &mut *k, &mut *v])? {
            return Ok(());
        }
        super::plain_attn_input(self, x, norm, eps, n_tokens, w, bias, xn, [q, k, v])
    }

    fn attn_input_rope(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        eps: f32,
        n_tokens: usize,
        w: [&CudaWeight; 3],
        bias: [Option<&CudaWeight>; 3],
        xn: &mut CudaSlice<f32>,
        qkv: [&mut CudaSlice<f32>; 3],
        rope: super::RopeStore<'_, CudaKv, CudaWeight>,
    ) -> Result<()> {
        self.check_attn_input(x, norm, n_tokens, w, xn, &qkv)?;
        let [q, k, v] = qkv;
        if self.attn_input_rope_fused(x, norm, eps, n_tokens, w, bias, &mut *xn, &mut *q, &rope)? {
            return Ok(());
        }
        self.attn_input(x, norm, eps, n_tokens, w, bias, xn, [&mut *q, &mut *k, &mut *v])?;
        rope.apply(self, q, k, v)
    }

    fn rope_store(
        &self,
        q: &mut CudaSlice<f32>,
        k: &mut CudaSlice<f32>,
        v: &CudaSlice<f32>,
        kv: &mut CudaKv,
        layer: usize,
        batch: &Batch,
        heads: (usize, usize, usize),
        style: RopeStyle,
        params: RopeParams,
        freq_factors: Option<&CudaWeight>,
    ) -> Result<()> {
        self.rope_store_fused(q, k, v, kv, layer, batch, heads, style, params, freq_factors)
    }

    fn matmul_add(
        &self,
        w: &CudaWeight,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        _tmp: &mut CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        self.check_len("matmul input", x.len(), n_tokens * w.row_len)?;
        self.check_len("matmul output", out.len().min(len), n_tokens * w.rows)?;
        if n_tokens == 0 {
            return Ok(());
        }
        if n_tokens <= MAX_DECODE_TOKENS {
            self.matmul_decode(w, x, n_tokens, out, true)
        } else {
            self.matmul_prefill(w, x, n_tokens, out, true)
        }
    }

    fn norm_matmul(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        eps: f32,
        n_tokens: usize,
        w: &CudaWeight,
        xn: &mut CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.norm_matmul_any(x, norm, eps, n_tokens, w, xn, out)
    }

    fn ffn_input(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        eps: f32,
        n_tokens: usize,
        gate_up: [&CudaWeight; 2],
        act: Activation,
        xn: &mut CudaSlice<f32>,
        h: &mut CudaSlice<f32>,
        up_tmp: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        self.check_len("ffn input", x.len().min(xn.len()), n_tokens * norm.row_len)?;
        if self.ffn_input_fused(x, norm, eps, n_tokens, gate_up, act, xn, h)? {
            return Ok(());
        }
        super::plain_ffn_input(self, x, norm, eps, n_tokens, gate_up, act, xn, h, up_tmp, len)
    }

    fn add_bias(&self, x: &mut CudaSlice<f32>, bias: &CudaWeight, n_tokens: usize) -> Result<()> {
        let b = bias.vector.as_ref().ok_or_else(|| err("bias", "not a vector"))?;
        let total = n_tokens * bias.row_len;
        self.check_len("bias input", x.len(), total)?;
        self.launch_1d(
            &self.funcs.add_bias,
            total,
            &[
                Arg::Ptr(self.ptr(x)),
                Arg::Ptr(self.ptr(b)),
                Arg::I32(bias.row_len as i32),
                Arg::I32(total as i32),
            ],
        )
    }

    fn rope(
        &self,
        x: &mut CudaSlice<f32>,
        batch: &Batch,
        n_heads: usize,
        head_dim: usize,
        style: RopeStyle,
        params: RopeParams,
        freq_factors: Option<&CudaWeight>,
    ) -> Result<()> {
        let n = batch.len();
        self.check_len("rope input", x.len(), n * n_heads * head_dim)?;
        let ff = match freq_factors {
            Some(w) => self.ptr(w.vector.as_ref().ok_or_else(|| err("rope factors", "not a vector"))?),
            None => 0,
        };
        let meta = lock(&self.meta);
        self.launch_1d(
            &self.funcs.rope,
            n * n_heads * head_dim / 2,
            &[
                Arg::Ptr(self.ptr(x)),
                Arg::Ptr(self.ptr(&meta.pos)),
                Arg::I32(n as i32),
                Arg::I32(n_heads as i32),
                Arg::I32(head_dim as i32),
                Arg::I32(match style {
                    RopeStyle::Normal => 0,
                    RopeStyle::Neox => 1,
                }),
                Arg::F32(params.theta),
                Arg::F32(params.position_scale),
                Arg::Ptr(ff),
            ],
        )
    }

    fn kv_store(
        &self,
        kv: &mut CudaKv,
        layer: usize,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        batch: &Batch,
    ) -> Result<()> {
        let s = kv.shape;
        device::check_batch_fits(&s, batch)?;
        let kv_dim = s.n_kv_heads * s.head_dim;
        self.check_len("kv_store keys", k.len().min(v.len()), batch.len() * kv_dim)?;
        let f = match s.precision {
            KvPrecision::F16 => &self.funcs.kv_store_f16,
            KvPrecision::F32 => &self.funcs.kv_store_f32,
        };
        let meta = lock(&self.meta);
        self.launch_1d(
            f,
            batch.len() * kv_dim,
            &[
                Arg::Ptr(self.ptr(&kv.k)),
                Arg::Ptr(self.ptr(&kv.v)),
                Arg::Ptr(self.ptr(k)),
                Arg::Ptr(self.ptr(v)),
                Arg::Ptr(self.ptr(&meta.pos)),
                Arg::Ptr(self.ptr(&meta.seq)),
                Arg::I32(batch.len() as i32),
                Arg::I32(s.n_kv_heads as i32),
                Arg::I32(s.head_dim as i32),
                Arg::I32(s.n_ctx as i32),
                Arg::I32(s.n_seqs as i32),
                Arg::I32(layer as i32),
            ],
        )
    }

    fn attention(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.attention_any(q, kv, batch, p, out, None)
    }

    fn attention_output(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
        attn: &mut CudaSlice<f32>,
        wo: &CudaWeight,
        tmp: &mut CudaSlice<f32>,
        x: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        if self.attention_output_fused(q, kv, batch, p, attn, wo, x, len)? {
            return Ok(());
        }
        self.attention_any(q, kv, batch, p, attn, None)?;
        self.matmul_add(wo, attn, batch.len(), tmp, x, len)
    }

    fn attention_ffn(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
        wo: &CudaWeight,
        ffn: FfnBlock<'_, CudaWeight>,
        s: TailScratch<'_, CudaSlice<f32>>,
        x: &mut CudaSlice<f32>,
    ) -> Result<()> {
        if self.attention_ffn_fused(q, kv, batch, p, wo, ffn, s.gate, x)? {
            return Ok(());
        }
        super::plain_attention_ffn(self, q, kv, batch, p, wo, ffn, s, x)
    }

    fn gated_activation(
        &self,
        gate: &mut CudaSlice<f32>,
        up: &CudaSlice<f32>,
        len: usize,
        act: Activation,
    ) -> Result<()> {
        self.check_len("activation input", gate.len().min(up.len()), len)?;
        let a = match act {
            Activation::Silu => 0,
            Activation::GeluTanh => 1,
        };
        self.launch_1d(
            &self.funcs.gated_act,
            len,
            &[
                Arg::Ptr(self.ptr(gate)),
                Arg::Ptr(self.ptr(up)),
                Arg::I32(len as i32),
                Arg::I32(a),
            ],
        )
    }

    fn add(&self, x: &mut CudaSlice<f32>, y: &CudaSlice<f32>, len: usize) -> Result<()> {
        self.check_len("add input", x.len().min(y.len()), len)?;
        self.launch_1d(
            &self.funcs.add,
            len,
            &[Arg::Ptr(self.ptr(x)), Arg::Ptr(self.ptr(y)), Arg::I32(len as i32)],
        )
    }

    fn gather_rows(&self, x: &CudaSlice<f32>, rows: &[usize], row_len: usize, out: &mut CudaSlice<f32>) -> Result<()> {
        self.check_len("gather output", out.len(), rows.len() * row_len)?;
        if let Some(&bad) = rows.iter().find(|&&r| (r + 1) * row_len > x.len()) {
            return Err(EngineError::BadSetting {
                name: "gather row",
                value: bad.to_string(),
                reason: format!("the input holds {} rows", x.len() / row_len.max(1)),
            });
        }
        let mut meta = lock(&self.meta);
        meta.ensure_rows(&self.stream, rows)?;
        self.launch_1d(
            &self.funcs.gather_rows,
            rows.len() * row_len,
            &[
                Arg::Ptr(self.ptr(x)),
                Arg::Ptr(self.ptr(&meta.rows)),
                Arg::Ptr(self.ptr(out)),
                Arg::I32(rows.len() as i32),
                Arg::I32(row_len as i32),
            ],
        )
    }

    fn kv_copy_seq(&self, kv: &mut CudaKv, src: usize, dst: usize, from: usize, n: usize) -> Result<()> {
        let s = kv.shape;
        if src >= s.n_seqs || dst >= s.n_seqs || from + n > s.n_ctx {
            return Err(EngineError::BadSetting {
                name: "kv copy",
                value: format!("seq {src} -> {dst}, positions {from}..{}", from + n),
                reason: format!("the cache holds {} sequences of {} positions", s.n_seqs, s.n_ctx),
            });
        }
        if src == dst || n == 0 {
            return Ok(());
        }
        let row_words = s.head_dim * s.precision.bytes() / 2;
        self.launch_1d(
            &self.funcs.kv_copy_seq,
            s.n_layers * s.n_kv_heads * n * row_words,
            &[
                Arg::Ptr(self.ptr(&kv.k)),
                Arg::Ptr(self.ptr(&kv.v)),
                Arg::I32(s.n_layers as i32),
                Arg::I32(s.n_seqs as i32),
                Arg::I32(s.n_kv_heads as i32),
                Arg::I32(s.n_ctx as i32),
                Arg::I32(row_words as i32),
                Arg::I32(src as i32),
                Arg::I32(dst as i32),
                Arg::I32(from as i32),
                Arg::I32(n as i32),
            ],
        )
    }
}
