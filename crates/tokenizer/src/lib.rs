//! Tokenizers built from GGUF metadata: SentencePiece-style (`tokenizer.ggml.model = llama`) and byte-level BPE
//! (`gpt2`, pre-tokenizer named by `tokenizer.ggml.pre`), special tokens, streaming UTF-8 detokenization, and chat
//! templates rendered with minijinja.
//!
//! The ids agree with llama.cpp's `llama_tokenize` (the reference, treated as a black box): the fixtures under
//! `tests/fixtures/` were produced by it, see `scripts/tokenizer-fixtures.py`.

mod bpe;
mod chat;
mod decode;
mod error;
mod metadata;
mod pretokenize;
mod special;
mod spm;
mod token_table;
mod unicode;
mod vocab;

pub use chat::{strftime, ChatMessage, ChatTemplate, GEMMA3_CHAT_TEMPLATE};
pub use decode::{StreamDecoder, Utf8Stream};
pub use error::TokenizerError;
pub use metadata::{SpecialIds, TokenizerMetadata};
pub use pretokenize::PreTokenizer;
pub use vocab::attr;

use bpe::{ByteLevel, Merges};
use special::{Fragment, SpecialMatcher};
use token_table::{TextArena, TokenTable};

/// The tokenizer family and what only it needs.
#[derive(Debug, Clone)]
enum Model {
    /// SentencePiece-style, merging by token score.
    Spm {
        /// [n_tokens]
        scores: Vec<f32>,
        /// [256]: the token for each byte of a character without a token
        byte_tokens: Box<[Option<u32>; 256]>,
    },
    /// Byte-level BPE, merging by rank.
    Bpe {
        pre: PreTokenizer,
        merges: Merges,
        byte_level: Box<ByteLevel>,
        /// [256]: the token of each byte's stand-in character
        byte_tokens: Box<[Option<u32>; 256]>,
    },
}

