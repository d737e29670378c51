//! `quarrel perplexity`: perplexity of a text file, computed as llama-perplexity does; `--save-logits` keeps the
//! scored positions' log-probabilities (llama.cpp's `--kl-divergence-base` format), `--kl-divergence` compares the
//! model with such a file (another quantization, another backend, llama.cpp itself).

use crate::common::{load_any, ModelArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use engine::kl::{kl_divergence, KlAccumulator, KlReport, LogitsReader, LogitsWriter, DP_FRACTIONS, KLD_FRACTIONS};
use engine::{Backend, Model, RunOptions, Session};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file to score (not needed with --kl-divergence, which scores the file's own tokens).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Score at most this many chunks.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Score with a stride instead of chunks, as llama-perplexity --ppl-stride: windows of --ctx tokens every N
    /// tokens, the last N positions of each scored.
    #[arg(long, value_name = "N", conflicts_with_all = ["save_logits", "kl_divergence"])]
    pub stride: Option<usize>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Save the log-probabilities of every scored position to FILE (llama-perplexity's --kl-divergence-base
    /// format: about 2 bytes per vocabulary entry per scored position).
    #[arg(long, value_name = "FILE", conflicts_with = "kl_divergence")]
    pub save_logits: Option<PathBuf>,
    /// Compare with base log-probabilities saved by --save-logits (or by llama-perplexity
    /// --kl-divergence-base): KL divergence, top-1 agreement, Δp, PPL of both.
    #[arg(long, value_name = "FILE")]
    pub kl_divergence: Option<PathBuf>,
}

fn progress(n: usize) -> ProgressBar {
    ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template("chunk {pos}/{len} {bar:30} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

pub fn perplexity(args: PerplexityArgs) -> Result<()> {
    if args.chunks == Some(0) {
        bail!("--chunks must be at least 1");
    }
    // Read inputs before the (slow) model load so that a wrong path fails at once.
    let base = match &args.kl_divergence {
        Some(p) => Some(LogitsReader::open(p)?),
        None => None,
    };
    let text = match (&args.file, &base) {
        (Some(f), _) => Some(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?),
        (None, Some(_)) => None,
        (None, None) => bail!("no text to score: pass -f FILE (or --kl-divergence FILE)"),
    };
    let loaded = load_any(&args.model)?;
    crate::with_model!(loaded, model => match base {
        Some(base) => kl(&model, &args, base),
        None => ppl(&model, &args, text.as_deref().unwrap_or_default()),
    })
}

fn session_opts(args: &PerplexityArgs, n_ctx: u32) -> RunOptions {
    RunOptions {
        ctx: Some(n_ctx),
        max_batch: n_ctx as usize,
        max_logit_rows: n_ctx as usize,
        ..args.model.run_options()
    }
}

fn bos<B: Backend>(model: &Model<B>) -> Option<u32> {
    if model.tokenizer.add_bos() {
        model.tokenizer.bos()
    } else {
        None
    }
}

fn ppl<B: Backend>(model: &Model<B>, args: &PerplexityArgs, text: &str) -> Result<()> {
    // As llama-perplexity reads `-f`: one trailing newline is dropped, so token counts agree.
    let text = text.strip_suffix('\n').unwrap_or(text);
    let n_ctx = args.model.ctx.unwrap_or(512);
    let tokens = model.tokenizer.encode(text, true, false)?;
    let mut session = Session::new(model, &session_opts(args, n_ctx))?;
    if let Some(stride) = args.stride {
        let n = (tokens.len().saturating_sub(n_ctx as usize))
            .div_ceil(stride.max(1))
            .min(args.chunks.unwrap_or(usize::MAX));
        let bar = progress(n);
        let r = engine::perplexity::perplexity_strided(
            &mut session,
            &tokens,
            n_ctx as usize,
            stride,
            args.chunks,
            &mut |_, ppl| {
                bar.inc(1);
                bar.set_message(format!("ppl {ppl:.4}"));
            },
        );
        bar.finish_and_clear();
        return print_ppl(model, args, &r?);
    }
    let n_chunks = engine::perplexity::n_chunks(tokens.len(), n_ctx as usize, args.chunks);
    let mut writer = match &args.save_logits {
        Some(p) if n_chunks > 0 => {
            let used = &tokens[..n_chunks * n_ctx as usize];
            Some(LogitsWriter::create(p, n_ctx as usize, model.config.vocab, used)?)
        }
        _ => None,
    };
    let bar = progress(n_chunks);
    let mut save_err = None;
    let r = engine::perplexity::perplexity_scored(
        &mut session,
        &tokens,
        n_ctx as usize,
        bos(model),
        args.chunks,
        &mut |_, ppl| {
            bar.inc(1);
            bar.set_message(format!("ppl {ppl:.4}"));
        },
        &mut |row, _| {
            if let Some(w) = writer.as_mut() {
                if let Err(e) = w.write_row(row) {
                    save_err = Some(e);
                    return Err(engine::EngineError::BadSetting {
                        name: "save-logits",
                        value: String::new(),
                        reason: "write failed".into(),
                    });
                }
            }
            Ok(())
        },
    );
    bar.finish_and_clear();
    if let Some(e) = save_err {
        return Err(e.into());
    }
    let r = r?;
    if let Some(w) = writer {
        w.finish()?;
    }
    print_ppl(model, args, &r)
}

fn print_ppl<B: Backend>(model: &Model<B>, args: &PerplexityArgs, r: &engine::perplexity::Perplexity) -> Result<()> {
    if args.json {
        println!(
            "{}",
            serde_json::json!({"ppl": r.ppl, "ppl_stderr": r.ppl_stderr, "n_chunks": r.n_chunks, "n_ctx": r.n_ctx,
                "n_tokens": r.n_tokens, "n_scored": r.n_scored, "running": r.running,
                "model": model.path.display().to_string(), "backend": model.backend.name(),
                "stride": args.stride,
                "saved_logits": args.save_logits.as_ref().map(|p| p.display().to_string())})
        );
    } else {
        let list: Vec<String> = r
            .running
            .iter()
            .enumerate()
            .map(|(i, p)| format!("[{}]{p:.4}", i + 1))
            .collect();
        println!("{}", list.join(","));
        let how = match args.stride {
            Some(s) => format!("{} windows of {} tokens every {s}", r.n_chunks, r.n_ctx),
            None => format!("{} chunks of {} tokens", r.n_chunks, r.n_ctx),
        };
        println!(
            "Final estimate: PPL = {:.4} +/- {:.5}  ({how}, {} tokens in the file)",
            r.ppl, r.ppl_stderr, r.n_tokens
        );
        if let Some(p) = &args.save_logits {
            println!(
                "saved the log-probabilities of {} positions to {}",
                r.n_scored,
                p.display()
            );
        }
    }
    Ok(())
}

fn kl<B: Backend>(model: &Model<B>, args: &PerplexityArgs, mut base: LogitsReader) -> Result<()> {
    let n_ctx = base.n_ctx as u32;
    if let Some(c) = args.model.ctx.filter(|&c| c != n_ctx) {
        eprintln!("note: --ctx {c} ignored: the saved logits were computed with a context of {n_ctx}");
    }
    let mut session = Session::new(model, &session_opts(args, n_ctx))?;
    let n_chunks = base.n_chunk.min(args.chunks.unwrap_or(usize::MAX));
    let bar = progress(n_chunks);
    let r = kl_divergence(
        &mut session,
        &mut base,
        bos(model),
        Some(n_chunks),
        &mut |_, acc: &KlAccumulator| {
            bar.inc(1);
            let r = acc.report();
            bar.set_message(format!(
                "ppl {:.4} kld {:.5} same top {:.2} %",
                r.ppl,
                r.kld_mean,
                100.0 * r.same_top
            ));
        },
    )?;
    bar.finish_and_clear();
    if args.json {
        let mut v = serde_json::to_value(&r)?;
        v["n_chunks"] = n_chunks.into();
        v["n_ctx"] = n_ctx.into();
        v["base"] = args.kl_divergence.as_ref().map(|p| p.display().to_string()).into();
        println!("{v}");
    } else {
        print_kl(&r, n_chunks, n_ctx);
    }
    Ok(())
}

fn pct_label(f: f64, what: &str) -> String {
    match f {
        1.0 => format!("Maximum {what}"),
        0.0 => format!("Minimum {what}"),
        0.5 => format!("Median  {what}"),
        f => format!("{:>5}%  {what}", format!("{:.1}", 100.0 * f)),
    }
}

fn print_kl(r: &KlReport, n_chunks: usize, n_ctx: u32) {
    println!("{} positions over {n_chunks} chunks of {n_ctx} tokens", r.count);
    println!();
    println!("====== Perplexity statistics ======");
    println!("Mean PPL(Q)                   : {:10.6} ± {:10.6}", r.ppl, r.ppl_err);
    println!(
        "Mean PPL(base)                : {:10.6} ± {:10.6}",
        r.ppl_base, r.ppl_base_err
    );
    println!("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%", 100.0 * r.ln_ppl_correlation);
    println!(
        "Mean ln(PPL(Q)/PPL(base))     : {:10.6} ± {:10.6}",
        r.ln_ppl_ratio, r.ln_ppl_ratio_err
    );
    println!(
        "Mean PPL(Q)/PPL(base)         : {:10.6} ± {:10.6}",
        r.ppl_ratio, r.ppl_ratio_err
    );
    println!(
        "Mean PPL(Q)-PPL(base)         : {:10.6} ± {:10.6}",
        r.ppl_diff, r.ppl_diff_err
    );
    println!();
    println!("====== KL divergence statistics ======");
    println!("Mean    KLD: {:10.6} ± {:10.6}", r.kld_mean, r.kld_err);
    for (&f, &(_, v)) in KLD_FRACTIONS.iter().zip(&r.kld_percentiles) {
        println!("{}: {v:10.6}", pct_label(f, "KLD"));
    }
    println!();
    println!("====== Token probability statistics ======");
    println!(
        "Mean    Δp: {:6.3} ± {:5.3} %",
        100.0 * r.p_diff_mean,
        100.0 * r.p_diff_err
    );
    for (&f, &(_, v)) in DP_FRACTIONS.iter().zip(&r.p_diff_percentiles) {
        println!("{}: {:6.3}%", pct_label(f, "Δp"), 100.0 * v);
    }
    println!(
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * r.p_diff_rms,
        100.0 * r.p_diff_rms_err
    );
    println!(
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * r.same_top,
        100.0 * r.same_top_err
    );
}
