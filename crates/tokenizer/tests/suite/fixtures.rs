//! Token ids, detokenized text, end-of-generation sets and rendered pieces against llama.cpp's own (fixtures made
//! by scripts/tokenizer-fixtures.py).

use crate::common::{self, GEMMA_FILE, QWEN_FILE};
use quarrel_tokenizer::Tokenizer;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// A fixture text: a JSON string, or {"hex": ...} for bytes that are not UTF-8 (compared lossily).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let hex = o["hex"].as_str().expect("hex");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        other => panic!("unexpected fixture text {other}"),
    }
}

fn check_token_fixture(name: &str, tokenizer: &Tokenizer) {
    let fixture = common::read_fixture(&format!("{name}.tokens.json"));
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 60, "{name}: only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let expected = ids_of(&case["ids"]);
        let ours = tokenizer.encode(text, true, true).expect("encode");
        if ours != expected {
            failures.push(format!(
                "encode(special) {text:?}\n   ours {ours:?}\n  llama {expected:?}"
            ));
        }
        let expected_plain = ids_of(&case["ids_plain"]);
        let ours_plain = tokenizer.encode(text, false, false).expect("encode");
        if ours_plain != expected_plain {
            failures.push(format!(
                "encode(plain) {text:?}\n   ours {ours_plain:?}\n  llama {expected_plain:?}"
            ));
        }
        let detok = text_of(&case["detok"]);
        let ours_detok = tokenizer.decode(&expected);
        if ours_detok != detok {
            failures.push(format!(
                "decode {expected:?}\n   ours {ours_detok:?}\n  llama {detok:?}"
            ));
        }
        for (key, ids, remove_special) in [
            ("detok_remove", &expected, true),
            ("detok_plain", &expected_plain, false),
        ] {
            let want = text_of(&case[key]);
            let ours = tokenizer.decode_with(ids, remove_special, false);
            if ours != want {
                failures.push(format!("{key} {ids:?}\n   ours {ours:?}\n  llama {want:?}"));
            }
        }
        let detok_special = text_of(&case["detok_special"]);
        let ours_special = tokenizer.decode_with(&expected, false, true);
        if ours_special != detok_special {
            failures.push(format!(
                "decode(special) {expected:?}\n   ours {ours_special:?}\n  llama {detok_special:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} mismatches with llama.cpp:\n{}",
        failures.len(),
        failures.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn qwen_ids_and_text_equal_llama_cpp() {
    check_token_fixture("qwen2.5-coder-0.5b", common::qwen());
}

#[test]
fn gemma_ids_and_text_equal_llama_cpp() {
    check_token_fixture("gemma3-270m", common::gemma());
}

/// The Qwen vocabulary under other pre-tokenizers, and Gemma's with a space prefix, against llama.cpp given the
/// same metadata change.
#[test]
fn metadata_variants_equal_llama_cpp() {
    for name in [
        "qwen-vocab-pre-llama-bpe",
        "qwen-vocab-pre-gpt-2",
        "qwen-vocab-pre-smollm",
        "qwen-vocab-pre-default",
        "gemma-vocab-space-prefix",
    ] {
        let fixture = common::read_fixture(&format!("{name}.tokens.json"));
        let file = if name.starts_with("qwen") {
            QWEN_FILE
        } else {
            GEMMA_FILE
        };
        let overrides = fixture["overrides"].as_object().expect("overrides");
        check_token_fixture(name, &common::with_overrides(file, overrides));
    }
}

fn check_vocab_fixture(name: &str, tokenizer: &Tokenizer) {
    let fixture = common::read_fixture(&format!("{name}.vocab.json"));
    assert_eq!(
        tokenizer.eog_ids(),
        ids_of(&fixture["eog"]).as_slice(),
        "{name}: end-of-generation ids"
    );
    for id in 0..tokenizer.vocab_size() as u32 {
        assert_eq!(tokenizer.is_eog(id), tokenizer.eog_ids().contains(&id));
    }
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for id in 0..tokenizer.vocab_size() as u32 {
        *counts.entry(tokenizer.token_attr(id).to_string()).or_default() += 1;
    }
    let expected_counts: std::collections::BTreeMap<String, u64> = fixture["attr_counts"]
        .as_object()
        .expect("attr_counts")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
        .collect();
    assert_eq!(counts, expected_counts, "{name}: token attributes");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for entry in fixture["sample"].as_array().expect("sample") {
        let id = entry["id"].as_u64().expect("id") as u32;
        assert_eq!(
            u64::from(tokenizer.token_attr(id)),
            entry["attr"].as_u64().expect("attr"),
            "{name}: attr of {id}"
        );
        assert_eq!(
            hex(tokenizer.token_bytes(id)),
            entry["piece"].as_str().expect("piece"),
            "{name}: piece {id}"
        );
        assert_eq!(
            hex(tokenizer.token_bytes_special(id, true)),
            entry["piece_special"].as_str().expect("piece_special"),
            "{name}: special piece {id}"
        );
    }
    // Every token's rendering, as a digest of (u32 length, bytes) per token.
    for (render_special, key) in [(false, "pieces_sha256"), (true, "pieces_special_sha256")] {
        let mut digest = Sha256::new();
        for id in 0..tokenizer.vocab_size() as u32 {
            let piece = tokenizer.token_bytes_special(id, render_special);
            digest.update((piece.len() as u32).to_le_bytes());
            digest.update(piece);
        }
        assert_eq!(
            hex(&digest.finalize()),
            fixture[key].as_str().expect(key),
            "{name}: {key}"
        );
    }
}

#[test]
fn qwen_vocabulary_equals_llama_cpp() {
    check_vocab_fixture("qwen2.5-coder-0.5b", common::qwen());
}

#[test]
fn gemma_vocabulary_equals_llama_cpp() {
    check_vocab_fixture("gemma3-270m", common::gemma());
}

#[test]
fn basic_accessors_match_the_metadata() {
    let q = common::qwen();
    assert_eq!(q.vocab_size(), 151_936);
    assert_eq!((q.bos(), q.eos(), q.add_bos()), (Some(151_643), Some(151_645), false));
    assert_eq!(q.token_id("<|im_start|>"), Some(151_644));
    assert_eq!(q.token_str(151_644), Some("<|im_start|>"));
    assert!(q.chat_template().is_some_and(|t| t.contains("<|im_start|>")));
    let g = common::gemma();
    assert_eq!(g.vocab_size(), 262_144);
    assert_eq!((g.bos(), g.eos(), g.add_bos()), (Some(2), Some(1), true));
    assert!(g.is_eog(g.token_id("<end_of_turn>").expect("token")));
    assert_eq!(g.chat_template(), None);
    assert_eq!(g.token_str(1_000_000), None);
    assert_eq!(g.token_bytes(1_000_000), b"");
}

/// Construction must stay cheap: Gemma's 262144-token vocabulary builds in well under a second even in a debug
/// build (the release-mode figure is printed by `cargo run --release --example tokenize_speed`).
#[test]
fn gemma_builds_quickly() {
    let g = common::gguf_of(GEMMA_FILE);
    let start = std::time::Instant::now();
    let t = Tokenizer::from_gguf(g).expect("builds");
    let took = start.elapsed();
    assert_eq!(t.vocab_size(), 262_144);
    assert!(took.as_secs_f64() < 2.0, "building took {took:?}");
}

/// Encoding a long text (which reuses its per-call word cache) equals encoding each pre-tokenized word on its own.
#[test]
fn qwen_word_cache_matches_encoding_words_separately() {
    let q = common::qwen();
    let fixture = common::read_fixture("qwen2.5-coder-0.5b.tokens.json");
    let mut text = String::new();
    for case in fixture["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .chain(fixture["cases"].as_array().expect("cases"))
    {
        let t = case["text"].as_str().expect("text");
        // plain text only: special tokens would be cut out before pre-tokenization
        if !t.contains('<') {
            text.push_str(t);
            text.push(' ');
        }
    }
    let whole = q.encode(&text, false, false).expect("encode");
    let mut words = Vec::new();
    quarrel_tokenizer::PreTokenizer::Qwen2.split(&text, &mut words);
    let mut separately = Vec::new();
    for w in words {
        separately.extend(q.encode(&text[w], false, false).expect("encode"));
    }
    assert_eq!(whole, separately);
}

/// A tiny vocabulary whose only merges join digits ("1 2", "12 3"): shows how each pre-tokenizer groups digits
/// (runs of three, single digits, whole runs), against llama.cpp given the same vocabulary.
#[test]
fn digit_grouping_of_every_pre_tokenizer_equals_llama_cpp() {
    let vocab = common::read_fixture("digits-vocab.json");
    let strings = |key: &str| -> Vec<&str> {
        vocab[key]
            .as_array()
            .expect(key)
            .iter()
            .map(|v| v.as_str().expect("string"))
            .collect()
    };
    let id = |key: &str| vocab[key].as_u64().map(|v| v as u32);
    for pre in ["qwen2", "llama-bpe", "gpt-2", "smollm", "default"] {
        let meta = quarrel_tokenizer::TokenizerMetadata {
            model: "gpt2",
            pre: Some(pre),
            tokens: strings("tokenizer.ggml.tokens"),
            token_types: Some(
                vocab["tokenizer.ggml.token_type"]
                    .as_array()
                    .expect("types")
                    .iter()
                    .map(|v| v.as_i64().expect("type") as i32)
                    .collect(),
            ),
            merges: Some(strings("tokenizer.ggml.merges")),
            special: quarrel_tokenizer::SpecialIds {
                bos: id("tokenizer.ggml.bos_token_id"),
                eos: id("tokenizer.ggml.eos_token_id"),
                padding: id("tokenizer.ggml.padding_token_id"),
                ..Default::default()
            },
            // the rest of the metadata is Qwen's, which says add_bos_token = false
            add_bos: Some(false),
            ..Default::default()
        };
        let tokenizer = Tokenizer::from_metadata(&meta).expect("digits vocabulary");
        check_token_fixture(&format!("digits-vocab-pre-{pre}"), &tokenizer);
    }
}
