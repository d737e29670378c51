//! Pre-tokenizers of byte-level BPE: the regex splits named by `tokenizer.ggml.pre`, written by hand over Unicode
//! classes (the patterns' slow obvious twins are the regexes themselves, run by `fancy-regex` in the tests).
//!
//! Splitting follows the regex "isolated" convention: every match is a piece, and so is every stretch of text
//! between matches, so no byte is lost. Stages apply in order, each splitting the pieces of the one before.

use crate::unicode::{classes, LETTER, NUMBER, PUNCTUATION, WHITESPACE};
use crate::TokenizerError;

/// The GPT-2 pattern: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
pub const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// The Llama 3 pattern (digits in groups of up to three).
pub const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen 2 pattern: Llama 3's with single digits.
pub const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The first stage of `default`: runs of punctuation and a few symbols.
pub const PUNCT_RUN_PATTERN: &str = r"[\p{P}\$\+<=>\^~\|]+";

/// A pre-tokenizer, chosen by the GGUF key `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// `default`: punctuation runs, then GPT-2, then digit runs, then groups of three ASCII digits.
    Default,
    /// `gpt-2`: the GPT-2 pattern alone.
    Gpt2,
    /// `llama-bpe`: the Llama 3 pattern.
    Llama3,
    /// `qwen2`: the Qwen 2 pattern.
    Qwen2,
    /// `smollm`: every digit alone, then GPT-2.
    Smollm,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp selects for `name`; an unknown name is an error that carries it. Besides the
    /// five canonical names, the aliases accepted are those llama.cpp was shown to treat identically
    /// (tests/fixtures/pre-aliases.json); names it loads with other patterns (tekken, starcoder, ...) are errors.
    pub fn from_name(name: &str) -> Result<Self, TokenizerError> {
        Ok(match name {
            "default" => PreTokenizer::Default,
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "mellum"
            | "olmo" | "mpt" | "jais" => PreTokenizer::Gpt2,
            "llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
                PreTokenizer::Llama3
            }
            "qwen2" | "deepseek-r1-qwen" => PreTokenizer::Qwen2,
            "smollm" | "command-r" => PreTokenizer::Smollm,
            _ => return Err(TokenizerError::UnknownPreTokenizer { pre: name.to_owned() }),
        })
    }

    /// The regexes this pre-tokenizer applies, in order (what the hand-written splitter implements).
    pub fn patterns(self) -> &'static [&'static str] {
        match self {
            PreTokenizer::Default => &[PUNCT_RUN_PATTERN, GPT2_PATTERN, r"\p{N}+", "[0-9][0-9][0-9]"],
            PreTokenizer::Gpt2 => &[GPT2_PATTERN],
            PreTokenizer::Llama3 => &[LLAMA3_PATTERN],
            PreTokenizer::Qwen2 => &[QWEN2_PATTERN],
            PreTokenizer::Smollm => &[r"\p{N}", GPT2_PATTERN],
        }
    }

    /// Whether detokenization tidies spaces before punctuation and contractions (llama.cpp's `clean_spaces`).
    pub fn cleans_spaces(self) -> bool {
        !matches!(self, PreTokenizer::Qwen2 | PreTokenizer::Smollm)
    }

    /// Whether a piece that is itself a token skips the merges (llama.cpp's `ignore_merges`).
    pub fn ignores_merges(self) -> bool {
        matches!(self, PreTokenizer::Llama3)
    }

    /// Splits `text` into pieces; `out` receives their byte ranges, in order, covering all of `text`.
    pub fn split(self, text: &str, out: &mut Vec<std::ops::Range<usize>>) {
        out.clear();
        let chars = Chars::new(text);
        let n = chars.len();
        let whole = vec![(0, n)];
        let pieces = match self {
            PreTokenizer::Gpt2 => stage(&chars, &whole, gpt2_match),
            PreTokenizer::Llama3 => stage(&chars, &whole, |c, i, end| llama3_match(c, i, end, 3)),
            PreTokenizer::Qwen2 => stage(&chars, &whole, |c, i, end| llama3_match(c, i, end, 1)),
            PreTokenizer::Smollm => {
                let digits = stage(&chars, &whole, |c, i, _| (c.class(i) & NUMBER != 0).then_some(i + 1));
                stage(&chars, &digits, gpt2_match)
            }
            PreTokenizer::Default => {
                let punct = stage(&chars, &whole, |c, i, end| run_of(c, i, end, is_punct_run_char));
                let words = stage(&chars, &punct, gpt2_match);
                let numbers = stage(&chars, &words, |c, i, end| {
                    run_of(c, i, end, |c, k| c.class(k) & NUMBER != 0)
                });
                stage(&chars, &numbers, |c, i, end| {
                    (i + 3 <= end && (i..i + 3).all(|k| c.ch[k].is_ascii_digit())).then_some(i + 3)
                })
            }
        };
        out.extend(pieces.iter().map(|&(a, b)| chars.byte(a)..chars.byte(b)));
    }
}

