//! A batch holding several sequences at different positions gives each sequence the logits it gets alone.

use crate::common::{model, GEMMA, QWEN};
use engine::{Batch, RunOptions, Session};

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
    let together = s.forward(&batch).unwrap();
    let vocab = m.config.vocab;
    for i in 0..3 {
        let got = &together[i * vocab..(i + 1) * vocab];
        let max = got
            .iter()
            .zip(&alone[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-3, "{key}: sequence {i} differs by {max} in a mixed batch");
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

/// Prefill (one batch, the prompt path of attention) and decode steps (one token at a time) give the same logits.
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
    let max = batched
        .iter()
        .zip(&stepwise)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(max < 1e-3, "{key}: prefill and step-by-step decoding differ by {max}");
}

#[test]
fn prefill_equals_stepwise_qwen() {
    prefill_equals_stepwise(QWEN);
}

#[test]
fn prefill_equals_stepwise_gemma3() {
    prefill_equals_stepwise(GEMMA);
}
