//! Token texts in one contiguous arena, and an open-addressing hash table from text to id built over it: no
//! allocation per token, and lookups by a slice (or by two slices concatenated) without building a key.

/// A byte-wise FxHash step; byte-wise so that hashing `a` then `b` equals hashing `a ++ b`.
#[inline]
fn hash_step(h: u64, byte: u8) -> u64 {
    (h.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// MurmurHash3's 64-bit finalizer: spreads every input bit over the low bits (the slot index) and the high bits
/// (the tag). The byte-wise steps alone leave the low bits depending on few input bits, which clusters slots.
#[inline]
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline]
fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = hash_step(h, b);
    }
    h
}

/// Many byte strings stored back to back, addressed by index.
#[derive(Debug, Clone, Default)]
pub struct TextArena {
    /// [total_text_bytes]: every text, back to back
    arena: Vec<u8>,
    /// [n_texts + 1]: start of each text in `arena`, then the arena length
    starts: Vec<usize>,
}

impl TextArena {
    /// `bounds` is [n_texts + 1]: where each text starts in `arena`, then `arena.len()`.
    pub fn from_parts(arena: Vec<u8>, bounds: Vec<usize>) -> Self {
        TextArena { arena, starts: bounds }
    }

    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Text `i` (empty when out of range).
    #[inline]
    pub fn text(&self, i: u32) -> &[u8] {
        let i = i as usize;
        if i + 1 >= self.starts.len() {
            return &[];
        }
        &self.arena[self.starts[i]..self.starts[i + 1]]
    }
}

#[derive(Debug, Clone)]
pub struct TokenTable {
    texts: TextArena,
    /// [capacity]: 0 when empty, else (high 32 bits of the text's hash) << 32 | (token id + 1); capacity is a
    /// power of two > 1.5 * n_tokens (load at most 2/3). The hash tag spares reading the arena on most probe
    /// collisions.
    slots: Vec<u64>,
}

#[inline]
fn slot_of(hash: u64, id: u32) -> u64 {
    (hash & 0xFFFF_FFFF_0000_0000) | u64::from(id + 1)
}

impl TokenTable {
    /// Builds the table; when two tokens share a text, lookups find the later id (as llama.cpp's map does).
    pub fn new<'a>(texts: impl ExactSizeIterator<Item = &'a [u8]> + Clone) -> Self {
        let n = texts.len();
        let total: usize = texts.clone().map(<[u8]>::len).sum();
        let mut arena = Vec::with_capacity(total);
        let mut starts = Vec::with_capacity(n + 1);
        for t in texts {
            starts.push(arena.len());
            arena.extend_from_slice(t);
        }
        starts.push(arena.len());
        let capacity = (n.max(1) * 3 / 2 + 1).next_power_of_two();
        let mut table = TokenTable {
            texts: TextArena::from_parts(arena, starts),
            slots: vec![0; capacity],
        };
        for id in 0..n as u32 {
            table.insert(id);
        }
        table
    }

    fn insert(&mut self, id: u32) {
        let mask = self.slots.len() - 1;
        let text = self.texts.text(id);
        let hash = mix(hash_bytes(0, text));
        let tag = hash >> 32;
        let mut slot = hash as usize & mask;
        loop {
            let occupant = self.slots[slot];
            if occupant == 0 || (occupant >> 32 == tag && self.texts.text((occupant as u32) - 1) == text) {
                self.slots[slot] = slot_of(hash, id);
                return;
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// The text of token `id` (empty when out of range).
    #[inline]
    pub fn text(&self, id: u32) -> &[u8] {
        self.texts.text(id)
    }

    /// The id whose text is `text`.
    #[inline]
    pub fn get(&self, text: &[u8]) -> Option<u32> {
        self.get_concat(text, &[])
    }

    /// The id whose text is `a` followed by `b`.
    #[inline]
    pub fn get_concat(&self, a: &[u8], b: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let hash = mix(hash_bytes(hash_bytes(0, a), b));
        let tag = hash >> 32;
        let mut slot = hash as usize & mask;
        loop {
            let occupant = self.slots[slot];
            if occupant == 0 {
                return None;
            }
            if occupant >> 32 == tag {
                let id = (occupant as u32) - 1;
                let t = self.texts.text(id);
                if t.len() == a.len() + b.len() && t.starts_with(a) && t.ends_with(b) {
                    return Some(id);
                }
            }
            slot = (slot + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn agrees_with_a_hash_map_including_duplicates_and_the_empty_text() {
        let words: Vec<Vec<u8>> = ["a", "b", "ab", "", "abc", "b", "▁the", "x"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let table = TokenTable::new(words.iter().map(Vec::as_slice));
        let mut map = HashMap::new();
        for (id, w) in words.iter().enumerate() {
            map.insert(w.clone(), id as u32); // later ids win
        }
        assert_eq!(table.len(), words.len());
        for (w, &id) in &map {
            assert_eq!(table.get(w), Some(id), "{w:?}");
            for split in 0..=w.len() {
                assert_eq!(table.get_concat(&w[..split], &w[split..]), Some(id));
            }
        }
        assert_eq!(table.get(b"zz"), None);
        assert_eq!(table.get_concat(b"a", b"bcd"), None);
        assert_eq!(table.text(99), b"");
    }
}