/// The characters of a text with their byte offsets and class bits.
struct Chars {
    /// [n_chars]
    ch: Vec<char>,
    /// [n_chars]: class bits of each char
    cls: Vec<u8>,
    /// [n_chars + 1]: byte offset of each char, then the text length
    offset: Vec<usize>,
}

impl Chars {
    fn new(text: &str) -> Self {
        let mut ch = Vec::with_capacity(text.len());
        let mut cls = Vec::with_capacity(text.len());
        let mut offset = Vec::with_capacity(text.len() + 1);
        for (at, c) in text.char_indices() {
            ch.push(c);
            cls.push(classes(c));
            offset.push(at);
        }
        offset.push(text.len());
        Chars { ch, cls, offset }
    }
    fn len(&self) -> usize {
        self.ch.len()
    }
    #[inline]
    fn class(&self, i: usize) -> u8 {
        self.cls[i]
    }
    #[inline]
    fn byte(&self, i: usize) -> usize {
        self.offset[i]
    }
    #[inline]
    fn is_ws(&self, i: usize) -> bool {
        self.cls[i] & WHITESPACE != 0
    }
    /// `[^\s\p{L}\p{N}]`
    #[inline]
    fn is_other(&self, i: usize) -> bool {
        self.cls[i] & (WHITESPACE | LETTER | NUMBER) == 0
    }
    /// The end of the run of chars from `i` (below `end`) that satisfy `pred`.
    #[inline]
    fn run_end(&self, mut i: usize, end: usize, pred: impl Fn(&Chars, usize) -> bool) -> usize {
        while i < end && pred(self, i) {
            i += 1;
        }
        i
    }
}

/// `[\p{P}\$\+<=>\^~\|]`
fn is_punct_run_char(c: &Chars, i: usize) -> bool {
    c.class(i) & PUNCTUATION != 0 || matches!(c.ch[i], '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
}

/// A non-empty run of `pred` chars starting at `i`.
fn run_of(c: &Chars, i: usize, end: usize, pred: impl Fn(&Chars, usize) -> bool) -> Option<usize> {
    let stop = c.run_end(i, end, pred);
    (stop > i).then_some(stop)
}

/// Applies a matcher (char index -> end of the match starting there, if any) across each piece, regex style:
/// matches are searched leftmost first; unmatched stretches between them become pieces too.
fn stage(
    chars: &Chars,
    pieces: &[(usize, usize)],
    matcher: impl Fn(&Chars, usize, usize) -> Option<usize>,
) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(pieces.len() * 2);
    for &(start, end) in pieces {
        let mut gap_start = start;
        let mut i = start;
        while i < end {
            match matcher(chars, i, end) {
                Some(stop) if stop > i => {
                    if gap_start < i {
                        out.push((gap_start, i));
                    }
                    out.push((i, stop));
                    i = stop;
                    gap_start = stop;
                }
                _ => i += 1,
            }
        }
        if gap_start < end {
            out.push((gap_start, end));
        }
    }
    out
}

