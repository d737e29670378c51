//! A batch holding several sequences at different positions gives each sequence the logits it gets alone.
//!
//! "The logits it gets alone" up to summation order: like llama.cpp, whose orders the CPU backend follows, a batch
//! of several tokens sums its attention products in another order than a single token does (a tiled GEMM's one
//! accumulator against `vec_dot`'s four), and K-quant products from 8 tokens take another route. So the two differ
//! in the last bits, which these small models' 8-bit activation rounding grows into tenths of a logit, as llama.cpp
//! differs from itself between an F16 and an F32 cache. The bound is the fidelity tests' tolerance (twice that
//! measured spread); a sequence that read another's cache rows or the wrong positions would be off by whole units,
//! and its best token would change.

use crate::common::{model, own_spread, GEMMA, QWEN};
use engine::sampling::argmax;
use engine::{Batch, RunOptions, Session};

/// Two logit rows agree: every logit within `tol`, and the same best token unless its margin is within `tol`.
fn assert_close(key: &str, what: &str, got: &[f32], want: &[f32], tol: f32) {
    let max = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max <= tol, "{key}: {what} differs by {max} (tolerance {tol})");
    let best = argmax(want);
    let runner_up = want
        .iter()
        .enumerate()
        .filter(|&(i, _)| i as u32 != best)
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    if want[best as usize] - runner_up > tol {
        assert_eq!(argmax(got), best, "{key}: {what} changes the best token");
    }
}

fn check(key: &str) {
    let m = model(key);
    let prompts = [
        "The capital of France is",
        "fn main() {\n    let x = 1;",
        "1, 2, 3, 4, 5, 6, 7, 8,",
    ];
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| m.tokenizer.encode(p, true, true).unwrap())
        .collect();
    let next = [11u32, 22, 33];
    // Alone: each sequence in its own session.
    let alone: Vec<Vec<f32>> = ids
        .iter()
        .zip(next)
        .map(|(p, t)| {
            let mut s = Session::new(
                m,
                &RunOptions {
                    ctx: Some(128),
                    ..Default::default()
                },
            )
            .unwrap();
            s.prefill(0, p).unwrap();
            s.decode_step(0, t).unwrap().to_vec()
        })
        .collect();
    // Together: three sequences in one cache, prefilled separately, then one mixed batch.
    let opts = RunOptions {
        ctx: Some(128),
        n_seqs: 3,
        ..Default::default()
    };
    let mut s = Session::new(m, &opts).unwrap();
    for (i, p) in ids.iter().enumerate() {
        s.prefill(i as u32, p).unwrap();
    }
    let mut batch = Batch::new();
    for (i, p) in ids.iter().enumerate() {
        batch.push(next[i], p.len() as u32, i as u32, true);
    }
    let together = s.forward(&batch).unwrap().to_vec();
    let vocab = m.config.vocab;
    // Exactly, each token's arithmetic depends on the batch's size alone, not on its neighbours: the same tokens in
    // reverse order, on a second session in the same state, give every sequence the same bits.
    let mut s2 = Session::new(m, &opts).unwrap();
    for (i, p) in ids.iter().enumerate() {
        s2.prefill(i as u32, p).unwrap();
    }
    let mut reversed = Batch::new();
    for i in (0..3).rev() {
        reversed.push(next[i], ids[i].len() as u32, i as u32, true);
    }
    let rev = s2.forward(&reversed).unwrap();
    for i in 0..3 {
        assert_eq!(
            &together[i * vocab..(i + 1) * vocab],
            &rev[(2 - i) * vocab..(3 - i) * vocab],
            "{key}: sequence {i}'s logits depend on its place in the batch"
        );
    }
    let tol = 2.0 * own_spread(key);
    for i in 0..3 {
        let got = &together[i * vocab..(i + 1) * vocab];
        assert_close(key, &format!("sequence {i} in a mixed batch"), got, &alone[i], tol);
    }
    // Positions must continue each sequence.
    let mut bad = Batch::new();
    bad.push(5, 0, 1, true);
    assert!(s.forward(&bad).is_err());
    // A token outside the vocabulary is refused with its value, and the sequence goes on unharmed.
    let len = s.seq_len(0);
    let e = s.decode_step(0, vocab as u32).unwrap_err();
    assert!(
        matches!(e, engine::EngineError::BadToken { id, .. } if id == vocab as u32),
        "{key}: {e}"
    );
    assert_eq!(
        s.seq_len(0),
        len,
        "{key}: a refused token must not advance the sequence"
    );
    assert!(s.decode_step(0, 5).is_ok());
}

#[test]
fn mixed_batch_equals_alone_qwen() {
    check(QWEN);
}

#[test]
fn mixed_batch_equals_alone_gemma3() {
    check(GEMMA);
}

/// Prefill (one batch, the prompt path of attention) and decode steps (one token at a time) give the same logits, up
/// to summation order (see the module docs).
fn prefill_equals_stepwise(key: &str) {
    let m = model(key);
    let ids = m
        .tokenizer
        .encode("Once upon a time, in a land far away, there lived", true, true)
        .unwrap();
    let opts = RunOptions {
        ctx: Some(128),
        ..Default::default()
    };
    let mut a = Session::new(m, &opts).unwrap();
    let batched = a.prefill(0, &ids).unwrap().to_vec();
    let mut b = Session::new(m, &opts).unwrap();
    let mut stepwise = Vec::new();
    for &t in &ids {
        stepwise = b.decode_step(0, t).unwrap().to_vec();
    }
    assert_close(
        key,
        "prefill against step-by-step decoding",
        &batched,
        &stepwise,
        2.0 * own_spread(key),
    );
}

#[test]
fn prefill_equals_stepwise_qwen() {
    prefill_equals_stepwise(QWEN);
}

#[test]
fn prefill_equals_stepwise_gemma3() {
    prefill_equals_stepwise(GEMMA);
}
