//! Token sampling: greedy, temperature, top-k, top-p, min-p, repetition / presence / frequency penalties, seeded.
//! The chain runs in llama.cpp's default order: penalties -> top-k -> top-p -> min-p -> temperature -> draw.

use crate::error::{EngineError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// 0 (or below) = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off. Divides positive logits (multiplies negative ones) of recently seen tokens.
    pub repeat_penalty: f32,
    /// 0.0 = off. Subtracted once from the logit of every recently seen token.
    pub presence_penalty: f32,
    /// 0.0 = off. Subtracted per occurrence of a recently seen token.
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Rejects values that make no sense, naming them.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, v: f32, reason: &str| {
            Err(EngineError::BadSetting {
                name,
                value: v.to_string(),
                reason: reason.into(),
            })
        };
        if !self.temperature.is_finite() {
            return bad("temperature", self.temperature, "must be finite");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p", self.top_p, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p", self.min_p, "must be in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("repeat-penalty", self.repeat_penalty, "must be > 0");
        }
        if !self.presence_penalty.is_finite() {
            return bad("presence-penalty", self.presence_penalty, "must be finite");
        }
        if !self.frequency_penalty.is_finite() {
            return bad("frequency-penalty", self.frequency_penalty, "must be finite");
        }
        Ok(())
    }
}

/// The `n` largest logits of one row, sorted (descending, ties by the smaller id), with the row's softmax
/// normalizer: what a device hands back instead of the whole row when the sampler needs only the head of the
/// distribution (a few hundred bytes instead of the vocabulary's floats).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    pub ids: Vec<u32>,
    pub logits: Vec<f32>,
    /// The row's largest logit, and sum(exp(l - max)) over the whole row.
    pub max: f32,
    pub sum_exp: f32,
    /// Length of the row they were taken from (the vocabulary).
    pub row_len: usize,
}

impl Candidates {
    /// The top `n` of `row`, computed on the host: the reference a device's version is checked against, and the
    /// fallback where a backend has none.
    pub fn from_logits(row: &[f32], n: usize) -> Self {
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let mut all: Vec<(u32, f32)> = row.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        let n = n.min(all.len());
        if n > 0 && n < all.len() {
            all.select_nth_unstable_by(n - 1, by_logit);
        }
        all.truncate(n);
        all.sort_unstable_by(by_logit);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum_exp = row.iter().map(|&l| (l - max).exp()).sum();
        Self {
            ids: all.iter().map(|c| c.0).collect(),
            logits: all.iter().map(|c| c.1).collect(),
            max,
            sum_exp,
            row_len: row.len(),
        }
    }
}

/// Most candidates a device is asked for (top-k beyond it samples from the whole row).
pub const MAX_CANDIDATES: usize = 1024;
/// Candidates asked for when top-k is off but top-p or min-p cut the tail: enough for any ordinary distribution;
/// a flatter one, whose cut falls past them, is sampled from the whole row instead.
pub const OPEN_CANDIDATES: usize = 256;

pub struct Sampler {
    cfg: SamplerConfig,
    rng: StdRng,
    /// The last `penalty_last_n` accepted tokens.
    recent: VecDeque<u32>,
    /// Scratch: (token, logit) candidates, reused between calls.
    cand: Vec<(u32, f32)>,
}

