//! Shared test helpers: model files (fetched on demand, never skipped) and fixtures.

use engine::{CpuBackend, CpuConfig, Model};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub const QWEN: &str = "qwen2.5-coder-0.5b";
pub const GEMMA: &str = "gemma3-270m";
/// `quarrel synth --preset smollm2-135m --quant q8_0 --seed 0`: the `llama` architecture path.
pub const SYNTH_LLAMA: &str = "synth-smollm2-135m-q8_0";

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
    static SYNTH_M: OnceLock<Model<CpuBackend>> = OnceLock::new();
    let cell = match key {
        QWEN => &QWEN_M,
        GEMMA => &GEMMA_M,
        _ => &SYNTH_M,
    };
    cell.get_or_init(|| {
        let be = CpuBackend::new(CpuConfig {
            n_threads: 2,
            simd: None,
        })
        .expect("cpu backend");
        let path = if key == SYNTH_LLAMA {
            synth_llama_path()
        } else {
            model_path(key)
        };
        Model::load(&path, be, &mut |_, _| {}).expect("model loads")
    })
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
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

/// Writes the synthetic llama model the fixture was made from and checks it is byte-identical to that file.
fn synth_llama_path() -> PathBuf {
    use sha2::Digest;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("synth-smollm2-135m-q8_0.gguf");
    let preset = engine::synth::preset("smollm2-135m").unwrap();
    engine::synth::write_synth(preset, engine::synth::SynthQuant::Q8_0, 0, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let sha = format!("{:x}", sha2::Sha256::digest(&bytes));
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_path(&format!("{SYNTH_LLAMA}.greedy.json"))).unwrap())
            .unwrap();
    assert_eq!(
        sha,
        fx["model_sha256"].as_str().unwrap(),
        "synth output changed: regenerate the llama.cpp fixture"
    );
    path
}

/// Largest |Δ| of llama.cpp's logits between its F16-KV and F32-KV runs: at the first position (top-40 and probes)
/// and along the greedy paths as long as both runs chose the same tokens.
pub fn own_spread(key: &str) -> f32 {
    let a = greedy_fixture(key);
    let b = greedy_fixture_file(&format!("{key}.greedy.kv-f32.json"));
    let mut worst = 0.0f32;
    for (ca, cb) in a.cases.iter().zip(&b.cases) {
        for &(id, la) in ca.last_logits_top.iter().chain(&ca.last_logits_stats.probe) {
            let other = cb
                .last_logits_top
                .iter()
                .chain(&cb.last_logits_stats.probe)
                .find(|x| x.0 == id);
            if let Some(&(_, lb)) = other {
                worst = worst.max((la - lb).abs());
            }
        }
        for step in 0..ca.greedy_ids.len().min(cb.greedy_ids.len()) {
            if ca.greedy_ids[..=step] != cb.greedy_ids[..=step] {
                break;
            }
            worst = worst.max((ca.greedy_logits[step] - cb.greedy_logits[step]).abs());
        }
    }
    worst
}
