//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): each pre-tokenized piece becomes one symbol per byte (the
//! byte's GPT-2 stand-in character), then the adjacent pair with the best (lowest) merge rank merges, leftmost on
//! ties, until no listed merge applies. Symbols are token ids throughout, so a merge is one hash lookup.

use crate::pretokenize::PreTokenizer;
use crate::token_table::TokenTable;
use crate::TokenizerError;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes stand for themselves, the
/// rest take the code points from U+0100 on, in byte order.
pub fn byte_to_char(byte: u8) -> char {
    let b = u32::from(byte);
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    if printable(b) {
        return char::from(byte);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(0x100 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The table of [`byte_to_char`] and its inverse.
#[derive(Debug, Clone)]
pub struct ByteLevel {
    /// [256]
    chars: [char; 256],
    /// [0x144]: the byte a stand-in character encodes (every stand-in is below U+0144)
    bytes: Vec<Option<u8>>,
}

impl Default for ByteLevel {
    fn default() -> Self {
        let mut chars = ['\0'; 256];
        let mut bytes = vec![None; 0x144];
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            chars[b as usize] = c;
            bytes[c as usize] = Some(b);
        }
        ByteLevel { chars, bytes }
    }
}

impl ByteLevel {
    pub fn char_of(&self, byte: u8) -> char {
        self.chars[byte as usize]
    }

    /// Appends the bytes a token text stands for; characters outside the map pass through as their UTF-8.
    pub fn decode_into(&self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            match self.bytes.get(c as usize).copied().flatten() {
                Some(b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }

    /// Appends the stand-in characters of `bytes` to `out`.
    pub fn encode_into(&self, bytes: &[u8], out: &mut String) {
        out.extend(bytes.iter().map(|&b| self.chars[b as usize]));
    }
}

/// FxHash steps, finished by a full mix, for the merge table (keys: two token ids packed in a u64) and the word
/// cache.
#[derive(Default)]
pub struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        crate::token_table::mix(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[inline]
fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// The merges as (left id, right id) -> (rank, merged id).
#[derive(Debug, Clone, Default)]
pub struct Merges {
    map: HashMap<u64, (u32, u32), BuildHasherDefault<PairHasher>>,
}

impl Merges {
    /// Parses "left right" merges. A merge whose parts or result are not tokens can never apply (every symbol
    /// is a token) and is left out; when a pair repeats, its first (best) rank stands.
    pub fn new(merges: &[&str], table: &TokenTable) -> Result<Self, TokenizerError> {
        let mut map = HashMap::with_capacity_and_hasher(merges.len(), BuildHasherDefault::default());
        for (rank, merge) in merges.iter().enumerate() {
            // The separator is the first space after the first byte (a left part may itself be a space).
            let split = merge
                .as_bytes()
                .iter()
                .skip(1)
                .position(|&b| b == b' ')
                .map(|at| at + 1)
                .ok_or_else(|| TokenizerError::MalformedMerge {
                    index: rank,
                    merge: (*merge).to_owned(),
                })?;
            let (left, right) = (&merge.as_bytes()[..split], &merge.as_bytes()[split + 1..]);
            let (Some(l), Some(r), Some(m)) = (table.get(left), table.get(right), table.get_concat(left, right)) else {
                continue;
            };
            map.entry(pair_key(l, r)).or_insert((rank as u32, m));
        }
        Ok(Merges { map })
    }

    /// (rank, merged id) of the pair.
    #[inline]
    pub fn get(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        self.map.get(&pair_key(left, right)).copied()
    }
}

/// A candidate merge of `left` and `right` (symbol indices) whose ids were `ids` when queued.
#[derive(PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: u32,
    right: u32,
    ids: (u32, u32),
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Ascending rank, then leftmost; the heap holds `Reverse` of this.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.rank, self.left).cmp(&(other.rank, other.left))
    }
}

const NONE: u32 = u32::MAX;

/// Merges one piece whose symbols are `ids` (one per byte; `NONE` for a byte with no token) and appends the
/// resulting ids, skipping `NONE`s, to `out`. `ids` is scratch: [n_bytes].
pub fn merge_piece(merges: &Merges, ids: &mut [u32], out: &mut Vec<u32>) {
    if ids.is_empty() {
        return;
    }
    let n = ids.len() as u32;
    // [n_bytes]: previous / next live symbol
    let mut prev: Vec<u32> = (0..n).map(|i| if i == 0 { NONE } else { i - 1 }).collect();
    let mut next: Vec<u32> = (0..n).map(|i| if i + 1 == n { NONE } else { i + 1 }).collect();
    let mut queue: BinaryHeap<Reverse<Bigram>> = BinaryHeap::new();
    let try_add = |ids: &[u32], queue: &mut BinaryHeap<Reverse<Bigram>>, left: u32, right: u32| {
        if left == NONE || right == NONE {
            return;
        }
        let pair = (ids[left as usize], ids[right as usize]);
        if let Some((rank, _)) = merges.get(pair.0, pair.1) {
            queue.push(Reverse(Bigram {
                rank,
                left,
                right,
                ids: pair,
            }));
        }
    };
    for i in 1..n {
        try_add(ids, &mut queue, i - 1, i);
    }
    while let Some(Reverse(b)) = queue.pop() {
        let (l, r) = (b.left as usize, b.right as usize);
        // Stale: a side was merged away, or changed, since this pair was queued.
        if next[l] != b.right || (ids[l], ids[r]) != b.ids {
            continue;
        }
        let Some((_, merged)) = merges.get(b.ids.0, b.ids.1) else {
            continue;
        };
        ids[l] = merged;
        ids[r] = NONE;
        next[l] = next[r];
        if next[r] != NONE {
            prev[next[r] as usize] = b.left;
        }
        next[r] = NONE;
        prev[r] = NONE;
        try_add(ids, &mut queue, prev[l], b.left);
        try_add(ids, &mut queue, b.left, next[l]);
    }
    let mut i = 0u32;
    while i != NONE {
        if ids[i as usize] != NONE {
            out.push(ids[i as usize]);
        }
        i = next[i as usize];
    }
}

/// What BPE encoding reads from the vocabulary.
pub struct BpeVocab<'a> {
    pub table: &'a TokenTable,
    pub merges: &'a Merges,
    pub byte_level: &'a ByteLevel,
    /// [256]: the token of each byte's stand-in character
    pub byte_tokens: &'a [Option<u32>; 256],
    pub pre: PreTokenizer,
}

/// Scratch space for one `encode` call, and a cache of the words it has already encoded (text repeats words).
#[derive(Default)]
pub struct BpeSession<'t> {
    words: Vec<std::ops::Range<usize>>,
    symbols: Vec<u32>,
    stand_in: String,
    /// word bytes -> where its ids were first written in `out` (start, len)
    seen: HashMap<&'t [u8], (usize, usize), BuildHasherDefault<PairHasher>>,
}

