//! `quarrel synth`: a random-weight GGUF in a known shape.

use anyhow::Result;
use clap::Args;
use engine::synth::{preset, presets, write_synth, SynthQuant};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct SynthArgs {
    /// Shape preset (smollm2-135m, llama3-1b, llama3-8b, mistral-7b, qwen2.5-0.5b, gemma3-270m, tiny).
    #[arg(long)]
    pub preset: String,
    /// Tensor types: f16, q8_0, q4_k (Q6_K for ffn_down and output), q6_k.
    #[arg(long, default_value = "f16")]
    pub quant: String,
    /// Random seed; the same seed writes the same file.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// List the presets and exit.
    #[arg(long)]
    pub list: bool,
}

pub fn synth(args: SynthArgs) -> Result<()> {
    if args.list {
        for p in presets() {
            println!("{}", p.name);
        }
        return Ok(());
    }
    let p = preset(&args.preset)?;
    let q: SynthQuant = args.quant.parse()?;
    let t0 = std::time::Instant::now();
    let bytes = write_synth(p, q, args.seed, &args.output)?;
    eprintln!(
        "wrote {} ({:.1} MiB) in {:.1}s",
        args.output.display(),
        bytes as f64 / (1u64 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
