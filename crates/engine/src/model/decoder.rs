//! THE forward pass: embed -> layers -> norm -> logits, over a batch of tokens from one or several sequences.
//! Every architecture runs through this one function; its differences are `ArchConfig` fields.

use super::config::{Activation, ArchConfig};
use super::weights::Weights;
use crate::backend::{AttentionParams, Backend, FfnBlock, KvShape, RopeStore, TailScratch};
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use crate::sampling::Candidates;

/// Receives intermediate tensors of a forward pass, each under llama.cpp's graph name for it (`attn_norm-3`,
/// `kqv_out-3`, `l_out-3`, …; see [`forward`]), as f32 in batch order: for comparing with llama.cpp op by op
/// (`quarrel dump`, `dev/llama-ref/llama_dump`). Each tensor is read back from the backend, so a forward pass with a
/// tap is slow; on a GPU, decode steps replayed from a captured graph cannot be tapped (their reads fail).
pub type TensorTap = Box<dyn FnMut(&str, &[f32]) + Send>;

/// Hands `buf`'s first `len` values to the tap, if there is one, as `name-layer` (or `name` for `layer` None).
fn tap<B: Backend>(
    be: &B,
    tap: &mut Option<TensorTap>,
    name: &str,
    layer: Option<usize>,
    buf: &B::Buf,
    len: usize,
) -> Result<()> {
    if let Some(f) = tap.as_mut() {
        let mut values = vec![0.0; len];
        be.read(buf, &mut values)?;
        match layer {
            Some(il) => f(&format!("{name}-{il}"), &values),
            None => f(name, &values),
        }
    }
    Ok(())
}

/// Batch limits the scratch space is sized for, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tokens in one forward pass.
    pub max_batch: usize,
    /// Most tokens whose logits one forward pass returns.
    pub max_logit_rows: usize,
}

/// Run state: scratch buffers sized from `Limits` and the KV cache. The forward pass allocates nothing.
pub struct DecoderState<B: Backend> {
    /// Tells run states apart (a device may keep per-state recordings of the forward pass).
    pub id: u64,
    pub limits: Limits,
    pub kv_shape: KvShape,
    x: B::Buf,      // [max_batch, d_model] residual stream
    xn: B::Buf,     // [max_batch, d_model] normed input / block output
    q: B::Buf,      // [max_batch, q_dim]
    k: B::Buf,      // [max_batch, kv_dim]
    v: B::Buf,      // [max_batch, kv_dim]
    attn: B::Buf,   // [max_batch, q_dim]
    gate: B::Buf,   // [max_batch, d_ff]
    up: B::Buf,     // [max_batch, d_ff]
    last: B::Buf,   // [max_logit_rows, d_model]
    logits: B::Buf, // [max_logit_rows, vocab]
    pub kv: B::Kv,
    /// Where intermediate tensors go, when set (see [`TensorTap`]).
    pub tap: Option<TensorTap>,
}

impl<B: Backend> DecoderState<B> {
    pub fn new(be: &B, cfg: &ArchConfig, limits: Limits, kv_shape: KvShape) -> Result<Self> {
        let n = limits.max_batch;
        let m = limits.max_logit_rows;
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            limits,
            kv_shape,
            x: be.alloc(n * cfg.d_model)?,
            xn: be.alloc(n * cfg.d_model)?,
            q: be.alloc(n * cfg.q_dim())?,
            k: be.alloc(n * cfg.kv_dim())?,
            v: be.alloc(n * cfg.kv_dim())?,
            attn: be.alloc(n * cfg.q_dim())?,
            gate: be.alloc(n * cfg.d_ff)?,
            up: be.alloc(n * cfg.d_ff)?,
            last: be.alloc(m * cfg.d_model)?,
            logits: be.alloc(m * cfg.vocab)?,
            kv: be.alloc_kv(kv_shape)?,
            tap: None,
        })
    }
}

