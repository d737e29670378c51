//! Coherence checks: determinism (the same prompt again, alone and batched with other sequences) and agreement
//! between two implementations (greedy tokens and per-position logits: max |Δ|, KL divergence, top-1 agreement),
//! either live or against a saved reference ([`Reference`], a documented JSON format).
//!
//! The checks drive a [`Stepper`], which [`Session`] implements; tests wrap one to plant faults.

use crate::backend::Backend;
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use crate::sampling::argmax;
use crate::session::Session;
use serde::{Deserialize, Serialize};

/// What the checks need of a session: batched forward passes over several sequences.
pub trait Stepper {
    fn vocab(&self) -> usize;
    fn n_seqs(&self) -> usize;
    fn max_batch(&self) -> usize;
    fn clear(&mut self, seq: u32) -> Result<()>;
    /// Logits of the batch's tokens that want them, [n_wanted * vocab], in batch order.
    fn forward(&mut self, batch: &Batch) -> Result<&[f32]>;
}

impl<B: Backend> Stepper for Session<'_, B> {
    fn vocab(&self) -> usize {
        self.model.config.vocab
    }
    fn n_seqs(&self) -> usize {
        Session::n_seqs(self)
    }
    fn max_batch(&self) -> usize {
        Session::max_batch(self)
    }
    fn clear(&mut self, seq: u32) -> Result<()> {
        Session::clear(self, seq)
    }
    fn forward(&mut self, batch: &Batch) -> Result<&[f32]> {
        Session::forward(self, batch)
    }
}

/// Greedy output of one sequence: the chosen tokens and, per step, the logits they were chosen from.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub tokens: Vec<u32>,
    /// [n_gen][vocab]; empty for sequences that were not watched.
    pub logits: Vec<Vec<f32>>,
}

/// Runs `prompts` as sequences 0.. of one session, together: one prefill batch where they fit (else one per
/// sequence), then `n_gen` decode steps, each one batch holding every sequence's next token. Greedy, no stop on
/// end-of-generation. Logits are kept for the sequence `watch` only.
pub fn greedy_batched(st: &mut dyn Stepper, prompts: &[Vec<u32>], n_gen: usize, watch: usize) -> Result<Vec<Trace>> {
    let n = prompts.len();
    if n == 0 || n > st.n_seqs() {
        return Err(EngineError::BadSetting {
            name: "batch",
            value: n.to_string(),
            reason: format!("must be in 1..={} (the session's sequences)", st.n_seqs()),
        });
    }
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(EngineError::BadSetting {
            name: "prompt",
            value: format!("#{i}"),
            reason: "is empty (no tokens)".into(),
        });
    }
    let vocab = st.vocab();
    for s in 0..n {
        st.clear(s as u32)?;
    }
    let mut traces = vec![Trace::default(); n];
    let mut next = vec![0u32; n];
    let total: usize = prompts.iter().map(Vec::len).sum();
    let mut batch = Batch::new();
    if total <= st.max_batch() {
        for (s, p) in prompts.iter().enumerate() {
            for (i, &t) in p.iter().enumerate() {
                batch.push(t, i as u32, s as u32, i + 1 == p.len());
            }
        }
        let logits = st.forward(&batch)?;
        for s in 0..n {
            next[s] = argmax(&logits[s * vocab..(s + 1) * vocab]);
            if s == watch {
                traces[s].logits.push(logits[s * vocab..(s + 1) * vocab].to_vec());
            }
        }
    } else {
        for (s, p) in prompts.iter().enumerate() {
            let mut last = Vec::new();
            for (ci, part) in p.chunks(st.max_batch()).enumerate() {
                batch.clear();
                let start = ci * st.max_batch();
                for (i, &t) in part.iter().enumerate() {
                    batch.push(t, (start + i) as u32, s as u32, start + i + 1 == p.len());
                }
                let l = st.forward(&batch)?;
                if !l.is_empty() {
                    last = l.to_vec();
                }
            }
            next[s] = argmax(&last);
            if s == watch {
                traces[s].logits.push(last);
            }
        }
    }
    for step in 0..n_gen {
        for s in 0..n {
            traces[s].tokens.push(next[s]);
        }
        if step + 1 == n_gen {
            break;
        }
        batch.clear();
        for (s, p) in prompts.iter().enumerate() {
            batch.push(next[s], (p.len() + step) as u32, s as u32, true);
        }
        let logits = st.forward(&batch)?;
        for s in 0..n {
            let row = &logits[s * vocab..(s + 1) * vocab];
            next[s] = argmax(row);
            if s == watch {
                traces[s].logits.push(row.to_vec());
            }
        }
    }
    Ok(traces)
}

