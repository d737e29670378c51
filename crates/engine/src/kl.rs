//! Saved base logits and the KL-divergence comparison against them, in llama-perplexity's own file format
//! (`--kl-divergence-base`), so files pass both ways between quarrel and llama.cpp.
//!
//! File layout (little-endian):
//! - `_logits_` (8 bytes), `n_ctx: u32`, `n_vocab: i32`, `n_chunk: i32`;
//! - the evaluated tokens: `n_chunk * n_ctx` × `i32`;
//! - per chunk, per scored position (`n_ctx - 1 - n_ctx/2` of them), one row of `nv = 2*((n_vocab+1)/2) + 4`
//!   `u16`: `scale: f32`, `min_log_prob: f32`, then `n_vocab` quantized log-probabilities `q` (padded to even):
//!   `log p[i] ≈ scale * q[i] + min_log_prob`, where the range spans at most 16 nats below the top logit.
//!
//! The statistics follow llama-perplexity's `kl_divergence()`: per position KL(base ‖ current) over the base's
//! tokens with log p > -16, the NLL of both, Δp = p(next token) − p_base(next token), top-1 agreement.

use crate::backend::Backend;
use crate::error::EngineError;
use crate::perplexity::{n_chunks, perplexity_scored};
use crate::session::Session;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"_logits_";

/// What can go wrong reading, writing or comparing saved logits.
#[derive(Debug, thiserror::Error)]
pub enum KlError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a saved-logits file (no `_logits_` header)")]
    NotLogits { path: PathBuf },
    #[error("{path}: {what}")]
    Bad { path: PathBuf, what: String },
    #[error("{path} holds logits over a vocabulary of {file}, but the model's has {model} tokens")]
    VocabMismatch { path: PathBuf, file: usize, model: usize },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Row length in u16 of one saved position.
pub fn row_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// Positions scored per chunk.
pub fn scored_per_chunk(n_ctx: usize) -> usize {
    n_ctx - 1 - n_ctx / 2
}

/// llama.cpp's `nearest_int`: round to nearest via the 1.5 * 2^23 trick.
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// Quantizes one row of logits as llama-perplexity's `log_softmax(..., uint16_t *log_prob, ...)` does.
pub fn encode_row(logits: &[f32], out: &mut [u16]) {
    let n = logits.len();
    let mut max_logit = logits[0];
    let mut min_logit = logits[0];
    for &l in &logits[1..] {
        max_logit = max_logit.max(l);
        min_logit = min_logit.min(l);
    }
    min_logit = min_logit.max(max_logit - 16.0);
    let sum_exp: f64 = logits.iter().map(|&l| (l - max_logit).exp() as f64).sum();
    let log_sum_exp = sum_exp.ln() as f32;
    let min_log_prob = min_logit - max_logit - log_sum_exp;
    let scale = (max_logit - min_logit) / 65535.0;
    let sb = scale.to_bits();
    let mb = min_log_prob.to_bits();
    out[0] = sb as u16;
    out[1] = (sb >> 16) as u16;
    out[2] = mb as u16;
    out[3] = (mb >> 16) as u16;
    let q = &mut out[4..];
    q.fill(0);
    if scale != 0.0 {
        let inv = 1.0 / scale;
        for i in 0..n {
            q[i] = if logits[i] > min_logit {
                nearest_int(inv * (logits[i] - min_logit)).clamp(0, 65535) as u16
            } else {
                0
            };
        }
    }
}

/// Writes a saved-logits file.
pub struct LogitsWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    row: Vec<u16>,
    bytes: Vec<u8>,
}