/// What a forward pass hands back for the tokens with `want_logits`.
pub enum Output<'a> {
    /// Their logits: [n_wanted, vocab], in batch order.
    Logits(&'a mut [f32]),
    /// Their argmax (greedy tokens), picked on the device where it can; the slice is host scratch for the logits
    /// where it cannot ([n_wanted, vocab]).
    Greedy(&'a mut Vec<u32>, &'a mut [f32]),
    /// Its argmax queued on the device, chained into the next step (`Backend::argmax_chain`): the batch is one
    /// token, of this sequence at this position.
    Chain(u32, u32),
    /// Their top `n` sampling candidates where the device picks them; where it cannot, the vector stays empty and
    /// the logits are in the slice instead ([n_wanted, vocab]).
    Candidates(usize, &'a mut Vec<Candidates>, &'a mut [f32]),
}

/// Runs `batch` through the model. Logits of the tokens with `want_logits` are written to `logits_out`
/// ([n_wanted, vocab], in batch order).
///
/// With a [`TensorTap`] in the state, it receives (llama.cpp's names): `inp_embd` (embeddings, scaled where the
/// model scales them), per layer `attn_norm`, `Qcur` and `Kcur` (after their norms and RoPE), `Vcur`, `kqv_out`,
/// `attn_post_norm` (post-norm models), `ffn_inp` (the residual after attention), `ffn_norm`, `ffn_swiglu` /
/// `ffn_geglu` (the gated activation), `ffn_out` (post-norm models: the down product before its norm),
/// `ffn_post_norm`, `l_out`; then `result_norm` and `result_output` (the logits rows).
pub fn forward<B: Backend>(
    be: &B,
    cfg: &ArchConfig,
    w: &Weights<B::Weight>,
    st: &mut DecoderState<B>,
    batch: &Batch,
    logits_out: &mut [f32],
) -> Result<()> {
    run(be, cfg, w, st, batch, Output::Logits(logits_out))
}

/// Runs `batch` and returns the top `n` sampling candidates of each token with `want_logits`, in batch order,
/// when the device picks them; `None` when it cannot, with the logits in `logits_scratch` instead (a host
/// sampler reads the row as it is, with no copy of the device's work).
pub fn forward_candidates<B: Backend>(
    be: &B,
    cfg: &ArchConfig,
    w: &Weights<B::Weight>,
    st: &mut DecoderState<B>,
    batch: &Batch,
    n: usize,
    logits_scratch: &mut [f32],
) -> Result<Option<Vec<Candidates>>> {
    let mut cands = Vec::new();
    run(be, cfg, w, st, batch, Output::Candidates(n, &mut cands, logits_scratch))?;
    Ok((!cands.is_empty()).then_some(cands))
}

/// Copies the logits of the last forward pass's first `n_rows` wanted rows to `out` ([n_rows, vocab]): for a
/// sampler that found the candidates too few.
pub fn read_logits<B: Backend>(
    be: &B,
    st: &DecoderState<B>,
    n_rows: usize,
    vocab: usize,
    out: &mut [f32],
) -> Result<()> {
    be.read(&st.logits, &mut out[..n_rows * vocab])
}

/// Runs `batch` and returns the greedy token of each token with `want_logits`, in batch order.
pub fn forward_greedy<B: Backend>(
    be: &B,
    cfg: &ArchConfig,
    w: &Weights<B::Weight>,
    st: &mut DecoderState<B>,
    batch: &Batch,
    logits_scratch: &mut [f32],
) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    run(be, cfg, w, st, batch, Output::Greedy(&mut ids, logits_scratch))?;
    Ok(ids)
}

/// Runs a batch of one token that wants its logits and queues its greedy pick on the device, chained into the next
/// step (`Backend::argmax_chain`); the pick is read with `Backend::chain_pick`.
pub fn forward_greedy_chain<B: Backend>(
    be: &B,
    cfg: &ArchConfig,
    w: &Weights<B::Weight>,
    st: &mut DecoderState<B>,
    batch: &Batch,
) -> Result<()> {
    if batch.len() != 1 || !batch.want_logits[0] {
        return Err(EngineError::BadSetting {
            name: "chained greedy step",
            value: format!("{} tokens", batch.len()),
            reason: "takes one token that wants its logits".into(),
        });
    }
    run(
        be,
        cfg,
        w,
        st,
        batch,
        Output::Chain(batch.seq_ids[0], batch.positions[0]),
    )
}