/// A tokenizer: text to ids and back, as llama.cpp does it for the same GGUF metadata.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    model: Model,
    /// token texts, and text -> id
    table: TokenTable,
    /// [n_tokens]: rendered pieces (control tokens empty), indexed like `table`
    pieces: TextArena,
    /// [n_tokens]: [`attr`] bits
    attrs: Vec<u16>,
    special: SpecialIds,
    /// sorted end-of-generation ids
    eog: Vec<u32>,
    special_matcher: SpecialMatcher,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(g: &gguf::Gguf) -> Result<Tokenizer, TokenizerError> {
        Self::from_metadata(&TokenizerMetadata::from_gguf(g)?)
    }

    /// Builds a tokenizer from metadata (read from a file, or made by hand).
    pub fn from_metadata(meta: &TokenizerMetadata<'_>) -> Result<Tokenizer, TokenizerError> {
        let n = meta.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        let check_len = |key: &'static str, found: usize| {
            if found == n {
                Ok(())
            } else {
                Err(TokenizerError::LengthMismatch {
                    key,
                    expected: n,
                    found,
                })
            }
        };
        let table = TokenTable::new(meta.tokens.iter().map(|t| t.as_bytes()));
        let mut attrs: Vec<u16> = match &meta.token_types {
            Some(types) => {
                check_len("tokenizer.ggml.token_type", types.len())?;
                types
                    .iter()
                    .enumerate()
                    .map(|(id, &t)| vocab::attr_of_type(id as u32, t))
                    .collect::<Result<_, _>>()?
            }
            None => vec![attr::NORMAL; n],
        };
        let is_spm = match meta.model {
            "llama" => true,
            "gpt2" => false,
            other => {
                return Err(TokenizerError::UnknownModel {
                    model: other.to_owned(),
                })
            }
        };
        // Defaults before the metadata's own keys, as llama.cpp has them per family.
        let mut given = meta.special;
        let pre = if is_spm {
            None
        } else {
            Some(PreTokenizer::from_name(meta.pre.unwrap_or("default"))?)
        };
        if is_spm {
            given.bos = given.bos.or(Some(1));
            given.eos = given.eos.or(Some(2));
            given.unknown = given.unknown.or(Some(0));
        } else {
            given.bos = given.bos.or(Some(11));
            given.eos = given.eos.or(Some(11));
        }
        let resolved = vocab::resolve_specials(given, &table, &mut attrs)?;
        let default_add_bos = is_spm || pre == Some(PreTokenizer::Llama3);

        let model = if is_spm {
            let scores = match &meta.scores {
                Some(s) => {
                    check_len("tokenizer.ggml.scores", s.len())?;
                    s.clone()
                }
                None => vec![0.0; n],
            };
            let mut byte_tokens = Box::new([None; 256]);
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                let hex = format!("<0x{b:02X}>");
                *slot = table
                    .get(hex.as_bytes())
                    .or_else(|| table.get(&[b as u8]))
                    .or(resolved.ids.unknown);
            }
            Model::Spm { scores, byte_tokens }
        } else {
            let merges = meta.merges.as_deref().ok_or(TokenizerError::MissingMerges)?;
            let byte_level = Box::<ByteLevel>::default();
            let mut byte_tokens = Box::new([None; 256]);
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                let mut buf = [0u8; 4];
                *slot = table.get(byte_level.char_of(b as u8).encode_utf8(&mut buf).as_bytes());
            }
            Model::Bpe {
                pre: pre.unwrap_or(PreTokenizer::Default),
                merges: Merges::new(merges, &table)?,
                byte_level,
                byte_tokens,
            }
        };
        let pieces = render_pieces(&model, &table, &attrs)?;
        let special_matcher = SpecialMatcher::new(&table, &attrs);
        Ok(Tokenizer {
            clean_spaces: pre.is_some_and(PreTokenizer::cleans_spaces),
            model,
            pieces,
            attrs,
            special: resolved.ids,
            eog: resolved.eog,
            special_matcher,
            add_bos: meta.add_bos.unwrap_or(default_add_bos),
            add_eos: meta.add_eos.unwrap_or(false),
            add_space_prefix: meta.add_space_prefix.unwrap_or(is_spm),
            chat_template: meta.chat_template.map(str::to_owned),
            table,
        })
    }

    /// Text to ids, as llama.cpp's `llama_tokenize`: `add_special` adds BOS (and EOS) where the metadata asks for
    /// them; `parse_special` turns the texts of control tokens (`<|im_start|>`, `<start_of_turn>`) into those
    /// tokens (user-defined tokens are always recognized).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.push(
                self.special
                    .bos
                    .ok_or(TokenizerError::MissingSpecialToken { which: "BOS" })?,
            );
        }
        let fragments = self.special_matcher.partition(text, parse_special);
        match &self.model {
            Model::Spm { scores, byte_tokens } => {
                let vocab = spm::SpmVocab {
                    table: &self.table,
                    scores,
                    byte_tokens,
                };
                let mut escaped = String::new();
                let mut prev_special = true;
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(range) => {
                            escaped.clear();
                            if self.add_space_prefix && prev_special {
                                escaped.push('\u{2581}');
                            }
                            spm::escape_whitespace(&text[range], &mut escaped);
                            spm::encode(&vocab, &escaped, &mut out)?;
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Model::Bpe {
                pre,
                merges,
                byte_level,
                byte_tokens,
            } => {
                let vocab = bpe::BpeVocab {
                    table: &self.table,
                    merges,
                    byte_level,
                    byte_tokens,
                    pre: *pre,
                };
                let mut session = bpe::BpeSession::default();
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(range) => session.encode(&vocab, text, range, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.push(
                self.special
                    .eos
                    .ok_or(TokenizerError::MissingSpecialToken { which: "EOS" })?,
            );
        }
        Ok(out)
    }

    /// The bytes token `id` stands for, as llama.cpp's `token_to_piece` renders it (SentencePiece: `▁` is a space
    /// and `<0xXX>` its byte; BPE: byte-level decoded); control and unknown-text tokens render empty. Empty for an out-of-range id.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces.text(id)
    }

    /// As [`Tokenizer::token_bytes`], with control and unknown tokens rendered as their text when
    /// `render_special`.
    pub fn token_bytes_special(&self, id: u32, render_special: bool) -> &[u8] {
        match self.attrs.get(id as usize) {
            Some(a) if render_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 => self.table.text(id),
            _ => self.pieces.text(id),
        }
    }

    /// Ids to text, lossily, as llama.cpp's `llama_detokenize(remove_special = false, unparse_special = false)`.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_with(ids, false, false)
    }

    /// Ids to text as `llama_detokenize`: `remove_special` drops a leading BOS and trailing EOS where the metadata
    /// adds them; `render_special` prints control tokens' texts.
    pub fn decode_with(&self, mut ids: &[u32], remove_special: bool, render_special: bool) -> String {
        let mut strip_space = self.add_space_prefix;
        if remove_special && self.add_bos {
            if let (Some(&first), Some(bos)) = (ids.first(), self.special.bos) {
                if first == bos {
                    strip_space = false;
                    ids = &ids[1..];
                }
            }
        }
        if remove_special && self.add_eos {
            if let (Some(&last), Some(eos)) = (ids.last(), self.special.eos) {
                if last == eos {
                    ids = &ids[..ids.len() - 1];
                }
            }
        }
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.token_bytes_special(id, render_special);
            let piece = match piece.split_first() {
                Some((b' ', rest)) if i == 0 && strip_space => rest,
                _ => piece,
            };
            bytes.extend_from_slice(piece);
        }
        if self.clean_spaces {
            bytes = decode::clean_spaces(&bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A streaming decoder over this tokenizer.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    pub fn vocab_size(&self) -> usize {
        self.table.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.special.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.special.eos
    }
    /// All special ids after defaults and detection by text (EOT, EOM, FIM tokens).
    pub fn special_ids(&self) -> &SpecialIds {
        &self.special
    }
    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// Whether `id` ends generation: EOS, EOT, EOM, and the tokens llama.cpp treats so by their text.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
    /// The end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }
    /// The [`attr`] bits of token `id` (0 when out of range).
    pub fn token_attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(attr::UNDEFINED)
    }
    /// Whether `id` is a control token (rendered empty unless asked).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id) & attr::CONTROL != 0
    }
    /// The raw vocabulary text of token `id`.
    pub fn token_str(&self, id: u32) -> Option<&str> {
        if id as usize >= self.table.len() {
            return None;
        }
        std::str::from_utf8(self.table.text(id)).ok()
    }
    /// The id whose raw vocabulary text is `s`.
    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.table.get(s.as_bytes())
    }
    /// The `tokenizer.chat_template` source, if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
    /// The file's chat template compiled with this vocabulary's BOS and EOS texts.
    pub fn compiled_chat_template(&self) -> Result<Option<ChatTemplate>, TokenizerError> {
        let text = |id: Option<u32>| id.and_then(|id| self.token_str(id)).unwrap_or("");
        self.chat_template
            .as_deref()
            .map(|source| ChatTemplate::new(source, text(self.special.bos), text(self.special.eos)))
            .transpose()
    }
}