impl LogitsWriter {
    /// Creates `path` and writes the header and the `n_chunk * n_ctx` tokens that will be scored.
    pub fn create(path: &Path, n_ctx: usize, n_vocab: usize, tokens: &[u32]) -> Result<Self, KlError> {
        let io = |source| KlError::Io {
            path: path.to_path_buf(),
            source,
        };
        let n_chunk = tokens.len() / n_ctx;
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).map_err(io)?);
        let mut head = Vec::with_capacity(20 + 4 * n_chunk * n_ctx);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(n_ctx as u32).to_le_bytes());
        head.extend_from_slice(&(n_vocab as i32).to_le_bytes());
        head.extend_from_slice(&(n_chunk as i32).to_le_bytes());
        for &t in &tokens[..n_chunk * n_ctx] {
            head.extend_from_slice(&(t as i32).to_le_bytes());
        }
        out.write_all(&head).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            row: vec![0; row_len(n_vocab)],
            bytes: Vec::with_capacity(2 * row_len(n_vocab)),
        })
    }

    /// Appends one scored position.
    pub fn write_row(&mut self, logits: &[f32]) -> Result<(), KlError> {
        encode_row(logits, &mut self.row);
        self.bytes.clear();
        for v in &self.row {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.out.write_all(&self.bytes).map_err(|source| KlError::Io {
            path: self.path.clone(),
            source,
        })
    }

    pub fn finish(mut self) -> Result<(), KlError> {
        self.out.flush().map_err(|source| KlError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Reads a saved-logits file: header and tokens at open, rows one at a time.
pub struct LogitsReader {
    path: PathBuf,
    input: BufReader<std::fs::File>,
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub n_chunk: usize,
    /// `n_chunk * n_ctx` tokens.
    pub tokens: Vec<u32>,
    bytes: Vec<u8>,
}

impl LogitsReader {
    pub fn open(path: &Path) -> Result<Self, KlError> {
        let p = path.to_path_buf();
        let io = |source| KlError::Io {
            path: p.clone(),
            source,
        };
        let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(io)?);
        let mut head = [0u8; 20];
        if input.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
            return Err(KlError::NotLogits { path: p });
        }
        let n_ctx = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        let n_vocab = i32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
        let n_chunk = i32::from_le_bytes(head[16..20].try_into().expect("4 bytes"));
        let bad = |what: String| KlError::Bad { path: p.clone(), what };
        if !(4..=1 << 20).contains(&n_ctx) {
            return Err(bad(format!("context {n_ctx} out of range")));
        }
        if !(1..=1 << 24).contains(&n_vocab) || !(1..=1 << 20).contains(&n_chunk) {
            return Err(bad(format!(
                "vocabulary {n_vocab} or chunk count {n_chunk} out of range"
            )));
        }
        let (n_vocab, n_chunk) = (n_vocab as usize, n_chunk as usize);
        let file_len = std::fs::metadata(path).map_err(io)?.len();
        let want =
            20 + 4 * (n_chunk * n_ctx) as u64 + (n_chunk * scored_per_chunk(n_ctx) * row_len(n_vocab) * 2) as u64;
        if file_len < want {
            return Err(bad(format!(
                "{file_len} bytes, but {n_chunk} chunks of {n_ctx} over a vocabulary of {n_vocab} need {want}"
            )));
        }
        let mut raw = vec![0u8; 4 * n_chunk * n_ctx];
        input.read_exact(&mut raw).map_err(io)?;
        let mut tokens = Vec::with_capacity(n_chunk * n_ctx);
        for c in raw.chunks_exact(4) {
            let t = i32::from_le_bytes(c.try_into().expect("4 bytes"));
            if t < 0 || t as usize >= n_vocab {
                return Err(bad(format!("token {t} outside the vocabulary of {n_vocab}")));
            }
            tokens.push(t as u32);
        }
        Ok(Self {
            path: p,
            input,
            n_ctx,
            n_vocab,
            n_chunk,
            tokens,
            bytes: vec![0; 2 * row_len(n_vocab)],
        })
    }

    /// The next saved row: (scale, min_log_prob, quantized values).
    pub fn read_row(&mut self, q: &mut Vec<u16>) -> Result<(f32, f32), KlError> {
        self.input.read_exact(&mut self.bytes).map_err(|source| KlError::Io {
            path: self.path.clone(),
            source,
        })?;
        q.clear();
        q.extend(self.bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])));
        let scale = f32::from_bits(q[0] as u32 | (q[1] as u32) << 16);
        let min_lp = f32::from_bits(q[2] as u32 | (q[3] as u32) << 16);
        q.drain(..4);
        Ok((scale, min_lp))
    }
}

/// Running sums, as llama-perplexity's `kl_divergence_result`, plus every position's KLD and Δp.
#[derive(Debug, Clone, Default)]
pub struct KlAccumulator {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    max_p_diff: f32,
    n_same_top: usize,
    count: usize,
    pub kld_values: Vec<f32>,
    pub p_diff_values: Vec<f32>,
}

