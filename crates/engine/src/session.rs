//! A session: one model's run state (KV cache for several sequences) with prefill, decode steps, batched forward
//! passes and a streaming generation loop.

use crate::backend::Backend;
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use crate::model::decoder::{self, DecoderState};
use crate::model::{Model, RunOptions};
use crate::sampling::Sampler;
use std::time::{Duration, Instant};

pub struct Session<'m, B: Backend> {
    pub model: &'m Model<B>,
    state: DecoderState<B>,
    /// [n_seqs] next position of each sequence
    seq_len: Vec<u32>,
    /// [n_seqs][seq_len] the tokens each sequence holds (for prompt-prefix reuse)
    history: Vec<Vec<u32>>,
    /// [max_logit_rows, vocab] logits of the last forward pass
    logits: Vec<f32>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// The requested number of tokens was generated.
    MaxTokens,
    /// The callback asked to stop.
    Callback,
}

/// Counts and timings of one generation.
#[derive(Debug, Clone)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    /// Time of the decode steps (the first token's sampling counts to the prompt).
    pub generation_time: Duration,
    pub stop: StopReason,
}

impl GenerationStats {
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }
    pub fn generation_tps(&self) -> f64 {
        // The first generated token comes out of the prompt pass; the rest took one decode step each.
        (self.generated_tokens.saturating_sub(1)) as f64 / self.generation_time.as_secs_f64().max(1e-9)
    }
}

impl<'m, B: Backend> Session<'m, B> {
    /// Sends every later forward pass's intermediate tensors to `tap` (`None` stops it); see
    /// [`decoder::TensorTap`].
    pub fn set_tap(&mut self, tap: Option<decoder::TensorTap>) {
        self.state.tap = tap;
    }

    pub fn new(model: &'m Model<B>, opts: &RunOptions) -> Result<Self> {
        let state = model.new_state(opts)?;
        let logits = vec![0.0; state.limits.max_logit_rows * model.config.vocab];
        let n_seqs = state.kv_shape.n_seqs;
        Ok(Self {
            model,
            seq_len: vec![0; n_seqs],
            history: vec![Vec::new(); n_seqs],
            state,
            logits,
        })
    }

    pub fn n_ctx(&self) -> u32 {
        self.state.kv_shape.n_ctx as u32
    }

    pub fn n_seqs(&self) -> usize {
        self.seq_len.len()
    }

    pub fn max_batch(&self) -> usize {
        self.state.limits.max_batch
    }

    pub fn max_logit_rows(&self) -> usize {
        self.state.limits.max_logit_rows
    }

    /// Tokens currently held for `seq`.
    pub fn seq_len(&self, seq: u32) -> u32 {
        self.seq_len.get(seq as usize).copied().unwrap_or(0)
    }

    /// Forgets a sequence (its cache slot is reused from position 0).
    pub fn clear(&mut self, seq: u32) -> Result<()> {
        let n = self.seq_len.len() as u32;
        *self
            .seq_len
            .get_mut(seq as usize)
            .ok_or(EngineError::BadSequence { seq, n_seqs: n })? = 0;
        self.history[seq as usize].clear();
        Ok(())
    }

    /// Drops the tail of a sequence so that it holds `len` tokens.
    pub fn truncate(&mut self, seq: u32, len: u32) -> Result<()> {
        let n = self.seq_len.len() as u32;
        let cur = self
            .seq_len
            .get_mut(seq as usize)
            .ok_or(EngineError::BadSequence { seq, n_seqs: n })?;
        *cur = (*cur).min(len);
        self.history[seq as usize].truncate(len as usize);
        Ok(())
    }

    /// Makes `dst` a copy of the first `seq_len(src)` tokens of `src` (a shared prompt prefix).
    pub fn copy_sequence(&mut self, src: u32, dst: u32) -> Result<()> {
        let len = self.seq_len(src);
        let model = self.model;
        model
            .backend
            .kv_copy_seq(&mut self.state.kv, src as usize, dst as usize, 0, len as usize)?;
        self.seq_len[dst as usize] = len;
        self.history[dst as usize] = self.history[src as usize].clone();
        Ok(())
    }

