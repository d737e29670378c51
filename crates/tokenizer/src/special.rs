//! Special tokens in raw text: control, unknown and user-defined tokens are cut out of the text before the model's
//! own algorithm sees it. As llama.cpp does it, the longest token texts claim their occurrences first (left to
//! right, without overlap), and shorter ones take what remains; when `parse_special` is off only user-defined
//! tokens are cut out.

use crate::token_table::TokenTable;
use crate::vocab::attr;
use aho_corasick::{AhoCorasick, MatchKind};

/// A piece of the text to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// Bytes of the input to tokenize normally.
    Text(std::ops::Range<usize>),
    /// A special token cut out of the input.
    Token(u32),
}

#[derive(Debug, Clone)]
pub struct SpecialMatcher {
    /// Finds every occurrence of every special text (overlapping), `None` when there are none.
    automaton: Option<AhoCorasick>,
    /// [n_patterns]: the token id of each pattern
    pattern_ids: Vec<u32>,
    /// [n_patterns]: whether the pattern is cut out even when `parse_special` is off
    always: Vec<bool>,
    /// [n_patterns]: the order in which patterns claim text: longer first, then lower id
    priority: Vec<u32>,
}

impl SpecialMatcher {
    /// `attrs` is [n_tokens], indexed like `table`.
    pub fn new(table: &TokenTable, attrs: &[u16]) -> Self {
        let cut_out = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut patterns: Vec<(u32, &[u8])> = (0..attrs.len() as u32)
            .filter(|&id| attrs[id as usize] & cut_out != 0)
            .map(|id| (id, table.text(id)))
            .filter(|(_, text)| !text.is_empty())
            .collect();
        patterns.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        let pattern_ids: Vec<u32> = patterns.iter().map(|p| p.0).collect();
        let always = pattern_ids
            .iter()
            .map(|&id| attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) == 0)
            .collect();
        let priority = (0..patterns.len() as u32).collect();
        let automaton = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(patterns.iter().map(|p| p.1))
                .ok()
        };
        SpecialMatcher {
            automaton,
            pattern_ids,
            always,
            priority,
        }
    }

    /// Splits `text` into raw stretches and special tokens, in order.
    pub fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let whole = || {
            if text.is_empty() {
                Vec::new()
            } else {
                vec![Fragment::Text(0..text.len())]
            }
        };
        let Some(automaton) = &self.automaton else {
            return whole();
        };
        // (priority, start, end) of every occurrence that may be cut out
        let mut occurrences: Vec<(u32, usize, usize)> = automaton
            .find_overlapping_iter(text)
            .filter(|m| parse_special || self.always[m.pattern().as_usize()])
            .map(|m| (self.priority[m.pattern().as_usize()], m.start(), m.end()))
            .collect();
        if occurrences.is_empty() {
            return whole();
        }
        occurrences.sort_unstable();
        // [text_len]: bytes already claimed by a token
        let mut claimed = vec![false; text.len()];
        let mut accepted: Vec<(usize, usize, u32)> = Vec::new();
        for (priority, start, end) in occurrences {
            if claimed[start..end].iter().any(|&c| c) {
                continue;
            }
            claimed[start..end].iter_mut().for_each(|c| *c = true);
            accepted.push((start, end, self.pattern_ids[priority as usize]));
        }
        accepted.sort_unstable();
        let mut out = Vec::with_capacity(accepted.len() * 2 + 1);
        let mut at = 0;
        for (start, end, id) in accepted {
            if start > at {
                out.push(Fragment::Text(at..start));
            }
            out.push(Fragment::Token(id));
            at = end;
        }
        if at < text.len() {
            out.push(Fragment::Text(at..text.len()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slow obvious twin: for each special text, longest first, split every raw fragment at each occurrence.
    fn partition_reference(specials: &[(u32, &str)], text: &str) -> Vec<Fragment> {
        let mut order: Vec<(u32, &str)> = specials.to_vec();
        order.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        let mut frags = vec![Fragment::Text(0..text.len())];
        for (id, pat) in order {
            let mut next = Vec::new();
            for f in frags {
                match f {
                    Fragment::Text(r) => {
                        let mut at = r.start;
                        while let Some(found) = text[at..r.end].find(pat) {
                            let start = at + found;
                            if start > at {
                                next.push(Fragment::Text(at..start));
                            }
                            next.push(Fragment::Token(id));
                            at = start + pat.len();
                        }
                        if at < r.end {
                            next.push(Fragment::Text(at..r.end));
                        }
                    }
                    token => next.push(token),
                }
            }
            frags = next;
        }
        frags
    }

    #[test]
    fn longest_first_then_left_to_right_equals_the_reference() {
        let specials = [
            (0u32, "<a>"),
            (1, "a>b"),
            (2, "\n"),
            (3, "\n\n"),
            (4, "<a><a>"),
            (5, "ab"),
        ];
        let attrs = vec![attr::CONTROL; 6];
        let table = TokenTable::new(specials.iter().map(|&(_, t)| t.as_bytes()));
        let m = SpecialMatcher::new(&table, &attrs);
        for text in ["", "x", "<a>b", "<a><a><a>", "\n\n\n", "a>b<a>\n\nab", "<<a>>", "aab>b"] {
            assert_eq!(
                m.partition(text, true),
                partition_reference(&specials, text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn without_parse_special_only_user_defined_tokens_are_cut() {
        let attrs = [attr::CONTROL, attr::USER_DEFINED, attr::UNKNOWN];
        let table = TokenTable::new([b"<c>".as_slice(), b"<u>", b"<unk>"].into_iter());
        let m = SpecialMatcher::new(&table, &attrs);
        let text = "<c><u><unk>";
        assert_eq!(
            m.partition(text, false),
            [Fragment::Text(0..3), Fragment::Token(1), Fragment::Text(6..11)]
        );
        assert_eq!(
            m.partition(text, true),
            [Fragment::Token(0), Fragment::Token(1), Fragment::Token(2)]
        );
    }
}
