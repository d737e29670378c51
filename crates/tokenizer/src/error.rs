//! Every way building a tokenizer, encoding or rendering a chat template can fail, each carrying the offending value.

/// A tokenizer error.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A tokenizer key is missing, or holds the wrong type.
    #[error("tokenizer metadata: {0}")]
    Gguf(#[from] gguf::GgufError),
    /// `tokenizer.ggml.model` names a tokenizer family this crate does not implement.
    #[error("unknown tokenizer model '{model}' (expected 'llama' or 'gpt2')")]
    UnknownModel { model: String },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unknown pre-tokenizer '{pre}' (known: default, gpt-2, llama-bpe, qwen2, smollm and aliases of these)")]
    UnknownPreTokenizer { pre: String },
    /// `tokenizer.ggml.tokens` is empty.
    #[error("the vocabulary is empty")]
    EmptyVocab,
    /// A per-token array does not have one entry per token.
    #[error("{key} has {found} entries, expected one per token ({expected})")]
    LengthMismatch {
        key: &'static str,
        expected: usize,
        found: usize,
    },
    /// A token type outside GGUF's 0..=6.
    #[error("token {id} has token type {token_type}, expected 0..=6")]
    InvalidTokenType { id: u32, token_type: i32 },
    /// A special-token id key points past the vocabulary.
    #[error("{key} = {id} is outside the vocabulary of {vocab_size} tokens")]
    TokenIdOutOfRange {
        key: &'static str,
        id: u32,
        vocab_size: usize,
    },
    /// A byte token whose text is not `<0xXX>`.
    #[error("token {id} is typed as a byte but its text is {text:?}, expected <0xXX>")]
    MalformedByteToken { id: u32, text: String },
    /// A BPE merge that is not two tokens separated by a space.
    #[error("merge {index} is {merge:?}, expected two tokens separated by a space")]
    MalformedMerge { index: usize, merge: String },
    /// A byte-level BPE model is missing `tokenizer.ggml.merges`.
    #[error("a byte-level BPE tokenizer needs tokenizer.ggml.merges")]
    MissingMerges,
    /// Encoding needed a byte with no token of its own (no `<0xXX>`, no single-byte token, no unknown token).
    #[error("byte 0x{byte:02X} has no token (no <0x{byte:02X}>, no single-byte token and no unknown token)")]
    NoByteToken { byte: u8 },
    /// Encoding was asked to add BOS or EOS but the vocabulary names none.
    #[error("the metadata asks for {which} but the vocabulary has no {which} token")]
    MissingSpecialToken { which: &'static str },
    /// The chat template failed to parse or to render.
    #[error("chat template: {0:#}")]
    Template(#[from] minijinja::Error),
}
