//! `quarrel run`: raw completion. stdout carries exactly the continuation, streamed; stats go to stderr.

use crate::common::{load_any, ModelArgs};
use anyhow::{bail, Result};
use clap::Args;
use engine::{Backend, Model, Sampler, SamplerConfig, Session};
use std::io::{IsTerminal, Read, Write};
use tokenizer::StreamDecoder;

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches P (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the best one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize recently seen tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Subtract from the logit of every recently seen token (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Subtract per occurrence of a recently seen token (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties consider.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: a random one, printed with -v).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    pub fn sampler(&self) -> Result<Sampler> {
        let seed = self.seed.unwrap_or_else(rand::random);
        tracing::info!("sampling seed {seed}");
        Ok(Sampler::new(SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_last_n: self.repeat_last_n,
            seed,
        })?)
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (default: read from stdin when it is not a terminal).
    #[arg(short, long)]
    pub prompt: Option<String>,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let prompt = match &args.prompt {
        Some(p) => p.clone(),
        None if !std::io::stdin().is_terminal() => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        None => bail!("no prompt: pass -p TEXT or pipe it on stdin"),
    };
    let mut sampler = args.sampling.sampler()?;
    crate::with_model!(load_any(&args.model)?, model => complete(&model, &args, &prompt, &mut sampler))
}

fn complete<B: Backend>(model: &Model<B>, args: &RunArgs, prompt: &str, sampler: &mut Sampler) -> Result<()> {
    let ids = model.tokenizer.encode(prompt, true, true)?;
    if ids.is_empty() {
        bail!("the prompt is empty and the model adds no BOS token: nothing to continue");
    }
    let mut session = Session::new(model, &args.model.run_options())?;
    if ids.len() >= session.n_ctx() as usize {
        bail!(
            "prompt of {} tokens does not fit the context of {} tokens (raise --ctx)",
            ids.len(),
            session.n_ctx()
        );
    }
    let room = session.n_ctx() as usize - ids.len();
    let n_predict = args.n_predict.min(room);
    let mut out = std::io::stdout().lock();
    let mut decoder = StreamDecoder::new(&model.tokenizer);
    let mut write_err = None;
    let stats = session.generate(0, &ids, n_predict, sampler, &mut |tok| {
        let piece = decoder.feed(tok);
        match out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                write_err = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.write_all(decoder.finish().as_bytes())?;
    out.flush()?;
    drop(out);
    eprintln!();
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s | generation: {} tokens, {:.1} tok/s | stop: {:?}",
        stats.prompt_tokens,
        stats.prompt_tps(),
        stats.generated_tokens,
        stats.generation_tps(),
        stats.stop
    );
    Ok(())
}
