//! The `rouge-score` package's ROUGE-L (`RougeScorer(['rougeL'], use_stemmer=False)`): lowercase, tokens are the
//! maximal runs of `[a-z0-9]`, score = F-measure of the longest common subsequence (0 when either side has no
//! token). The corpus value is the mean of the segment F-measures; with several references, a segment scores
//! its best reference (`score_multi`).

use crate::{check_lengths, MetricError};

/// rouge-score's default tokenizer without stemmer.
pub fn tokenize_rouge(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F-measure of one prediction against one target (0–1).
pub fn rouge_l_segment(target: &str, prediction: &str) -> f64 {
    let t = tokenize_rouge(target);
    let p = tokenize_rouge(prediction);
    if t.is_empty() || p.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&t, &p) as f64;
    let precision = lcs / p.len() as f64;
    let recall = lcs / t.len() as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// Mean over segments of the best ROUGE-L F-measure against the segment's references (0–1).
pub fn rouge_l<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[Vec<R>]) -> Result<f64, MetricError> {
    check_lengths(hyps, refs)?;
    if hyps.is_empty() {
        return Ok(0.0);
    }
    let sum: f64 = hyps
        .iter()
        .zip(refs)
        .map(|(h, rs)| {
            rs.iter()
                .map(|r| rouge_l_segment(r.as_ref(), h.as_ref()))
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum();
    Ok(sum / hyps.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_values() {
        assert_eq!(
            tokenize_rouge("Hello, World! x_1 Ünï"),
            vec!["hello", "world", "x", "1", "n"]
        );
        // LCS of "a b c d" and "a c d e" is 3: P = R = 3/4.
        assert!((rouge_l_segment("a b c d", "a c d e") - 0.75).abs() < 1e-12);
        assert_eq!(rouge_l_segment("", "a"), 0.0);
    }
}