    /// Runs one batch. Each sequence's tokens must continue it in order (positions `seq_len`, `seq_len + 1`, …).
    /// Returns the logits of the tokens with `want_logits`: [n_wanted, vocab], in batch order.
    pub fn forward(&mut self, batch: &Batch) -> Result<&[f32]> {
        self.run_batch(batch, |m, st, batch, logits| {
            decoder::forward(&m.backend, &m.config, &m.weights, st, batch, logits)
        })?;
        let n = batch.want_logits.iter().filter(|&&w| w).count();
        Ok(&self.logits[..n * self.model.config.vocab])
    }

    /// Runs one batch, as [`Session::forward`] does, and returns the greedy token after each token with
    /// `want_logits`, in batch order, picked on the device where the backend can (only ids cross to the host).
    pub fn forward_greedy(&mut self, batch: &Batch) -> Result<Vec<u32>> {
        self.run_batch(batch, |m, st, batch, logits| {
            decoder::forward_greedy(&m.backend, &m.config, &m.weights, st, batch, logits)
        })
    }

    /// Checks `batch`, runs it through `pass` (a forward pass over the run state, with the logits buffer as its
    /// output or scratch) and records it.
    fn run_batch<T>(
        &mut self,
        batch: &Batch,
        pass: impl FnOnce(&Model<B>, &mut DecoderState<B>, &Batch, &mut [f32]) -> Result<T>,
    ) -> Result<T> {
        self.check_batch(batch)?;
        let out = pass(self.model, &mut self.state, batch, &mut self.logits)?;
        self.commit(batch);
        Ok(out)
    }

    /// Checks that each sequence's tokens continue it in order and fit the context.
    fn check_batch(&self, batch: &Batch) -> Result<()> {
        let n_seqs = self.seq_len.len() as u32;
        let n_ctx = self.n_ctx();
        let mut next = self.seq_len.clone();
        for i in 0..batch.len() {
            let (seq, pos) = (batch.seq_ids[i], batch.positions[i]);
            let expected = *next.get(seq as usize).ok_or(EngineError::BadSequence { seq, n_seqs })?;
            if pos != expected {
                return Err(EngineError::BadPosition { seq, pos, expected });
            }
            if pos >= n_ctx {
                return Err(EngineError::ContextFull { seq, pos, n_ctx });
            }
            next[seq as usize] = pos + 1;
        }
        Ok(())
    }

    /// Records a batch that ran: sequence lengths and histories.
    fn commit(&mut self, batch: &Batch) {
        for (&t, &s) in batch.tokens.iter().zip(&batch.seq_ids) {
            self.seq_len[s as usize] += 1;
            self.history[s as usize].push(t);
        }
    }

    /// Runs one token of `seq` through `pass` (a forward pass returning one result per wanted row) and returns
    /// its single result; `what` names the step in the error when there is none.
    fn run_one<T>(
        &mut self,
        seq: u32,
        token: u32,
        what: &'static str,
        pass: impl FnOnce(&Model<B>, &mut DecoderState<B>, &Batch, &mut [f32]) -> Result<Vec<T>>,
    ) -> Result<T> {
        let batch = Batch::for_sequence(&[token], seq, self.seq_len(seq));
        let out = self.run_batch(&batch, pass)?;
        out.into_iter().next().ok_or(EngineError::BadSetting {
            name: what,
            value: "0 rows".into(),
            reason: "the forward pass returned nothing for the token".into(),
        })
    }

    /// Feeds one token to `seq` and returns its greedy successor, picked on the device where the backend can (only
    /// the id crosses to the host).
    pub fn decode_step_greedy(&mut self, seq: u32, token: u32) -> Result<u32> {
        self.run_one(seq, token, "greedy step", |m, st, batch, scratch| {
            decoder::forward_greedy(&m.backend, &m.config, &m.weights, st, batch, scratch)
        })
    }

