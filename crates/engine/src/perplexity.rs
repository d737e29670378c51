//! Perplexity as llama.cpp's llama-perplexity computes it: the text is cut into chunks of `n_ctx` tokens, each
//! chunk runs from an empty cache (its first token replaced by BOS where the model adds one), and only the second
//! half of each chunk is scored, so every scored token sees at least n_ctx/2 tokens of context.

use crate::backend::Backend;
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use crate::session::Session;

#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    /// Standard error of `ppl` (from the spread of the per-token negative log-likelihoods).
    pub ppl_stderr: f64,
    pub n_chunks: usize,
    pub n_ctx: usize,
    /// Tokens scored.
    pub n_scored: usize,
    /// Tokens in the whole text.
    pub n_tokens: usize,
    /// Running perplexity after each chunk (llama-perplexity's `[1]x,[2]y,…`).
    pub running: Vec<f64>,
}

/// -log softmax(logits)[target], in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    -(logits[target as usize] as f64 - max - sum.ln())
}

/// Scores `tokens` (the whole text, tokenized with BOS as the model adds it) in chunks of `n_ctx`.
/// `max_chunks` limits the work (None = every whole chunk). `on_chunk(i, running_ppl)` follows progress.
pub fn perplexity<B: Backend>(
    session: &mut Session<'_, B>,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    on_chunk: &mut dyn FnMut(usize, f64),
) -> Result<Perplexity> {
    if n_ctx < 4 || n_ctx > session.n_ctx() as usize {
        return Err(EngineError::BadSetting {
            name: "ctx",
            value: n_ctx.to_string(),
            reason: format!("must be in 4..={} (the session's context)", session.n_ctx()),
        });
    }
    let mut n_chunks = tokens.len() / n_ctx;
    if let Some(m) = max_chunks {
        n_chunks = n_chunks.min(m);
    }
    if n_chunks == 0 {
        return Err(EngineError::BadSetting {
            name: "text",
            value: format!("{} tokens", tokens.len()),
            reason: format!(
                "needs at least {} tokens (2 x ctx is llama.cpp's minimum for a useful run)",
                n_ctx
            ),
        });
    }
    let vocab = session.model.config.vocab;
    let first = n_ctx / 2;
    let step = session.max_logit_rows().min(session.max_batch());
    let (mut sum, mut sum2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    let mut batch = Batch::new();
    for c in 0..n_chunks {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        session.clear(0)?;
        // Positions [0, first) only fill the cache; [first, n_ctx - 1) are scored against the next token.
        let mut pos = 0;
        while pos < n_ctx - 1 {
            let want_from = first.max(pos);
            let end = if pos < first {
                first.min(pos + session.max_batch())
            } else {
                (pos + step).min(n_ctx - 1)
            };
            batch.clear();
            for p in pos..end {
                let tok = if p == 0 { bos.unwrap_or(chunk[0]) } else { chunk[p] };
                batch.push(tok, p as u32, 0, p >= want_from);
            }
            let logits = session.forward(&batch)?;
            for (i, p) in (want_from..end).enumerate() {
                let v = nll(&logits[i * vocab..(i + 1) * vocab], chunk[p + 1]);
                sum += v;
                sum2 += v * v;
                count += 1;
            }
            pos = end;
        }
        let ppl = (sum / count as f64).exp();
        running.push(ppl);
        on_chunk(c, ppl);
    }
    let mean = sum / count as f64;
    let var = (sum2 / count as f64 - mean * mean).max(0.0);
    let ppl = mean.exp();
    let ppl_stderr = if count > 1 {
        ppl * (var / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        ppl_stderr,
        n_chunks,
        n_ctx,
        n_scored: count,
        n_tokens: tokens.len(),
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::nll;

    #[test]
    fn nll_of_uniform_logits_is_log_vocab() {
        let l = vec![0.5f32; 1000];
        assert!((nll(&l, 3) - (1000f64).ln()).abs() < 1e-9);
        let mut peaked = vec![0.0f32; 4];
        peaked[2] = 100.0;
        assert!(nll(&peaked, 2) < 1e-9);
    }
}