/// The contraction `'s 't 're 've 'm 'll 'd` at `i`; `fold` also accepts upper case.
#[inline]
fn contraction(c: &Chars, i: usize, end: usize, fold: bool) -> Option<usize> {
    if c.ch[i] != '\'' || i + 1 >= end {
        return None;
    }
    let low = |k: usize| {
        if fold {
            c.ch[k].to_ascii_lowercase()
        } else {
            c.ch[k]
        }
    };
    match low(i + 1) {
        's' | 't' | 'm' | 'd' => Some(i + 2),
        first @ ('r' | 'v' | 'l') if i + 2 < end => {
            let want = if first == 'l' { 'l' } else { 'e' };
            (low(i + 2) == want).then_some(i + 3)
        }
        _ => None,
    }
}

/// `\s+(?!\S)` at `i` (which is whitespace): the run, less its last char when a non-space follows.
#[inline]
fn spaces_not_before_text(c: &Chars, i: usize, end: usize) -> Option<usize> {
    let stop = c.run_end(i, end, Chars::is_ws);
    if stop == end {
        Some(stop)
    } else if stop - i >= 2 {
        Some(stop - 1)
    } else {
        None
    }
}

/// One match of [`GPT2_PATTERN`] starting at `i`.
fn gpt2_match(c: &Chars, i: usize, end: usize) -> Option<usize> {
    if let Some(stop) = contraction(c, i, end, false) {
        return Some(stop);
    }
    let j = if c.ch[i] == ' ' { i + 1 } else { i };
    if j < end {
        let cls = c.class(j);
        if cls & LETTER != 0 {
            return Some(c.run_end(j, end, |c, k| c.class(k) & LETTER != 0));
        }
        if cls & NUMBER != 0 {
            return Some(c.run_end(j, end, |c, k| c.class(k) & NUMBER != 0));
        }
        if c.is_other(j) {
            return Some(c.run_end(j, end, Chars::is_other));
        }
    }
    if c.is_ws(i) {
        return spaces_not_before_text(c, i, end);
    }
    None
}

