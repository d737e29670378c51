//! Shared helpers: the real models (fetched by `scripts/fetch-models.sh` when missing) and fixture loading.

use quarrel_tokenizer::{Tokenizer, TokenizerMetadata};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const QWEN_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn read_fixture(name: &str) -> serde_json::Value {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The path of a real model, fetching both with `scripts/fetch-models.sh` when it is missing.
pub fn model_path(file: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    let path = cache.join("quarrel/models").join(file);
    if !path.exists() {
        let script = repo_root().join("scripts/fetch-models.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
    }
    assert!(path.exists(), "{} is missing after fetching", path.display());
    path
}

fn open(file: &str) -> &'static gguf::Gguf {
    static QWEN: OnceLock<gguf::Gguf> = OnceLock::new();
    static GEMMA: OnceLock<gguf::Gguf> = OnceLock::new();
    let cell = if file == QWEN_FILE { &QWEN } else { &GEMMA };
    cell.get_or_init(|| gguf::Gguf::open(model_path(file)).expect("model opens"))
}

pub fn gguf_of(file: &str) -> &'static gguf::Gguf {
    open(file)
}

pub fn qwen() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(open(QWEN_FILE)).expect("qwen tokenizer"))
}

pub fn gemma() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(open(GEMMA_FILE)).expect("gemma tokenizer"))
}

/// The tokenizer of a real model's metadata with `overrides` (GGUF key -> JSON value) applied.
pub fn with_overrides(file: &str, overrides: &serde_json::Map<String, serde_json::Value>) -> Tokenizer {
    let mut meta = TokenizerMetadata::from_gguf(open(file)).expect("metadata");
    for (key, value) in overrides {
        match (key.as_str(), value) {
            ("tokenizer.ggml.pre", serde_json::Value::String(pre)) => {
                meta.pre = Some(Box::leak(pre.clone().into_boxed_str()));
            }
            ("tokenizer.ggml.add_space_prefix", serde_json::Value::Bool(b)) => meta.add_space_prefix = Some(*b),
            _ => panic!("fixture override {key} = {value} is not supported by the test"),
        }
    }
    Tokenizer::from_metadata(&meta).expect("tokenizer with overrides")
}