    /// Feeds one token to `seq` and returns the token `sampler` draws after it. Where the sampler can work from a
    /// row's top candidates, the device picks them and only they cross to the host; the whole row is read only
    /// when the sampler's cut falls past them.
    pub fn decode_step_sampled(&mut self, seq: u32, token: u32, sampler: &mut Sampler) -> Result<u32> {
        let vocab = self.model.config.vocab;
        let Some(n) = sampler.candidates_wanted(vocab) else {
            return Ok(sampler.sample(self.decode_step(seq, token)?));
        };
        let cands = self.run_one(seq, token, "sampling step", |m, st, batch, scratch| {
            // One result per row either way: the device's candidates, or none (the row is in `scratch`).
            let c = decoder::forward_candidates(&m.backend, &m.config, &m.weights, st, batch, n, scratch)?;
            Ok(c.map_or_else(|| vec![None], |c| c.into_iter().map(Some).collect()))
        })?;
        match cands {
            Some(c) => {
                if let Some(t) = sampler.sample_candidates(&c) {
                    return Ok(t);
                }
                let m = self.model;
                decoder::read_logits(&m.backend, &self.state, 1, vocab, &mut self.logits)?;
                Ok(sampler.sample(&self.logits[..vocab]))
            }
            None => Ok(sampler.sample(&self.logits[..vocab])),
        }
    }

    /// Feeds `token` to `seq`, then each greedy pick in turn, until `max` picks are made or `on_token(pick)`
    /// returns false (that pick is not fed); returns the number of picks. Each token fed needs room in the
    /// context (`ContextFull` otherwise, as for [`Session::decode_step_greedy`]). Where the backend chains greedy
    /// steps on the device, the step that feeds a pick is queued before the host reads the pick, so the device
    /// never waits for the host; a stop then discards that step.
    pub fn decode_greedy(
        &mut self,
        seq: u32,
        token: u32,
        max: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        if self.model.backend.chains_greedy() {
            return crate::greedy_chain::decode(&mut SessionSteps { session: self, seq }, token, max, on_token);
        }
        let mut token = token;
        for made in 0..max {
            token = self.decode_step_greedy(seq, token)?;
            if !on_token(token) {
                return Ok(made + 1);
            }
        }
        Ok(max)
    }

    /// Runs one token of `seq` (`None`: the device's pick of the chained step before) and queues its greedy pick
    /// on the device; returns the token's position.
    fn chain_step(&mut self, seq: u32, token: Option<u32>) -> Result<u32> {
        let pos = self.seq_len(seq);
        let mut batch = Batch::for_sequence(&[token.unwrap_or(0)], seq, pos);
        batch.chained = token.is_none();
        self.run_batch(&batch, |m, st, batch, _| {
            decoder::forward_greedy_chain(&m.backend, &m.config, &m.weights, st, batch)
        })?;
        Ok(pos)
    }

    /// `ContextFull` when `seq` has no room for another token.
    fn check_room(&self, seq: u32) -> Result<()> {
        let pos = self.seq_len(seq);
        if pos >= self.n_ctx() {
            return Err(EngineError::ContextFull {
                seq,
                pos,
                n_ctx: self.n_ctx(),
            });
        }
        Ok(())
    }

    /// Feeds `tokens` to sequence `seq` in batches of at most `max_batch`; returns the last token's logits.
    pub fn prefill(&mut self, seq: u32, tokens: &[u32]) -> Result<&[f32]> {
        if tokens.is_empty() {
            return Err(EngineError::BadSetting {
                name: "prompt",
                value: "[]".into(),
                reason: "needs at least one token".into(),
            });
        }
        let start = self.seq_len(seq) as usize;
        if start + tokens.len() > self.n_ctx() as usize {
            return Err(EngineError::PromptTooLong {
                n_tokens: start + tokens.len(),
                n_ctx: self.n_ctx(),
            });
        }
        let chunk = self.max_batch();
        let mut batch = Batch::new();
        for (ci, part) in tokens.chunks(chunk).enumerate() {
            batch.clear();
            let last_chunk = (ci + 1) * chunk >= tokens.len();
            for (i, &t) in part.iter().enumerate() {
                let pos = (start + ci * chunk + i) as u32;
                batch.push(t, pos, seq, last_chunk && i + 1 == part.len());
            }
            self.forward(&batch)?;
        }
        Ok(&self.logits[..self.model.config.vocab])
    }