/// Feeds `prompt` then `forced` to sequence 0 and returns the logits that predict each forced token:
/// [forced.len()][vocab] (row i is computed after prompt + forced[..i]).
pub fn teacher_forced(st: &mut dyn Stepper, prompt: &[u32], forced: &[u32]) -> Result<Vec<Vec<f32>>> {
    if prompt.is_empty() {
        return Err(EngineError::BadSetting {
            name: "prompt",
            value: "[]".into(),
            reason: "needs at least one token".into(),
        });
    }
    st.clear(0)?;
    let mut out = Vec::with_capacity(forced.len());
    let mut batch = Batch::new();
    let mut last = Vec::new();
    for (ci, part) in prompt.chunks(st.max_batch()).enumerate() {
        batch.clear();
        let start = ci * st.max_batch();
        for (i, &t) in part.iter().enumerate() {
            batch.push(t, (start + i) as u32, 0, start + i + 1 == prompt.len());
        }
        let l = st.forward(&batch)?;
        if !l.is_empty() {
            last = l.to_vec();
        }
    }
    for (i, &t) in forced.iter().enumerate() {
        out.push(std::mem::take(&mut last));
        if i + 1 < forced.len() {
            batch.clear();
            batch.push(t, (prompt.len() + i) as u32, 0, true);
            last = st.forward(&batch)?.to_vec();
        }
    }
    Ok(out)
}

/// Where two token streams first differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// Generation step (0 = first generated token).
    pub step: usize,
    pub expected: u32,
    pub got: u32,
}

pub fn first_divergence(expected: &[u32], got: &[u32]) -> Option<Divergence> {
    let n = expected.len().max(got.len());
    (0..n).find_map(|i| match (expected.get(i), got.get(i)) {
        (Some(&a), Some(&b)) if a == b => None,
        (a, b) => Some(Divergence {
            step: i,
            expected: a.copied().unwrap_or(u32::MAX),
            got: b.copied().unwrap_or(u32::MAX),
        }),
    })
}

/// One run of the determinism check compared with the reference run.
#[derive(Debug, Clone, Serialize)]
pub struct DeterminismRun {
    /// `repeat 2`, `batch 8 (slot 7)`, …
    pub label: String,
    pub batch_size: usize,
    pub tokens_equal: bool,
    pub first_divergence: Option<Divergence>,
    /// Largest |Δ| between this run's logits and the reference run's, over the steps up to any divergence.
    pub max_abs_logit_diff: f32,
    pub bit_identical: bool,
    /// For a batched run that diverged: the reference's margin between its token and this run's at that step,
    /// when it was a near-tie (margin <= 2 max |Δ|, with max |Δ| within [`DeterminismReport::near_tie_max_delta`]).
    pub near_tie_margin: Option<f32>,
}

/// Largest logit difference between a batched run and the run alone that still counts as kernel noise, as a
/// fraction of the spread of the logits (their standard deviation over the vocabulary, at the first step alone):
/// batches take other kernels (attention and K-quant products summed in other orders), as in llama.cpp, and the
/// difference grows step by step with the 8-bit activation rounding; a wrong kernel moves logits by several spreads.
/// Measured on the CPU (2026-11-26, "The capital of France is", batch 2 against alone up to step 17): Gemma 3 270M
/// 1.13 with a spread of 5.1, i.e. 0.22; llama.cpp's own F16-vs-F32-cache difference on Gemma's fixtures is 1.21.
pub const NEAR_TIE_SPREAD_FRACTION: f32 = 0.35;

/// [`NEAR_TIE_SPREAD_FRACTION`] of the standard deviation of `logits`.
pub fn near_tie_max_delta(logits: &[f32]) -> f32 {
    let n = logits.len().max(1) as f64;
    let mean = logits.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = logits.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    NEAR_TIE_SPREAD_FRACTION * var.sqrt() as f32
}

