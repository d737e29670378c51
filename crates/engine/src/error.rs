//! The engine's one error type. Variants carry the offending values.

use gguf::{GgmlType, GgufError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("unknown architecture '{arch}' (supported: llama, qwen2, gemma3)")]
    UnknownArchitecture { arch: String },
    #[error("model metadata: {key} = {value} is invalid: {reason}")]
    BadMetadata { key: String, value: String, reason: String },
    #[error("missing tensor '{name}' (architecture {arch})")]
    MissingTensor { name: String, arch: String },
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor '{name}' is stored as {ty}, which the {backend} backend cannot use as a weight")]
    UnsupportedType {
        name: String,
        ty: GgmlType,
        backend: &'static str,
    },
    #[error("context is full: sequence {seq} would need position {pos}, but the context holds {n_ctx} tokens")]
    ContextFull { seq: u32, pos: u32, n_ctx: u32 },
    #[error("prompt of {n_tokens} tokens does not fit the context of {n_ctx} tokens")]
    PromptTooLong { n_tokens: usize, n_ctx: u32 },
    #[error("sequence id {seq} out of range: the KV cache holds {n_seqs} sequences")]
    BadSequence { seq: u32, n_seqs: u32 },
    #[error("batch of {n_tokens} tokens exceeds the batch limit of {max}")]
    BatchTooLarge { n_tokens: usize, max: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    #[error("position {pos} of sequence {seq} is not the next position ({expected})")]
    BadPosition { seq: u32, pos: u32, expected: u32 },
    #[error("memory: {what} needs {need} bytes, but the budget allows {budget}")]
    OverBudget { what: String, need: u64, budget: u64 },
    #[error("invalid setting {name} = {value}: {reason}")]
    BadSetting {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("device '{device}' is not available: {reason}")]
    DeviceUnavailable { device: String, reason: String },
    #[error("cuda: {what}: {reason}")]
    Cuda { what: String, reason: String },
    #[error("io error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
