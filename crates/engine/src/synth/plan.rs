//! What a synthetic GGUF holds: its metadata and its tensors (names, GGUF dims, types, contents).

use gguf::{GgmlType, TensorSpec, Value};

use super::fill::Fill;
use super::{Preset, SynthError, SynthQuant};

/// The context length written to every synthetic model.
pub const CONTEXT_LENGTH: u32 = 8192;

/// Number of ids before the `▁t<i>` tokens: `<unk>`, `<s>`, `</s>` and 256 byte tokens.
pub const N_FIXED_TOKENS: usize = 3 + 256;

/// One tensor to write and what to fill it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTensor {
    pub spec: TensorSpec,
    pub fill: Fill,
}

/// Which kind of 2-D weight a tensor is (the `q4_k` mix treats some differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WeightRole {
    TokenEmbd,
    Output,
    FfnDown,
    Other,
}

/// The storage type of a 2-D weight of row length `row_len`.
///
/// Where a row is not a whole number of 256-element super-blocks (smollm2's and qwen2.5's d_model of 576 and
/// 896, `tiny`'s 64), the K-quant falls back as llama.cpp's `llama-quantize` does: Q4_K → Q5_0, Q6_K → Q8_0.
pub fn weight_type(quant: SynthQuant, role_is_down_or_output: bool, row_len: usize) -> Option<GgmlType> {
    let wanted = match quant {
        SynthQuant::F16 => GgmlType::F16,
        SynthQuant::Q8_0 => GgmlType::Q8_0,
        SynthQuant::Q6_K => GgmlType::Q6_K,
        SynthQuant::Q4_K if role_is_down_or_output => GgmlType::Q6_K,
        SynthQuant::Q4_K => GgmlType::Q4_K,
    };
    let ty = if row_len.is_multiple_of(wanted.block_elems()) {
        wanted
    } else {
        match wanted {
            GgmlType::Q4_K => GgmlType::Q5_0,
            GgmlType::Q6_K => GgmlType::Q8_0,
            other => other,
        }
    };
    row_len.is_multiple_of(ty.block_elems()).then_some(ty)
}

/// Checks that the preset's dimensions make a valid model.
pub fn validate(preset: &Preset) -> Result<(), SynthError> {
    let bad = |reason: String| {
        Err(SynthError::BadPreset {
            preset: preset.name.to_owned(),
            reason,
        })
    };
    if !matches!(preset.arch, "llama" | "qwen2" | "gemma3") {
        return bad(format!(
            "architecture '{}' (expected llama, qwen2 or gemma3)",
            preset.arch
        ));
    }
    for (what, value) in [
        ("d_model", preset.d_model),
        ("n_layers", preset.n_layers),
        ("n_heads", preset.n_heads),
        ("n_kv_heads", preset.n_kv_heads),
        ("d_ff", preset.d_ff),
    ] {
        if value == 0 {
            return bad(format!("{what} is 0"));
        }
        if u32::try_from(value).is_err() {
            return bad(format!("{what} = {value} does not fit in u32"));
        }
    }
    if preset.key_length == 0 && !preset.d_model.is_multiple_of(preset.n_heads) {
        return bad(format!(
            "d_model {} is not a multiple of n_heads {}",
            preset.d_model, preset.n_heads
        ));
    }
    if !preset.n_heads.is_multiple_of(preset.n_kv_heads) {
        return bad(format!(
            "n_heads {} is not a multiple of n_kv_heads {}",
            preset.n_heads, preset.n_kv_heads
        ));
    }
    if preset.vocab <= N_FIXED_TOKENS || u32::try_from(preset.vocab).is_err() {
        return bad(format!(
            "vocab {} (needs more than {N_FIXED_TOKENS} ids and to fit in u32)",
            preset.vocab
        ));
    }
    if !(preset.rope_theta.is_finite() && preset.rope_theta > 0.0) {
        return bad(format!("rope_theta {}", preset.rope_theta));
    }
    let arch_neox = matches!(preset.arch, "qwen2" | "gemma3");
    if preset.neox != arch_neox {
        // llama.cpp picks the RoPE style from the architecture, so a preset cannot ask for the other one.
        return bad(format!(
            "neox = {} but llama.cpp uses {} RoPE for arch '{}'",
            preset.neox,
            if arch_neox { "NEOX" } else { "normal" },
            preset.arch
        ));
    }
    Ok(())
}

