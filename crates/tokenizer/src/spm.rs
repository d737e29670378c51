//! SentencePiece-style encoding (`tokenizer.ggml.model = llama`): start from UTF-8 characters, repeatedly merge the
//! adjacent pair whose concatenation is the highest-scoring token (leftmost on ties), then emit each final piece
//! as its token, or as byte tokens when it is not one.

use crate::token_table::TokenTable;
use crate::TokenizerError;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// What SPM encoding reads from the vocabulary.
pub struct SpmVocab<'a> {
    pub table: &'a TokenTable,
    /// [n_tokens]
    pub scores: &'a [f32],
    /// [256]: the token of each byte for characters with no token of their own
    pub byte_tokens: &'a [Option<u32>; 256],
}

impl SpmVocab<'_> {
    fn push_bytes(&self, bytes: &[u8], out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        for &byte in bytes {
            out.push(self.byte_tokens[byte as usize].ok_or(TokenizerError::NoByteToken { byte })?);
        }
        Ok(())
    }
}

/// Replaces every space with `▁` (U+2581), as SentencePiece sees text.
pub fn escape_whitespace(text: &str, out: &mut String) {
    out.reserve(text.len());
    for (i, part) in text.split(' ').enumerate() {
        if i > 0 {
            out.push('\u{2581}');
        }
        out.push_str(part);
    }
}

/// A piece of the text being merged: bytes `start..start + len`, linked to its live neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    /// 0 once merged into its left neighbour
    len: u32,
    prev: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// A candidate merge of `left` and `right`, which together spanned `size` bytes when it was queued.
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The heap pops the highest score first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Encodes `text` (already whitespace-escaped) and appends the ids to `out`.
pub fn encode(vocab: &SpmVocab<'_>, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Ok(());
    }
    // [n_chars]
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .map(|(at, c)| Symbol {
            start: at as u32,
            len: c.len_utf8() as u32,
            prev: NONE,
            next: NONE,
        })
        .collect();
    let n = symbols.len() as u32;
    for (i, s) in symbols.iter_mut().enumerate() {
        let i = i as u32;
        s.prev = if i == 0 { NONE } else { i - 1 };
        s.next = if i + 1 == n { NONE } else { i + 1 };
    }
    let mut queue: BinaryHeap<Bigram> = BinaryHeap::with_capacity(symbols.len());
    let try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: u32, right: u32| {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        let span = &bytes[l.start as usize..(r.start + r.len) as usize];
        if let Some(id) = vocab.table.get(span) {
            queue.push(Bigram {
                score: vocab.scores[id as usize],
                left,
                right,
                size: span.len() as u32,
            });
        }
    };
    for i in 1..n {
        try_add(&symbols, &mut queue, i - 1, i);
    }
    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left as usize], symbols[bigram.right as usize]);
        // Stale: one side was merged away or grew since this pair was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
            continue;
        }
        let left = &mut symbols[bigram.left as usize];
        left.len += r.len;
        left.next = r.next;
        symbols[bigram.right as usize].len = 0;
        if r.next != NONE {
            symbols[r.next as usize].prev = bigram.left;
        }
        let merged = symbols[bigram.left as usize];
        try_add(&symbols, &mut queue, merged.prev, bigram.left);
        try_add(&symbols, &mut queue, bigram.left, merged.next);
    }
    let mut i = 0u32;
    while i != NONE {
        let s = symbols[i as usize];
        let piece = &bytes[s.start as usize..(s.start + s.len) as usize];
        match vocab.table.get(piece) {
            Some(id) => out.push(id),
            None => vocab.push_bytes(piece, out)?,
        }
        i = s.next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The slow obvious twin: scan every adjacent pair each round, merge the best, repeat.
    fn encode_reference(vocab: &SpmVocab<'_>, text: &str) -> Vec<u32> {
        let mut pieces: Vec<String> = text.chars().map(String::from).collect();
        loop {
            let mut best: Option<(f32, usize)> = None;
            for i in 0..pieces.len().saturating_sub(1) {
                let joined = format!("{}{}", pieces[i], pieces[i + 1]);
                if let Some(id) = vocab.table.get(joined.as_bytes()) {
                    let score = vocab.scores[id as usize];
                    if best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            let right = pieces.remove(i + 1);
            pieces[i].push_str(&right);
        }
        let mut out = Vec::new();
        for p in pieces {
            match vocab.table.get(p.as_bytes()) {
                Some(id) => out.push(id),
                None => out.extend(p.bytes().map(|b| vocab.byte_tokens[b as usize].expect("byte token"))),
            }
        }
        out
    }

    struct Fixture {
        table: TokenTable,
        scores: Vec<f32>,
        byte_tokens: [Option<u32>; 256],
    }

    /// 256 byte tokens, then pieces over a small alphabet with scores that make merge order matter.
    fn fixture() -> Fixture {
        let mut texts: Vec<Vec<u8>> = (0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()).collect();
        let mut scores = vec![0.0f32; 256];
        let words = [
            ("a", -1.0),
            ("b", -1.0),
            ("▁", -1.0),
            ("ab", -2.0),
            ("ba", -2.0),
            ("aa", -3.0),
            ("aba", -1.5),
            ("bab", -1.5),
            ("▁a", -2.5),
            ("▁ab", -0.5),
            ("abab", -4.0),
            ("é", -1.0),
            ("éa", -2.0),
            ("bb", -2.0),
        ];
        for (w, s) in words {
            texts.push(w.as_bytes().to_vec());
            scores.push(s);
        }
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = Some(b as u32);
        }
        Fixture {
            table: TokenTable::new(texts.iter().map(Vec::as_slice)),
            scores,
            byte_tokens,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn heap_merge_equals_the_reference(idx in proptest::collection::vec(0usize..6, 0..30)) {
            let alphabet = ["a", "b", "▁", "é", "z", "日"];
            let text: String = idx.iter().map(|&i| alphabet[i]).collect();
            let f = fixture();
            let vocab = SpmVocab { table: &f.table, scores: &f.scores, byte_tokens: &f.byte_tokens };
            let mut ours = Vec::new();
            encode(&vocab, &text, &mut ours).unwrap();
            prop_assert_eq!(ours, encode_reference(&vocab, &text));
        }
    }

    #[test]
    fn merges_by_score_and_falls_back_to_bytes() {
        let f = fixture();
        let vocab = SpmVocab {
            table: &f.table,
            scores: &f.scores,
            byte_tokens: &f.byte_tokens,
        };
        let id = |s: &str| f.table.get(s.as_bytes()).unwrap();
        let mut out = Vec::new();
        // "▁ab" (-0.5) wins over "ab" (-2.0) only after "▁a" forms; scores: ▁a -2.5, ab -2.0, so "ab" merges
        // first, then "▁" + "ab" = "▁ab".
        encode(&vocab, "▁ab", &mut out).unwrap();
        assert_eq!(out, [id("▁ab")]);
        out.clear();
        // "z" has no token: its byte 0x7A
        encode(&vocab, "az", &mut out).unwrap();
        assert_eq!(out, [id("a"), 0x7A]);
        out.clear();
        // "日" is three bytes, each a byte token
        encode(&vocab, "日", &mut out).unwrap();
        assert_eq!(out, [0xE6, 0x97, 0xA5]);
    }

    #[test]
    fn escape_replaces_only_spaces() {
        let mut s = String::new();
        escape_whitespace(" a  b\tc\n ", &mut s);
        assert_eq!(s, "▁a▁▁b\tc\n▁");
    }
}
