//! Token attributes, special-token ids (given or found by their text, as llama.cpp finds them) and the set of
//! end-of-generation tokens.

use crate::metadata::SpecialIds;
use crate::token_table::TokenTable;
use crate::TokenizerError;

/// Token attribute bits (the numbering of llama.cpp's `llama_token_attr`).
pub mod attr {
    pub const UNDEFINED: u16 = 0;
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
}

/// The attribute of a GGUF token type.
pub fn attr_of_type(id: u32, token_type: i32) -> Result<u16, TokenizerError> {
    Ok(match token_type {
        0 => attr::UNDEFINED,
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => return Err(TokenizerError::InvalidTokenType { id, token_type }),
    })
}

/// Texts that mark a token as ending a turn, when the metadata names no EOT token.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>", "<file_sep>", "<fim-sep>"];

/// Texts of tokens that end generation wherever they are in the vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "</s>",
    "<eos>",
];

/// gpt-oss channel markers, always rendered as text.
const ALWAYS_RENDERED_TEXTS: &[&str] = &["<|channel|>", "<|constrain|>", "<|message|>", "<|start|>"];

/// Special ids after defaults, range checks and detection by text.
#[derive(Debug, Clone, Default)]
pub struct ResolvedSpecials {
    pub ids: SpecialIds,
    /// Sorted ids of the end-of-generation tokens.
    pub eog: Vec<u32>,
}

fn check(key: &'static str, id: Option<u32>, vocab_size: usize) -> Result<Option<u32>, TokenizerError> {
    match id {
        Some(id) if id as usize >= vocab_size => Err(TokenizerError::TokenIdOutOfRange { key, id, vocab_size }),
        other => Ok(other),
    }
}

/// Range-checks the given ids, finds the unnamed EOT/EOM/FIM tokens by their text (marking them control), adjusts
/// attributes the way llama.cpp does and collects the end-of-generation set. `attrs` is [n_tokens].
pub fn resolve_specials(
    given: SpecialIds,
    table: &TokenTable,
    attrs: &mut [u16],
) -> Result<ResolvedSpecials, TokenizerError> {
    let n = attrs.len();
    let mut ids = SpecialIds {
        bos: check("tokenizer.ggml.bos_token_id", given.bos, n)?,
        eos: check("tokenizer.ggml.eos_token_id", given.eos, n)?,
        eot: check("tokenizer.ggml.eot_token_id", given.eot, n)?,
        eom: check("tokenizer.ggml.eom_token_id", given.eom, n)?,
        unknown: check("tokenizer.ggml.unknown_token_id", given.unknown, n)?,
        padding: check("tokenizer.ggml.padding_token_id", given.padding, n)?,
        fim_pre: check("tokenizer.ggml.fim_pre_token_id", given.fim_pre, n)?,
        fim_suf: check("tokenizer.ggml.fim_suf_token_id", given.fim_suf, n)?,
        fim_mid: check("tokenizer.ggml.fim_mid_token_id", given.fim_mid, n)?,
        fim_pad: check("tokenizer.ggml.fim_pad_token_id", given.fim_pad, n)?,
        fim_rep: check("tokenizer.ggml.fim_rep_token_id", given.fim_rep, n)?,
        fim_sep: check("tokenizer.ggml.fim_sep_token_id", given.fim_sep, n)?,
    };
    // The first (lowest id) token carrying one of `texts`, now a control token.
    let mut find = |slot: &mut Option<u32>, texts: &[&str]| {
        if slot.is_some() {
            return;
        }
        let found = texts.iter().filter_map(|t| table.get(t.as_bytes())).min();
        if let Some(id) = found {
            attrs[id as usize] |= attr::CONTROL;
            *slot = Some(id);
        }
    };
    find(&mut ids.eot, EOT_TEXTS);
    find(&mut ids.eom, EOM_TEXTS);
    find(&mut ids.fim_pre, FIM_PRE_TEXTS);
    find(&mut ids.fim_suf, FIM_SUF_TEXTS);
    find(&mut ids.fim_mid, FIM_MID_TEXTS);
    find(&mut ids.fim_pad, FIM_PAD_TEXTS);
    find(&mut ids.fim_rep, FIM_REP_TEXTS);
    find(&mut ids.fim_sep, FIM_SEP_TEXTS);

    for text in ALWAYS_RENDERED_TEXTS {
        if let Some(id) = table.get(text.as_bytes()) {
            attrs[id as usize] = attr::USER_DEFINED;
        }
    }
    // Reserved control tokens (`<unused12>`) are also unused.
    for (id, a) in attrs.iter_mut().enumerate() {
        if *a & attr::CONTROL != 0 && table.text(id as u32).starts_with(b"<unused") {
            *a |= attr::UNUSED;
        }
    }

    let mut eog: Vec<u32> = Vec::new();
    for text in EOG_TEXTS {
        if let Some(id) = table.get(text.as_bytes()) {
            attrs[id as usize] |= attr::CONTROL;
            eog.push(id);
        }
    }
    eog.extend(
        [ids.eos, ids.eot, ids.eom, ids.fim_pad, ids.fim_rep, ids.fim_sep]
            .into_iter()
            .flatten(),
    );
    // gpt-oss: with <|return|> or <|call|> present, <|end|> only separates messages.
    let by_text = |t: &str| table.get(t.as_bytes());
    if let Some(end) = by_text("<|end|>") {
        if by_text("<|return|>").is_some() || by_text("<|call|>").is_some() {
            eog.retain(|&id| id != end);
            attrs[end as usize] = attr::USER_DEFINED;
        }
    }
    eog.sort_unstable();
    eog.dedup();
    Ok(ResolvedSpecials { ids, eog })
}

/// The byte of a `<0xXX>` token text.
pub fn byte_of_token_text(id: u32, text: &[u8]) -> Result<u8, TokenizerError> {
    let malformed = || TokenizerError::MalformedByteToken {
        id,
        text: String::from_utf8_lossy(text).into_owned(),
    };
    if text.len() != 6 || !text.starts_with(b"<0x") || text[5] != b'>' {
        return Err(malformed());
    }
    let hex = std::str::from_utf8(&text[3..5]).map_err(|_| malformed())?;
    u8::from_str_radix(hex, 16).map_err(|_| malformed())
}
