//! The backend seam: a narrow set of ops the one decoder is written against. A backend owns its buffers, its
//! weights (kept in their GGUF formats) and its KV cache storage; the decoder only sequences ops.
//!
//! Shapes are row-major with the last dimension contiguous. Legend: `n_tokens` rows of a batch, `d_model`,
//! `q_dim = n_heads * head_dim`, `kv_dim = n_kv_heads * head_dim`, `d_ff`, `vocab`.

pub mod cpu;
pub mod cuda;
pub mod parity;

use crate::batch::Batch;
use crate::error::Result;
pub use crate::model::config::ScaleAt;
use crate::model::config::{Activation, LayerKind, RopeParams, RopeStyle};
use gguf::{GgmlType, Gguf, TensorInfo};
use std::sync::Arc;

/// Where a weight's bytes come from: a tensor of an open GGUF file.
#[derive(Clone)]
pub struct WeightSource {
    pub file: Arc<Gguf>,
    pub info: TensorInfo,
}

impl WeightSource {
    pub fn bytes(&self) -> &[u8] {
        self.file.tensor_bytes(&self.info)
    }
}

/// Precision of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvPrecision {
    F16,
    F32,
}

impl KvPrecision {
    pub fn bytes(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::F32 => "f32",
        }
    }
}

/// The shape of a KV cache: `n_seqs` independent sequences of up to `n_ctx` positions each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub n_layers: usize,
    pub n_seqs: usize,
    pub n_ctx: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub precision: KvPrecision,
}

impl KvShape {
    /// Bytes of K and V together.
    pub fn bytes(&self) -> u64 {
        2 * (self.n_layers * self.n_seqs * self.n_ctx * self.n_kv_heads * self.head_dim) as u64
            * self.precision.bytes() as u64
    }
}

/// How one attention call reads the cache.
#[derive(Debug, Clone, Copy)]
pub struct AttentionParams {
    pub layer: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub scale_at: ScaleAt,
    pub kind: LayerKind,
}

/// Where `rope_store` puts a layer's keys and values, and how it rotates them: the second half of the fused
/// attention input ([`Backend::attn_input_rope`]).
pub struct RopeStore<'a, K, W> {
    pub kv: &'a mut K,
    pub layer: usize,
    pub batch: &'a Batch,
    /// (n_heads, n_kv_heads, head_dim)
    pub heads: (usize, usize, usize),
    pub style: RopeStyle,
    pub params: RopeParams,
    pub freq_factors: Option<&'a W>,
}

impl<K, W> RopeStore<'_, K, W> {
    /// `rope_store` of `q`, `k` and `v` on `be` with these parameters.
    pub fn apply<B: Backend<Kv = K, Weight = W> + ?Sized>(
        self,
        be: &B,
        q: &mut B::Buf,
        k: &mut B::Buf,
        v: &B::Buf,
    ) -> Result<()> {
        be.rope_store(
            q,
            k,
            v,
            self.kv,
            self.layer,
            self.batch,
            self.heads,
            self.style,
            self.params,
            self.freq_factors,
        )
    }
}

/// The ops of a compute device.
pub trait Backend: Send + Sync {
    /// A weight in its storage format: a matrix `[rows, row_len]` or a vector `[len]` (rows = 1).
    type Weight: Send + Sync;
    /// An f32 activation buffer.
    type Buf: Send;
    /// KV cache storage.
    type Kv: Send;

    fn name(&self) -> &'static str;
    /// Human-readable device description (CPU model / GPU name).
    fn device_info(&self) -> String;
    /// Whether `ty` can be used as a matrix weight.
    fn supports_matmul(&self, ty: GgmlType) -> bool;

    /// Called once before a model's weights (`total_bytes` of them) are loaded: a device that cannot hold them
    /// says so here, with the numbers, before anything is uploaded.
    fn prepare_load(&self, _total_bytes: u64) -> Result<()> {
        Ok(())
    }
    /// Bytes the weights plus run state may use on this device, when the device has its own memory (`None`: the
    /// host's memory rule applies).
    fn memory_budget(&self) -> Option<u64> {
        None
    }
    /// Runs one forward pass's ops (`f`) over `batch`. A device may upload the batch's metadata first and replay
    /// a recorded version of the ops instead of running `f` (CUDA graphs); `f` must then launch the same ops for
    /// every batch of the same shape on the same run state (`state_id`) and `pick` flag, and must not read results
    /// back. `pick`: `f` ends with [`Backend::queue_chain_pick`], for the [`Backend::argmax_chain`] that follows.
    fn forward_scope(
        &self,
        _batch: &Batch,
        _state_id: u64,
        _pick: bool,
        f: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        f()
    }

