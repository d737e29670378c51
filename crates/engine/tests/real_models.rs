//! The real models against llama.cpp's reference facts (fixtures made by scripts/make-reference-fixtures.sh).
//!
//! On a CPU with AVX-512 VNNI (the kind that made the fixtures) every product, exp and sum follows ggml's order, so
//! the logits are llama.cpp's bits and the test asserts exactly that. Elsewhere the orders differ, and a rounding
//! boundary crossed differently in one 8-bit activation moves the logits of these small models by tenths. How much
//! is noise is measured, not guessed: llama.cpp run twice on the same prompts, once with an F16 and once with an
//! F32 KV cache (both fixtures), disagrees with itself by up to `own_spread` — one draw of the noise a tiny
//! perturbation causes. We allow twice that. A wrong kernel moves logits by whole units. Greedy paths may part only
//! where llama.cpp's own top-2 margin was within the tolerance: there either engine's noise can flip it.

use crate::common::{greedy_fixture, greedy_fixture_file, model, own_spread, GEMMA, QWEN, SYNTH_LLAMA};
use engine::sampling::argmax;
use engine::{KvPrecision, RunOptions, Session};

fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1));
    idx.truncate(k);
    idx
}

fn check_model(key: &str) {
    check_model_with(key, None)
}

/// Against the fixture of llama.cpp's run with the same cache precision (`None`: our automatic F16, its default).
fn check_model_with(key: &str, kv: Option<KvPrecision>) {
    let m = model(key);
    let fx = match kv {
        Some(KvPrecision::F32) => greedy_fixture_file(&format!("{key}.greedy.kv-f32.json")),
        _ => greedy_fixture(key),
    };
    assert!(fx.cases.len() >= 5, "fixture needs at least 5 prompts");
    let mut session = Session::new(
        m,
        &RunOptions {
            ctx: Some(512),
            kv_precision: kv,
            ..Default::default()
        },
    )
    .unwrap();
    let tol = 2.0 * own_spread(key);
    assert!(tol > 0.0 && tol < 3.0, "{key}: implausible llama.cpp self-spread {tol}");
    let (logit_tol, near_tie) = (tol, tol);
    let mut worst = 0.0f32;
    let mut full_agreement = 0;
    let (mut agreed_steps, mut worst_path) = (0, 0.0f32);
    for (ci, case) in fx.cases.iter().enumerate() {
        let ids = m.tokenizer.encode(&case.prompt, true, true).unwrap();
        assert_eq!(
            ids, case.prompt_ids,
            "{key} case {ci}: prompt tokens differ from {}",
            fx.llama_cpp
        );
        session.clear(0).unwrap();
        let logits = session.prefill(0, &ids).unwrap().to_vec();

        // First generated position: every reference top-40 logit within tolerance, top-10 the same up to near-ties.
        for &(id, want) in case.last_logits_top.iter().chain(&case.last_logits_stats.probe) {
            let d = (logits[id as usize] - want).abs();
            worst = worst.max(d);
            assert!(
                d <= logit_tol,
                "{key} case {ci}: logit of token {id} is {} vs llama.cpp {want}",
                logits[id as usize]
            );
        }
        let ours = top_k(&logits, 10);
        let refs = &case.last_logits_top;
        for &(id, _) in &ours {
            let r = refs.iter().find(|r| r.0 == id);
            assert!(
                r.is_some_and(|r| r.1 >= refs[9].1 - near_tie),
                "{key} case {ci}: our top-10 token {id} is not in llama.cpp's top-10 (up to near-ties)"
            );
        }
        for r in refs.iter().take(10).filter(|r| r.1 > refs[10].1 + near_tie) {
            assert!(
                ours.iter().any(|o| o.0 == r.0),
                "{key} case {ci}: llama.cpp top-10 token {} missing",
                r.0
            );
        }
        let mean = logits.iter().map(|&v| v as f64).sum::<f64>() / logits.len() as f64;
        assert!(
            (mean as f32 - case.last_logits_stats.mean).abs() < logit_tol,
            "{key} case {ci}: mean logit"
        );

        // Greedy continuation of 32 tokens. We follow llama.cpp's path (feeding its chosen token at every step,
        // so that one near-tie does not end the comparison) and at each step require: our choice equals its
        // choice unless its margin was a near-tie, and our logit of its choice within the tolerance.
        let mut ours = argmax(&logits);
        let mut agreed = 0;
        for (step, &want) in case.greedy_ids.iter().enumerate() {
            if ours == want {
                agreed += 1;
            } else {
                assert!(
                    case.greedy_margins[step] < near_tie,
                    "{key} case {ci}: greedy step {step} chose {ours}, llama.cpp {want} with a clear margin {}",
                    case.greedy_margins[step]
                );
            }
            if step + 1 < case.greedy_ids.len() {
                let l = session.decode_step(0, want).unwrap();
                let next = case.greedy_ids[step + 1] as usize;
                let d = (l[next] - case.greedy_logits[step + 1]).abs();
                worst_path = worst_path.max(d);
                assert!(
                    d <= logit_tol,
                    "{key} case {ci} step {}: logit of llama.cpp's choice off by {d}",
                    step + 1
                );
                ours = argmax(l);
            }
        }
        agreed_steps += agreed;
        let agreed = agreed == case.greedy_ids.len();
        full_agreement += agreed as usize;
    }
    eprintln!(
        "{key}: worst logit difference {worst} at the first position, {worst_path} along the paths (tolerance {tol}); \
         {full_agreement} of {} greedy paths equal for all 32 tokens, {agreed_steps} of {} steps",
        fx.cases.len(),
        fx.cases.len() * 32
    );
    // Where this CPU runs the kernels that follow ggml's orders (AVX-512 VNNI, as on the machine that made the
    // fixtures), every product, exp and sum is llama.cpp's own: the logits are its bits, so every path agrees.
    if quant::SimdLevel::detect() == quant::SimdLevel::Avx512 {
        assert_eq!(
            (worst, worst_path),
            (0.0, 0.0),
            "{key}: logits differ from llama.cpp's bits (first position, paths)"
        );
        assert_eq!(
            full_agreement,
            fx.cases.len(),
            "{key}: greedy paths differ from llama.cpp's"
        );
    }
}

#[test]
fn qwen_matches_llama_cpp() {
    check_model(QWEN);
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model(GEMMA);
}

/// With F32 caches on both sides: no f16 rounding of queries and probabilities, the same orders.
#[test]
fn qwen_matches_llama_cpp_with_an_f32_cache() {
    check_model_with(QWEN, Some(KvPrecision::F32));
}

#[test]
fn gemma3_matches_llama_cpp_with_an_f32_cache() {
    check_model_with(GEMMA, Some(KvPrecision::F32));
}

#[test]
fn synth_llama_matches_llama_cpp_with_an_f32_cache() {
    check_model_with(SYNTH_LLAMA, Some(KvPrecision::F32));
}

/// No real `llama`-architecture model is available here: a synthetic one (random weights, SentencePiece
/// vocabulary with byte fallback) checks the llama path — normal RoPE, SiLU, tied embeddings — against llama.cpp.
#[test]
fn synth_llama_matches_llama_cpp() {
    check_model(SYNTH_LLAMA);
}
