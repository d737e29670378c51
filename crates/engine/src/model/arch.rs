//! GGUF metadata -> `ArchConfig`. Each architecture is one function here and one match arm; nothing else in the
//! engine knows architecture names.

use super::config::{Activation, ArchConfig, LayerKind, RopeParams, RopeStyle, ScaleAt};
use crate::error::{EngineError, Result};
use gguf::Gguf;

/// Reads the architecture's hyperparameters from metadata.
pub fn config_from_gguf(g: &Gguf) -> Result<ArchConfig> {
    let arch = g.architecture()?.to_string();
    match arch.as_str() {
        "llama" => llama(g, &arch),
        "qwen2" => qwen2(g, &arch),
        "gemma3" => gemma3(g, &arch),
        _ => Err(EngineError::UnknownArchitecture { arch }),
    }
}

/// The fields every architecture reads the same way.
fn common(g: &Gguf, arch: &str) -> Result<ArchConfig> {
    let key = |k: &str| format!("{arch}.{k}");
    let d_model = g.get_u32(&key("embedding_length"))? as usize;
    let n_layers = g.get_u32(&key("block_count"))? as usize;
    let n_heads = g.get_u32(&key("attention.head_count"))? as usize;
    let n_kv_heads = g
        .opt_u32(&key("attention.head_count_kv"))?
        .map_or(n_heads, |v| v as usize);
    let d_ff = g.get_u32(&key("feed_forward_length"))? as usize;
    let max_context = g.opt_u32(&key("context_length"))?.unwrap_or(4096);
    let norm_eps = g.opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
    let theta = g.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
    let linear = match g.opt_str(&key("rope.scaling.type"))? {
        Some("linear") => g.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0),
        _ => 1.0,
    };
    let check = |name: &str, v: usize, max: usize| -> Result<()> {
        if v == 0 || v > max {
            return Err(EngineError::BadMetadata {
                key: key(name),
                value: v.to_string(),
                reason: format!("must be in 1..={max}"),
            });
        }
        Ok(())
    };
    check("embedding_length", d_model, 1 << 16)?;
    check("block_count", n_layers, 1024)?;
    check("attention.head_count", n_heads, 1024)?;
    check("attention.head_count_kv", n_kv_heads, n_heads)?;
    check("feed_forward_length", d_ff, 1 << 18)?;
    if !n_heads.is_multiple_of(n_kv_heads) {
        return Err(EngineError::BadMetadata {
            key: key("attention.head_count_kv"),
            value: n_kv_heads.to_string(),
            reason: format!("must divide head_count {n_heads}"),
        });
    }
    let head_dim = match g.opt_u32(&key("attention.key_length"))? {
        Some(v) => v as usize,
        None => {
            if !d_model.is_multiple_of(n_heads) {
                return Err(EngineError::BadMetadata {
                    key: key("attention.head_count"),
                    value: n_heads.to_string(),
                    reason: format!("must divide embedding_length {d_model}"),
                });
            }
            d_model / n_heads
        }
    };
    check("attention.key_length", head_dim, 1024)?;
    if head_dim % 2 != 0 {
        return Err(EngineError::BadMetadata {
            key: key("attention.key_length"),
            value: head_dim.to_string(),
            reason: "RoPE needs an even head dimension".into(),
        });
    }
    if let Some(v) = g.opt_u32(&key("attention.value_length"))? {
        if v as usize != head_dim {
            return Err(EngineError::BadMetadata {
                key: key("attention.value_length"),
                value: v.to_string(),
                reason: format!("must equal key_length {head_dim}"),
            });
        }
    }
    let vocab = g
        .tensor("token_embd.weight")
        .and_then(|t| t.dims.get(1).copied())
        .ok_or_else(|| EngineError::MissingTensor {
            name: "token_embd.weight".into(),
            arch: arch.into(),
        })? as usize;
    let rope = RopeParams {
        theta,
        position_scale: 1.0 / linear,
    };
    Ok(ArchConfig {
        arch: arch.to_string(),
        d_model,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        d_ff,
        vocab,
        max_context,
        norm_eps,
        rope_style: RopeStyle::Normal,
        rope_global: rope,
        rope_local: rope,
        activation: Activation::Silu,
        qkv_bias: false,
        qk_norm: false,
        post_norms: false,
        embed_scale: 1.0,
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        attn_scale_at: ScaleAt::Scores,
        layer_kinds: vec![LayerKind::Global; n_layers],
        tied_embeddings: g.tensor("output.weight").is_none(),
    })
}

/// Llama 2/3, SmolLM2, Mistral: the plain row.
fn llama(g: &Gguf, arch: &str) -> Result<ArchConfig> {
    common(g, arch)
}

/// Qwen2: QKV biases and NeoX RoPE.
fn qwen2(g: &Gguf, arch: &str) -> Result<ArchConfig> {
    Ok(ArchConfig {
        rope_style: RopeStyle::Neox,
        qkv_bias: true,
        ..common(g, arch)?
    })
}

/// Gemma 3: GELU-tanh, q/k norms, post-attention and post-FFN norms, sqrt(d) embedding scale, five sliding-window
/// layers (RoPE base 10 000) to every global one (RoPE base from metadata).
fn gemma3(g: &Gguf, arch: &str) -> Result<ArchConfig> {
    let c = common(g, arch)?;
    let window = g.opt_u32(&format!("{arch}.attention.sliding_window"))?.unwrap_or(4096);
    let layer_kinds = (0..c.n_layers)
        .map(|i| {
            if (i + 1) % 6 == 0 {
                LayerKind::Global
            } else {
                LayerKind::Sliding { window }
            }
        })
        .collect();
    Ok(ArchConfig {
        rope_style: RopeStyle::Neox,
        rope_local: RopeParams {
            theta: 10_000.0,
            position_scale: 1.0,
        },
        activation: Activation::GeluTanh,
        qk_norm: true,
        post_norms: true,
        embed_scale: (c.d_model as f32).sqrt(),
        attn_scale_at: ScaleAt::Query,
        layer_kinds,
        ..c
    })
}