/// The tensors of a synthetic model, in file order: token_embd, output_norm, output (unless tied), then each
/// layer's attention and FFN tensors.
pub fn plan_tensors(preset: &Preset, quant: SynthQuant) -> Result<Vec<PlannedTensor>, SynthError> {
    validate(preset)?;
    let d_model = preset.d_model;
    let q_dim = preset.n_heads * preset.head_dim();
    let kv_dim = preset.n_kv_heads * preset.head_dim();
    let d_ff = preset.d_ff;

    let mut tensors = Vec::with_capacity(3 + preset.n_layers * 12);
    // GGUF dims: [row_len, n_rows].
    let weight = |name: String, role: WeightRole, row_len: usize, n_rows: usize| {
        let down_or_output = matches!(role, WeightRole::FfnDown | WeightRole::Output);
        let ty = weight_type(quant, down_or_output, row_len).ok_or_else(|| SynthError::RowNotBlockAligned {
            preset: preset.name.to_owned(),
            tensor: name.clone(),
            row_len,
            quant,
        })?;
        let fill = if ty.is_quantized() {
            Fill::RandomBlocks
        } else {
            Fill::Normal
        };
        Ok::<_, SynthError>(PlannedTensor {
            spec: TensorSpec::new(name, [row_len as u64, n_rows as u64], ty),
            fill,
        })
    };
    let vector = |name: String, len: usize, fill: Fill| PlannedTensor {
        spec: TensorSpec::new(name, [len as u64], GgmlType::F32),
        fill,
    };

    tensors.push(weight(
        "token_embd.weight".into(),
        WeightRole::TokenEmbd,
        d_model,
        preset.vocab,
    )?);
    tensors.push(vector("output_norm.weight".into(), d_model, Fill::Ones));
    if !preset.tied {
        tensors.push(weight(
            "output.weight".into(),
            WeightRole::Output,
            d_model,
            preset.vocab,
        )?);
    }
    for layer in 0..preset.n_layers {
        let name = |suffix: &str| format!("blk.{layer}.{suffix}");
        tensors.push(vector(name("attn_norm.weight"), d_model, Fill::Ones));
        tensors.push(weight(name("attn_q.weight"), WeightRole::Other, d_model, q_dim)?);
        tensors.push(weight(name("attn_k.weight"), WeightRole::Other, d_model, kv_dim)?);
        tensors.push(weight(name("attn_v.weight"), WeightRole::Other, d_model, kv_dim)?);
        if preset.qkv_bias {
            tensors.push(vector(name("attn_q.bias"), q_dim, Fill::Normal));
            tensors.push(vector(name("attn_k.bias"), kv_dim, Fill::Normal));
            tensors.push(vector(name("attn_v.bias"), kv_dim, Fill::Normal));
        }
        let gemma3 = preset.is_gemma3();
        if gemma3 {
            tensors.push(vector(name("attn_q_norm.weight"), preset.head_dim(), Fill::Ones));
            tensors.push(vector(name("attn_k_norm.weight"), preset.head_dim(), Fill::Ones));
        }
        tensors.push(weight(name("attn_output.weight"), WeightRole::Other, q_dim, d_model)?);
        if gemma3 {
            tensors.push(vector(name("post_attention_norm.weight"), d_model, Fill::Ones));
        }
        tensors.push(vector(name("ffn_norm.weight"), d_model, Fill::Ones));
        tensors.push(weight(name("ffn_gate.weight"), WeightRole::Other, d_model, d_ff)?);
        tensors.push(weight(name("ffn_up.weight"), WeightRole::Other, d_model, d_ff)?);
        tensors.push(weight(name("ffn_down.weight"), WeightRole::FfnDown, d_ff, d_model)?);
        if gemma3 {
            tensors.push(vector(name("post_ffw_norm.weight"), d_model, Fill::Ones));
        }
    }
    Ok(tensors)
}

