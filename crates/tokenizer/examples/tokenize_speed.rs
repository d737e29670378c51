//! Tokenizer construction time and encoding speed on both real models.
//!
//!     cargo run --release -p quarrel-tokenizer --example tokenize_speed [TEXT_FILE] [MODEL.gguf...]
//!
//! Defaults: /usr/share/common-licenses/GPL-3 and the two models under ~/.cache/quarrel/models.

use quarrel_tokenizer::Tokenizer;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let text_path = args
        .next()
        .unwrap_or_else(|| "/usr/share/common-licenses/GPL-3".to_owned());
    let mut models: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if models.is_empty() {
        let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
        let dir = PathBuf::from(home).join(".cache/quarrel/models");
        models.push(dir.join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"));
        models.push(dir.join("gemma-3-270m-q4_k_m.gguf"));
    }
    let text = std::fs::read_to_string(&text_path)?;
    let mb = text.len() as f64 / 1e6;
    println!("text: {text_path} ({} bytes)", text.len());
    for model in &models {
        let start = Instant::now();
        let g = gguf::Gguf::open(model)?;
        let open_ms = start.elapsed().as_secs_f64() * 1e3;
        // The first build pays for fresh memory; the best of three is the steady cost.
        let mut build_ms = Vec::new();
        let mut built = None;
        for _ in 0..3 {
            let start = Instant::now();
            built = Some(Tokenizer::from_gguf(&g)?);
            build_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let tokenizer = built.ok_or("no tokenizer")?;
        let first_build_ms = build_ms[0];
        let best_build_ms = build_ms.iter().copied().fold(f64::INFINITY, f64::min);
        let mut best = f64::INFINITY;
        let mut n_tokens = 0;
        for _ in 0..5 {
            let start = Instant::now();
            let ids = tokenizer.encode(&text, true, true)?;
            best = best.min(start.elapsed().as_secs_f64());
            n_tokens = ids.len();
        }
        let start = Instant::now();
        let ids = tokenizer.encode(&text, true, true)?;
        let decoded = tokenizer.decode(&ids);
        let decode_s = start.elapsed().as_secs_f64();
        let name = model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{name}: gguf open {open_ms:.1} ms, tokenizer build {first_build_ms:.1} ms first / \
             {best_build_ms:.1} ms best of 3, vocab {}; encode {n_tokens} tokens in {:.2} ms = {:.2} MB/s \
             (best of 5); encode+decode round trip {} in {:.2} ms",
            tokenizer.vocab_size(),
            best * 1e3,
            mb / best,
            if decoded == text { "exact" } else { "differs" },
            decode_s * 1e3,
        );
    }
    Ok(())
}
