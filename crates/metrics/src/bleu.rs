//! sacrebleu's corpus BLEU with its defaults: the `13a` tokenizer (mteval-v13a), `exp` smoothing, n-grams up to 4,
//! brevity penalty from the closest reference length (ties to the shorter one), clipped counts against the
//! per-n-gram maximum over the references.

use crate::{check_lengths, py_isspace, py_split, MetricError};
use std::collections::HashMap;

const MAX_ORDER: usize = 4;

/// A corpus BLEU score with the statistics it came from (as sacrebleu's `BLEUScore`).
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// 0–100.
    pub score: f64,
    /// Smoothed n-gram precisions, 0–100.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    pub sys_len: usize,
    pub ref_len: usize,
    pub correct: [usize; MAX_ORDER],
    pub total: [usize; MAX_ORDER],
}

/// Characters `13a` surrounds with spaces: `{|}~`, `[\]^_\``, space to `&`, `(` to `+`, `:` to `@`, `/`.
fn is_13a_punct(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// Python's `re.sub` of a two-character pattern `(a)(b)`: leftmost, non-overlapping matches.
fn sub_pairs(
    s: &str,
    a: impl Fn(char) -> bool,
    b: impl Fn(char) -> bool,
    repl: impl Fn(&mut String, char, char),
) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && a(chars[i]) && b(chars[i + 1]) {
            repl(&mut out, chars[i], chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacrebleu's `Tokenizer13a` applied to a segment as BLEU does (after `rstrip()`): tokens joined by one space.
pub fn tokenize_13a(line: &str) -> String {
    let line = line.trim_end_matches(py_isspace);
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let line = format!(" {line} ");
    let mut s = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_13a_punct(c) {
            s.push(' ');
            s.push(c);
            s.push(' ');
        } else {
            s.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let dot_comma = |c: char| c == '.' || c == ',';
    // Period and comma unless preceded by a digit: `([^0-9])([\.,])` -> `\1 \2 `.
    let s = sub_pairs(
        &s,
        |c| !digit(c),
        dot_comma,
        |o, x, y| {
            o.push(x);
            o.push(' ');
            o.push(y);
            o.push(' ');
        },
    );
    // Period and comma unless followed by a digit: `([\.,])([^0-9])` -> ` \1 \2`.
    let s = sub_pairs(
        &s,
        dot_comma,
        |c| !digit(c),
        |o, x, y| {
            o.push(' ');
            o.push(x);
            o.push(' ');
            o.push(y);
        },
    );
    // Dash preceded by a digit: `([0-9])(-)` -> `\1 \2 `.
    let s = sub_pairs(
        &s,
        digit,
        |c| c == '-',
        |o, x, y| {
            o.push(x);
            o.push(' ');
            o.push(y);
            o.push(' ');
        },
    );
    py_split(&s).collect::<Vec<_>>().join(" ")
}

type Ngrams<'a> = HashMap<&'a [&'a str], usize>;

fn ngrams<'a>(tokens: &'a [&'a str]) -> Ngrams<'a> {
    let mut m = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// Corpus BLEU of `hyps` against `refs[i]`, the references of segment i (any number, at least one).
pub fn bleu<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[Vec<R>]) -> Result<BleuScore, MetricError> {
    corpus(hyps, refs, false)
}

/// sacrebleu's `sentence_bleu` of one segment: as [`bleu`] on a one-segment corpus, but with effective order
/// (n-gram orders the hypothesis is too short for are left out), so a short exact answer scores 100.
pub fn sentence_bleu<R: AsRef<str>>(hyp: &str, refs: &[R]) -> Result<BleuScore, MetricError> {
    let refs: Vec<Vec<&str>> = vec![refs.iter().map(|r| r.as_ref()).collect()];
    corpus(&[hyp], &refs, true)
}

fn corpus<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    effective_order: bool,
) -> Result<BleuScore, MetricError> {
    check_lengths(hyps, refs)?;
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    let mut correct = [0usize; MAX_ORDER];
    let mut total = [0usize; MAX_ORDER];
    for (hyp, seg_refs) in hyps.iter().zip(refs) {
        let ref_strs: Vec<String> = seg_refs.iter().map(|r| tokenize_13a(r.as_ref())).collect();
        let ref_toks: Vec<Vec<&str>> = ref_strs.iter().map(|r| py_split(r).collect()).collect();
        let mut ref_max: Ngrams = HashMap::new();
        for t in &ref_toks {
            for (g, c) in ngrams(t) {
                let e = ref_max.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let hyp_str = tokenize_13a(hyp.as_ref());
        let hyp_toks: Vec<&str> = py_split(&hyp_str).collect();
        let hyp_len = hyp_toks.len();
        // Closest reference length; ties go to the shorter reference.
        let mut closest: Option<(usize, usize)> = None;
        for t in &ref_toks {
            let (len, diff) = (t.len(), t.len().abs_diff(hyp_len));
            closest = match closest {
                None => Some((diff, len)),
                Some((d, l)) if diff < d || (diff == d && len < l) => Some((diff, len)),
                keep => keep,
            };
        }
        sys_len += hyp_len;
        ref_len += closest.map_or(0, |(_, l)| l);
        for (g, c) in ngrams(&hyp_toks) {
            let n = g.len() - 1;
            total[n] += c;
            if let Some(&r) = ref_max.get(g) {
                correct[n] += c.min(r);
            }
        }
    }
    Ok(compute_bleu(correct, total, sys_len, ref_len, effective_order))
}

/// sacrebleu's `BLEU.compute_bleu` with `smooth_method='exp'`.
fn compute_bleu(
    correct: [usize; MAX_ORDER],
    total: [usize; MAX_ORDER],
    sys_len: usize,
    ref_len: usize,
    effective_order: bool,
) -> BleuScore {
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0f64; MAX_ORDER];
    let mut out = BleuScore {
        score: 0.0,
        precisions,
        bp,
        sys_len,
        ref_len,
        correct,
        total,
    };
    if correct.iter().all(|&c| c == 0) {
        return out;
    }
    let mut smooth = 1.0f64;
    let mut eff_order = MAX_ORDER;
    for n in 0..MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        if effective_order {
            eff_order = n + 1;
        }
        if correct[n] == 0 {
            smooth *= 2.0;
            precisions[n] = 100.0 / (smooth * total[n] as f64);
        } else {
            precisions[n] = 100.0 * correct[n] as f64 / total[n] as f64;
        }
    }
    let my_log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let sum: f64 = precisions[..eff_order].iter().map(|&p| my_log(p)).sum();
    out.score = bp * (sum / eff_order as f64).exp();
    out.precisions = precisions;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_examples() {
        assert_eq!(tokenize_13a("Hello, world."), "Hello , world .");
        assert_eq!(tokenize_13a("3.14 and 1,000"), "3.14 and 1,000");
        assert_eq!(tokenize_13a("1990-1995"), "1990 - 1995");
        assert_eq!(tokenize_13a("a &amp; b &quot;c&quot;"), "a & b \" c \"");
        assert_eq!(tokenize_13a("end.  "), "end .");
    }

    #[test]
    fn identical_corpus_scores_100_and_disjoint_scores_0() {
        let h = ["the cat sat on the mat", "a quick brown fox jumps"];
        let r: Vec<Vec<&str>> = h.iter().map(|s| vec![*s]).collect();
        assert!((bleu(&h, &r).unwrap().score - 100.0).abs() < 1e-9);
        let r2 = vec![vec!["x y z w"], vec!["p q r s t"]];
        assert_eq!(bleu(&h, &r2).unwrap().score, 0.0);
    }

    #[test]
    fn sentence_bleu_uses_effective_order() {
        // Three tokens have no 4-gram: corpus BLEU is 0, sentence BLEU (effective order) 100.
        let r: Vec<Vec<&str>> = vec![vec![" a + b"]];
        assert_eq!(bleu(&[" a + b"], &r).unwrap().score, 0.0);
        assert!((sentence_bleu(" a + b", &[" a + b"]).unwrap().score - 100.0).abs() < 1e-9);
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let r: Vec<Vec<&str>> = vec![vec!["a"]];
        assert!(matches!(bleu(&["a", "b"], &r), Err(MetricError::LengthMismatch { .. })));
    }
}
