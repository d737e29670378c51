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
    perplexity_scored(session, tokens, n_ctx, bos, max_chunks, on_chunk, &mut |_, _| Ok(()))
}

/// How many chunks of `n_ctx` a run over `n_tokens` scores, `max_chunks` at most.
pub fn n_chunks(n_tokens: usize, n_ctx: usize, max_chunks: Option<usize>) -> usize {
    (n_tokens / n_ctx.max(1)).min(max_chunks.unwrap_or(usize::MAX))
}

/// [`perplexity`], also handing every scored position's logits and the token that follows to `on_scored`, in
/// order (chunk by chunk, position by position), e.g. to save them or to compare them with saved ones.
pub fn perplexity_scored<B: Backend>(
    session: &mut Session<'_, B>,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    on_chunk: &mut dyn FnMut(usize, f64),
    on_scored: &mut dyn FnMut(&[f32], u32) -> Result<()>,
) -> Result<Perplexity> {
    if n_ctx < 4 || n_ctx > session.n_ctx() as usize {
        return Err(EngineError::BadSetting {
            name: "ctx",
            value: n_ctx.to_string(),
            reason: format!("must be in 4..={} (the session's context)", session.n_ctx()),
        });
    }
    let vocab = session.model.config.vocab;
    if let Some(&id) = tokens.iter().chain(bos.as_ref()).find(|&&t| t as usize >= vocab) {
        return Err(EngineError::BadToken { id, vocab });
    }
    let n_chunks = n_chunks(tokens.len(), n_ctx, max_chunks);
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
                let row = &logits[i * vocab..(i + 1) * vocab];
                let v = nll(row, chunk[p + 1]);
                on_scored(row, chunk[p + 1])?;
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

/// Perplexity with a stride, as llama-perplexity's `--ppl-stride` (its `perplexity_v2`): windows of `n_ctx` tokens
/// start every `stride` tokens (`⌈(n_tokens − n_ctx) / stride⌉` of them), each run from an empty cache as the text
/// stands (llama.cpp's BOS substitution there happens after the window is evaluated, so it has no effect), and the
/// last `stride` positions of each window are scored against the next token. `on_chunk(i, running_ppl)` follows
/// progress; the standard error is ours (llama.cpp prints none in this mode).
pub fn perplexity_strided<B: Backend>(
    session: &mut Session<'_, B>,
    tokens: &[u32],
    n_ctx: usize,
    stride: usize,
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
    if stride == 0 || stride >= n_ctx {
        return Err(EngineError::BadSetting {
            name: "stride",
            value: stride.to_string(),
            reason: format!("must be in 1..{n_ctx} (below the context)"),
        });
    }
    let vocab = session.model.config.vocab;
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(EngineError::BadToken { id, vocab });
    }
    if tokens.len() < 2 * n_ctx {
        return Err(EngineError::BadSetting {
            name: "text",
            value: format!("{} tokens", tokens.len()),
            reason: format!("needs at least {} tokens (2 x ctx, llama.cpp's minimum)", 2 * n_ctx),
        });
    }
    let n_chunks = (tokens.len() - n_ctx)
        .div_ceil(stride)
        .min(max_chunks.unwrap_or(usize::MAX));
    let first = n_ctx - stride - 1;
    let step = session.max_logit_rows().min(session.max_batch());
    let (mut sum, mut sum2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    let mut batch = Batch::new();
    for c in 0..n_chunks {
        let window = &tokens[c * stride..c * stride + n_ctx];
        session.clear(0)?;
        let mut pos = 0;
        while pos < n_ctx - 1 {
            let end = if pos < first {
                first.min(pos + session.max_batch())
            } else {
                (pos + step).min(n_ctx - 1)
            };
            batch.clear();
            for (p, &t) in window.iter().enumerate().take(end).skip(pos) {
                batch.push(t, p as u32, 0, p >= first);
            }
            let logits = session.forward(&batch)?;
            for (i, p) in (first.max(pos)..end).enumerate() {
                let v = nll(&logits[i * vocab..(i + 1) * vocab], window[p + 1]);
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
    Ok(Perplexity {
        ppl,
        ppl_stderr: if count > 1 {
            ppl * (var / (count - 1) as f64).sqrt()
        } else {
            0.0
        },
        n_chunks,
        n_ctx,
        n_scored: count,
        n_tokens: tokens.len(),
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuBackend, CpuConfig, Model, RunOptions};

    #[test]
    fn nll_of_uniform_logits_is_log_vocab() {
        let l = vec![0.5f32; 1000];
        assert!((nll(&l, 3) - (1000f64).ln()).abs() < 1e-9);
        let mut peaked = vec![0.0f32; 4];
        peaked[2] = 100.0;
        assert!(nll(&peaked, 2) < 1e-9);
    }

    /// The tiny synthetic model, written once per test binary.
    fn tiny(tag: &str) -> Model<CpuBackend> {
        let dir = std::env::temp_dir().join(format!("quarrel-ppl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("tiny-{tag}.gguf"));
        let preset = crate::synth::preset("tiny").unwrap();
        crate::synth::write_synth(preset, crate::synth::SynthQuant::Q8_0, 7, &path).unwrap();
        let be = CpuBackend::new(CpuConfig {
            n_threads: 1,
            simd: None,
        })
        .unwrap();
        Model::load(&path, be, &mut |_, _| {}).unwrap()
    }

    /// Perplexity of a tiny model against a direct computation: each chunk fed one token at a time from an empty
    /// cache (first token BOS), log-softmax of every second-half position summed in f64, exp of the mean, and the
    /// standard error from the per-token NLL spread.
    #[test]
    fn perplexity_of_a_tiny_model_equals_a_direct_computation() {
        let m = tiny("t1");
        let vocab = m.config.vocab as u32;
        let mut state = 12345u32;
        let tokens: Vec<u32> = (0..70)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 8) % vocab
            })
            .collect();
        let n_ctx = 16;
        let opts = RunOptions {
            ctx: Some(n_ctx as u32),
            max_batch: n_ctx,
            max_logit_rows: n_ctx,
            ..Default::default()
        };
        let mut s = Session::new(&m, &opts).unwrap();
        let mut seen = 0usize;
        let r = perplexity_scored(&mut s, &tokens, n_ctx, Some(1), None, &mut |_, _| {}, &mut |row, _| {
            assert_eq!(row.len(), vocab as usize);
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(r.n_chunks, 4);
        assert_eq!(seen, 4 * (n_ctx - 1 - n_ctx / 2));
        // Direct: one token per forward pass.
        let mut nlls = Vec::new();
        for c in 0..4 {
            let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
            let mut d = Session::new(&m, &opts).unwrap();
            for p in 0..n_ctx - 1 {
                let tok = if p == 0 { 1 } else { chunk[p] };
                let logits = d.decode_step(0, tok).unwrap().to_vec();
                if p >= n_ctx / 2 {
                    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let lse = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
                    nlls.push(lse - logits[chunk[p + 1] as usize] as f64);
                }
            }
        }
        let n = nlls.len() as f64;
        let mean = nlls.iter().sum::<f64>() / n;
        let var = nlls.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let want = mean.exp();
        let want_err = want * (var / (n - 1.0)).sqrt();
        assert!((r.ppl - want).abs() / want < 1e-4, "ppl {} vs direct {want}", r.ppl);
        assert!(
            (r.ppl_stderr - want_err).abs() / want_err < 1e-3,
            "stderr {} vs {want_err}",
            r.ppl_stderr
        );
        // A random-weight model is far from certain and far from uniform over 512 tokens alike.
        assert!(r.ppl > 1.5 && r.ppl.is_finite());
    }

    #[test]
    fn out_of_vocabulary_tokens_are_an_error() {
        let m = tiny("t2");
        let opts = RunOptions {
            ctx: Some(16),
            max_batch: 16,
            max_logit_rows: 16,
            ..Default::default()
        };
        let mut s = Session::new(&m, &opts).unwrap();
        let tokens = vec![100_000u32; 40];
        let e = perplexity(&mut s, &tokens, 16, None, None, &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, EngineError::BadToken { .. }), "{e}");
    }

    /// Strided perplexity against a direct computation: windows every `stride` tokens, as they stand, the last
    /// `stride` positions of each scored.
    #[test]
    fn strided_perplexity_equals_a_direct_computation() {
        let m = tiny("t3");
        let vocab = m.config.vocab as u32;
        let tokens: Vec<u32> = (0..50u32).map(|i| (i * 7919 + 13) % vocab).collect();
        let (n_ctx, stride) = (16, 5);
        let opts = RunOptions {
            ctx: Some(n_ctx as u32),
            max_batch: n_ctx,
            max_logit_rows: n_ctx,
            ..Default::default()
        };
        let mut s = Session::new(&m, &opts).unwrap();
        let r = perplexity_strided(&mut s, &tokens, n_ctx, stride, None, &mut |_, _| {}).unwrap();
        assert_eq!(r.n_chunks, (50 - 16usize).div_ceil(5));
        assert_eq!(r.n_scored, r.n_chunks * stride);
        let mut nlls = Vec::new();
        for c in 0..r.n_chunks {
            let w = &tokens[c * stride..c * stride + n_ctx];
            let mut d = Session::new(&m, &opts).unwrap();
            for p in 0..n_ctx - 1 {
                let logits = d.decode_step(0, w[p]).unwrap().to_vec();
                if p >= n_ctx - stride - 1 {
                    nlls.push(nll(&logits, w[p + 1]));
                }
            }
        }
        let want = (nlls.iter().sum::<f64>() / nlls.len() as f64).exp();
        assert!((r.ppl - want).abs() / want < 1e-4, "{} vs {want}", r.ppl);
        assert!(perplexity_strided(&mut s, &tokens, n_ctx, n_ctx, None, &mut |_, _| {}).is_err());
        assert!(perplexity_strided(&mut s, &tokens[..20], n_ctx, 4, None, &mut |_, _| {}).is_err());
    }
}
