//! `quarrel`: the command line. Glue only: parse flags, call the engine, print.

mod bench;
mod chat;
mod check;
mod common;
mod dump;
mod eval;
mod info;
mod llama_py;
mod perplexity;
mod plot;
mod report;
mod run;
mod score;
mod synth;
mod sysinfo;
mod test_backend;
mod tokenize;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "quarrel",
    version,
    about = "Fast LLM inference for GGUF models, on CPU and NVIDIA GPUs"
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Complete a prompt (raw, no chat template); the continuation streams to stdout.
    Run(run::RunArgs),
    /// Chat interactively through the model's chat template.
    Chat(chat::ChatArgs),
    /// Show a model's metadata, tensors, memory estimate and chosen precisions.
    Info(info::InfoArgs),
    /// Print token ids as llama.cpp's llama-tokenize does.
    Tokenize(tokenize::TokenizeArgs),
    /// Perplexity of a text file, as llama-perplexity computes it.
    Perplexity(perplexity::PerplexityArgs),
    /// Measure prompt and generation speed, like llama-bench (a sweep over models, threads, lengths).
    Bench(bench::BenchArgs),
    /// Determinism, backend parity and llama.cpp parity of greedy tokens and logits.
    Check(check::CheckArgs),
    /// BLEU, chrF and ROUGE-L of hypotheses against references (as sacrebleu and rouge-score).
    Score(score::ScoreArgs),
    /// Generate for each task's prompt and score the outputs against its references.
    Eval(eval::EvalArgs),
    /// Turn saved JSON results (quarrel's, llama-bench's) into one Markdown report with plots.
    Report(report::ReportArgs),
    /// Write a GGUF of random weights in a known shape (for speed measurements).
    Synth(synth::SynthArgs),
    /// Check every op of a device backend against the CPU, per weight format and shape (like test-backend-ops).
    TestBackend(test_backend::TestBackendArgs),
    /// Write every intermediate tensor of a prompt's forward pass, named as llama.cpp names them (to compare with
    /// dev/llama-ref/llama_dump op by op: scripts/compare-dumps.py).
    Dump(dump::DumpArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            // One clear line: clap's first line, which already starts with "error:".
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{first} (see `quarrel --help`)");
            return ExitCode::from(1);
        }
    };
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Chat(a) => chat::chat(a),
        Command::Info(a) => info::info(a),
        Command::Tokenize(a) => tokenize::tokenize(a),
        Command::Perplexity(a) => perplexity::perplexity(a),
        Command::Bench(a) => bench::bench(a),
        Command::Check(a) => check::check(a),
        Command::Score(a) => score::score(a),
        Command::Eval(a) => eval::eval(a),
        Command::Report(a) => report::report(a),
        Command::Synth(a) => synth::synth(a),
        Command::TestBackend(a) => test_backend::test_backend(a),
        Command::Dump(a) => dump::dump(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(1)
        }
    }
}
