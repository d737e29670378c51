//! The tokenizer's part of GGUF metadata, read into plain fields (borrowed from the file) that a caller can also
//! build or adjust by hand before constructing a [`crate::Tokenizer`].

use crate::TokenizerError;
use gguf::Gguf;

/// Special-token ids as the metadata gives them (`None`: the key is absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unknown: Option<u32>,
    pub padding: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// The `tokenizer.*` keys of a GGUF file.
#[derive(Debug, Clone, Default)]
pub struct TokenizerMetadata<'a> {
    /// `tokenizer.ggml.model`: `llama` (SentencePiece-style) or `gpt2` (byte-level BPE).
    pub model: &'a str,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer.
    pub pre: Option<&'a str>,
    /// `tokenizer.ggml.tokens`: [n_tokens]
    pub tokens: Vec<&'a str>,
    /// `tokenizer.ggml.scores`: [n_tokens]
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: [n_tokens], 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: [n_merges], "left right", highest priority first
    pub merges: Option<Vec<&'a str>>,
    pub special: SpecialIds,
    /// `tokenizer.ggml.add_bos_token`
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`
    pub chat_template: Option<&'a str>,
}

impl<'a> TokenizerMetadata<'a> {
    /// Reads the tokenizer keys; absent optional keys stay `None`, present keys of the wrong type are errors.
    pub fn from_gguf(g: &'a Gguf) -> Result<Self, TokenizerError> {
        let id = |name: &str| g.opt_u32(&format!("tokenizer.ggml.{name}_token_id"));
        let optional_array = |key: &str| g.get(key).is_some();
        Ok(TokenizerMetadata {
            model: g.get_str("tokenizer.ggml.model")?,
            pre: g.opt_str("tokenizer.ggml.pre")?,
            tokens: g.get_str_array("tokenizer.ggml.tokens")?,
            scores: if optional_array("tokenizer.ggml.scores") {
                Some(g.get_f32_array("tokenizer.ggml.scores")?)
            } else {
                None
            },
            token_types: if optional_array("tokenizer.ggml.token_type") {
                Some(g.get_i32_array("tokenizer.ggml.token_type")?)
            } else {
                None
            },
            merges: if optional_array("tokenizer.ggml.merges") {
                Some(g.get_str_array("tokenizer.ggml.merges")?)
            } else {
                None
            },
            special: SpecialIds {
                bos: id("bos")?,
                eos: id("eos")?,
                eot: id("eot")?,
                eom: id("eom")?,
                unknown: id("unknown")?,
                padding: id("padding")?,
                fim_pre: id("fim_pre")?,
                fim_suf: id("fim_suf")?,
                fim_mid: id("fim_mid")?,
                fim_pad: id("fim_pad")?,
                fim_rep: id("fim_rep")?,
                fim_sep: id("fim_sep")?,
            },
            add_bos: g.opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: g.opt_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: g.opt_bool("tokenizer.ggml.add_space_prefix")?,
            chat_template: g.opt_str("tokenizer.chat_template")?,
        })
    }
}