/// The determinism check: the reference run alone, `repeats - 1` more runs alone, then the prompt batched with
/// `fillers` at each batch size in `batch_sizes` (it takes the last slot).
#[derive(Debug, Clone, Serialize)]
pub struct DeterminismReport {
    /// The largest logit difference that counts as kernel noise here ([`near_tie_max_delta`] of the first logits).
    pub near_tie_max_delta: f32,
    pub prompt_tokens: usize,
    pub n_gen: usize,
    pub reference_tokens: Vec<u32>,
    pub runs: Vec<DeterminismRun>,
    /// Every repeat alone gave the reference tokens with bit-identical logits, and every batched run gave the
    /// reference tokens up to near-ties.
    pub passed: bool,
}

pub fn determinism(
    st: &mut dyn Stepper,
    prompt: &[u32],
    fillers: &[Vec<u32>],
    n_gen: usize,
    repeats: usize,
    batch_sizes: &[usize],
) -> Result<DeterminismReport> {
    let reference = greedy_batched(st, &[prompt.to_vec()], n_gen, 0)?.swap_remove(0);
    let noise = reference.logits.first().map_or(0.0, |l| near_tie_max_delta(l));
    let mut runs = Vec::new();
    let mut compare = |label: String, batch_size: usize, t: &Trace| {
        let div = first_divergence(&reference.tokens, &t.tokens);
        let upto = div.as_ref().map_or(t.logits.len(), |d| d.step + 1);
        let mut max = 0.0f32;
        let mut identical = true;
        for (a, b) in reference.logits.iter().zip(&t.logits).take(upto) {
            for (x, y) in a.iter().zip(b) {
                max = max.max((x - y).abs());
                identical &= x.to_bits() == y.to_bits();
            }
        }
        // A batched run may part from the run alone where the alone run's choice was a near-tie.
        let near_tie_margin = div.as_ref().and_then(|d| {
            let row = reference.logits.get(d.step)?;
            let margin = row.get(d.expected as usize)? - row.get(d.got as usize)?;
            (batch_size > 1 && max <= noise && margin <= 2.0 * max).then_some(margin)
        });
        runs.push(DeterminismRun {
            label,
            batch_size,
            tokens_equal: div.is_none(),
            first_divergence: div,
            max_abs_logit_diff: max,
            bit_identical: identical,
            near_tie_margin,
        });
    };
    for r in 1..repeats.max(1) {
        let t = greedy_batched(st, &[prompt.to_vec()], n_gen, 0)?.swap_remove(0);
        compare(format!("repeat {}", r + 1), 1, &t);
    }
    for &bs in batch_sizes.iter().filter(|&&b| b > 1) {
        if fillers.is_empty() {
            break;
        }
        let mut prompts: Vec<Vec<u32>> = (0..bs - 1).map(|i| fillers[i % fillers.len()].clone()).collect();
        prompts.push(prompt.to_vec());
        let t = greedy_batched(st, &prompts, n_gen, bs - 1)?.swap_remove(bs - 1);
        compare(format!("batch {bs} (slot {})", bs - 1), bs, &t);
    }
    let passed = runs
        .iter()
        .all(|r| (r.tokens_equal || r.near_tie_margin.is_some()) && (r.batch_size > 1 || r.bit_identical));
    Ok(DeterminismReport {
        near_tie_max_delta: noise,
        prompt_tokens: prompt.len(),
        n_gen,
        reference_tokens: reference.tokens,
        runs,
        passed,
    })
}

/// Agreement of one position's logits with the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepStats {
    /// Largest |Δ logit| (over the whole vocabulary, or over the reference's top tokens for a saved reference).
    pub max_abs_diff: f32,
    /// KL(reference ‖ ours) in nats (a saved reference's top-K plus one bucket for the rest: a lower bound).
    pub kl: f64,
    /// Our most likely token is the reference's.
    pub top1_same: bool,
}

fn log_softmax(l: &[f32]) -> (Vec<f64>, f64) {
    let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    (l.iter().map(|&x| x as f64 - lse).collect(), lse)
}

/// Full-vocabulary comparison of two rows of logits.
pub fn compare_full(reference: &[f32], ours: &[f32]) -> StepStats {
    let (lp, _) = log_softmax(reference);
    let (lq, _) = log_softmax(ours);
    let kl: f64 = lp.iter().zip(&lq).map(|(&p, &q)| p.exp() * (p - q)).sum();
    let max = reference
        .iter()
        .zip(ours)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    StepStats {
        max_abs_diff: max,
        kl: kl.max(0.0),
        top1_same: argmax(reference) == argmax(ours),
    }
}