fn run<B: Backend>(
    be: &B,
    cfg: &ArchConfig,
    w: &Weights<B::Weight>,
    st: &mut DecoderState<B>,
    batch: &Batch,
    output: Output<'_>,
) -> Result<()> {
    let logits_len = match &output {
        Output::Logits(l) => l.len(),
        Output::Greedy(_, l) | Output::Candidates(_, _, l) => l.len(),
        Output::Chain(..) => cfg.vocab,
    };
    let n = batch.len();
    if n > st.limits.max_batch {
        return Err(EngineError::BatchTooLarge {
            n_tokens: n,
            max: st.limits.max_batch,
        });
    }
    let rows = batch.logit_rows();
    if rows.len() > st.limits.max_logit_rows {
        return Err(EngineError::BatchTooLarge {
            n_tokens: rows.len(),
            max: st.limits.max_logit_rows,
        });
    }
    if logits_len < rows.len() * cfg.vocab {
        return Err(EngineError::BadSetting {
            name: "logits buffer",
            value: logits_len.to_string(),
            reason: format!("needs {} floats", rows.len() * cfg.vocab),
        });
    }
    // Token ids are checked here, before any backend op: a GPU replaying a captured step runs no host-side check.
    if let Some(&bad) = batch.tokens.iter().find(|&&t| t as usize >= cfg.vocab) {
        return Err(EngineError::BadToken {
            id: bad,
            vocab: cfg.vocab,
        });
    }
    if n == 0 {
        return Ok(());
    }
    let (d, ff) = (cfg.d_model, cfg.d_ff);
    let eps = cfg.norm_eps;

    let state_id = st.id;
    // A chained greedy step's pick is queued inside the scope, so that a recorded step includes it.
    let pick = matches!(output, Output::Chain(..)) && be.chains_greedy() && !rows.is_empty();
    be.forward_scope(batch, state_id, pick, &mut || {
        be.embed(&w.token_embd, &batch.tokens, cfg.embed_scale, &mut st.x)?;
        tap(be, &mut st.tap, "inp_embd", None, &st.x, n * d)?;
        for (il, lw) in w.layers.iter().enumerate() {
            // Attention block.
            let bias = match (&lw.bq, &lw.bk, &lw.bv) {
                (Some(bq), Some(bk), Some(bv)) => [Some(bq), Some(bk), Some(bv)],
                _ => [None, None, None],
            };
            let heads = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
            let qkv_w = [&lw.wq, &lw.wk, &lw.wv];
            let rope = RopeStore {
                kv: &mut st.kv,
                layer: il,
                batch,
                heads,
                style: cfg.rope_style,
                params: cfg.rope_for(il),
                freq_factors: w.rope_freqs.as_ref(),
            };
            if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                // Q/K norms come between the products and RoPE.
                be.attn_input(
                    &st.x,
                    &lw.attn_norm,
                    eps,
                    n,
                    qkv_w,
                    bias,
                    &mut st.xn,
                    [&mut st.q, &mut st.k, &mut st.v],
                )?;
                be.rms_norm_in_place(&mut st.q, qn, eps, n * cfg.n_heads)?;
                be.rms_norm_in_place(&mut st.k, kn, eps, n * cfg.n_kv_heads)?;
                rope.apply(be, &mut st.q, &mut st.k, &st.v)?;
                tap(be, &mut st.tap, "attn_norm", Some(il), &st.xn, n * d)?;
            } else {
                be.attn_input_rope(
                    &st.x,
                    &lw.attn_norm,
                    eps,
                    n,
                    qkv_w,
                    bias,
                    &mut st.xn,
                    [&mut st.q, &mut st.k, &mut st.v],
                    rope,
                )?;
            }
            let params = AttentionParams {
                layer: il,
                n_heads: cfg.n_heads,
                n_kv_heads: cfg.n_kv_heads,
                head_dim: cfg.head_dim,
                scale: cfg.attn_scale,
                scale_at: cfg.attn_scale_at,
                kind: cfg.layer_kinds[il],
            };
            if st.tap.is_some() {
                if lw.q_norm.is_none() {
                    tap(be, &mut st.tap, "attn_norm", Some(il), &st.xn, n * d)?;
                }
                tap(be, &mut st.tap, "Qcur", Some(il), &st.q, n * cfg.q_dim())?;
                tap(be, &mut st.tap, "Kcur", Some(il), &st.k, n * cfg.kv_dim())?;
                tap(be, &mut st.tap, "Vcur", Some(il), &st.v, n * cfg.kv_dim())?;
            }
            // In the last layer only the rows whose logits are wanted go on past the attention output product (as
            // in llama.cpp, whose products sum in orders that depend on how many rows they take); none, if none is.
            // Attention and its product take every row: later tokens need every row's keys and values.
            let narrow = il + 1 == w.layers.len() && rows.len() < n;
            // Attention and its product in one op where nothing comes between them.
            let fused_output = lw.post_attn_norm.is_none() && st.tap.is_none() && !(narrow && rows.is_empty());
            if fused_output && !narrow && lw.post_ffn_norm.is_none() {
                // And the feed-forward block too (all of the layer's rest).
                let ffn = FfnBlock {
                    norm: &lw.ffn_norm,
                    eps,
                    gate: &lw.gate,
                    up: &lw.up,
                    down: &lw.down,
                    act: cfg.activation,
                };
                let scratch = TailScratch {
                    attn: &mut st.attn,
                    xn: &mut st.xn,
                    gate: &mut st.gate,
                    up: &mut st.up,
                    d_len: n * d,
                    ff_len: n * ff,
                };
                be.attention_ffn(&st.q, &st.kv, batch, params, &lw.wo, ffn, scratch, &mut st.x)?;
                continue;
            }
            if fused_output {
                let (attn, xn, x) = (&mut st.attn, &mut st.xn, &mut st.x);
                be.attention_output(&st.q, &st.kv, batch, params, attn, &lw.wo, xn, x, n * d)?;
            } else {
                be.attention(&st.q, &st.kv, batch, params, &mut st.attn)?;
                tap(be, &mut st.tap, "kqv_out", Some(il), &st.attn, n * cfg.q_dim())?;
            }
            if narrow && rows.is_empty() {
                break;
            }
            let m = if narrow { rows.len() } else { n };
            match &lw.post_attn_norm {
                Some(pn) => {
                    be.matmul(&lw.wo, &st.attn, n, &mut st.xn)?;
                    if narrow {
                        // The wanted rows of the product (into the gate scratch) and of the residual (into last).
                        be.gather_rows(&st.xn, &rows, d, &mut st.gate)?;
                        be.gather_rows(&st.x, &rows, d, &mut st.last)?;
                        be.rms_norm_in_place(&mut st.gate, pn, eps, m)?;
                        tap(be, &mut st.tap, "attn_post_norm", Some(il), &st.gate, m * d)?;
                        be.add(&mut st.last, &st.gate, m * d)?;
                    } else {
                        be.rms_norm_in_place(&mut st.xn, pn, eps, n)?;
                        tap(be, &mut st.tap, "attn_post_norm", Some(il), &st.xn, n * d)?;
                        be.add(&mut st.x, &st.xn, n * d)?;
                    }
                }
                None => {
                    if !fused_output {
                        be.matmul_add(&lw.wo, &st.attn, n, &mut st.xn, &mut st.x, n * d)?;
                    }
                    if narrow {
                        be.gather_rows(&st.x, &rows, d, &mut st.last)?;
                    }
                }
            }
            // The residual stream from here on: [m, d].
            let x = if narrow { &mut st.last } else { &mut st.x };
            tap(be, &mut st.tap, "ffn_inp", Some(il), x, m * d)?;

            // Feed-forward block.
            be.ffn_input(
                x,
                &lw.ffn_norm,
                eps,
                m,
                [&lw.gate, &lw.up],
                cfg.activation,
                &mut st.xn,
                &mut st.gate,
                &mut st.up,
                m * ff,
            )?;
            if st.tap.is_some() {
                let act = match cfg.activation {
                    Activation::Silu => "ffn_swiglu",
                    Activation::GeluTanh => "ffn_geglu",
                };
                tap(be, &mut st.tap, "ffn_norm", Some(il), &st.xn, m * d)?;
                tap(be, &mut st.tap, act, Some(il), &st.gate, m * ff)?;
            }
            match &lw.post_ffn_norm {
                Some(pn) => {
                    be.matmul(&lw.down, &st.gate, m, &mut st.xn)?;
                    tap(be, &mut st.tap, "ffn_out", Some(il), &st.xn, m * d)?;
                    be.rms_norm_in_place(&mut st.xn, pn, eps, m)?;
                    tap(be, &mut st.tap, "ffn_post_norm", Some(il), &st.xn, m * d)?;
                    be.add(x, &st.xn, m * d)?;
                }
                None => be.matmul_add(&lw.down, &st.gate, m, &mut st.xn, x, m * d)?,
            }
            tap(be, &mut st.tap, "l_out", Some(il), x, m * d)?;
        }
        if rows.is_empty() {
            return Ok(());
        }
        // With every row wanted the last layer ran on all of them (else `last` already holds the wanted ones).
        let every_row_in_order = rows.len() == n && rows.iter().enumerate().all(|(i, &r)| i == r);
        if st.tap.is_none() && (every_row_in_order || rows.len() < n) {
            // The norm and the output head in one op: on CUDA a decoded token's norm reads the last layer's
            // output where it is (no copy first) and converts it for the product in the same launch.
            let src = if rows.len() < n { &st.last } else { &st.x };
            be.norm_matmul(
                src,
                &w.output_norm,
                eps,
                rows.len(),
                w.output(),
                &mut st.xn,
                &mut st.logits,
            )?;
        } else {
            if rows.len() == n {
                be.gather_rows(&st.x, &rows, d, &mut st.last)?;
            }
            be.rms_norm_in_place(&mut st.last, &w.output_norm, eps, rows.len())?;
            tap(be, &mut st.tap, "result_norm", None, &st.last, rows.len() * d)?;
            be.matmul(w.output(), &st.last, rows.len(), &mut st.logits)?;
        }
        tap(
            be,
            &mut st.tap,
            "result_output",
            None,
            &st.logits,
            rows.len() * cfg.vocab,
        )?;
        if pick {
            be.queue_chain_pick(&st.logits, cfg.vocab)?;
        }
        Ok(())
    })?;
    if rows.is_empty() {
        return Ok(());
    }
    let n_logits = rows.len() * cfg.vocab;
    match output {
        Output::Logits(out) => be.read(&st.logits, &mut out[..n_logits]),
        Output::Greedy(ids, scratch) => {
            *ids = match be.argmax_rows(&st.logits, rows.len(), cfg.vocab)? {
                Some(ids) => ids,
                None => {
                    be.read(&st.logits, &mut scratch[..n_logits])?;
                    scratch[..n_logits]
                        .chunks_exact(cfg.vocab)
                        .map(crate::sampling::argmax)
                        .collect()
                }
            };
            Ok(())
        }
        Output::Chain(seq, pos) => be.argmax_chain(&st.logits, cfg.vocab, st.id, seq, pos),
        Output::Candidates(k, cands, scratch) => {
            match be.top_candidates(&st.logits, rows.len(), cfg.vocab, k)? {
                Some(c) => *cands = c,
                None => be.read(&st.logits, &mut scratch[..n_logits])?,
            }
            Ok(())
        }
    }
}