    fn load_weight(&self, src: &WeightSource) -> Result<Self::Weight>;
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    fn alloc_kv(&self, shape: KvShape) -> Result<Self::Kv>;
    /// The argmax of each of the first `n_rows` rows of `logits` ([n_rows, vocab]), when the device can pick tokens
    /// itself (so that only ids cross to the host); `None` means: read the logits back instead.
    fn argmax_rows(&self, _logits: &Self::Buf, _n_rows: usize, _vocab: usize) -> Result<Option<Vec<u32>>> {
        Ok(None)
    }
    /// Whether greedy steps chain on the device: [`Backend::argmax_chain`] queues a step's pick without waiting,
    /// and the next forward pass of a [`Batch::chained`] batch takes that pick as its token, so that a generator
    /// can queue the next step before it reads the pick (the device never waits for the host between steps).
    fn chains_greedy(&self) -> bool {
        false
    }
    /// Queues the argmax of the one logits row of the last forward pass, a single token of `seq` at `pos` run in
    /// the scope of run state `state` ([`Backend::forward_scope`]), and makes the pick the token of the next forward
    /// pass if that batch is chained (its one token of `seq` at `pos + 1`, in the same state's scope). The pick is
    /// read with [`Backend::chain_pick`].
    fn argmax_chain(&self, _logits: &Self::Buf, _vocab: usize, _state: u64, _seq: u32, _pos: u32) -> Result<()> {
        Err(no_chained_steps(self.name()))
    }
    /// Queues, as the last op of a forward pass's scope (`forward_scope` with `pick`), the device work of the
    /// [`Backend::argmax_chain`] that follows the pass, so that a recorded pass includes it; `argmax_chain` then
    /// only keeps the books. The default queues nothing (`argmax_chain` does it all).
    fn queue_chain_pick(&self, _logits: &Self::Buf, _vocab: usize) -> Result<()> {
        Ok(())
    }
    /// Waits for the pick that [`Backend::argmax_chain`] queued for run state `state`'s step at `pos`; only the
    /// last two chained steps' picks are kept, and a pick queued for another state is refused, not returned.
    fn chain_pick(&self, _state: u64, _pos: u32) -> Result<u32> {
        Err(no_chained_steps(self.name()))
    }
    /// The top `n` candidates of each of the first `n_rows` rows of `logits` ([n_rows, vocab]) with each row's
    /// softmax normalizer, when the device can pick them itself (so that only they cross to the host); `None`
    /// means: read the logits back instead.
    fn top_candidates(
        &self,
        _logits: &Self::Buf,
        _n_rows: usize,
        _vocab: usize,
        _n: usize,
    ) -> Result<Option<Vec<crate::sampling::Candidates>>> {
        Ok(None)
    }
    /// Copies `src` from the host into the first `src.len()` floats of `dst`.
    fn write(&self, dst: &mut Self::Buf, src: &[f32]) -> Result<()>;
    /// Copies the first `dst.len()` floats of `src` to the host.
    fn read(&self, src: &Self::Buf, dst: &mut [f32]) -> Result<()>;