/// Comparison with a saved reference step (its top-K logits and log-sum-exp) of our full row.
pub fn compare_partial(reference: &RefStep, ours: &[f32]) -> StepStats {
    let (lq, _) = log_softmax(ours);
    let (mut kl, mut p_top, mut q_top) = (0.0f64, 0.0f64, 0.0f64);
    let mut max = 0.0f32;
    for &(id, logit) in &reference.top {
        let Some(&ours_logit) = ours.get(id as usize) else {
            continue;
        };
        let lp = logit as f64 - reference.logsumexp;
        let q = lq[id as usize];
        kl += lp.exp() * (lp - q);
        p_top += lp.exp();
        q_top += q.exp();
        max = max.max((logit - ours_logit).abs());
    }
    let (p_rest, q_rest) = ((1.0 - p_top).max(0.0), (1.0 - q_top).max(1e-30));
    if p_rest > 1e-12 {
        kl += p_rest * (p_rest / q_rest).ln();
    }
    let ref_top = reference.top.first().map(|&(id, _)| id);
    StepStats {
        max_abs_diff: max,
        kl: kl.max(0.0),
        top1_same: ref_top == Some(argmax(ours)),
    }
}

/// A comparison over all steps of one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct ParityCase {
    pub prompt: String,
    /// Our tokenization equals the reference's (`None`: not compared).
    pub prompt_ids_equal: Option<bool>,
    pub n_steps: usize,
    /// First step where our greedy choice leaves the reference's tokens.
    pub first_divergence: Option<Divergence>,
    pub max_abs_diff: f32,
    pub mean_kl: f64,
    pub max_kl: f64,
    pub top1_agreement: f64,
    pub steps: Vec<StepStats>,
}

impl ParityCase {
    pub fn new(
        prompt: &str,
        prompt_ids_equal: Option<bool>,
        ref_tokens: &[u32],
        ours: &[Vec<f32>],
        steps: Vec<StepStats>,
    ) -> Self {
        let got: Vec<u32> = ours.iter().map(|r| argmax(r)).collect();
        let n = steps.len().max(1) as f64;
        Self {
            prompt: prompt.to_string(),
            prompt_ids_equal,
            n_steps: steps.len(),
            first_divergence: first_divergence(ref_tokens, &got),
            max_abs_diff: steps.iter().map(|s| s.max_abs_diff).fold(0.0, f32::max),
            mean_kl: steps.iter().map(|s| s.kl).sum::<f64>() / n,
            max_kl: steps.iter().map(|s| s.kl).fold(0.0, f64::max),
            top1_agreement: steps.iter().filter(|s| s.top1_same).count() as f64 / n,
            steps,
        }
    }
}

/// Reference file format `quarrel-reference/1` (see docs/MEASURING.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reference {
    pub format: String,
    /// Who wrote it: `quarrel 0.1.0 (commit)`, `llama.cpp via llama-cpp-python 0.3.x`.
    pub producer: String,
    /// Model file name (informational).
    pub model: String,
    pub n_vocab: usize,
    /// Logits kept per step.
    pub top_k: usize,
    pub cases: Vec<RefCase>,
}

pub const REFERENCE_FORMAT: &str = "quarrel-reference/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefCase {
    pub prompt: String,
    /// The prompt as the producer tokenized it (with BOS where the model adds one).
    pub prompt_ids: Vec<u32>,
    /// Greedy continuation.
    pub greedy_ids: Vec<u32>,
    /// One per greedy token: the logits it was chosen from.
    pub steps: Vec<RefStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefStep {
    /// log Σ exp(logits) over the whole vocabulary.
    pub logsumexp: f64,
    /// The `top_k` largest logits, (token id, logit), largest first.
    pub top: Vec<(u32, f32)>,
}

impl RefStep {
    pub fn from_logits(logits: &[f32], k: usize) -> Self {
        let (_, lse) = log_softmax(logits);
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = k.min(idx.len());
        idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
            logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b))
        });
        idx.truncate(k);
        idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        Self {
            logsumexp: lse,
            top: idx.into_iter().map(|i| (i, logits[i as usize])).collect(),
        }
    }
}