/// Every token's rendering with control and unknown tokens left empty: [n_tokens].
fn render_pieces(model: &Model, table: &TokenTable, attrs: &[u16]) -> Result<TextArena, TokenizerError> {
    let mut rendered: Vec<u8> = Vec::with_capacity(table.len() * 8);
    let mut bounds: Vec<usize> = Vec::with_capacity(table.len() + 1);
    bounds.push(0);
    for (id, &a) in attrs.iter().enumerate() {
        let id = id as u32;
        let text = table.text(id);
        if a & attr::CONTROL != 0 {
            // rendered only on request, as the raw text (so are unknown tokens, below)
        } else if a & attr::USER_DEFINED != 0 {
            rendered.extend_from_slice(text);
        } else if a & attr::NORMAL != 0 {
            match model {
                Model::Spm { .. } => {
                    // "▁" (E2 96 81) is a space
                    let mut i = 0;
                    while i < text.len() {
                        if text[i..].starts_with("\u{2581}".as_bytes()) {
                            rendered.push(b' ');
                            i += 3;
                        } else {
                            rendered.push(text[i]);
                            i += 1;
                        }
                    }
                }
                Model::Bpe { byte_level, .. } => byte_level.decode_into(&String::from_utf8_lossy(text), &mut rendered),
            }
        } else if a & attr::BYTE != 0 {
            if let Model::Spm { .. } = model {
                rendered.push(vocab::byte_of_token_text(id, text)?);
            }
        }
        bounds.push(rendered.len());
    }
    Ok(TextArena::from_parts(rendered, bounds))
}

// The tokenizer is shared across threads by reference.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
};
