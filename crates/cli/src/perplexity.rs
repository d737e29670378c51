//! `quarrel perplexity`: perplexity of a text file, computed as llama-perplexity does.

use crate::common::{load_model, ModelArgs};
use anyhow::{Context, Result};
use clap::Args;
use engine::{RunOptions, Session};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file to score.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Score at most this many chunks.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn perplexity(args: PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    // As llama-perplexity reads `-f`: one trailing newline is dropped, so token counts agree.
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let model = load_model(&args.model)?;
    let n_ctx = args.model.ctx.unwrap_or(512);
    let tokens = model.tokenizer.encode(text, true, false)?;
    let opts = RunOptions {
        ctx: Some(n_ctx),
        max_batch: n_ctx as usize,
        max_logit_rows: n_ctx as usize,
        ..args.model.run_options()
    };
    let mut session = Session::new(&model, &opts)?;
    let bos = if model.tokenizer.add_bos() {
        model.tokenizer.bos()
    } else {
        None
    };
    let n_chunks = (tokens.len() / n_ctx as usize).min(args.chunks.unwrap_or(usize::MAX));
    let bar = ProgressBar::new(n_chunks as u64).with_style(
        ProgressStyle::with_template("chunk {pos}/{len} {bar:30} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let r = engine::perplexity::perplexity(
        &mut session,
        &tokens,
        n_ctx as usize,
        bos,
        args.chunks,
        &mut |_, ppl| {
            bar.inc(1);
            bar.set_message(format!("ppl {ppl:.4}"));
        },
    )?;
    bar.finish_and_clear();
    if args.json {
        let running: Vec<f64> = r.running.clone();
        println!(
            "{}",
            serde_json::json!({"ppl": r.ppl, "ppl_stderr": r.ppl_stderr, "n_chunks": r.n_chunks, "n_ctx": r.n_ctx,
                "n_tokens": r.n_tokens, "n_scored": r.n_scored, "running": running})
        );
    } else {
        let list: Vec<String> = r
            .running
            .iter()
            .enumerate()
            .map(|(i, p)| format!("[{}]{p:.4}", i + 1))
            .collect();
        println!("{}", list.join(","));
        println!(
            "Final estimate: PPL = {:.4} +/- {:.5}  ({} chunks of {} tokens, {} tokens in the file)",
            r.ppl, r.ppl_stderr, r.n_chunks, r.n_ctx, r.n_tokens
        );
    }
    Ok(())
}