/// Index of the largest logit (the first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        let rng = StdRng::seed_from_u64(cfg.seed);
        Ok(Self {
            cfg,
            rng,
            recent: VecDeque::new(),
            cand: Vec::new(),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Records a token (prompt or generated) for the penalties.
    pub fn accept(&mut self, token: u32) {
        if self.cfg.penalty_last_n == 0 {
            return;
        }
        if self.recent.len() == self.cfg.penalty_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Whether this sampler only takes the argmax (greedy, no penalties): then a device may pick the token itself
    /// and only the id crosses to the host.
    pub fn is_plain_greedy(&self) -> bool {
        let c = &self.cfg;
        let penalize = c.repeat_penalty != 1.0 || c.presence_penalty != 0.0 || c.frequency_penalty != 0.0;
        c.temperature <= 0.0 && !penalize
    }

    fn penalizes(&self) -> bool {
        let c = &self.cfg;
        c.repeat_penalty != 1.0 || c.presence_penalty != 0.0 || c.frequency_penalty != 0.0
    }

    /// How many top candidates of a row of `vocab` logits this sampler needs, when such a list can stand in for
    /// the whole row (sampling at a temperature, no penalties, top-k within [`MAX_CANDIDATES`] or a top-p / min-p
    /// cut); `None`: it needs the row (or is plain greedy).
    pub fn candidates_wanted(&self, vocab: usize) -> Option<usize> {
        let c = &self.cfg;
        if c.temperature <= 0.0 || self.penalizes() || vocab == 0 {
            return None;
        }
        if c.top_k > 0 {
            let k = c.top_k.min(vocab);
            return (k <= MAX_CANDIDATES).then_some(k);
        }
        if c.top_p >= 1.0 && c.min_p <= 0.0 {
            return None;
        }
        Some(OPEN_CANDIDATES.min(vocab))
    }

    /// Picks the next token from a row's top candidates, exactly as [`Sampler::sample`] would from the whole row;
    /// `None` (drawing nothing) when the list is too short for this sampler's cuts: then sample the row.
    pub fn sample_candidates(&mut self, cands: &Candidates) -> Option<u32> {
        let c = &self.cfg;
        if c.temperature <= 0.0 || self.penalizes() || cands.ids.is_empty() {
            return None;
        }
        let list: Vec<(u32, f32)> = cands.ids.iter().copied().zip(cands.logits.iter().copied()).collect();
        let whole_row = list.len() >= cands.row_len;
        if c.top_k > 0 {
            let k = c.top_k.min(cands.row_len);
            if list.len() < k {
                return None;
            }
            return cut_and_draw(c, &list[..k], None, &mut self.rng);
        }
        let total = (!whole_row).then_some((cands.max, cands.sum_exp));
        cut_and_draw(c, &list, total, &mut self.rng)
    }

    /// Picks the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let c = &self.cfg;
        let penalize = c.repeat_penalty != 1.0 || c.presence_penalty != 0.0 || c.frequency_penalty != 0.0;
        if c.temperature <= 0.0 && !penalize {
            return argmax(logits);
        }
        self.cand.clear();
        self.cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if penalize && !self.recent.is_empty() {
            let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
            for &t in &self.recent {
                *counts.entry(t).or_default() += 1;
            }
            for (&t, &n) in &counts {
                if let Some((_, l)) = self.cand.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / c.repeat_penalty
                    } else {
                        *l * c.repeat_penalty
                    };
                    *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
                }
            }
        }
        if c.temperature <= 0.0 {
            // Candidates are still in id order: the first of the largest penalized logits wins, as in `argmax`.
            let mut best = 0;
            for (i, c) in self.cand.iter().enumerate() {
                if c.1 > self.cand[best].1 {
                    best = i;
                }
            }
            return self.cand[best].0;
        }
        // Sort descending by logit; ties by token id for determinism.
        let k = if c.top_k > 0 {
            c.top_k.min(self.cand.len())
        } else {
            self.cand.len()
        };
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, by_logit);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(by_logit);
        // The whole sorted list is the distribution: the cuts always fall inside it.
        cut_and_draw(&self.cfg, &self.cand, None, &mut self.rng).unwrap_or(self.cand[0].0)
    }
}

/// The chain after top-k, on candidates sorted by logit: top-p, min-p, temperature, draw. Probabilities for the
/// cuts are at temperature 1, as llama.cpp's chain takes them. `total` is the normalizer (max logit,
/// sum(exp(l - max))) of the row the candidates head, when they are not the whole distribution; a cut that would
/// need candidates past their end gives `None` before anything is drawn.
fn cut_and_draw(c: &SamplerConfig, cand: &[(u32, f32)], total: Option<(f32, f32)>, rng: &mut StdRng) -> Option<u32> {
    let probs = match total {
        None => softmax(cand.iter().map(|c| c.1), 1.0),
        Some((max, sum)) => cand.iter().map(|c| (c.1 - max).exp() / sum).collect(),
    };
    let mut keep = cand.len();
    let mut cut = false;
    if c.top_p < 1.0 {
        let mut cum = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= c.top_p {
                keep = i + 1;
                cut = true;
                break;
            }
        }
    }
    if c.min_p > 0.0 {
        let floor = probs[0] * c.min_p;
        let above = probs.iter().take_while(|&&p| p >= floor).count();
        cut |= above < probs.len();
        keep = keep.min(above.max(1));
    }
    if total.is_some() && !cut {
        return None;
    }
    let kept = &cand[..keep.max(1)];
    let probs = softmax(kept.iter().map(|c| c.1), c.temperature);
    let r: f32 = rng.gen();
    let mut cum = 0.0;
    for (i, p) in probs.iter().enumerate() {
        cum += p;
        if r < cum {
            return Some(kept[i].0);
        }
    }
    Some(kept[kept.len() - 1].0)
}

