//! Our reader agrees with the reference reader (PyPI `gguf`, llama.cpp's gguf-py) on the two real models: every
//! tensor's name, type, dims and absolute offset, and every metadata entry, in file order. The reference's view
//! is stored in `tests/fixtures/<arch>.json`, written by `tests/fixtures/make_fixtures.py`.

mod common;

use common::{model, GEMMA, QWEN};
use quarrel_gguf::{Gguf, Value};
use serde_json::Value as Json;

fn fixture(arch: &str) -> Json {
    let path = format!("{}/tests/fixtures/{arch}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether our value equals the reference's JSON rendering of a scalar.
fn scalar_matches(ours: &Value, reference: &Json) -> bool {
    match ours {
        Value::String(s) => reference.as_str() == Some(s),
        Value::Bool(b) => reference.as_bool() == Some(*b),
        Value::F32(v) => reference.as_f64().map(|r| r as f32) == Some(*v),
        Value::F64(v) => reference.as_f64() == Some(*v),
        Value::Array(_) => false,
        int => match (int.as_i64(), int.as_u64()) {
            (Some(v), _) if reference.is_i64() => reference.as_i64() == Some(v),
            (_, Some(v)) => reference.as_u64() == Some(v),
            _ => false,
        },
    }
}

fn cross_check(gguf: &Gguf, reference: &Json) {
    let tensors = reference["tensors"].as_array().unwrap();
    assert_eq!(gguf.tensors.len(), tensors.len());
    for (ours, theirs) in gguf.tensors.iter().zip(tensors) {
        let dims: Vec<u64> = theirs[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(ours.name, theirs[0].as_str().unwrap());
        assert_eq!(ours.ty.name(), theirs[1].as_str().unwrap(), "{}", ours.name);
        assert_eq!(ours.dims, dims, "{}", ours.name);
        assert_eq!(ours.offset, theirs[3].as_u64().unwrap(), "{}", ours.name);
    }

    let metadata = reference["metadata"].as_array().unwrap();
    assert_eq!(gguf.metadata.len(), metadata.len());
    for ((key, value), theirs) in gguf.metadata.iter().zip(metadata) {
        assert_eq!(key, theirs[0].as_str().unwrap());
        assert_eq!(value.type_name(), theirs[1].as_str().unwrap(), "{key}");
        match value {
            Value::Array(items) => {
                let info = &theirs[2];
                assert_eq!(items.len() as u64, info["len"].as_u64().unwrap(), "{key}");
                if let Some(first) = items.first() {
                    assert_eq!(first.type_name(), info["elem"].as_str().unwrap(), "{key}");
                }
                for (ours, theirs) in items.iter().zip(info["first"].as_array().unwrap()) {
                    assert!(scalar_matches(ours, theirs), "{key}: {ours} vs {theirs}");
                }
            }
            scalar => assert!(scalar_matches(scalar, &theirs[2]), "{key}: {scalar} vs {}", theirs[2]),
        }
    }
}

#[test]
fn qwen2_agrees_with_the_reference_reader() {
    let reference = fixture("qwen2");
    assert_eq!(reference["file"], QWEN);
    cross_check(&Gguf::open(model(QWEN, "qwen")).unwrap(), &reference);
}

#[test]
fn gemma3_agrees_with_the_reference_reader() {
    let reference = fixture("gemma3");
    assert_eq!(reference["file"], GEMMA);
    cross_check(&Gguf::open(model(GEMMA, "gemma3")).unwrap(), &reference);
}
