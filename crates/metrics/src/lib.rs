//! Text metrics computed exactly as the reference Python packages compute them, so that numbers can be compared
//! with published ones:
//!
//! - [`bleu`]: sacrebleu's `corpus_bleu` with its defaults (tokenizer `13a`, `exp` smoothing, no lowercasing,
//!   4-grams, closest reference length), 0–100; [`sentence_bleu`]: sacrebleu's `sentence_bleu` (the same with
//!   effective order) for one segment;
//! - [`chrf`]: sacrebleu's `corpus_chrf` with its defaults (character 6-grams, β = 2, whitespace ignored), 0–100;
//! - [`rouge_l`]: the `rouge-score` package's ROUGE-L F-measure (`RougeScorer(['rougeL'], use_stemmer=False)`),
//!   averaged over segments, 0–1; with several references per segment the best one counts (`score_multi`).
//!
//! Every function takes hypotheses and, per segment, one or more references.

mod bleu;
mod chrf;
mod rouge;

pub use bleu::{bleu, sentence_bleu, tokenize_13a, BleuScore};
pub use chrf::chrf;
pub use rouge::{rouge_l, rouge_l_segment, tokenize_rouge};

/// Why a corpus cannot be scored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricError {
    #[error("{n_hyps} hypotheses but {n_refs} reference segments: every hypothesis needs its references")]
    LengthMismatch { n_hyps: usize, n_refs: usize },
    #[error("segment {index} has no reference")]
    NoReference { index: usize },
    #[error("unknown metric '{0}' (known: bleu, chrf, rouge-l)")]
    UnknownMetric(String),
}

/// A metric the crate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Bleu,
    Chrf,
    RougeL,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Bleu, Metric::RougeL, Metric::Chrf];

    /// The JSON key: `bleu`, `chrf`, `rouge_l`.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Bleu => "bleu",
            Metric::Chrf => "chrf",
            Metric::RougeL => "rouge_l",
        }
    }

    /// Parses `bleu`, `chrf`, `rouge-l` / `rouge_l` / `rougel` (case-insensitive).
    pub fn parse(name: &str) -> Result<Self, MetricError> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "bleu" => Ok(Metric::Bleu),
            "chrf" => Ok(Metric::Chrf),
            "rouge-l" | "rougel" => Ok(Metric::RougeL),
            _ => Err(MetricError::UnknownMetric(name.to_string())),
        }
    }

    /// The corpus score of `hyps` against `refs` (one list of references per hypothesis).
    pub fn score<H: AsRef<str>, R: AsRef<str>>(self, hyps: &[H], refs: &[Vec<R>]) -> Result<f64, MetricError> {
        match self {
            Metric::Bleu => Ok(bleu(hyps, refs)?.score),
            Metric::Chrf => chrf(hyps, refs),
            Metric::RougeL => rouge_l(hyps, refs),
        }
    }
}

pub(crate) fn check_lengths<H, R>(hyps: &[H], refs: &[Vec<R>]) -> Result<(), MetricError> {
    if hyps.len() != refs.len() {
        return Err(MetricError::LengthMismatch {
            n_hyps: hyps.len(),
            n_refs: refs.len(),
        });
    }
    if let Some(index) = refs.iter().position(|r| r.is_empty()) {
        return Err(MetricError::NoReference { index });
    }
    Ok(())
}

/// Python's `str.isspace` for one character (what `str.split()` with no argument splits on): Unicode White_Space
/// plus the ASCII separators U+001C..U+001F.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_isspace).filter(|t| !t.is_empty())
}