/// One match of [`LLAMA3_PATTERN`] (`max_digits` 3) or [`QWEN2_PATTERN`] (`max_digits` 1) starting at `i`.
fn llama3_match(c: &Chars, i: usize, end: usize, max_digits: usize) -> Option<usize> {
    if let Some(stop) = contraction(c, i, end, true) {
        return Some(stop);
    }
    let cls = c.class(i);
    let letters = |from: usize| c.run_end(from, end, |c, k| c.class(k) & LETTER != 0);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if cls & LETTER != 0 {
        return Some(letters(i));
    }
    let newline = |k: usize| matches!(c.ch[k], '\r' | '\n');
    if cls & NUMBER == 0 && !newline(i) && i + 1 < end && c.class(i + 1) & LETTER != 0 {
        return Some(letters(i + 1));
    }
    // \p{N}{1,max}
    if cls & NUMBER != 0 {
        let limit = end.min(i + max_digits);
        return Some(c.run_end(i, limit, |c, k| c.class(k) & NUMBER != 0));
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    let j = if c.ch[i] == ' ' { i + 1 } else { i };
    if j < end && c.is_other(j) {
        let stop = c.run_end(j, end, Chars::is_other);
        return Some(c.run_end(stop, end, |c, k| matches!(c.ch[k], '\r' | '\n')));
    }
    if c.is_ws(i) {
        let run = c.run_end(i, end, Chars::is_ws);
        // \s*[\r\n]+ : up to the last newline of the run
        if let Some(last_newline) = (i..run).rev().find(|&k| newline(k)) {
            return Some(last_newline + 1);
        }
        // \s+(?!\S), then \s+
        return Some(spaces_not_before_text(c, i, end).unwrap_or(run));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The slow obvious twin: the pattern itself, matches and the stretches between them as pieces.
    fn regex_split<'a>(pattern: &str, text: &'a str) -> Vec<&'a str> {
        thread_local! {
            static COMPILED: std::cell::RefCell<std::collections::HashMap<String, fancy_regex::Regex>> =
                Default::default();
        }
        let re = COMPILED.with(|cache| {
            cache
                .borrow_mut()
                .entry(pattern.to_owned())
                .or_insert_with(|| fancy_regex::Regex::new(pattern).expect("pattern compiles"))
                .clone()
        });
        let mut out = Vec::new();
        let mut last = 0;
        for m in re.find_iter(text) {
            let m = m.expect("regex runs");
            if m.start() > last {
                out.push(&text[last..m.start()]);
            }
            if m.end() > m.start() {
                out.push(m.as_str());
            }
            last = m.end();
        }
        if last < text.len() {
            out.push(&text[last..]);
        }
        out
    }

    fn regex_stages<'a>(patterns: &[&str], text: &'a str) -> Vec<&'a str> {
        let mut pieces = vec![text];
        for p in patterns {
            pieces = pieces.iter().flat_map(|piece| regex_split(p, piece)).collect();
        }
        pieces
    }

    fn reference(pre: PreTokenizer, text: &str) -> Vec<&str> {
        regex_stages(pre.patterns(), text)
    }

    fn ours(pre: PreTokenizer, text: &str) -> Vec<&str> {
        let mut ranges = Vec::new();
        pre.split(text, &mut ranges);
        ranges.into_iter().map(|r| &text[r]).collect()
    }

    const ALL: [PreTokenizer; 5] = [
        PreTokenizer::Default,
        PreTokenizer::Gpt2,
        PreTokenizer::Llama3,
        PreTokenizer::Qwen2,
        PreTokenizer::Smollm,
    ];

    /// Characters from every class the patterns distinguish, and the letters of the contractions.
    const ALPHABET: &[char] = &[
        'a', 'Z', 'é', '日', 's', 't', 'r', 'e', 'v', 'l', 'd', 'm', 'S', 'T', 'L', 'E', '1', '2', '٣', '½', ' ', ' ',
        ' ', '\t', '\n', '\r', '\u{3000}', '\u{a0}', '\'', '\'', '!', '.', '$', '+', '<', '|', '😀', '\u{301}', '_',
        '-', '\u{200d}',
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn hand_written_splits_equal_the_regexes(idx in proptest::collection::vec(0..ALPHABET.len(), 0..40)) {
            let text: String = idx.iter().map(|&i| ALPHABET[i]).collect();
            for pre in ALL {
                prop_assert_eq!(ours(pre, &text), reference(pre, &text), "{:?} on {:?}", pre, text);
            }
        }
    }

    #[test]
    fn examples() {
        let text = "Hello world's 12345 don't  \n\n  x\t\ty  ";
        for pre in ALL {
            assert_eq!(ours(pre, text), reference(pre, text), "{pre:?}");
        }
        assert_eq!(
            ours(PreTokenizer::Llama3, "I'M 12345\n\n  x"),
            ["I", "'M", " ", "123", "45", "\n\n", " ", " x"]
        );
        assert_eq!(ours(PreTokenizer::Qwen2, "a 123"), ["a", " ", "1", "2", "3"]);
        assert_eq!(ours(PreTokenizer::Gpt2, "a\tb"), ["a", "\t", "b"]);
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        match PreTokenizer::from_name("gpt2") {
            Err(TokenizerError::UnknownPreTokenizer { pre }) => assert_eq!(pre, "gpt2"),
            other => panic!("expected UnknownPreTokenizer, got {other:?}"),
        }
    }
}
