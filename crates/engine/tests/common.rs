//! Shared test helpers: model files (fetched on demand, never skipped) and fixtures.

use engine::{CpuBackend, CpuConfig, Model};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub const QWEN: &str = "qwen2.5-coder-0.5b";
pub const GEMMA: &str = "gemma3-270m";

fn file_name(key: &str) -> &'static str {
    match key {
        QWEN => "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        GEMMA => "gemma-3-270m-q4_k_m.gguf",
        other => panic!("unknown test model {other}"),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cached model file, fetched with the project's script when missing (tests never skip for lack of it).
pub fn model_path(key: &str) -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let path = base.join("quarrel/models").join(file_name(key));
    if !path.exists() {
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/fetch-models.sh"))
            .status()
            .expect("running scripts/fetch-models.sh");
        assert!(status.success(), "scripts/fetch-models.sh failed");
    }
    assert!(path.exists(), "{} missing after fetch", path.display());
    path
}

/// Each real model, loaded once per test binary.
pub fn model(key: &str) -> &'static Model<CpuBackend> {
    static QWEN_M: OnceLock<Model<CpuBackend>> = OnceLock::new();
    static GEMMA_M: OnceLock<Model<CpuBackend>> = OnceLock::new();
    let cell = if key == QWEN { &QWEN_M } else { &GEMMA_M };
    cell.get_or_init(|| {
        let be = CpuBackend::new(CpuConfig {
            n_threads: 2,
            simd: None,
        })
        .expect("cpu backend");
        Model::load(&model_path(key), be, &mut |_, _| {}).expect("model loads")
    })
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[derive(Deserialize)]
pub struct LogitStats {
    pub mean: f32,
    pub probe: Vec<(u32, f32)>,
}

#[derive(Deserialize)]
pub struct GreedyCase {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub last_logits_top: Vec<(u32, f32)>,
    pub last_logits_stats: LogitStats,
    pub greedy_ids: Vec<u32>,
    pub greedy_logits: Vec<f32>,
    pub greedy_margins: Vec<f32>,
}

#[derive(Deserialize)]
pub struct GreedyFixture {
    pub llama_cpp: String,
    pub cases: Vec<GreedyCase>,
}

pub fn greedy_fixture(key: &str) -> GreedyFixture {
    greedy_fixture_file(&format!("{key}.greedy.json"))
}

pub fn greedy_fixture_file(name: &str) -> GreedyFixture {
    let p = fixture_path(name);
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
