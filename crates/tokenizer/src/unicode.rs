//! The Unicode character classes the pre-tokenizer patterns use: `\p{L}`, `\p{N}`, `\p{P}` and `\s`.
//!
//! The tables come from `regex-syntax` (the same Unicode data the `regex` crate matches with), flattened once into
//! sorted disjoint ranges with a class bit set each, plus a direct table for ASCII.

use std::sync::OnceLock;

/// `\p{L}`: a letter (Lu, Ll, Lt, Lm, Lo).
pub const LETTER: u8 = 1;
/// `\p{N}`: a number (Nd, Nl, No).
pub const NUMBER: u8 = 2;
/// `\p{P}`: punctuation (Pc, Pd, Ps, Pe, Pi, Pf, Po).
pub const PUNCTUATION: u8 = 4;
/// `\s`: the Unicode White_Space property.
pub const WHITESPACE: u8 = 8;

struct ClassTable {
    /// [128]: the class bits of each ASCII character.
    ascii: [u8; 128],
    /// [n_ranges]: (first, last, class bits), sorted by `first`, disjoint, non-ASCII only.
    ranges: Vec<(u32, u32, u8)>,
}

/// The inclusive ranges of a `\p{...}`-style class, as regex-syntax parses it.
fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::Parser::new().parse(pattern);
    let mut out = Vec::new();
    // The patterns are fixed literals known to parse; an error would leave the class empty, which the tests catch.
    if let Ok(hir) = hir {
        if let regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(class)) = hir.kind() {
            out.extend(class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)));
        }
    }
    out
}

fn build() -> ClassTable {
    let classes = [
        (r"\p{L}", LETTER),
        (r"\p{N}", NUMBER),
        (r"\p{P}", PUNCTUATION),
        (r"\s", WHITESPACE),
    ];
    // Boundaries where some class starts or stops; between consecutive boundaries the class bits are constant.
    let mut bounds: Vec<u32> = vec![0x80, 0x11_0000];
    let per_class: Vec<(Vec<(u32, u32)>, u8)> = classes.iter().map(|&(p, bit)| (class_ranges(p), bit)).collect();
    for (ranges, _) in &per_class {
        for &(lo, hi) in ranges {
            bounds.push(lo.max(0x80));
            bounds.push((hi + 1).max(0x80));
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    let bits_at = |cp: u32| -> u8 {
        per_class.iter().fold(0u8, |acc, (ranges, bit)| {
            let inside = ranges
                .binary_search_by(|&(lo, hi)| {
                    if hi < cp {
                        std::cmp::Ordering::Less
                    } else if lo > cp {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
                .is_ok();
            if inside {
                acc | bit
            } else {
                acc
            }
        })
    };
    let mut ranges: Vec<(u32, u32, u8)> = Vec::new();
    for pair in bounds.windows(2) {
        let (lo, hi) = (pair[0], pair[1] - 1);
        let bits = bits_at(lo);
        if bits == 0 {
            continue;
        }
        match ranges.last_mut() {
            Some(last) if last.1 + 1 == lo && last.2 == bits => last.1 = hi,
            _ => ranges.push((lo, hi, bits)),
        }
    }
    let mut ascii = [0u8; 128];
    for (cp, slot) in ascii.iter_mut().enumerate() {
        *slot = bits_at(cp as u32);
    }
    ClassTable { ascii, ranges }
}

fn table() -> &'static ClassTable {
    static TABLE: OnceLock<ClassTable> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// The class bits ([`LETTER`], [`NUMBER`], [`PUNCTUATION`], [`WHITESPACE`]) of `c`.
#[inline]
pub fn classes(c: char) -> u8 {
    let cp = c as u32;
    let t = table();
    if cp < 128 {
        return t.ascii[cp as usize];
    }
    let i = t.ranges.partition_point(|&(lo, _, _)| lo <= cp);
    match i.checked_sub(1).map(|j| t.ranges[j]) {
        Some((_, hi, bits)) if cp <= hi => bits,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slow obvious twin: membership in each class's own range list, without the flattened table.
    #[test]
    fn flattened_table_equals_per_class_lookup() {
        let per_class = [
            (class_ranges(r"\p{L}"), LETTER),
            (class_ranges(r"\p{N}"), NUMBER),
            (class_ranges(r"\p{P}"), PUNCTUATION),
            (class_ranges(r"\s"), WHITESPACE),
        ];
        for (ranges, _) in &per_class {
            assert!(ranges.len() > 5, "class tables are present");
        }
        for cp in 0..=0x10_FFFFu32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let expected = per_class.iter().fold(0u8, |acc, (ranges, bit)| {
                let i = ranges.partition_point(|&(lo, _)| lo <= cp);
                if i > 0 && cp <= ranges[i - 1].1 {
                    acc | bit
                } else {
                    acc
                }
            });
            assert_eq!(classes(c), expected, "U+{cp:04X}");
        }
    }

    #[test]
    fn whitespace_is_std_white_space() {
        for cp in 0..=0x10_FFFFu32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            assert_eq!(classes(c) & WHITESPACE != 0, c.is_whitespace(), "U+{cp:04X}");
        }
    }

    #[test]
    fn known_characters() {
        assert_eq!(classes('a'), LETTER);
        assert_eq!(classes('Ж'), LETTER);
        assert_eq!(classes('日'), LETTER);
        assert_eq!(classes('7'), NUMBER);
        assert_eq!(classes('½'), NUMBER);
        assert_eq!(classes('٣'), NUMBER);
        assert_eq!(classes('!'), PUNCTUATION);
        assert_eq!(classes('、'), PUNCTUATION);
        assert_eq!(classes('$'), 0); // Sc, not P
        assert_eq!(classes('\u{0301}'), 0); // combining mark: neither L nor N
        assert_eq!(classes(' '), WHITESPACE);
        assert_eq!(classes('\u{3000}'), WHITESPACE);
        assert_eq!(classes('\u{200b}'), 0); // zero-width space is Cf, not White_Space
        assert_eq!(classes('😀'), 0);
    }
}