    /// `out[t, :] = table[ids[t], :] * scale`.  out: [n_tokens, d_model]
    fn embed(&self, table: &Self::Weight, ids: &[u32], scale: f32, out: &mut Self::Buf) -> Result<()>;
    /// Row-wise RMSNorm times `weight`: x and out are [n_rows, row_len] with row_len = weight length.
    fn rms_norm(
        &self,
        x: &Self::Buf,
        weight: &Self::Weight,
        eps: f32,
        n_rows: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// In-place row-wise RMSNorm (per-head norms: n_rows = n_tokens * n_heads).
    fn rms_norm_in_place(&self, x: &mut Self::Buf, weight: &Self::Weight, eps: f32, n_rows: usize) -> Result<()>;
    /// `out[t, r] = sum_k w[r, k] * x[t, k]`.  x: [n_tokens, row_len], out: [n_tokens, rows]
    fn matmul(&self, w: &Self::Weight, x: &Self::Buf, n_tokens: usize, out: &mut Self::Buf) -> Result<()>;
    /// `x[t, :] += bias`.  x: [n_tokens, len]
    fn add_bias(&self, x: &mut Self::Buf, bias: &Self::Weight, n_tokens: usize) -> Result<()>;
    /// Attention input in one op: `q, k, v = rms_norm(x) · [wq, wk, wv]ᵀ (+ biases)`; `xn` is scratch (its
    /// contents afterwards are unspecified). A device may fuse the norm, the activation conversion and the three
    /// products; the default runs the plain ops.
    #[allow(clippy::too_many_arguments)]
    fn attn_input(
        &self,
        x: &Self::Buf,
        norm: &Self::Weight,
        eps: f32,
        n_tokens: usize,
        w: [&Self::Weight; 3],
        bias: [Option<&Self::Weight>; 3],
        xn: &mut Self::Buf,
        qkv: [&mut Self::Buf; 3],
    ) -> Result<()> {
        plain_attn_input(self, x, norm, eps, n_tokens, w, bias, xn, qkv)
    }
    /// `attn_input`, then `rope_store` of its Q/K/V, for layers without Q/K norms: one op so that a device can
    /// fuse them (single-token decoding on CUDA: the warps of the Q/K/V product rotate their pairs of rows and
    /// write keys and values straight into the cache). `k` and `v` are scratch afterwards.
    #[allow(clippy::too_many_arguments)]
    fn attn_input_rope(
        &self,
        x: &Self::Buf,
        norm: &Self::Weight,
        eps: f32,
        n_tokens: usize,
        w: [&Self::Weight; 3],
        bias: [Option<&Self::Weight>; 3],
        xn: &mut Self::Buf,
        qkv: [&mut Self::Buf; 3],
        rope: RopeStore<'_, Self::Kv, Self::Weight>,
    ) -> Result<()> {
        let [q, k, v] = qkv;
        self.attn_input(x, norm, eps, n_tokens, w, bias, xn, [&mut *q, &mut *k, &mut *v])?;
        rope.apply(self, q, k, v)
    }
    /// RoPE on q and k, then k and v into the cache at `layer` (one launch on a device).
    #[allow(clippy::too_many_arguments)]
    fn rope_store(
        &self,
        q: &mut Self::Buf,
        k: &mut Self::Buf,
        v: &Self::Buf,
        kv: &mut Self::Kv,
        layer: usize,
        batch: &Batch,
        heads: (usize, usize, usize),
        style: RopeStyle,
        params: RopeParams,
        freq_factors: Option<&Self::Weight>,
    ) -> Result<()> {
        let (n_heads, n_kv_heads, head_dim) = heads;
        self.rope(q, batch, n_heads, head_dim, style, params, freq_factors)?;
        self.rope(k, batch, n_kv_heads, head_dim, style, params, freq_factors)?;
        self.kv_store(kv, layer, k, v, batch)
    }
    /// The output head in one op: `out = rms_norm(x) · wᵀ`; `xn` is scratch of x's size (its contents afterwards
    /// are unspecified). A device may fuse the norm into the product.
    #[allow(clippy::too_many_arguments)]
    fn norm_matmul(
        &self,
        x: &Self::Buf,
        norm: &Self::Weight,
        eps: f32,
        n_tokens: usize,
        w: &Self::Weight,
        xn: &mut Self::Buf,
        out: &mut Self::Buf,
    ) -> Result<()> {
        self.rms_norm(x, norm, eps, n_tokens, xn)?;
        self.matmul(w, xn, n_tokens, out)
    }
    /// `out += x · wᵀ` over the first `len` elements; `tmp` is scratch of the product's size.
    fn matmul_add(
        &self,
        w: &Self::Weight,
        x: &Self::Buf,
        n_tokens: usize,
        tmp: &mut Self::Buf,
        out: &mut Self::Buf,
        len: usize,
    ) -> Result<()> {
        self.matmul(w, x, n_tokens, tmp)?;
        self.add(out, tmp, len)
    }
    /// Gated FFN input in one op: `h = act(rms_norm(x) · gateᵀ) * (rms_norm(x) · upᵀ)` over `len` elements;
    /// `xn` and `up_tmp` are scratch.
    #[allow(clippy::too_many_arguments)]
    fn ffn_input(
        &self,
        x: &Self::Buf,
        norm: &Self::Weight,
        eps: f32,
        n_tokens: usize,
        gate_up: [&Self::Weight; 2],
        act: Activation,
        xn: &mut Self::Buf,
        h: &mut Self::Buf,
        up_tmp: &mut Self::Buf,
        len: usize,
    ) -> Result<()> {
        plain_ffn_input(self, x, norm, eps, n_tokens, gate_up, act, xn, h, up_tmp, len)
    }
    /// Rotates each head of x: [n_tokens, n_heads, head_dim] by its token's position.
    #[allow(clippy::too_many_arguments)]
    fn rope(
        &self,
        x: &mut Self::Buf,
        batch: &Batch,
        n_heads: usize,
        head_dim: usize,
        style: RopeStyle,
        params: RopeParams,
        freq_factors: Option<&Self::Weight>,
    ) -> Result<()>;
    /// Writes the batch's keys and values ([n_tokens, kv_dim] each) at their sequences and positions.
    fn kv_store(&self, kv: &mut Self::Kv, layer: usize, k: &Self::Buf, v: &Self::Buf, batch: &Batch) -> Result<()>;
    /// Causal (optionally windowed) attention of q: [n_tokens, q_dim] over each token's sequence in the cache up
    /// to its position. out: [n_tokens, q_dim]
    fn attention(
        &self,
        q: &Self::Buf,
        kv: &Self::Kv,
        batch: &Batch,
        params: AttentionParams,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// Attention and its output projection added into the residual stream in one op: `attn = attention(q)`,
    /// then `x += attn · woᵀ` over `len` elements (`tmp` is scratch). A backend may fuse the steps.
    #[allow(clippy::too_many_arguments)]
    fn attention_output(
        &self,
        q: &Self::Buf,
        kv: &Self::Kv,
        batch: &Batch,
        params: AttentionParams,
        attn: &mut Self::Buf,
        wo: &Self::Weight,
        tmp: &mut Self::Buf,
        x: &mut Self::Buf,
        len: usize,
    ) -> Result<()> {
        self.attention(q, kv, batch, params, attn)?;
        self.matmul_add(wo, attn, batch.len(), tmp, x, len)
    }
    /// The rest of a layer after its Q/K/V products: attention and its output projection added into the
    /// residual stream `x` [n_tokens, d_model], then the gated feed-forward block added into `x`. A backend may run
    /// it in fewer launches than the ops it is made of (CUDA: `layer_tail.cu`).
    #[allow(clippy::too_many_arguments)]
    fn attention_ffn(
        &self,
        q: &Self::Buf,
        kv: &Self::Kv,
        batch: &Batch,
        params: AttentionParams,
        wo: &Self::Weight,
        ffn: FfnBlock<'_, Self::Weight>,
        scratch: TailScratch<'_, Self::Buf>,
        x: &mut Self::Buf,
    ) -> Result<()> {
        plain_attention_ffn(self, q, kv, batch, params, wo, ffn, scratch, x)
    }
    /// `gate = act(gate) * up`, both [n_tokens, d_ff] (len elements used).
    fn gated_activation(&self, gate: &mut Self::Buf, up: &Self::Buf, len: usize, act: Activation) -> Result<()>;
    /// `x += y` over the first len elements.
    fn add(&self, x: &mut Self::Buf, y: &Self::Buf, len: usize) -> Result<()>;
    /// Gathers rows: `out[i, :] = x[rows[i], :]`, row length `row_len`.
    fn gather_rows(&self, x: &Self::Buf, rows: &[usize], row_len: usize, out: &mut Self::Buf) -> Result<()>;
    /// Copies positions `[from, from + n)` of sequence `src_seq` over the same positions of `dst_seq`.
    fn kv_copy_seq(&self, kv: &mut Self::Kv, src_seq: usize, dst_seq: usize, from: usize, n: usize) -> Result<()>;
}

/// [`Backend::attn_input`] through the plain ops: the default, and a fused backend's fallback for shapes it does not
/// fuse.
#[allow(clippy::too_many_arguments)]
pub fn plain_attn_input<B: Backend + ?Sized>(
    be: &B,
    x: &B::Buf,
    norm: &B::Weight,
    eps: f32,
    n_tokens: usize,
    w: [&B::Weight; 3],
    bias: [Option<&B::Weight>; 3],
    xn: &mut B::Buf,
    qkv: [&mut B::Buf; 3],
) -> Result<()> {
    be.rms_norm(x, norm, eps, n_tokens, xn)?;
    for ((wi, bi), out) in w.into_iter().zip(bias).zip(qkv) {
        be.matmul(wi, xn, n_tokens, out)?;
        if let Some(b) = bi {
            be.add_bias(out, b, n_tokens)?;
        }
    }
    Ok(())
}

/// [`Backend::ffn_input`] through the plain ops: the default, and a fused backend's fallback.
#[allow(clippy::too_many_arguments)]
pub fn plain_ffn_input<B: Backend + ?Sized>(
    be: &B,
    x: &B::Buf,
    norm: &B::Weight,
    eps: f32,
    n_tokens: usize,
    gate_up: [&B::Weight; 2],
    act: Activation,
    xn: &mut B::Buf,
    h: &mut B::Buf,
    up_tmp: &mut B::Buf,
    len: usize,
) -> Result<()> {
    be.rms_norm(x, norm, eps, n_tokens, xn)?;
    be.matmul(gate_up[0], xn, n_tokens, h)?;
    be.matmul(gate_up[1], xn, n_tokens, up_tmp)?;
    be.gated_activation(h, up_tmp, len, act)
}

/// A layer's gated feed-forward block (`Backend::attention_ffn`): `x += down · (act(n · gateᵀ) * (n · upᵀ))`
/// with `n = rms_norm(x) * norm`.
pub struct FfnBlock<'a, W> {
    pub norm: &'a W,
    pub eps: f32,
    pub gate: &'a W,
    pub up: &'a W,
    pub down: &'a W,
    pub act: Activation,
}

// (By hand: a derive would ask W to be Copy.)
impl<W> Clone for FfnBlock<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W> Copy for FfnBlock<'_, W> {}

/// Scratch of `Backend::attention_ffn` (contents afterwards unspecified): `attn` [n_tokens, q_dim], `xn`
/// [n_tokens, d_model], `gate` and `up` [n_tokens, d_ff]; `d_len` and `ff_len` are the elements of the batch's rows
/// of `x` and of `gate`.
pub struct TailScratch<'a, B> {
    pub attn: &'a mut B,
    pub xn: &'a mut B,
    pub gate: &'a mut B,
    pub up: &'a mut B,
    pub d_len: usize,
    pub ff_len: usize,
}