impl KlAccumulator {
    /// Adds one position: current `logits`, the base row (`scale`, `min_lp`, `q`), the token that follows.
    pub fn add(&mut self, logits: &[f32], scale: f32, min_lp: f32, q: &[u16], tok: u32) {
        let n = logits.len();
        let mut max_logit = logits[0];
        let mut imax = 0;
        for (i, &l) in logits.iter().enumerate().skip(1) {
            if l > max_logit {
                max_logit = l;
                imax = i;
            }
        }
        let sum_exp: f64 = logits.iter().map(|&l| (l - max_logit).exp() as f64).sum();
        let log_sum_exp = sum_exp.ln() as f32;
        let tok = tok as usize;
        let nll = max_logit + log_sum_exp - logits[tok];
        self.sum_nll += nll as f64;
        self.sum_nll2 += (nll * nll) as f64;
        let nll_base = -(scale * q[tok] as f32 + min_lp);
        self.sum_nll_base += nll_base as f64;
        self.sum_nll_base2 += (nll_base * nll_base) as f64;
        self.sum_nll_nll_base += (nll * nll_base) as f64;
        let top = max_logit + log_sum_exp;
        let mut sum = 0.0f64;
        let mut imax_base = 0;
        let mut lp_base_max = 0.0f32;
        for i in 0..n {
            let lp_base = scale * q[i] as f32 + min_lp;
            if i == 0 || lp_base > lp_base_max {
                lp_base_max = lp_base;
                imax_base = i;
            }
            if lp_base > -16.0 {
                let p_base = lp_base.exp();
                sum += (p_base * (lp_base - logits[i] + top)) as f64;
            }
        }
        self.sum_kld += sum;
        self.sum_kld2 += sum * sum;
        self.count += 1;
        if imax == imax_base {
            self.n_same_top += 1;
        }
        let p_diff = (-nll).exp() - (-nll_base).exp();
        self.sum_p_diff += p_diff as f64;
        let d2 = (p_diff * p_diff) as f64;
        self.sum_p_diff2 += d2;
        self.sum_p_diff4 += d2 * d2;
        self.max_p_diff = self.max_p_diff.max(p_diff.abs());
        self.kld_values.push(sum as f32);
        self.p_diff_values.push(p_diff);
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The report over every position added so far.
    pub fn report(&self) -> KlReport {
        let mu = |sum: f64, sum2: f64| mean_and_uncertainty(sum, sum2, self.count);
        let log_ppl = mu(self.sum_nll, self.sum_nll2);
        let log_ppl_base = mu(self.sum_nll_base, self.sum_nll_base2);
        let cov = if self.count < 10 {
            0.0
        } else {
            let c = self.count as f64;
            (self.sum_nll_nll_base / c - (self.sum_nll / c) * (self.sum_nll_base / c)) / (c - 1.0)
        };
        let ppl = log_ppl.0.exp();
        let ppl_err = ppl * log_ppl.1;
        let ppl_base = log_ppl_base.0.exp();
        let ppl_base_err = ppl_base * log_ppl_base.1;
        let ln_ratio = log_ppl.0 - log_ppl_base.0;
        let ln_ratio_err = (log_ppl.1.powi(2) + log_ppl_base.1.powi(2) - 2.0 * cov).max(0.0).sqrt();
        let ratio = ln_ratio.exp();
        let ppl_cov = ppl * ppl_base * cov;
        let kld = mu(self.sum_kld, self.sum_kld2);
        let p_diff = mu(self.sum_p_diff, self.sum_p_diff2);
        let mse = mu(self.sum_p_diff2, self.sum_p_diff4);
        let rms = mse.0.sqrt();
        let same_top = if self.count > 0 {
            self.n_same_top as f64 / self.count as f64
        } else {
            0.0
        };
        let mut kv = self.kld_values.clone();
        let mut pv = self.p_diff_values.clone();
        kv.sort_by(f32::total_cmp);
        pv.sort_by(f32::total_cmp);
        KlReport {
            count: self.count,
            ppl,
            ppl_err,
            ppl_base,
            ppl_base_err,
            ln_ppl_correlation: cov / (log_ppl.1 * log_ppl_base.1),
            ln_ppl_ratio: ln_ratio,
            ln_ppl_ratio_err: ln_ratio_err,
            ppl_ratio: ratio,
            ppl_ratio_err: ratio * ln_ratio_err,
            ppl_diff: ppl - ppl_base,
            ppl_diff_err: (ppl_err.powi(2) + ppl_base_err.powi(2) - 2.0 * ppl_cov).max(0.0).sqrt(),
            kld_mean: kld.0,
            kld_err: kld.1,
            kld_percentiles: percentiles(&kv, KLD_FRACTIONS),
            p_diff_mean: p_diff.0,
            p_diff_err: p_diff.1,
            p_diff_max_abs: self.max_p_diff as f64,
            p_diff_percentiles: percentiles(&pv, DP_FRACTIONS),
            p_diff_rms: rms,
            p_diff_rms_err: if rms > 0.0 { 0.5 / rms * mse.1 } else { 0.0 },
            same_top,
            same_top_err: if self.count > 1 {
                (same_top * (1.0 - same_top) / (self.count - 1) as f64).sqrt()
            } else {
                0.0
            },
        }
    }
}

/// Fractions llama-perplexity reports KLD at (1 = maximum, 0 = minimum, 0.5 = median).
pub const KLD_FRACTIONS: &[f64] = &[1.0, 0.999, 0.99, 0.95, 0.9, 0.5, 0.1, 0.05, 0.01, 0.001, 0.0];
/// Fractions llama-perplexity reports Δp at.
pub const DP_FRACTIONS: &[f64] = &[
    1.0, 0.999, 0.99, 0.95, 0.9, 0.75, 0.5, 0.25, 0.1, 0.05, 0.01, 0.001, 0.0,
];

/// llama-perplexity's `mean_and_uncertainty`: mean and standard error (0 below 11 values).
fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let f = sum / count as f64;
    let df = sum2 / count as f64 - f * f;
    let df = if df > 0.0 && count > 10 {
        (df / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    (f, df)
}

/// llama-perplexity's percentile (linear interpolation) and exact median, over sorted values.
fn percentiles(sorted: &[f32], fractions: &[f64]) -> Vec<(f64, f64)> {
    if sorted.is_empty() {
        return fractions.iter().map(|&f| (f, 0.0)).collect();
    }
    let n = sorted.len();
    fractions
        .iter()
        .map(|&f| {
            let v = if f == 0.5 {
                if n.is_multiple_of(2) {
                    0.5 * (sorted[n / 2] + sorted[n / 2 - 1])
                } else {
                    sorted[n / 2]
                }
            } else if f <= 0.0 {
                sorted[0]
            } else if f >= 1.0 {
                sorted[n - 1]
            } else {
                let p = f as f32 * (n - 1) as f32;
                let ip = p as usize;
                let p = p - ip as f32;
                (1.0 - p) * sorted[ip] + p * sorted[(ip + 1).min(n - 1)]
            };
            (f, v as f64)
        })
        .collect()
}

/// The comparison of a model with saved base logits, as llama-perplexity prints it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KlReport {
    /// Positions compared.
    pub count: usize,
    pub ppl: f64,
    pub ppl_err: f64,
    pub ppl_base: f64,
    pub ppl_base_err: f64,
    pub ln_ppl_correlation: f64,
    pub ln_ppl_ratio: f64,
    pub ln_ppl_ratio_err: f64,
    pub ppl_ratio: f64,
    pub ppl_ratio_err: f64,
    pub ppl_diff: f64,
    pub ppl_diff_err: f64,
    pub kld_mean: f64,
    pub kld_err: f64,
    /// (fraction, value): maximum (1.0), 99.9 %, …, median (0.5), …, minimum (0.0).
    pub kld_percentiles: Vec<(f64, f64)>,
    pub p_diff_mean: f64,
    pub p_diff_err: f64,
    pub p_diff_max_abs: f64,
    pub p_diff_percentiles: Vec<(f64, f64)>,
    pub p_diff_rms: f64,
    pub p_diff_rms_err: f64,
    /// Fraction of positions whose most likely token is the base's.
    pub same_top: f64,
    pub same_top_err: f64,
}

/// Runs the model over the tokens saved in `base` (same chunking) and compares each position with the saved
/// row. `max_chunks` limits the work; `on_chunk(i, report_so_far)` follows progress.
pub fn kl_divergence<B: Backend>(
    session: &mut Session<'_, B>,
    base: &mut LogitsReader,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    on_chunk: &mut dyn FnMut(usize, &KlAccumulator),
) -> Result<KlReport, KlError> {
    let vocab = session.model.config.vocab;
    if base.n_vocab != vocab {
        return Err(KlError::VocabMismatch {
            path: base.path.clone(),
            file: base.n_vocab,
            model: vocab,
        });
    }
    let tokens = base.tokens.clone();
    let mut acc = KlAccumulator::default();
    let mut q = Vec::with_capacity(row_len(vocab));
    let mut read_err = None;
    let n_ctx = base.n_ctx;
    let per_chunk = scored_per_chunk(n_ctx);
    let acc_ref = std::cell::RefCell::new(&mut acc);
    let result = perplexity_scored(
        session,
        &tokens,
        n_ctx,
        bos,
        max_chunks,
        &mut |c, _| {
            let a = acc_ref.borrow();
            debug_assert_eq!(a.count, (c + 1) * per_chunk);
            on_chunk(c, &a);
        },
        &mut |row, next| match base.read_row(&mut q) {
            Ok((scale, min_lp)) => {
                acc_ref.borrow_mut().add(row, scale, min_lp, &q, next);
                Ok(())
            }
            Err(e) => {
                read_err = Some(e);
                Err(EngineError::BadSetting {
                    name: "kl-divergence",
                    value: base.path.display().to_string(),
                    reason: "reading the saved logits failed".into(),
                })
            }
        },
    );
    if let Some(e) = read_err {
        return Err(e);
    }
    result?;
    debug_assert_eq!(acc.count, n_chunks(tokens.len(), n_ctx, max_chunks) * per_chunk);
    Ok(acc.report())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logp(l: &[f32]) -> Vec<f64> {
        let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + l.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        l.iter().map(|&x| x as f64 - lse).collect()
    }

    #[test]
    fn identical_logits_have_zero_divergence() {
        let logits: Vec<f32> = (0..1001).map(|i| ((i * 37 % 101) as f32) * 0.13 - 4.0).collect();
        let mut row = vec![0u16; row_len(logits.len())];
        encode_row(&logits, &mut row);
        let scale = f32::from_bits(row[0] as u32 | (row[1] as u32) << 16);
        let min_lp = f32::from_bits(row[2] as u32 | (row[3] as u32) << 16);
        let mut acc = KlAccumulator::default();
        for t in 0..20 {
            acc.add(&logits, scale, min_lp, &row[4..], t);
        }
        let r = acc.report();
        // Zero up to the 16-bit quantization of the saved base (13 nats / 65535 = 2e-4 nats per step, and the
        // dequantized base is not exactly normalized, so the error is first order: ~1e-5).
        assert!(r.kld_mean.abs() < 5e-5, "{}", r.kld_mean);
        assert_eq!(r.same_top, 1.0);
        assert!(r.p_diff_max_abs < 1e-4);
        assert!((r.ppl_ratio - 1.0).abs() < 1e-4);
    }

    /// Two known distributions over 3 tokens: base p = (0.5, 0.3, 0.2), current q = (0.2, 0.5, 0.3).
    /// KL(p‖q) = 0.5 ln(2.5) + 0.3 ln(0.6) + 0.2 ln(2/3) = 0.2238 nats (by hand).
    #[test]
    fn known_distributions_match_the_hand_value() {
        let p = [0.5f32, 0.3, 0.2].map(f32::ln);
        let q = [0.2f32, 0.5, 0.3].map(f32::ln);
        let want = 0.5 * 2.5f64.ln() + 0.3 * 0.6f64.ln() + 0.2 * (2.0f64 / 3.0).ln();
        assert!((want - 0.22384).abs() < 1e-4);
        let mut row = vec![0u16; row_len(3)];
        encode_row(&p, &mut row);
        let scale = f32::from_bits(row[0] as u32 | (row[1] as u32) << 16);
        let min_lp = f32::from_bits(row[2] as u32 | (row[3] as u32) << 16);
        let mut acc = KlAccumulator::default();
        acc.add(&q, scale, min_lp, &row[4..], 0);
        let r = acc.report();
        assert!((r.kld_mean - want).abs() < 1e-3, "{} vs {want}", r.kld_mean);
        // Δp of token 0: 0.2 - 0.5; top-1 differs (0 vs 1).
        assert!((r.p_diff_mean + 0.3).abs() < 1e-3);
        assert_eq!(r.same_top, 0.0);
        // The decoded base log-probs are the input's, to the quantization step.
        let lp = logp(&p);
        for i in 0..3 {
            assert!((scale * row[4 + i] as f32 + min_lp - lp[i] as f32).abs() < 1e-3);
        }
    }

    #[test]
    fn a_file_round_trips_and_bad_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("quarrel-kl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("base.kld");
        let tokens: Vec<u32> = (0..20).map(|i| i % 5).collect();
        let mut w = LogitsWriter::create(&path, 8, 5, &tokens).unwrap();
        for k in 0..2 * scored_per_chunk(8) {
            w.write_row(&[k as f32, 1.0, 2.0, 0.5, -1.0]).unwrap();
        }
        w.finish().unwrap();
        let mut r = LogitsReader::open(&path).unwrap();
        assert_eq!((r.n_ctx, r.n_vocab, r.n_chunk), (8, 5, 2));
        assert_eq!(r.tokens, tokens[..16].to_vec());
        let mut q = Vec::new();
        r.read_row(&mut q).unwrap();
        assert_eq!(q.len(), 6);
        std::fs::write(&path, b"not a logits file").unwrap();
        assert!(matches!(LogitsReader::open(&path), Err(KlError::NotLogits { .. })));
        std::fs::write(&path, b"_logits_\x08\0\0\0\x05\0\0\0\x02\0\0\0").unwrap();
        assert!(matches!(LogitsReader::open(&path), Err(KlError::Bad { .. })));
    }
}
