//! Weights loaded by name from the one tensor-name table, shape-checked against the config, placed on a backend.

use super::config::ArchConfig;
use super::names::{self, LayerTensor as T};
use crate::backend::{Backend, WeightSource};
use crate::error::{EngineError, Result};
use gguf::Gguf;
use std::sync::Arc;

pub struct LayerWeights<W> {
    pub attn_norm: W,              // [d_model]
    pub wq: W,                     // [q_dim, d_model]
    pub wk: W,                     // [kv_dim, d_model]
    pub wv: W,                     // [kv_dim, d_model]
    pub bq: Option<W>,             // [q_dim]
    pub bk: Option<W>,             // [kv_dim]
    pub bv: Option<W>,             // [kv_dim]
    pub q_norm: Option<W>,         // [head_dim]
    pub k_norm: Option<W>,         // [head_dim]
    pub wo: W,                     // [d_model, q_dim]
    pub post_attn_norm: Option<W>, // [d_model]
    pub ffn_norm: W,               // [d_model]
    pub gate: W,                   // [d_ff, d_model]
    pub up: W,                     // [d_ff, d_model]
    pub down: W,                   // [d_model, d_ff]
    pub post_ffn_norm: Option<W>,  // [d_model]
}

pub struct Weights<W> {
    pub token_embd: W,  // [vocab, d_model]
    pub output_norm: W, // [d_model]
    /// `None` when the output projection is tied to `token_embd`.
    pub output: Option<W>, // [vocab, d_model]
    /// Per-pair RoPE frequency divisors (Llama 3.1 scaling).
    pub rope_freqs: Option<W>, // [head_dim / 2]
    pub layers: Vec<LayerWeights<W>>,
}

impl<W> Weights<W> {
    pub fn output(&self) -> &W {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// Looks tensors up, checks each shape (GGUF order: [row_len, rows]) and type, uploads them.
struct Loader<'a, B: Backend> {
    file: &'a Arc<Gguf>,
    cfg: &'a ArchConfig,
    backend: &'a B,
    on_tensor: &'a mut dyn FnMut(u64),
}

impl<B: Backend> Loader<'_, B> {
    fn get(&mut self, name: &str, dims: &[usize], matrix: bool) -> Result<B::Weight> {
        let info = self.file.tensor(name).ok_or_else(|| EngineError::MissingTensor {
            name: name.into(),
            arch: self.cfg.arch.clone(),
        })?;
        let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        if info.dims != expected {
            return Err(EngineError::Shape {
                name: name.into(),
                expected,
                found: info.dims.clone(),
            });
        }
        if matrix && !self.backend.supports_matmul(info.ty) {
            return Err(EngineError::UnsupportedType {
                name: name.into(),
                ty: info.ty,
                backend: self.backend.name(),
            });
        }
        let w = self.backend.load_weight(&WeightSource {
            file: self.file.clone(),
            info: info.clone(),
        })?;
        (self.on_tensor)(info.n_bytes);
        Ok(w)
    }

    fn opt(&mut self, name: &str, dims: &[usize], present: bool) -> Result<Option<B::Weight>> {
        if !present {
            return Ok(None);
        }
        self.get(name, dims, false).map(Some)
    }
}

/// Loads every weight the config calls for. `on_tensor(bytes)` is called after each tensor (for progress).
pub fn load_weights<B: Backend>(
    file: &Arc<Gguf>,
    cfg: &ArchConfig,
    backend: &B,
    on_tensor: &mut dyn FnMut(u64),
) -> Result<Weights<B::Weight>> {
    let mut l = Loader {
        file,
        cfg,
        backend,
        on_tensor,
    };
    let (d, q, kv, ff, hd) = (cfg.d_model, cfg.q_dim(), cfg.kv_dim(), cfg.d_ff, cfg.head_dim);
    let token_embd = l.get(names::TOKEN_EMBD, &[d, cfg.vocab], false)?;
    let output_norm = l.get(names::OUTPUT_NORM, &[d], false)?;
    let output = l.opt(names::OUTPUT, &[d, cfg.vocab], !cfg.tied_embeddings)?;
    let rope_freqs = l.opt(names::ROPE_FREQS, &[hd / 2], file.tensor(names::ROPE_FREQS).is_some())?;
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        layers.push(LayerWeights {
            attn_norm: l.get(&T::AttnNorm.name(i), &[d], false)?,
            wq: l.get(&T::AttnQ.name(i), &[d, q], true)?,
            wk: l.get(&T::AttnK.name(i), &[d, kv], true)?,
            wv: l.get(&T::AttnV.name(i), &[d, kv], true)?,
            bq: l.opt(&T::AttnQBias.name(i), &[q], cfg.qkv_bias)?,
            bk: l.opt(&T::AttnKBias.name(i), &[kv], cfg.qkv_bias)?,
            bv: l.opt(&T::AttnVBias.name(i), &[kv], cfg.qkv_bias)?,
            q_norm: l.opt(&T::AttnQNorm.name(i), &[hd], cfg.qk_norm)?,
            k_norm: l.opt(&T::AttnKNorm.name(i), &[hd], cfg.qk_norm)?,
            wo: l.get(&T::AttnOutput.name(i), &[q, d], true)?,
            post_attn_norm: l.opt(&T::PostAttnNorm.name(i), &[d], cfg.post_norms)?,
            ffn_norm: l.get(&T::FfnNorm.name(i), &[d], false)?,
            gate: l.get(&T::FfnGate.name(i), &[d, ff], true)?,
            up: l.get(&T::FfnUp.name(i), &[d, ff], true)?,
            down: l.get(&T::FfnDown.name(i), &[ff, d], true)?,
            post_ffn_norm: l.opt(&T::PostFfnNorm.name(i), &[d], cfg.post_norms)?,
        });
    }
    Ok(Weights {
        token_embd,
        output_norm,
        output,
        rope_freqs,
        layers,
    })
}