/// Checks a parsed reference for internal consistency (lengths, ids in range).
pub fn validate_reference(r: &Reference, vocab: usize) -> std::result::Result<(), String> {
    if r.format != REFERENCE_FORMAT {
        return Err(format!("format '{}' (expected '{REFERENCE_FORMAT}')", r.format));
    }
    if r.n_vocab != vocab {
        return Err(format!("vocabulary of {} tokens, the model has {vocab}", r.n_vocab));
    }
    for (i, c) in r.cases.iter().enumerate() {
        if c.prompt_ids.is_empty() {
            return Err(format!("case {i}: empty prompt_ids"));
        }
        if c.steps.len() != c.greedy_ids.len() {
            return Err(format!(
                "case {i}: {} steps for {} greedy ids",
                c.steps.len(),
                c.greedy_ids.len()
            ));
        }
        let ids = c.prompt_ids.iter().chain(&c.greedy_ids);
        let tops = c.steps.iter().flat_map(|s| s.top.iter().map(|t| &t.0));
        if let Some(id) = ids.chain(tops).find(|&&id| id as usize >= vocab) {
            return Err(format!("case {i}: token {id} outside the vocabulary"));
        }
        if c.steps.iter().any(|s| s.top.is_empty() || !s.logsumexp.is_finite()) {
            return Err(format!("case {i}: a step without logits"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuBackend, CpuConfig, Model, RunOptions};

    fn tiny(tag: &str) -> Model<CpuBackend> {
        let dir = std::env::temp_dir().join(format!("quarrel-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("tiny-{tag}.gguf"));
        let preset = crate::synth::preset("tiny").unwrap();
        crate::synth::write_synth(preset, crate::synth::SynthQuant::Q8_0, 3, &path).unwrap();
        let be = CpuBackend::new(CpuConfig {
            n_threads: 2,
            simd: None,
        })
        .unwrap();
        Model::load(&path, be, &mut |_, _| {}).unwrap()
    }

    /// A planted nondeterminism: on its `at`-th forward call, the wrapper lifts the runner-up of the first row
    /// above the top token.
    struct Perturb<S> {
        inner: S,
        calls: usize,
        at: usize,
        buf: Vec<f32>,
        /// How far above the top token the runner-up is lifted.
        lift: f32,
    }

    impl<S> Perturb<S> {
        fn new(inner: S, at: usize, lift: f32) -> Self {
            Self {
                inner,
                calls: 0,
                at,
                buf: Vec::new(),
                lift,
            }
        }
    }

    impl<S: Stepper> Stepper for Perturb<S> {
        fn vocab(&self) -> usize {
            self.inner.vocab()
        }
        fn n_seqs(&self) -> usize {
            self.inner.n_seqs()
        }
        fn max_batch(&self) -> usize {
            self.inner.max_batch()
        }
        fn clear(&mut self, seq: u32) -> Result<()> {
            self.inner.clear(seq)
        }
        fn forward(&mut self, batch: &Batch) -> Result<&[f32]> {
            self.calls += 1;
            let v = self.inner.vocab();
            self.buf = self.inner.forward(batch)?.to_vec();
            if self.calls == self.at {
                // Every watched row gets its second-best token raised above its best one.
                for row in self.buf.chunks_mut(v) {
                    let top = argmax(row) as usize;
                    let mut second = if top == 0 { 1 } else { 0 };
                    for i in 0..v {
                        if i != top && row[i] > row[second] {
                            second = i;
                        }
                    }
                    row[second] = row[top] + self.lift;
                }
            }
            Ok(&self.buf)
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            ctx: Some(64),
            n_seqs: 8,
            max_batch: 64,
            max_logit_rows: 8,
            ..Default::default()
        }
    }

    #[test]
    fn an_honest_session_is_deterministic() {
        let m = tiny("t1");
        let mut s = Session::new(&m, &opts()).unwrap();
        let fillers = vec![vec![1, 5, 9, 13], vec![1, 200, 201], vec![1, 7]];
        let r = determinism(&mut s, &[1, 10, 20, 30, 40], &fillers, 12, 3, &[1, 2, 8]).unwrap();
        assert_eq!(r.runs.len(), 4, "{r:?}");
        assert!(r.passed, "{r:?}");
        assert!(r.runs[0].bit_identical && r.runs[0].max_abs_logit_diff == 0.0);
        assert_eq!(r.reference_tokens.len(), 12);
    }

    #[test]
    fn a_planted_nondeterminism_is_caught_at_its_step() {
        let m = tiny("t2");
        let s = Session::new(&m, &opts()).unwrap();
        // Calls: reference run = 1 prefill + 11 decode steps (calls 1..=12); the repeat's prefill is call 13, its
        // third decode step (producing generated token 4, step index 3) is call 16.
        let mut p = Perturb::new(s, 16, 1.0);
        let r = determinism(&mut p, &[1, 10, 20, 30, 40], &[vec![1, 2, 3]], 12, 2, &[1]).unwrap();
        assert!(!r.passed, "{r:?}");
        let d = r.runs[0].first_divergence.clone().expect("a divergence");
        assert_eq!(d.step, 3, "{r:?}");
        assert_eq!(d.expected, r.reference_tokens[3]);
        assert_ne!(d.got, d.expected);
    }

    #[test]
    fn a_batched_run_may_part_only_at_a_near_tie() {
        // Calls: reference run 1..=12, then the batch of 2: prefill 13, its third decode step (step 3) call 16.
        let run = |lift: f32| {
            let m = tiny("t4");
            let s = Session::new(&m, &opts()).unwrap();
            let mut p = Perturb::new(s, 16, lift);
            determinism(&mut p, &[1, 10, 20, 30, 40], &[vec![1, 2, 3]], 12, 1, &[2]).unwrap()
        };
        // Lifted far above the top token: the logits move by more than noise, a real divergence.
        let far = run(3.0);
        assert!(!far.passed, "{far:?}");
        assert_eq!(far.runs[0].near_tie_margin, None);
        // Lifted just above it: the batched run parts where the reference's margin is within twice the logits'
        // difference, which is accepted exactly when that difference stays under the noise bound.
        let near = run(1e-3);
        let r = &near.runs[0];
        let d = r.first_divergence.clone().expect("a divergence");
        assert_eq!(d.step, 3);
        let accepted = r.max_abs_logit_diff <= near.near_tie_max_delta;
        assert_eq!(r.near_tie_margin.is_some(), accepted, "{r:?}");
        assert_eq!(near.passed, accepted);
        if let Some(m) = r.near_tie_margin {
            assert!(m >= 0.0 && m <= 2.0 * r.max_abs_logit_diff, "{r:?}");
        }
    }

    #[test]
    fn teacher_forcing_replays_greedy_and_comparisons_are_zero_on_self() {
        let m = tiny("t3");
        let mut s = Session::new(&m, &opts()).unwrap();
        let prompt = vec![1u32, 10, 20, 30];
        let g = greedy_batched(&mut s, std::slice::from_ref(&prompt), 8, 0)
            .unwrap()
            .swap_remove(0);
        let forced = teacher_forced(&mut s, &prompt, &g.tokens).unwrap();
        assert_eq!(forced.len(), 8);
        for (a, b) in g.logits.iter().zip(&forced) {
            let st = compare_full(a, b);
            assert!(st.top1_same && st.kl < 1e-9 && st.max_abs_diff < 1e-4, "{st:?}");
            let part = compare_partial(&RefStep::from_logits(a, 16), b);
            assert!(part.top1_same && part.kl < 1e-9, "{part:?}");
        }
        let case = ParityCase::new("p", None, &g.tokens, &forced, vec![]);
        assert!(case.first_divergence.is_none());
    }

    #[test]
    fn partial_kl_of_known_distributions() {
        // Reference p = (0.5, 0.3, 0.2) keeping its top 2; ours q = (0.2, 0.5, 0.3).
        // KL over {0, 1, rest}: 0.5 ln(0.5/0.2) + 0.3 ln(0.3/0.5) + 0.2 ln(0.2/0.3).
        let p = [0.5f32, 0.3, 0.2].map(f32::ln);
        let q = [0.2f32, 0.5, 0.3].map(f32::ln);
        let st = compare_partial(&RefStep::from_logits(&p, 2), &q);
        let want = 0.5 * 2.5f64.ln() + 0.3 * 0.6f64.ln() + 0.2 * (2.0f64 / 3.0).ln();
        assert!((st.kl - want).abs() < 1e-6, "{} vs {want}", st.kl);
        assert!(!st.top1_same);
        let full = compare_full(&p, &q);
        assert!((full.kl - want).abs() < 1e-6);
    }
}
