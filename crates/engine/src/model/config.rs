//! `ArchConfig`: every architecture is a row of this struct feeding the one decoder. Differences are enum knobs,
//! never forked code.

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (x[2i], x[2i+1]) — Llama, Mistral.
    Normal,
    /// Halves (x[i], x[i + d/2]) — GPT-NeoX, Qwen2, Gemma.
    Neox,
}

/// Where the attention scale applies: to the scores (most models), or to the queries before their product with the
/// keys (Gemma 3, as llama.cpp builds it). The same number either way, but not the same rounding: the scaled query
/// is what gets rounded to an F16 cache's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleAt {
    Scores,
    Query,
}

/// The gated FFN's activation: `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU, tanh approximation (Gemma).
    GeluTanh,
}

/// Attention span of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Attends to every earlier position.
    Global,
    /// Attends to the last `window` positions (the current one included).
    Sliding { window: u32 },
}

/// RoPE parameters for one kind of layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    pub theta: f32,
    /// Linear position scaling: positions are multiplied by this (1.0 = none).
    pub position_scale: f32,
}

/// Everything the decoder needs to know about an architecture and its dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchConfig {
    /// GGUF `general.architecture`.
    pub arch: String,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Per-head dimension of queries and keys.
    pub head_dim: usize,
    pub d_ff: usize,
    pub vocab: usize,
    /// The context length the model was trained for.
    pub max_context: u32,
    pub norm_eps: f32,
    pub rope_style: RopeStyle,
    /// RoPE of global layers.
    pub rope_global: RopeParams,
    /// RoPE of sliding-window layers (equal to `rope_global` where the model has one kind).
    pub rope_local: RopeParams,
    pub activation: Activation,
    /// Q, K, V projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMSNorm of queries and keys before RoPE (Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm after attention and after the FFN, before the residual add (Gemma 2/3).
    pub post_norms: bool,
    /// Multiply token embeddings by this (Gemma: sqrt(d_model)).
    pub embed_scale: f32,
    /// Scale of attention scores (usually 1/sqrt(head_dim)).
    pub attn_scale: f32,
    pub attn_scale_at: ScaleAt,
    /// One entry per layer.
    pub layer_kinds: Vec<LayerKind>,
    /// The output projection is the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
}

impl ArchConfig {
    /// Width of the query projection: n_heads * head_dim.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the key and value projections: n_kv_heads * head_dim.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    pub fn rope_for(&self, layer: usize) -> RopeParams {
        match self.layer_kinds[layer] {
            LayerKind::Global => self.rope_global,
            LayerKind::Sliding { .. } => self.rope_local,
        }
    }
}
