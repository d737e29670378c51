//! sacrebleu's corpus chrF with its defaults: character n-grams of order 1..6 over the segment with all whitespace
//! removed, β = 2, statistics summed over the corpus, precision and recall averaged over the orders that occur.
//! With several references, each segment keeps the statistics of its best-scoring reference.

use crate::{check_lengths, py_split, MetricError};
use std::collections::HashMap;

const ORDER: usize = 6;
const BETA: f64 = 2.0;

/// [hyp, ref, match] per order, as `CHRF._get_match_statistics`.
fn match_stats(hyp: &[HashMap<&str, usize>], refs: &[HashMap<&str, usize>]) -> [usize; 3 * ORDER] {
    let mut s = [0usize; 3 * ORDER];
    for (i, (h, r)) in hyp.iter().zip(refs).enumerate() {
        let (mut hyp_count, mut matched) = (0, 0);
        for (g, &c) in h {
            hyp_count += c;
            if let Some(&rc) = r.get(g) {
                matched += c.min(rc);
            }
        }
        s[3 * i] = if r.is_empty() { 0 } else { hyp_count };
        s[3 * i + 1] = r.values().sum();
        s[3 * i + 2] = matched;
    }
    s
}

/// `CHRF._compute_f_score` without eps smoothing.
fn f_score(stats: &[usize; 3 * ORDER]) -> f64 {
    let factor = BETA * BETA;
    let (mut avg_prec, mut avg_rec, mut eff) = (0.0f64, 0.0f64, 0usize);
    for i in 0..ORDER {
        let (n_hyp, n_ref, n_match) = (stats[3 * i], stats[3 * i + 1], stats[3 * i + 2]);
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            eff += 1;
        }
    }
    if eff == 0 {
        return 0.0;
    }
    avg_prec /= eff as f64;
    avg_rec /= eff as f64;
    if avg_prec + avg_rec != 0.0 {
        100.0 * ((1.0 + factor) * avg_prec * avg_rec) / (factor * avg_prec + avg_rec)
    } else {
        0.0
    }
}

/// Corpus chrF (0–100) of `hyps` against `refs[i]`, the references of segment i.
pub fn chrf<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[Vec<R>]) -> Result<f64, MetricError> {
    check_lengths(hyps, refs)?;
    let mut total = [0usize; 3 * ORDER];
    for (hyp, seg_refs) in hyps.iter().zip(refs) {
        let seg = segment_stats(hyp.as_ref(), seg_refs);
        for (t, s) in total.iter_mut().zip(seg) {
            *t += s;
        }
    }
    Ok(f_score(&total))
}

fn segment_stats<R: AsRef<str>>(hyp: &str, refs: &[R]) -> [usize; 3 * ORDER] {
    let h_owned: String = py_split(hyp).collect();
    let h = ngrams_of(&h_owned);
    let mut best = [0usize; 3 * ORDER];
    let mut best_f = -1.0;
    for r in refs {
        let r_owned: String = py_split(r.as_ref()).collect();
        let rg = ngrams_of(&r_owned);
        let stats = match_stats(&h, &rg);
        let f = f_score(&stats);
        if f > best_f {
            best_f = f;
            best = stats;
        }
    }
    best
}

fn ngrams_of(joined: &str) -> Vec<HashMap<&str, usize>> {
    let starts: Vec<usize> = joined.char_indices().map(|(i, _)| i).chain([joined.len()]).collect();
    let n_chars = starts.len() - 1;
    (1..=ORDER)
        .map(|n| {
            let mut m = HashMap::new();
            for i in 0..(n_chars + 1).saturating_sub(n) {
                *m.entry(&joined[starts[i]..starts[i + n]]).or_insert(0) += 1;
            }
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_100_and_empty_is_0() {
        let r = vec![vec!["hello world"]];
        assert!((chrf(&["hello world"], &r).unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(chrf(&[""], &r).unwrap(), 0.0);
    }
}
