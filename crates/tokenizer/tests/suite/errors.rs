//! Malformed metadata fails with an error naming the offending value; hand-built GGUF files exercise the reader.

use quarrel_tokenizer::{Tokenizer, TokenizerError};

/// A small GGUF holding `metadata` and no tensors.
fn gguf_with(metadata: Vec<(&str, gguf::Value)>) -> gguf::Gguf {
    let mut all = vec![("general.architecture".to_owned(), gguf::Value::from("llama"))];
    all.extend(metadata.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let bytes = gguf::write_gguf_to_vec(&all, &[]).expect("writes");
    gguf::Gguf::from_bytes(bytes).expect("reads")
}

fn strings(items: &[&str]) -> gguf::Value {
    gguf::Value::Array(items.iter().map(|s| gguf::Value::from(*s)).collect())
}

fn bpe_metadata(pre: &str) -> Vec<(&'static str, gguf::Value)> {
    vec![
        ("tokenizer.ggml.model", gguf::Value::from("gpt2")),
        ("tokenizer.ggml.pre", gguf::Value::from(pre)),
        ("tokenizer.ggml.tokens", strings(&["a", "b", "ab", "Ġ"])),
        ("tokenizer.ggml.merges", strings(&["a b"])),
        ("tokenizer.ggml.bos_token_id", gguf::Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", gguf::Value::U32(0)),
    ]
}

#[test]
fn hand_built_bpe_vocabulary_works() {
    let t = Tokenizer::from_gguf(&gguf_with(bpe_metadata("qwen2"))).expect("builds");
    assert_eq!(t.encode("ab a", false, false).unwrap(), [2, 3, 0]);
    assert_eq!(t.decode(&[2, 3, 0]), "ab a");
}

#[test]
fn unknown_pre_tokenizer_names_it() {
    match Tokenizer::from_gguf(&gguf_with(bpe_metadata("my-new-pre"))) {
        Err(TokenizerError::UnknownPreTokenizer { pre }) => assert_eq!(pre, "my-new-pre"),
        other => panic!("expected UnknownPreTokenizer, got {other:?}"),
    }
    // llama.cpp spells GPT-2's pre-tokenizer "gpt-2"; "gpt2" is unknown there too.
    assert!(matches!(
        Tokenizer::from_gguf(&gguf_with(bpe_metadata("gpt2"))),
        Err(TokenizerError::UnknownPreTokenizer { .. })
    ));
}

#[test]
fn unknown_model_names_it() {
    let g = gguf_with(vec![
        ("tokenizer.ggml.model", gguf::Value::from("wordpiece-ish")),
        ("tokenizer.ggml.tokens", strings(&["a"])),
    ]);
    match Tokenizer::from_gguf(&g) {
        Err(TokenizerError::UnknownModel { model }) => assert_eq!(model, "wordpiece-ish"),
        other => panic!("expected UnknownModel, got {other:?}"),
    }
}

#[test]
fn malformed_metadata_is_reported_with_the_value() {
    let spm = |extra: Vec<(&'static str, gguf::Value)>| {
        let mut m = vec![
            ("tokenizer.ggml.model", gguf::Value::from("llama")),
            ("tokenizer.ggml.tokens", strings(&["<unk>", "<s>", "</s>", "▁a"])),
        ];
        m.extend(extra);
        Tokenizer::from_gguf(&gguf_with(m))
    };
    // scores of the wrong length
    match spm(vec![(
        "tokenizer.ggml.scores",
        gguf::Value::Array(vec![gguf::Value::F32(0.0)]),
    )]) {
        Err(TokenizerError::LengthMismatch { key, expected, found }) => {
            assert_eq!((key, expected, found), ("tokenizer.ggml.scores", 4, 1))
        }
        other => panic!("expected LengthMismatch, got {other:?}"),
    }
    // a token type outside 0..=6
    let types = gguf::Value::Array([1, 3, 3, 9].iter().map(|&t| gguf::Value::I32(t)).collect());
    match spm(vec![("tokenizer.ggml.token_type", types)]) {
        Err(TokenizerError::InvalidTokenType { id, token_type }) => {
            assert_eq!((id, token_type), (3, 9))
        }
        other => panic!("expected InvalidTokenType, got {other:?}"),
    }
    // a special id past the vocabulary
    match spm(vec![("tokenizer.ggml.eos_token_id", gguf::Value::U32(99))]) {
        Err(TokenizerError::TokenIdOutOfRange { key, id, vocab_size }) => {
            assert_eq!((key, id, vocab_size), ("tokenizer.ggml.eos_token_id", 99, 4))
        }
        other => panic!("expected TokenIdOutOfRange, got {other:?}"),
    }
    // tokens of the wrong type
    match spm(vec![]).and_then(|_| {
        Tokenizer::from_gguf(&gguf_with(vec![
            ("tokenizer.ggml.model", gguf::Value::from("llama")),
            ("tokenizer.ggml.tokens", gguf::Value::U32(5)),
        ]))
    }) {
        Err(TokenizerError::Gguf(e)) => {
            assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}")
        }
        other => panic!("expected a GGUF type error, got {other:?}"),
    }
    // a byte token whose text is not <0xXX>
    let types = gguf::Value::Array([2, 3, 3, 6].iter().map(|&t| gguf::Value::I32(t)).collect());
    match spm(vec![("tokenizer.ggml.token_type", types)]) {
        Err(TokenizerError::MalformedByteToken { id, text }) => {
            assert_eq!((id, text.as_str()), (3, "▁a"))
        }
        other => panic!("expected MalformedByteToken, got {other:?}"),
    }
    // an empty vocabulary, and a BPE model without merges
    assert!(matches!(
        Tokenizer::from_gguf(&gguf_with(vec![
            ("tokenizer.ggml.model", gguf::Value::from("llama")),
            ("tokenizer.ggml.tokens", strings(&[])),
        ])),
        Err(TokenizerError::EmptyVocab)
    ));
    let mut no_merges = bpe_metadata("qwen2");
    no_merges.retain(|(k, _)| *k != "tokenizer.ggml.merges");
    assert!(matches!(
        Tokenizer::from_gguf(&gguf_with(no_merges)),
        Err(TokenizerError::MissingMerges)
    ));
}

#[test]
fn spm_without_byte_tokens_falls_back_to_the_unknown_token() {
    // No <0xXX> tokens and no single-byte tokens for "é": each of its bytes becomes the unknown token.
    let g = gguf_with(vec![
        ("tokenizer.ggml.model", gguf::Value::from("llama")),
        ("tokenizer.ggml.tokens", strings(&["▁", "a", "<s>"])),
        ("tokenizer.ggml.unknown_token_id", gguf::Value::U32(2)),
        ("tokenizer.ggml.bos_token_id", gguf::Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", gguf::Value::U32(2)),
    ]);
    let t = Tokenizer::from_gguf(&g).expect("builds");
    // with an unknown token, unencodable bytes become it
    assert_eq!(t.encode("aé", false, false).unwrap(), [0, 1, 2, 2]);
}

/// Every `tokenizer.ggml.pre` name llama.cpp was asked about (fixtures/pre-aliases.json): a name it rejects must
/// be an error here, and a name accepted here must select a pre-tokenizer whose results llama.cpp showed to be
/// identical to that name's. (Names llama.cpp loads with a pattern of their own are errors here.)
#[test]
fn pre_tokenizer_names_follow_llama_cpp() {
    let fixture = crate::common::read_fixture("pre-aliases.json");
    let aliases = fixture["aliases"].as_object().expect("aliases");
    assert!(aliases.len() >= 20);
    let mut accepted = 0;
    for (name, verdict) in aliases {
        let ours = quarrel_tokenizer::PreTokenizer::from_name(name);
        if verdict["loads"] == false {
            assert!(
                matches!(ours, Err(TokenizerError::UnknownPreTokenizer { ref pre }) if pre == name),
                "{name}: llama.cpp rejects it, ours {ours:?}"
            );
            continue;
        }
        let Ok(ours) = ours else { continue };
        accepted += 1;
        let same_as: Vec<quarrel_tokenizer::PreTokenizer> = verdict["same_as"]
            .as_array()
            .expect("same_as")
            .iter()
            .map(|v| quarrel_tokenizer::PreTokenizer::from_name(v.as_str().expect("name")).expect("canonical"))
            .collect();
        assert!(
            same_as.contains(&ours),
            "{name}: ours {ours:?}, llama.cpp same as {same_as:?}"
        );
    }
    assert!(accepted >= 15, "only {accepted} aliases accepted");
}