/// [`Backend::attention_ffn`] through the other ops: the default, and a fused backend's fallback.
#[allow(clippy::too_many_arguments)]
pub fn plain_attention_ffn<B: Backend + ?Sized>(
    be: &B,
    q: &B::Buf,
    kv: &B::Kv,
    batch: &Batch,
    params: AttentionParams,
    wo: &B::Weight,
    ffn: FfnBlock<'_, B::Weight>,
    s: TailScratch<'_, B::Buf>,
    x: &mut B::Buf,
) -> Result<()> {
    let n = batch.len();
    be.attention_output(q, kv, batch, params, s.attn, wo, s.xn, x, s.d_len)?;
    let gate_up = [ffn.gate, ffn.up];
    be.ffn_input(x, ffn.norm, ffn.eps, n, gate_up, ffn.act, s.xn, s.gate, s.up, s.ff_len)?;
    be.matmul_add(ffn.down, s.gate, n, s.xn, x, s.d_len)
}

/// The error of a chained greedy step on a backend that does not chain them (`Backend::chains_greedy`).
fn no_chained_steps(backend: &str) -> crate::error::EngineError {
    crate::error::EngineError::BadSetting {
        name: "chained greedy step",
        value: backend.into(),
        reason: "this backend picks tokens on the host".into(),
    }
}