/// llama.cpp's `general.file_type` (LLAMA_FTYPE_*) for a quant mix.
fn file_type(quant: SynthQuant) -> u32 {
    match quant {
        SynthQuant::F16 => 1,   // MOSTLY_F16
        SynthQuant::Q8_0 => 7,  // MOSTLY_Q8_0
        SynthQuant::Q4_K => 15, // MOSTLY_Q4_K_M: Q4_K with Q6_K output and ffn_down
        SynthQuant::Q6_K => 18, // MOSTLY_Q6_K
    }
}

/// The metadata of a synthetic model: `general.*`, the `{arch}.*` hyperparameters and an SPM vocabulary.
pub fn metadata(preset: &Preset, quant: SynthQuant) -> Vec<(String, Value)> {
    let arch = preset.arch;
    let key = |suffix: &str| format!("{arch}.{suffix}");
    let norm_eps = preset.norm_eps();
    // `validate` has checked that every dimension fits in u32.
    let as_u32 = |n: usize| Value::U32(n as u32);
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::from(arch)),
        (
            "general.name".into(),
            Value::from(format!("quarrel-synth {} {}", preset.name, quant)),
        ),
        ("general.file_type".into(), Value::U32(file_type(quant))),
        ("general.quantization_version".into(), Value::U32(2)),
        (key("context_length"), Value::U32(CONTEXT_LENGTH)),
        (key("embedding_length"), as_u32(preset.d_model)),
        (key("block_count"), as_u32(preset.n_layers)),
        (key("feed_forward_length"), as_u32(preset.d_ff)),
        (key("attention.head_count"), as_u32(preset.n_heads)),
        (key("attention.head_count_kv"), as_u32(preset.n_kv_heads)),
        (key("rope.freq_base"), Value::F32(preset.rope_theta)),
        (key("rope.dimension_count"), as_u32(preset.head_dim())),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(norm_eps)),
        (key("vocab_size"), as_u32(preset.vocab)),
    ];
    if preset.key_length > 0 {
        kv.push((key("attention.key_length"), as_u32(preset.key_length)));
        kv.push((key("attention.value_length"), as_u32(preset.key_length)));
    }
    if preset.is_gemma3() {
        kv.push((
            key("attention.sliding_window"),
            Value::U32(crate::synth::GEMMA3_SLIDING_WINDOW),
        ));
    }
    kv.extend(spm_vocabulary(preset.vocab));
    kv
}

/// A SentencePiece-style (`llama`) vocabulary of `vocab` ids: 0 `<unk>` (type 2), 1 `<s>` and 2 `</s>` (type 3),
/// 3–258 the byte tokens `<0x00>`…`<0xFF>` (type 6), the rest `▁t<id>` (type 1); scores −id. The qwen2 preset
/// uses it too: the real Qwen2.5 has a BPE vocabulary, but speed does not depend on the tokenizer, and llama.cpp
/// loads any vocabulary type with any architecture.
pub fn spm_vocabulary(vocab: usize) -> Vec<(String, Value)> {
    const TYPE_NORMAL: i32 = 1;
    const TYPE_UNKNOWN: i32 = 2;
    const TYPE_CONTROL: i32 = 3;
    const TYPE_BYTE: i32 = 6;
    let mut tokens = Vec::with_capacity(vocab);
    let mut types = Vec::with_capacity(vocab);
    for (text, ty) in [("<unk>", TYPE_UNKNOWN), ("<s>", TYPE_CONTROL), ("</s>", TYPE_CONTROL)] {
        tokens.push(Value::from(text));
        types.push(Value::I32(ty));
    }
    for byte in 0..=255u8 {
        tokens.push(Value::from(format!("<0x{byte:02X}>")));
        types.push(Value::I32(TYPE_BYTE));
    }
    for id in N_FIXED_TOKENS..vocab {
        tokens.push(Value::from(format!("\u{2581}t{id}")));
        types.push(Value::I32(TYPE_NORMAL));
    }
    let scores = (0..vocab).map(|id| Value::F32(-(id as f32))).collect();
    vec![
        ("tokenizer.ggml.model".into(), Value::from("llama")),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        ("tokenizer.ggml.scores".into(), Value::Array(scores)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token".into(), Value::Bool(false)),
    ]
}