fn softmax(logits: impl Iterator<Item = f32> + Clone, temperature: f32) -> Vec<f32> {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let mut p: Vec<f32> = logits.map(|l| ((l - max) / temperature).exp()).collect();
    let sum: f32 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= sum);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9]
    }

    #[test]
    fn greedy_takes_the_max() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&logits()), 1);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_limits_the_choice() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone()).unwrap();
            (0..200).map(|_| s.sample(&logits())).collect::<Vec<_>>()
        };
        let a = draw(&cfg);
        assert_eq!(a, draw(&cfg));
        assert!(
            a.iter().all(|&t| t == 1 || t == 4),
            "top-k 2 allows only tokens 1 and 4"
        );
        assert!(a.contains(&1) && a.contains(&4));
        let other = draw(&SamplerConfig { seed: 8, ..cfg });
        assert_ne!(a, other);
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            seed: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg).unwrap();
        for _ in 0..100 {
            let t = s.sample(&logits());
            assert!(
                t == 1 || t == 4 || t == 2,
                "min-p 0.5 keeps tokens within half the best probability: {t}"
            );
            assert!(t != 0 && t != 3);
        }
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.3,
            min_p: 0.0,
            seed: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg).unwrap();
        assert!((0..50).all(|_| s.sample(&logits()) == 1));
    }

    #[test]
    fn repeat_penalty_moves_greedy_off_a_seen_token() {
        let cfg = SamplerConfig {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg).unwrap();
        s.accept(1);
        assert_eq!(s.sample(&logits()), 4);
    }

    /// A vocabulary-sized row with a long tail (p ~ 1/rank^2), shuffled, with exact ties.
    fn peaked_row(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut row: Vec<f32> = (0..n).map(|i| -2.0 * ((i / 2 + 1) as f32).ln()).collect();
        for i in (1..n).rev() {
            row.swap(i, rng.gen_range(0..=i));
        }
        row
    }

    #[test]
    fn top_candidates_sample_as_the_whole_row_does() {
        let configs = [
            SamplerConfig::default(),
            SamplerConfig {
                top_k: 0,
                top_p: 0.9,
                min_p: 0.0,
                ..Default::default()
            },
            SamplerConfig {
                top_k: 0,
                top_p: 1.0,
                min_p: 0.05,
                temperature: 1.3,
                ..Default::default()
            },
            SamplerConfig {
                top_k: 700,
                top_p: 0.97,
                min_p: 0.0,
                ..Default::default()
            },
        ];
        for (ci, cfg) in configs.into_iter().enumerate() {
            let row = peaked_row(5000, ci as u64);
            let n = Sampler::new(cfg.clone()).unwrap().candidates_wanted(row.len()).unwrap();
            let cands = Candidates::from_logits(&row, n);
            assert_eq!(cands.ids.len(), n);
            let (mut full, mut head) = (Sampler::new(cfg.clone()).unwrap(), Sampler::new(cfg.clone()).unwrap());
            let drawn: Vec<u32> = (0..200).map(|_| full.sample(&row)).collect();
            let from_head: Vec<Option<u32>> = (0..200).map(|_| head.sample_candidates(&cands)).collect();
            assert_eq!(
                drawn.iter().map(|&t| Some(t)).collect::<Vec<_>>(),
                from_head,
                "config {ci}: {cfg:?}"
            );
            assert!(
                drawn.iter().any(|&t| t != drawn[0]),
                "config {ci} samples more than one token"
            );
        }
    }

    #[test]
    fn a_cut_past_the_candidates_draws_nothing_and_the_row_decides() {
        // A flat row: top-p 0.9 needs far more than 256 candidates.
        let mut rng = StdRng::seed_from_u64(5);
        let row: Vec<f32> = (0..5000).map(|_| rng.gen_range(-0.5f32..0.5)).collect();
        let cfg = SamplerConfig {
            top_k: 0,
            top_p: 0.9,
            min_p: 0.0,
            ..Default::default()
        };
        let mut head = Sampler::new(cfg.clone()).unwrap();
        let cands = Candidates::from_logits(&row, head.candidates_wanted(row.len()).unwrap());
        assert_eq!(head.sample_candidates(&cands), None);
        // Nothing was drawn: the same sampler then follows the whole-row sampler draw for draw.
        let mut full = Sampler::new(cfg).unwrap();
        assert_eq!(head.sample(&row), full.sample(&row));
    }

    #[test]
    fn candidates_stand_in_only_where_the_chain_allows() {
        let wanted = |cfg: SamplerConfig| Sampler::new(cfg).unwrap().candidates_wanted(50_000);
        assert_eq!(wanted(SamplerConfig::default()), Some(40));
        assert_eq!(wanted(SamplerConfig::greedy()), None);
        let penalized = SamplerConfig {
            repeat_penalty: 1.1,
            ..Default::default()
        };
        assert_eq!(
            wanted(penalized),
            None,
            "penalties change logits the device does not know about"
        );
        let whole = SamplerConfig {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        assert_eq!(wanted(whole), None, "no cut: every token can be drawn");
        let big_k = SamplerConfig {
            top_k: MAX_CANDIDATES + 1,
            ..Default::default()
        };
        assert_eq!(wanted(big_k), None);
        let open = SamplerConfig {
            top_k: 0,
            ..Default::default()
        };
        assert_eq!(wanted(open), Some(OPEN_CANDIDATES));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = Sampler::new(SamplerConfig {
            top_p: 0.0,
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("top-p"));
    }
}