impl<'t> BpeSession<'t> {
    /// Pre-tokenizes `text[range]` and appends the ids of each piece to `out`.
    pub fn encode(&mut self, vocab: &BpeVocab<'_>, text: &'t str, range: std::ops::Range<usize>, out: &mut Vec<u32>) {
        let fragment = &text[range.clone()];
        vocab.pre.split(fragment, &mut self.words);
        for word in &self.words {
            let bytes: &'t [u8] = &text.as_bytes()[range.start + word.start..range.start + word.end];
            if let Some(&(start, len)) = self.seen.get(bytes) {
                out.extend_from_within(start..start + len);
                continue;
            }
            let start = out.len();
            let whole = if vocab.pre.ignores_merges() {
                self.stand_in.clear();
                vocab.byte_level.encode_into(bytes, &mut self.stand_in);
                vocab.table.get(self.stand_in.as_bytes())
            } else {
                None
            };
            match whole {
                Some(id) => out.push(id),
                None => {
                    self.symbols.clear();
                    self.symbols
                        .extend(bytes.iter().map(|&b| vocab.byte_tokens[b as usize].unwrap_or(NONE)));
                    merge_piece(vocab.merges, &mut self.symbols, out);
                }
            }
            self.seen.insert(bytes, (start, out.len() - start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The slow obvious twin: find the best-ranked adjacent pair by scanning, merge it, repeat.
    fn merge_reference(merges: &Merges, ids: &[u32]) -> Vec<u32> {
        let mut syms = ids.to_vec();
        loop {
            let best = (0..syms.len().saturating_sub(1))
                .filter_map(|i| merges.get(syms[i], syms[i + 1]).map(|(rank, m)| (rank, i, m)))
                .min();
            let Some((_, i, m)) = best else { break };
            syms[i] = m;
            syms.remove(i + 1);
        }
        syms
    }

    fn fixture() -> (TokenTable, Merges) {
        let texts = [
            "a", "b", "c", "ab", "bc", "abc", "cc", "ccc", "bcc", "aa", "aaa", "aaaa",
        ];
        let table = TokenTable::new(texts.iter().map(|t| t.as_bytes()));
        let merges = Merges::new(
            &[
                "b c", "a b", "c c", "a bc", "b cc", "c cc", "a a", "aa a", "aa aa", "x y",
            ],
            &table,
        )
        .unwrap();
        (table, merges)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn heap_merge_equals_the_reference(syms in proptest::collection::vec(0u32..3, 0..24)) {
            let (_, merges) = fixture();
            let mut scratch = syms.clone();
            let mut ours = Vec::new();
            merge_piece(&merges, &mut scratch, &mut ours);
            prop_assert_eq!(ours, merge_reference(&merges, &syms));
        }
    }

    #[test]
    fn merges_by_rank_leftmost_first() {
        let (table, merges) = fixture();
        let id = |s: &str| table.get(s.as_bytes()).unwrap();
        let run = |s: &str| {
            let mut ids: Vec<u32> = s.bytes().map(|b| id(std::str::from_utf8(&[b]).unwrap())).collect();
            let mut out = Vec::new();
            merge_piece(&merges, &mut ids, &mut out);
            out
        };
        assert_eq!(run("abc"), [id("abc")]); // "b c" (rank 0) first, then "a bc"
                                             // "a a" at 0 and then at 2 (leftmost first), then "aa a" (rank 7) beats "aa aa" (rank 8)
        assert_eq!(run("aaaaa"), [id("aa"), id("aaa")]);
        // ranks: "b c" 0 < "a b" 1 < "c c" 2 < "a bc" 3: a b c c -> a bc c -> abc c
        assert_eq!(run("abcc"), [id("abc"), id("c")]);
    }

    #[test]
    fn malformed_merge_is_an_error_naming_it() {
        let table = TokenTable::new(["a"].iter().map(|t| t.as_bytes()));
        match Merges::new(&["a b", "ab"], &table) {
            Err(TokenizerError::MalformedMerge { index, merge }) => {
                assert_eq!((index, merge.as_str()), (1, "ab"))
            }
            other => panic!("expected MalformedMerge, got {other:?}"),
        }
    }

    #[test]
    fn byte_level_map_is_gpt2s() {
        let bl = ByteLevel::default();
        assert_eq!(bl.char_of(b' '), 'Ġ');
        assert_eq!(bl.char_of(b'\n'), 'Ċ');
        assert_eq!(bl.char_of(b'a'), 'a');
        assert_eq!(bl.char_of(0xAD), '\u{143}'); // the last of the 68 non-printable bytes
        let mut all = String::new();
        let bytes: Vec<u8> = (0..=255).collect();
        bl.encode_into(&bytes, &mut all);
        let mut back = Vec::new();
        bl.decode_into(&all, &mut back);
        assert_eq!(back, bytes);
    }
}