    /// Feeds one token to `seq`; returns its logits.
    pub fn decode_step(&mut self, seq: u32, token: u32) -> Result<&[f32]> {
        let pos = self.seq_len(seq);
        let batch = Batch::for_sequence(&[token], seq, pos);
        self.forward(&batch)
    }

    /// The tokens sequence `seq` holds.
    pub fn tokens(&self, seq: u32) -> &[u32] {
        self.history.get(seq as usize).map_or(&[], |h| &h[..])
    }

    /// Generates up to `max_tokens` after `prompt` in sequence `seq`, calling `on_token(id)` for each new token as
    /// soon as it is chosen; `on_token` returns false to stop. The longest prefix of `prompt` that `seq` already
    /// holds is reused from the KV cache (at least the last prompt token is always run again for its logits).
    pub fn generate(
        &mut self,
        seq: u32,
        prompt: &[u32],
        max_tokens: usize,
        sampler: &mut Sampler,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerationStats> {
        let held = self.tokens(seq);
        let common = held.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let keep = common.min(prompt.len().saturating_sub(1));
        self.truncate(seq, keep as u32)?;
        for &t in prompt {
            sampler.accept(t);
        }
        let t0 = Instant::now();
        let mut token = sampler.sample(self.prefill(seq, &prompt[keep..])?);
        let prompt_time = t0.elapsed();
        let t1 = Instant::now();
        let mut generated = 0;
        let mut stop = StopReason::MaxTokens;
        let model = self.model;
        let tokenizer = &model.tokenizer;
        if sampler.is_plain_greedy() {
            let mut deliver = |t: u32| {
                generated += 1;
                take_token(tokenizer, sampler, on_token, t, &mut stop)
            };
            if max_tokens > 0 && deliver(token) && max_tokens > 1 {
                self.decode_greedy(seq, token, max_tokens - 1, &mut deliver)?;
            }
        } else {
            while generated < max_tokens {
                generated += 1;
                if !take_token(tokenizer, sampler, on_token, token, &mut stop) || generated == max_tokens {
                    break;
                }
                token = self.decode_step_sampled(seq, token, sampler)?;
            }
        }
        Ok(GenerationStats {
            prompt_tokens: prompt.len() - keep,
            prompt_time,
            generated_tokens: generated,
            generation_time: t1.elapsed(),
            stop,
        })
    }
}

/// Hands a chosen token to the sampler's history and to `on_token`; false, with `stop` set, at an end-of-generation
/// token or when `on_token` declines to go on.
fn take_token(
    tokenizer: &tokenizer::Tokenizer,
    sampler: &mut Sampler,
    on_token: &mut dyn FnMut(u32) -> bool,
    t: u32,
    stop: &mut StopReason,
) -> bool {
    sampler.accept(t);
    if tokenizer.is_eog(t) {
        *stop = StopReason::EndOfGeneration;
        return false;
    }
    if !on_token(t) {
        *stop = StopReason::Callback;
        return false;
    }
    true
}

/// One sequence of a session, driven by the chained greedy loop.
struct SessionSteps<'a, 'm, B: Backend> {
    session: &'a mut Session<'m, B>,
    seq: u32,
}

impl<B: Backend> crate::greedy_chain::ChainedSteps for SessionSteps<'_, '_, B> {
    fn queue(&mut self, token: Option<u32>) -> Result<u32> {
        self.session.chain_step(self.seq, token)
    }
    fn pick(&mut self, pos: u32) -> Result<u32> {
        self.session.model.backend.chain_pick(self.session.state.id, pos)
    }
    fn check_room(&self) -> Result<()> {
        self.session.check_room(self.seq)
    }
    fn set_token(&mut self, pos: u32, token: u32) {
        if let Some(h) = self.session.history[self.seq as usize].get_mut(pos as usize) {
            *h = token;
        }
    }
    fn truncate(&mut self, len: u32) -> Result<()> {
        self.session.truncate(self.seq, len)
    }
}
